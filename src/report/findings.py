"""The findings table: what a sweep says about the paper's directions, one row per question (src.report.questions).

Reads the flat results table (src.report.collect) and, for a sweep with one job per setting, each job's
`test_correct.npy`; never recomputes features or scores. Terms:
  task         a target at one distance: `synth_shift@0.4` for the shift family, else the target's name
  distance     the x-axis: `shift` when every task has one; else the measured distance from the sweep's source
               net(s) (`metrics.distance`, src.record.PRIMARY_DISTANCE: the mean over source seeds of each seed's
               distance, `seed_distances`); else
               `distance_rank`, but only for the synthetic source it describes
  source seed  the replicate unit: one source net (`seed`); the target samples under it (`target.data.seed`)
               are averaged within it, so a crossed seed x target-seed design never counts a net twice
A question's score for (task, setting, source seed) is the mean over that seed's target samples of the job chosen
on val among the other swept factors' settings (one job when only the question's factor is swept).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from src.record import PER_IMAGE, PRIMARY_DISTANCE_COLUMN, PRIMARY_DISTANCE_MAX
from src.report import analysis as A
from src.report import numbers as N
from src.report import questions as Q
from src.report import stats as S

ROLE_PRIMARY, ROLE_SECONDARY = "primary", "secondary"
# The findings table's columns, in order (a row also keeps `question`, `factor` and `measured as`).
COLUMNS = ["id", "role", "statistic", "estimate", "seed-level 95% CI", "source seeds", "tasks", "task-level p",
           "p (Holm)", "verdict", "population", "seeds for 80% power"]


def add_axes(df: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """ok rows with `task`, `replicate`, `source_seed` and `distance` columns; returns (rows, what the distance is)."""
    ok = A.ok_rows(df).copy()
    if ok.empty or "target" not in ok:  # nothing finished (e.g. only unreadable result files)
        empty = pd.Series(index=ok.index, dtype=object)
        return ok.assign(task=empty, replicate=empty, source_seed=empty, distance=np.nan), "none (no finished jobs)"
    shift = ok["shift"] if "shift" in ok else pd.Series(np.nan, index=ok.index)
    has_shift = shift.notna()
    name = (ok["target_name"] if "target_name" in ok else ok["target"]).astype(str)  # with_task_axes ran: no 2nd @
    ok["task"] = np.where(has_shift, name + "@" + shift.astype(str), name)
    ok["replicate"] = A.replicate(ok)
    ok["source_seed"] = A.as_text(ok["seed"]) if "seed" in ok else "0"
    measured = PRIMARY_DISTANCE_COLUMN
    if len(ok) and has_shift.all():
        ok["distance"], kind = shift.astype(float), "shift (target.data.shift)"
    elif measured in ok and ok.groupby("task")[measured].apply(lambda s: s.notna().any()).all():
        per_seed = seed_distances(ok, measured)
        ok["distance"] = ok["task"].map(per_seed.mean(axis=1))
        kind = "measured proxy A-distance from the sweep's source net(s) at a fixed early layer"
        nets = ok["source_key"].nunique() if "source_key" in ok else 0
        if "source_key" in ok and nets > ok["source_seed"].nunique():
            # the swept factor changes the net (width, depth, data): each net measures its own distance, and the
            # axis is their mean, which the reader should know, with how far the nets agree on the order
            per_net = ok.groupby(["task", "source_key"])[measured].mean().unstack("source_key")
            kind += f", averaged over the sweep's {nets} source nets" + _order_agreement(per_net, "source nets")
        else:
            kind += _order_agreement(per_seed)
        kind += _at_ceiling(per_seed)
    elif len(ok) and "distance_rank" in ok and _synthetic_source(ok).all() and ok["distance_rank"].notna().all():
        ok["distance"], kind = ok["distance_rank"].astype(float), "distance_rank (a priori, synthetic source)"
    else:
        ok["distance"], kind = np.nan, "none (no shift, no measured distance)"
    return ok, kind


def _at_ceiling(per_seed: pd.DataFrame) -> str:
    """The tasks every source net measures at the distance's maximum: how much farther they are is not measured, so
    they sit at the axis's end however far they are, and a line's far end leans on them."""
    capped = [str(t) for t, row in per_seed.iterrows()
              if row.notna().any() and np.isclose(row.dropna(), PRIMARY_DISTANCE_MAX, rtol=0, atol=1e-9).all()]
    return (f"; {', '.join(capped)} {'is' if len(capped) == 1 else 'are'} at the measure's maximum "
            f"({PRIMARY_DISTANCE_MAX:g}) for every source net: farther than the axis can show") if capped else ""


def seed_distances(ok: pd.DataFrame, measured: str) -> pd.DataFrame:
    """task x source seed: the measured distance of each source net from each task, the mean over the seed's
    target samples. A task's distance is the mean over source seeds of these, so every net counts once however
    many of its jobs finished (a mean over jobs would weight a seed by its finished jobs)."""
    per_rep = ok.groupby(["task", "source_seed", "replicate"])[measured].mean()
    return per_rep.groupby(level=["task", "source_seed"]).mean().unstack("source_seed")


def _order_agreement(per_seed: pd.DataFrame, what: str = "source seeds") -> str:
    """How far the source seeds agree on the tasks' order by distance (mean pairwise Kendall tau of their
    distances; said only when some pair disagrees): the trend questions place tasks at the seed-averaged distance,
    and a reader should know when the nets themselves do not agree on that order."""
    from itertools import combinations

    from scipy.stats import kendalltau

    full = per_seed.dropna(axis=1)
    if full.shape[0] < 3 or full.shape[1] < 2:
        return ""
    d = full.to_numpy(float)  # task x seed
    step = np.sign(d[:, None, :] - d[None, :, :])  # per pair of tasks, each seed's order of the two
    if not ((step > 0).any(axis=-1) & (step < 0).any(axis=-1)).any():  # no two seeds order a pair oppositely
        return ""  # (a tie in one seed is no disagreement, though it lowers Kendall's tau-b)
    taus = [kendalltau(full[a], full[b]).statistic for a, b in combinations(full.columns, 2)]
    taus = [t for t in taus if math.isfinite(t)] or [math.nan]
    return (f"; the {full.shape[1]} {what} order the tasks by distance differently (mean pairwise Kendall "
            f"tau {np.mean(taus):.2f}, lowest {min(taus):.2f}): the order used is that of their mean")


def _synthetic_source(df: pd.DataFrame) -> pd.Series:
    """Rows whose source is the synthetic task the distance_ranks were assigned against (unknown counts as it)."""
    if "source" not in df:
        return pd.Series(True, index=df.index)
    return df["source"].isna() | (df["source"] == "synthetic")


def _correct(job_dir: str) -> np.ndarray | None:
    p = Path(job_dir) / PER_IMAGE
    return np.load(p).astype(float) if p.is_file() else None


def _seed_sort(seeds) -> list[str]:
    return sorted(seeds, key=lambda s: (float(s) if s.lstrip("-").replace(".", "", 1).isdigit() else math.inf, s))


@dataclass
class Grid:
    """One factor's scores: test/val[task, setting, source seed] (NaN where no job finished), settings in the
    factor's order, the tasks' distances, and notes on what was chosen or left out."""

    factor: str
    tasks: list[str]
    settings: list
    seeds: list[str]
    distance: np.ndarray
    test: np.ndarray
    val: np.ndarray
    on_test: list[str]  # targets without val scores: chosen on test scores there
    notes: list[str] = field(default_factory=list)
    new_samples: bool = False  # the source seeds' jobs drew different target samples (replicates=N ties them)


def build_grid(ok: pd.DataFrame, factor: str) -> Grid:
    rows = ok[ok[factor].notna()].copy()
    rows["_setting"] = A.as_text(rows[factor])
    rows["_select"], on_test = A.selection_score(rows)
    # Per (task, setting, replicate): the job chosen on val among the other factors' settings; then the mean over
    # a source seed's target samples.
    chosen = rows.loc[rows.groupby(["task", "_setting", "replicate"])["_select"].idxmax()]
    cell = chosen.groupby(["task", "_setting", "source_seed"])[["target_score", "_select"]].mean()
    tasks = list(ok.groupby("task")["distance"].first().sort_values(kind="stable").index)
    values = A.sort_values(factor, list(rows[factor].drop_duplicates()))
    seeds = _seed_sort(rows["source_seed"].unique())
    notes = []
    if on_test:
        notes.append(f"no val scores for {', '.join(on_test)} (no C search there): settings chosen on test scores "
                     "instead (the other seeds' where a question cross-fits)")
    # A setting some task never got (in any seed) cannot enter a contrast over tasks: left out, and said so.
    have = rows.groupby("_setting")["task"].nunique()
    dropped = [v for v in values if have.get(str(v), 0) < len(tasks)]
    if dropped:
        notes.append(f"{factor} {', '.join(map(str, dropped))} left out: not run (or failed) for every task")
    settings = [v for v in values if v not in dropped]
    index = pd.MultiIndex.from_product([tasks, [str(v) for v in settings], seeds])
    full = cell.reindex(index)
    shape = (len(tasks), len(settings), len(seeds))
    distance = ok.groupby("task")["distance"].first().reindex(tasks).to_numpy(dtype=float)
    samples = rows.groupby("source_seed")["target_seed"].agg(lambda s: tuple(sorted(map(str, s.dropna().unique())))) \
        if "target_seed" in rows else pd.Series(dtype=object)
    return Grid(factor, tasks, settings, seeds, distance, full["target_score"].to_numpy(float).reshape(shape),
                full["_select"].to_numpy(float).reshape(shape), on_test, notes, samples.nunique() > 1)


def _follows(ok: pd.DataFrame, factor: str, other: str) -> bool:
    """Whether `other` moves with `factor` by the question's own design, not as a second factor: the images per
    class of an equal-budget classes sweep (total images fixed, checked before), the snapshot of an epochs sweep
    that taps each run's last epoch."""
    if factor == "source_num_classes" and other == "source_images_per_class":
        return _equal_budget(ok)
    if factor == "source_epochs" and other == "snapshot":
        return bool((ok["snapshot"].astype(float) == ok["source_epochs"].astype(float)).all())
    return False


