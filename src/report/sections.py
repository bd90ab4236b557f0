"""The report's sections: one table of them, filled once by src.report.build, rendered by both report.md (here) and
report.html (src.report.html), so the two always say the same thing in the same order.

A filled section holds notes (paragraphs), tables (a caption and rows of already formatted cells), images (PNG
names in the report dir) and code blocks (the command line and config); analysis.json keeps the filled list
under "sections", which is what report.html renders.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from src.report import numbers as N

# (id, title, what it shows, what it says when the sweep has nothing for it); the order of both pages.
SECTIONS: list[tuple[str, str, str, str]] = [
    ("summary", "Sweep", "", ""),
    ("findings", "Findings",
     "One row per question of the paper the sweep can answer. estimate: the statistic, the mean over source "
     "seeds of each seed's own value; seed-level 95% CI: Student's t over source seeds (layer_optimum_shift, whose "
     "seeds choose on each other's val scores: t quantiles with the standard error of a bootstrap over seeds that "
     "chooses again in each resample; these tasks, a new source net and, where replicates vary it, target sample); "
     "task-level p: a test over tasks of the seed-averaged statistic (tasks like these; the "
     "population column names it), two-sided, and Holm-adjusted over the report's secondary questions and estimator calls (the study's "
     "primary question is not adjusted). supported = both say the paper's direction and enough source seeds are "
     "defined; 'these tasks only' = the seed-level interval does, the task-level test does not. seeds for 80% "
     "power: source seeds a seed-level test would need to detect the observed estimate, given its per-seed SD "
     "(docs/statistics.md).",
     "The sweep varies none of the factors the paper's directions are about (layer, width, depth, classes vs "
     "images, fine-tuning, training length)."),
    ("per-task", "Per task (ordered by distance from the source)",
     "Per task the setting of the swept factors with the best mean val score over replicates, its mean test "
     "score, the baseline's, and the relative error reduction (err_base - err_best) / err_base. Settings tied on "
     "val: the first stands for them, 'tied on val' lists them all, and the best score is their mean.",
     "No successful job with a target score."),
    ("best-practice", "Best practice per task group",
     "For each factor, the setting with the highest mean val score over the group's tasks (other factors chosen "
     "on val), and its mean test score.",
     "No task group with a swept factor."),
    ("optimal", "Optimal setting per task",
     "Each task's best setting of each ordinal factor (best mean val score), by distance: a description. Whether "
     "the best layer moves with distance is a question of the Findings section (layer_optimum_shift), which has the "
     "statistic and the inference that needs; for the other factors no question tests whether the optimum moves "
     "(width_helps and the like compare the two ends of the factor, averaged over tasks).",
     "No ordinal factor was swept."),
    ("settings", "Per setting, with 95% CIs",
     "Mean test score per task and setting over source seeds with a t interval (one job per setting: a BCa "
     "bootstrap over its test images, which speaks of that one net and target sample). Per task, role marks the "
     "setting with the best mean val score and the baseline; best - baseline is the gain of choosing on val: per "
     "source seed, the test score of that seed's val-best setting minus the baseline's (test scores never choose), "
     "with a t interval over seeds (a target without a val score chooses on test). Where the settings are "
     "different source nets, source val acc is each net's own val accuracy: a setting that transfers worse may "
     "be a net that trained worse. Where the settings' representations differ in size, feature dim is the "
     "dimension the layer gives after pooling (before PCA): the probe sees more or fewer features. Per-cell intervals, not adjusted for their number: descriptions, not "
     "findings.",
     "No swept factor."),
    ("estimator-agreement", "Transferability estimators vs measured probe score",
     "Kendall tau between each estimate (computed from the features, no training) and the test score.",
     "Fewer than 3 jobs with transferability estimates."),
    ("zoo", "Estimators on the source-net zoo",
     "Per target, each estimator's ranking of the source nets against the ground truth's (weighted Kendall tau, "
     "scipy weightedtau); the mean over targets with a 95% t interval over targets; each estimator's margin over "
     "the static baselines and the comparison with the top estimator, paired by target, with t-test p-values "
     "Holm-adjusted together with the report's other calls.",
     "No sweep with several source nets per target."),
    ("model-selection", "Model selection: backbones ranked on the target",
     "Per target (experiment=model_selection), the backbones ranked by the probe's test score (95% BCa interval "
     "over test images), each estimator's value and the seconds extraction and the probe took; then each "
     "estimator's weighted Kendall tau against the probe's ranking with a 95% paired-bootstrap interval over test "
     "images (these backbones and this training sample; the estimates are held fixed), how often it picks the "
     "probe's best backbone across those resamples, and its median seconds per backbone (docs/statistics.md).",
     "No target with two or more backbones (the model factor)."),
    ("selection-regret", "Picking by an estimator instead of the probe",
     "Per target, the job an estimator ranks first (what objective=<estimator> in a search picks) and its regret: "
     "best probe score minus the picked job's probe score (jobs tied at the estimator's top count as a pick at random "
     "among them: their mean probe score).",
     "No transferability estimates."),
    ("measured-distance", "Distance from the source",
     "The distance the report orders tasks by, and (with --distance) two more computed from the source net at its "
     "penultimate layer: 1 - normalised LogME of the target (how well the features explain its labels) and the "
     "Frechet distance between the source task's val features and the target's, against the a priori "
     "distance_rank.",
     ""),
    ("plots", "Plots", "", "No plots (no successful jobs)."),
    ("failed-jobs", "Failed jobs", "Jobs whose result.json has status failed, with their errors; then jobs the "
     "sweep planned or started that left no result.json.", "No failed jobs."),
    ("command", "Command line and config", "How the sweep was run: its command line and composed config.",
     "No sweep record."),
]
TITLES = {sid: title for sid, title, _, _ in SECTIONS}


def cell(v: Any) -> str:
    """One value as text outside a table (its own significant digits; src.report.numbers)."""
    return N.number(v)


@dataclass
class Section:
    id: str
    notes: list[str] = field(default_factory=list)
    tables: list[dict[str, Any]] = field(default_factory=list)  # {"caption": str, "columns": [...], "rows": [[...]]}
    after: list[str] = field(default_factory=list)  # paragraphs under the tables
    images: list[str] = field(default_factory=list)
    code: list[dict[str, str]] = field(default_factory=list)  # {"caption": str, "text": str, "fold": bool}

    def table(self, df: pd.DataFrame | list[dict], caption: str = "") -> "Section":
        df = df if isinstance(df, pd.DataFrame) else pd.DataFrame(df)
        if len(df):
            # Column by column (one precision per column, p-values as such: src.report.numbers), then as rows.
            columns = [N.column(str(c), df.iloc[:, i].tolist()) for i, c in enumerate(df.columns)]
            self.tables.append({"caption": caption, "columns": [str(c) for c in df.columns],
                                "rows": [list(r) for r in zip(*columns)]})
        return self

    @property
    def empty(self) -> bool:
        return not (self.notes or self.tables or self.after or self.images or self.code)


def filled(sections: dict[str, Section]) -> list[dict[str, Any]]:
    """Every section of SECTIONS in order, with its title, intro and empty text (analysis.json's "sections")."""
    out = []
    for sid, title, intro, empty in SECTIONS:
        s = sections.get(sid, Section(sid))
        out.append({"id": sid, "title": title, "intro": intro if not s.empty else "",
                    "empty": empty if s.empty else "", **{k: v for k, v in asdict(s).items() if k != "id"}})
    return out


def _md_table(t: dict[str, Any]) -> list[str]:
    esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = [f"{t['caption']}\n"] if t["caption"] else []
    lines += ["| " + " | ".join(map(esc, t["columns"])) + " |", "|" + "---|" * len(t["columns"])]
    lines += ["| " + " | ".join(map(esc, r)) + " |" for r in t["rows"]]
    return lines + [""]


def render_md(sections: list[dict[str, Any]], title: str = "Transfer report") -> str:
    md = [f"# {title}\n"]
    for s in sections:
        md.append(f"## {s['title']}\n")
        if s["intro"]:
            md.append(s["intro"] + "\n")
        if s["empty"]:
            md.append(s["empty"] + "\n")
        md += [n + "\n" for n in s["notes"]]
        for t in s["tables"]:
            md += _md_table(t)
        md += [n + "\n" for n in s["after"]]
        md += [f"![{p}]({p})" for p in s["images"]] + ([""] if s["images"] else [])
        for c in s["code"]:
            md += ([f"{c['caption']}\n"] if c["caption"] else []) + ["```", c["text"].rstrip(), "```", ""]
    return "\n".join(md)