def _confounded(ok: pd.DataFrame, factor: str, swept: list[str]) -> list[str]:
    """The other swept factors that do not cross `factor` (some setting of it never meets some of theirs): its
    contrast would compare different nets, not different settings of one factor. A factor that follows `factor`
    by design (`_follows`) is part of it, not another factor."""
    others = [f for f in swept if f != factor and not _follows(ok, factor, f)]
    if not others:
        return []
    combos = A.as_text(ok[others]).agg("|".join, axis=1)
    per = ok.assign(_c=combos).groupby(["task", A.as_text(ok[factor])])["_c"].agg(frozenset)
    bad = [t for t, g in per.groupby(level="task") if g.nunique() > 1]
    return others if bad else []


def _question_factor(q: Q.Question, swept: list[str]) -> str | None:
    return next((f for f in q.factors if f in swept), None)


def _equal_budget(ok: pd.DataFrame) -> bool:
    budget = ok["source_num_classes"].astype(float) * ok["source_images_per_class"].astype(float)
    return budget.nunique() == 1


@dataclass
class Answer:
    """One question's raw numbers before the multiplicity adjustment and the verdict."""

    q: Q.Question
    factor: str
    grid: Grid
    reason: str | None = None  # why it has no estimate at all
    result: Q.Result | None = None
    defined: list[str] = field(default_factory=list)
    undefined: list[str] = field(default_factory=list)
    role: str = ROLE_SECONDARY
    task_p_adjusted: float = math.nan
    floor_adjusted: float = math.nan  # the smallest task-level p its tasks allow, Holm-adjusted in this family
    family_size: int = 0

    @property
    def n_seeds(self) -> int:
        return len(self.grid.seeds)

    @property
    def n_tasks(self) -> int:
        return len(self.grid.tasks)

    def scalar(self, name: str) -> float:
        v = getattr(self.result, name, None) if self.result is not None else None
        return math.nan if v is None else float(np.asarray(v))


def answer(q: Q.Question, ok: pd.DataFrame, factor: str, swept: list[str]) -> Answer:
    grid = build_grid(ok, factor)
    a = Answer(q, factor, grid)
    if factor == "source_num_classes" and not _equal_budget(ok):
        a.reason = "not answered: the source's total images differ between settings (no equal budget)"
        return a
    if (others := _confounded(ok, factor, swept)):
        a.reason = f"not answered: {factor} is not crossed with {', '.join(others)} (different nets, not one factor)"
        return a
    if len(grid.settings) < q.min_settings or (factor == "finetune" and "none" not in map(str, grid.settings)):
        a.reason = f"not answered: too few {factor} settings run for every task"
        return a
    if q.kind != "level":
        d = grid.distance
        if len(grid.tasks) < 3:  # a line over tasks, and its test over them, need 3
            a.reason = (f"not answered: a question over distance needs at least 3 tasks; this sweep has "
                        f"{len(grid.tasks)}")
            return a
        if not np.isfinite(d).all():
            a.reason = "not answered: the tasks have no distance axis (no shift, no measured distance)"
            return a
        if np.ptp(d) == 0:
            a.reason = "not answered: every task is at the same distance"
            return a
    complete = np.isfinite(grid.test).all(axis=(0, 1)) & np.isfinite(grid.val).all(axis=(0, 1))
    a.defined = [s for s, c in zip(grid.seeds, complete) if c]
    a.undefined = [s for s, c in zip(grid.seeds, complete) if not c]
    if not a.defined:
        a.reason = "not answered: no source seed has a score for every task and setting"
        return a
    a.result = Q.analyse(q, grid.test[..., complete], grid.val[..., complete], grid.settings, grid.distance)
    grid.notes += [n for n in _moves_with(ok, factor, grid.settings) if n not in grid.notes]
    return a


# Factors whose settings are different source nets trained with one recipe (epochs, optimiser; for width and depth
# also the same source data, for the classes the same number of source images): what else differs between their
# nets is part of every contrast over them.
NET_FACTORS = ("width", "depth", "source_num_classes")


def _moves_with(ok: pd.DataFrame, factor: str, settings: list) -> list[str]:
    """What changes with a net-changing factor besides the factor itself, per setting (mean over its finished
    jobs), where it differs between the settings: the source net's own val accuracy (at a fixed recipe a wider
    or deeper net may train better or worse in the same epochs; with more classes, on a task of its own, so with
    its chance level) and the representation's dimension (the probe then sees more or fewer features). The
    contrast compares the nets as trained, and the reader should know. A snapshot sweep: what a snapshot is."""
    rows = ok[ok[factor].notna()]
    if factor == "snapshot":
        return _snapshot_note(rows, settings)
    if factor not in NET_FACTORS:
        return []
    key = A.as_text(rows[factor])
    out = []
    for col, what in (("source_val_acc", "the source nets' own val accuracy"),
                      ("feature_dim", "the representation's dimension")):
        if col not in rows or rows[col].isna().all():
            continue
        means = rows.groupby(key)[col].mean()
        values = [means.get(str(v), math.nan) for v in settings]
        if np.nanmax(values) - np.nanmin(values) <= N.NOISE:
            continue
        chance = col == "source_val_acc" and factor == "source_num_classes"
        text = ", ".join(f"{v} {N.number(m, 3) if col == 'source_val_acc' else f'{m:.0f}'}"
                         + (f" (chance 1/{v})" if chance else "")
                         for v, m in zip(settings, values))
        out.append(f"{what} also changes with {factor} ({text}; mean over the finished jobs)"
                   + ("; each on its own source task, so they say how far each net learnt its task" if chance else ""))
    if out:
        arch = _only(rows, "arch")
        width = _only(rows, "width") if factor != "width" else ""
        depth = _only(rows, "depth") if factor != "depth" else ""
        nets = " ".join(p for p in (f"{arch} nets" if arch else "nets", f"at width {width}" if width else "",
                                    f"of depth {depth}" if depth else "") if p)
        epochs = _only(rows, "source_epochs")
        data = "the same number of source images" if factor == "source_num_classes" else "the same source data"
        out.append(f"every {factor} setting is trained with one recipe ({epochs + ' epochs, ' if epochs else ''}{data}, "
                   f"the same optimiser), so the contrast compares the nets as trained in that budget: a {factor} whose "
                   f"net trained less well also transfers worse for that reason; the answer is about {nets} trained so")
    return out


def _snapshot_note(rows: pd.DataFrame, settings: list) -> list[str]:
    """A snapshot sweep (experiment=early_stopping) taps epochs of one run whose learning rate follows one one-cycle
    schedule over all its epochs (src.train: OneCycleLR, rising over the first 30% of the steps, then annealed):
    an early snapshot is that run mid-schedule, not a net trained for that many epochs."""
    epochs = _only(rows, "source_epochs")
    if not epochs:
        return []
    return [f"the snapshots ({', '.join(map(str, settings))}) are epochs of one {epochs}-epoch run whose learning "
            f"rate follows one one-cycle schedule over all {epochs} epochs (rising over the first 30% of its steps, "
            "then annealed): an earlier snapshot is that run mid-schedule, not a net trained for that many epochs, "
            "so the contrast is the finished run against its own earlier state"]


def _only(rows: pd.DataFrame, col: str) -> str:
    """The one value `col` takes in `rows`, as text ("" when it is not recorded or takes several)."""
    if col not in rows:
        return ""
    values = rows[col].dropna().unique()
    if len(values) != 1:
        return ""
    v = values[0]
    return f"{v:g}" if isinstance(v, (float, np.floating)) else str(v)


def answers(df: pd.DataFrame, primary: str | None = None) -> tuple[list[Answer], str]:
    """Every question the sweep's swept factors pose, answered (or with the reason it cannot be)."""
    ok, kind = add_axes(df)
    swept = A.swept_factors(df)
    out = []
    for q in Q.QUESTIONS:
        factor = _question_factor(q, swept)
        if factor is None:
            continue
        a = answer(q, ok, factor, swept)
        a.role = ROLE_PRIMARY if q.id == primary else ROLE_SECONDARY
        out.append(a)
    return out, kind


def family_pvalues(items: list[Answer]) -> list[float]:
    """The task-level p-values that enter the report's Holm family: every answered non-primary question's."""
    return [a.scalar("task_p") if a.role != ROLE_PRIMARY and a.result is not None else math.nan for a in items]


def task_cap(a: Answer) -> str:
    """What the number of tasks alone rules out, or "": with too few tasks the task-level test cannot reach
    p < alpha whatever the data and however many seeds (`S.smallest_p`), so no verdict can go past "these tasks
    only" until tasks are added."""
    if a.result is None:
        return ""
    if S.smallest_p(a.q.kind, a.n_tasks) < S.ALPHA:
        if a.role == ROLE_PRIMARY or not a.floor_adjusted >= S.ALPHA:
            return ""
        return (f"with the report's Holm family of {a.family_size} calls, even the smallest task-level p "
                f"{a.n_tasks} tasks allow ({S.smallest_p(a.q.kind, a.n_tasks):.3g}) would adjust to "
                f"{a.floor_adjusted:.3g}: \"{S.SUPPORTED}\" is out of reach here (primary questions are not adjusted)")
    return (f"{a.n_tasks} tasks cap it at \"{S.THESE_TASKS}\" (smallest possible task-level p "
            f"{S.smallest_p(a.q.kind, a.n_tasks):.3g}; \"{S.SUPPORTED}\" needs {S.tasks_for_alpha(a.q.kind)} tasks)")


def verdict(a: Answer, min_seeds: int) -> str:
    if a.reason:
        return a.reason
    cap = task_cap(a)
    blocked = S.gate(len(a.defined), a.n_seeds, min_seeds)
    if blocked:
        return f"{blocked}; {cap}" if cap else blocked
    p = a.scalar("task_p") if a.role == ROLE_PRIMARY else a.task_p_adjusted
    decided = str(Q.decide(a.q, a.result, p))
    why = []
    if decided == S.NOT_RESOLVED and a.result.near is not None and S.side(a.scalar("lo"), a.scalar("hi")) == 1:
        # the far end alone is not the question: the interval excluding 0 must not read as "not resolved" unexplained
        why.append("the far end's interval is above 0, the near end's is not below 0")
    why += [cap] if cap else []
    return f"{decided} ({'; '.join(why)})" if why else decided


def _population(a: Answer) -> str:
    if a.result is None:
        return ""
    n = a.n_tasks
    exact = {"trend": math.factorial(n) <= S.N_RESAMPLES, "level": 2 ** n <= S.N_RESAMPLES, "ends": True}[a.q.kind]
    test = {"trend": "randomisation of distances over tasks", "level": "sign flips over tasks",
            "ends": "OLS t test over tasks"}[a.q.kind]
    how = "" if a.q.kind == "ends" else (", exact" if exact else f", {S.N_RESAMPLES} random arrangements")
    net = "a new source net and target sample" if a.grid.new_samples else "a new source net"
    return f"CI: these {n} tasks, {net}; p: tasks like these ({test}{how})"


def ends_stay(a: Answer) -> bool:
    """An `ends` question whose two ends do not point opposite ways: the estimates say the optimum stays put."""
    return a.result is not None and a.result.near is not None and not (
        np.sign(a.scalar("estimate")) * np.sign(a.scalar("near")) < 0)


def seeds_needed(a: Answer) -> float:
    """Source seeds for 80% power at the sweep's own estimate and per-seed SD (S.seeds_for_power), never below the
    seeds a verdict needs at all (S.MIN_SEEDS): inf when unreachable, NaN with fewer than 2 defined seeds (no SD)
    or no estimate. An `ends` question needs both ends: the seeds for the end that needs more, with the SD the
    bootstrap interval implies; unreachable when the two ends point the same way (no number of source nets makes
    an optimum move that the estimates say stays put)."""
    r = a.result
    if r is None:
        return math.nan
    per_seed = np.atleast_1d(np.asarray(r.per_seed, dtype=float))
    n = len(per_seed)
    if n < 2:
        return math.nan
    if r.near is None:
        need = S.seeds_for_power(a.scalar("estimate"), float(per_seed.std(ddof=1)))
    else:
        far, near = a.scalar("estimate"), a.scalar("near")
        if ends_stay(a):
            return math.inf
        sd = [float(per_seed.std(ddof=1))] * 2 if r.se is None else [a.scalar("se") * math.sqrt(n),
                                                                    a.scalar("near_se") * math.sqrt(n)]
        need = max(S.seeds_for_power(far, sd[0]), S.seeds_for_power(near, sd[1]))
    return max(need, float(S.MIN_SEEDS))


def row(a: Answer, min_seeds: int) -> dict[str, Any]:
    """One row of the findings table (the same record feeds report.md, report.html and analysis.json)."""
    r = a.result
    est, lo, hi = a.scalar("estimate"), a.scalar("lo"), a.scalar("hi")
    seeds = (f"{len(a.defined)}" if not a.undefined else f"{len(a.defined)} of {a.n_seeds} "
             f"(undefined: s{', s'.join(a.undefined)})")
    need = seeds_needed(a)
    raw = a.scalar("task_p")
    return {
        "id": a.q.id, "question": a.q.question, "role": a.role, "factor": a.factor,
        "statistic": a.q.short, "measured as": a.q.statistic, "estimate": est, "seed-level 95% CI": S.fmt_ci(lo, hi) if r is not None else "",
        "source seeds": seeds if r is not None else "", "tasks": a.n_tasks,
        "task-level p": raw, "p (Holm)": raw if a.role == ROLE_PRIMARY else a.task_p_adjusted,
        "verdict": verdict(a, min_seeds), "population": _population(a),
        "seeds for 80% power": (_power_cell(need, min_seeds) if math.isfinite(need) else "unreachable"
                                if need == math.inf else "n/a (fewer than 2 seeds: no spread)" if r is not None
                                else ""),
    }


def _power_cell(need: float, min_seeds: int) -> str:
    """The seeds for 80% power as the table prints them: a count, and where it is below the seeds a verdict of this
    study needs (`report.min_seeds`: 6 for the presets), that number too, so that '3' next to 'no verdict: needs 6'
    does not read as a contradiction (power is the seed-level test's alone; the gate is the study's)."""
    gate = max(S.MIN_SEEDS, min_seeds or 0)
    return f"{int(need)}" if need >= gate else f"{int(need)} (a verdict here needs {gate})"


def details(a: Answer) -> dict[str, Any]:
    """What the plots and analysis.json need: per (task, seed) contrasts, per-seed statistics, the curves."""
    g, r = a.grid, a.result
    out: dict[str, Any] = {"factor": a.factor, "kind": a.q.kind, "expected_sign": a.q.sign,
                           "tasks": g.tasks, "distance": dict(zip(g.tasks, map(float, g.distance))),
                           "settings": [A._plain(v) for v in g.settings], "seeds": g.seeds,
                           "defined_seeds": a.defined, "chosen_on_test": g.on_test, "notes": g.notes,
                           "reason": a.reason}
    with np.errstate(all="ignore"):
        out["curves"] = {t: np.nanmean(g.test[i], axis=1).tolist() for i, t in enumerate(g.tasks)}
    if r is not None:
        c = np.asarray(r.contrast, dtype=float)
        out.update(contrast={t: c[i].tolist() for i, t in enumerate(g.tasks)},
                   per_seed=dict(zip(a.defined, np.atleast_1d(np.asarray(r.per_seed, dtype=float)).tolist())),
                   estimate=a.scalar("estimate"), ci=[a.scalar("lo"), a.scalar("hi")],
                   task_statistic=a.scalar("task_stat"), task_p=a.scalar("task_p"))
        if r.near is not None:
            out["near_end"] = {"estimate": a.scalar("near"), "ci": [a.scalar("near_lo"), a.scalar("near_hi")]}
        if r.boot_cov is not None:  # the seed bootstrap's covariance of the ends: the plot's band is the same interval
            out["bootstrap_ends_cov"] = np.asarray(r.boot_cov, dtype=float).tolist()
    return out


def notes(items: list[Answer]) -> list[str]:
    """Lines under the findings table: the near end of an `ends` question, and what was left out."""
    lines = []
    for a in items:
        if a.result is not None and a.result.near is not None:
            lo, hi = a.scalar("near_lo"), a.scalar("near_hi")
            places = N.decimals([lo, hi])  # the estimate at its interval's precision
            lines.append(f"{a.q.id}: at the nearest distance the same statistic is "
                         f"{N.number(a.scalar('near'), places)} {N.interval(lo, hi, places)} (supported needs it "
                         f"below 0).")
        lines += [f"{a.q.id}: {n}." for n in a.grid.notes]
        if a.result is None:
            continue
        if a.q.contrast in (Q.late_minus_early, Q.early_minus_late):
            settings = [str(v) for v in a.grid.settings]
            late = settings[Q.late_split(len(settings)):]
            line = (f"{a.factor}: late = {', '.join(late)} (the last {len(late)} of the {len(settings)} swept "
                    f"settings: the last third, rounded up); early = the others.")
            if line not in lines:
                lines.append(line)
        if a.q.contrast is Q.early_minus_late and len(a.defined) == 1:
            lines.append(f"{a.q.id}: one source seed, so each group's best setting is chosen on that seed's own val "
                         "scores (no other seeds to cross-fit on): its test noise can inflate the chosen scores.")
    return lines


def _net_name(net: pd.Series) -> str:
    """A source net as a reader tells it from the others: its arch, width and depth where recorded, and its seed."""
    parts = [str(net[c]) for c in ("arch", "width", "depth") if c in net and pd.notna(net[c])]
    seed = f"s{net['seed']}" if "seed" in net and pd.notna(net["seed"]) else ""
    return " ".join(p for p in ("/".join(parts), seed) if p)


def chance_sources(df: pd.DataFrame) -> str:
    """A warning when some of the sweep's trained source nets are not shown better than chance on their own val
    images (one-sided exact binomial test of val accuracy > 1/classes at alpha): their features are close to
    untrained, and every finding then describes such nets. "" when every net beats chance, or when the results do
    not record what the test needs (pretrained nets, older records without `source_val_images`)."""
    need = ["source_val_acc", "source_val_images", "source_num_classes"]
    ok = A.ok_rows(df)
    if any(c not in ok for c in need):
        return ""
    nets = ok.dropna(subset=need).drop_duplicates(subset=[c for c in ("source_key", "seed", *need) if c in ok])
    weak, tested = [], 0
    for _, net in nets.iterrows():
        n, classes = int(net["source_val_images"]), int(net["source_num_classes"])
        if n < 1 or classes < 2:
            continue
        tested += 1
        k = int(round(float(net["source_val_acc"]) * n))
        if S.above_chance_p(k, n, classes) >= S.ALPHA:
            weak.append((_net_name(net), float(net["source_val_acc"]), n, classes))
    if not weak:
        return ""
    seeds = ", ".join(f"{w[0]} ({N.number(w[1], 3)} on {w[2]})" for w in weak)
    chance = sorted({f"1/{w[3]}" for w in weak})
    return (f"Warning: {len(weak)} of {tested} source nets are not shown better than chance ({', '.join(chance)}) "
            f"on their own val images (one-sided binomial test, p >= {S.ALPHA:g}): {seeds}. Their features are "
            "close to untrained, and the findings describe such nets: train the source longer or on more images.")


# --- Per task and setting: means with CIs, and the val-chosen best against the baseline ---------------------
def setting_table(df: pd.DataFrame, baseline: dict[str, Any]) -> pd.DataFrame:
    """Per task and setting of the swept factors: mean test score over source seeds and its 95% t interval (one
    job: over test images); per task the setting chosen on val (mean over seeds), and the gain of choosing on val
    over the baseline, paired by seed (`val_choice_gain`: each seed's own val choice, its test scores never
    choose)."""
    ok, _ = add_axes(df)
    factors = A.swept_factors(df)
    if not factors or ok.empty:
        return pd.DataFrame()
    ok["setting"] = A.as_text(ok[factors]).agg(", ".join, axis=1)
    labels = ok.drop_duplicates("setting").set_index("setting")[factors]
    order = sorted(labels.index, key=lambda s: A.setting_key(factors, tuple(labels.loc[s])))  # each factor's order
    ok["_select"], on_test = A.selection_score(ok)
    rows = []
    for task, g in ok.groupby("task", sort=False):
        # per (setting, source seed): means over the seed's target samples
        per = g.groupby(["setting", "source_seed"])[["target_score", "_select"]].mean()
        test = per["target_score"].unstack("source_seed")
        test = test.loc[[s for s in order if s in test.index]]
        choose = per["_select"].unstack("source_seed").loc[test.index]
        tied = A.tied_best(choose.mean(axis=1))  # every setting tied at the best mean val score is marked
        best = tied[0] if tied else None  # the row that carries the gain (computed over all the tied ones)
        base = g[g.apply(A.matches, axis=1, baseline=baseline, factors=factors)]["setting"]
        base = base.iloc[0] if len(base) else None
        tie = f" (tied: {len(tied)} settings)" if len(tied) > 1 else ""
        for setting in test.index:
            values = test.loc[setting].dropna().to_numpy()
            if len(values) >= 2:
                mean, lo, hi, _ = S.t_interval(values)
                ci = S.fmt_ci(*S.within(float(lo), float(hi), 0.0, 1.0))  # every target metric is a fraction
            else:
                cell = g[g["setting"] == setting]
                c = _correct(cell["job_dir"].iloc[0]) if len(cell) == 1 and (
                    cell["target_metric"] == "accuracy").all() else None
                mean = float(values.mean()) if len(values) else math.nan
                metric = str(cell["target_metric"].iloc[0]) if len(cell) == 1 and "target_metric" in cell else ""
                why = f"one job, {metric}: no CI" if metric and metric != "accuracy" else "1 source seed: no CI"
                ci = why if c is None else S.fmt_ci(*S.image_ci(c)[1:], prefix="test images ")
            diff, dci = (_paired_diff(g, test, choose, base) if setting == best and base is not None
                         else (math.nan, ""))
            src_acc = (float(g.loc[g["setting"] == setting, "source_val_acc"].mean())
                       if "source_val_acc" in g else math.nan)
            dim = float(g.loc[g["setting"] == setting, "feature_dim"].mean()) if "feature_dim" in g else math.nan
            rows.append({"task": task, "distance": g["distance"].iloc[0], "setting": setting,
                         "source seeds": len(values), "mean": float(mean), "95% CI": ci,
                         "source val acc": src_acc, "feature dim": dim,
                         "role": " ".join(r for r in (("best on test" if task in on_test else "best on val") + tie
                                                      if setting in tied else "",
                                                      "baseline" if setting == base else "") if r),
                         "best - baseline": diff, "diff 95% CI": dci})
    out = N.frame(rows).sort_values(["distance", "task"], kind="stable").reset_index(drop=True)
    # Two columns only where they differ between a task's settings, since each is then part of the comparison:
    # - the source net's own val accuracy, where the settings are different nets (width, depth, data, training
    #   length): a setting that transfers worse may just be a net that trained worse (one net throughout, a layer
    #   or pooling sweep, or a library net that records none: left out);
    # - the representation's dimension (spp pools 5x the channels of avg and max, a wider net has wider layers):
    #   the probe then sees more features.
    for col in ("source val acc", "feature dim"):
        if not (len(out) and out.groupby("task")[col].agg(lambda s: s.nunique(dropna=True) > 1).any()):
            out = out.drop(columns=col, errors="ignore")
    return out


def val_choice_gain(test: np.ndarray, val: np.ndarray, base: int) -> np.ndarray:
    """Per source seed (last axis): the test score of the setting (axis -2) with that seed's best val score, minus
    the baseline setting's test score (tied val scores: the mean of the tied settings). Each seed's value uses its
    own data only, so the values are independent across seeds and their t interval is exact for what it
    estimates: the gain of choosing on val over the baseline, on a new source net."""
    top = S.at_max(val, axis=-2)
    return (test * top).sum(axis=-2) / top.sum(axis=-2) - test[..., base, :]


def _paired_diff(g: pd.DataFrame, test: pd.DataFrame, choose: pd.DataFrame, base: str) -> tuple[float, str]:
    seeds = [s for s in test.columns if np.isfinite(test[s]).all() and np.isfinite(choose[s]).all()]
    if len(seeds) >= 2:
        base_i = list(test.index).index(base)
        diffs = val_choice_gain(test[seeds].to_numpy(float), choose[seeds].to_numpy(float), base_i)
        if np.all(np.abs(diffs) < N.NOISE):  # no spread to give an interval of: say why there is none
            return 0.0, "every seed's choice scores as the baseline: no spread, no interval"
        mean, lo, hi, _ = S.t_interval(diffs)
        return float(mean), S.fmt_ci(*S.within(float(lo), float(hi), -1.0, 1.0))
    tied = A.tied_best(choose.mean(axis=1))
    point = float(test.loc[tied].mean(axis=1).mean() - test.loc[base].mean())  # tied: their mean, as per seed
    if len(tied) > 1:
        return point, f"{len(tied)} settings tied on val: no CI"
    best = tied[0]
    a = g[g["setting"] == best]
    b = g[g["setting"] == base]
    if len(a) != 1 or len(b) != 1:
        return point, "1 source seed: no CI"
    ca, cb = _correct(a["job_dir"].iloc[0]), _correct(b["job_dir"].iloc[0])
    if ca is None or cb is None or len(ca) != len(cb):
        return point, "1 source seed: no CI"
    _, lo, hi = S.image_ci(ca - cb)
    return point, S.fmt_ci(lo, hi, "test images ", " (the best is chosen on val of the same net)")


def with_task_axes(df: pd.DataFrame) -> pd.DataFrame:
    """Every row (failed ones too) with `task`, `replicate` and `distance`: the report's per-task tables then treat
    each shift of synth_shift as its own task (`target` becomes the task; `target_name` keeps the config name)."""
    ok, kind = add_axes(df)
    out = df.copy()
    out["target_name"] = out.get("target")
    for col in ("task", "replicate", "distance"):
        out[col] = ok[col].reindex(out.index)
    if "target" in out:
        out["target"] = out["task"].fillna(out["target"])
    if "distance_rank" in out:  # a rank describes distance from the synthetic source only
        out["distance_rank"] = out["distance_rank"].where(_synthetic_source(out))
    out.attrs["distance_axis"] = kind
    return out
