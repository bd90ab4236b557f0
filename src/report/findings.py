"""Replicates, confidence intervals and the findings table: what a sweep says about the paper's directions.

Reads the flat results table (src.report.collect) plus each job's `test_correct.npy` (1/0 per test image); never
recomputes features or scores. Terms:
  task       a target at one distance: `synth_shift@0.4` for the shift family, else the target's name
  distance   the x-axis: `shift` when every task has one; else the measured distance from the sweep's source
             net(s) (metrics.distance, the PRIMARY measure, averaged over the sweep's jobs of that task); else
             `distance_rank`, but only for the synthetic source it describes
  replicate  one (seed, target_seed) pair; the CIs resample replicates (all tasks together, since one seed's
             source net serves every task), or, with a single replicate, each task's test images
A factor's score for (task, setting, replicate) is its best job over the other swept factors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from src.report import analysis as A
from src.record import PER_IMAGE
from src.report import stats as S

PRIMARY_DISTANCE = "distance_pad"  # proxy A-distance (src/features/source_distance.py)
# factor -> (direction as the paper states it, how the effect is measured, expected sign of the effect)
DIRECTIONS = {
    "layer": ("later layers for near tasks, earlier for far", "Spearman rho(optimal layer, distance)", -1),
    "width": ("wider source nets help", "score(widest) - score(narrowest), mean over tasks", +1),
    "depth": ("deeper source nets help", "score(deepest) - score(shallowest), mean over tasks", +1),
    "source_num_classes": ("more classes beat more images per class (equal budget)",
                           "score(most classes) - score(fewest), mean over tasks", +1),
    "finetune": ("fine-tuning helps far tasks most", "Spearman rho(fine-tuning gain, distance)", +1),
    "snapshot": ("longer training helps", "score(last snapshot) - score(first), mean over tasks", +1),
    "source_epochs": ("longer training helps", "score(most epochs) - score(fewest), mean over tasks", +1),
}


def add_axes(df: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """ok rows with `task`, `replicate` and `distance` columns; returns (rows, what the distance is)."""
    ok = A.ok_rows(df).copy()
    if ok.empty or "target" not in ok:  # nothing finished (e.g. only unreadable result files)
        empty = pd.Series(index=ok.index, dtype=object)
        return ok.assign(task=empty, replicate=empty, distance=np.nan), "none (no finished jobs)"
    shift = ok["shift"] if "shift" in ok else pd.Series(np.nan, index=ok.index)
    has_shift = shift.notna()
    name = (ok["target_name"] if "target_name" in ok else ok["target"]).astype(str)  # with_task_axes ran: no 2nd @
    ok["task"] = np.where(has_shift, name + "@" + shift.astype(str), name)
    ok["replicate"] = A.replicate(ok)
    if len(ok) and has_shift.all():
        ok["distance"], kind = shift.astype(float), "shift (target.data.shift)"
    elif PRIMARY_DISTANCE in ok and ok.groupby("task")[PRIMARY_DISTANCE].apply(lambda s: s.notna().any()).all():
        ok["distance"] = ok.groupby("task")[PRIMARY_DISTANCE].transform("mean")
        kind = "measured proxy A-distance from the sweep's source net(s) at a fixed early layer"
    elif len(ok) and _synthetic_source(ok).all() and ok["distance_rank"].notna().all():
        ok["distance"], kind = ok["distance_rank"].astype(float), "distance_rank (a priori, synthetic source)"
    else:
        ok["distance"], kind = np.nan, "none (no shift, no measured distance)"
    return ok, kind


def _synthetic_source(df: pd.DataFrame) -> pd.Series:
    """Rows whose source is the synthetic task the distance_ranks were assigned against (unknown counts as it)."""
    if "source" not in df:
        return pd.Series(True, index=df.index)
    return df["source"].isna() | (df["source"] == "synthetic")


def _correct(job_dir: str) -> np.ndarray | None:
    p = Path(job_dir) / PER_IMAGE
    return np.load(p).astype(float) if p.is_file() else None


@dataclass
class Cube:
    """Per task: the factor's settings (ordered), the replicates, the score matrix (settings x replicates), and
    the per-test-image correctness of each setting's best job (single replicate only)."""

    factor: str
    tasks: list[str]
    distance: dict[str, float]
    values: dict[str, list]
    replicates: list[str]
    scores: dict[str, np.ndarray]
    correct: dict[str, list[np.ndarray | None]] = field(default_factory=dict)

    @property
    def n_rep(self) -> int:
        return len(self.replicates)

    @property
    def n_seeds(self) -> int:
        """Distinct source seeds among the replicates ("s<seed>/t<target seed>")."""
        return len({r.split("/")[0] for r in self.replicates})

    def replicate(self, j: int) -> dict[str, np.ndarray]:
        """Every task's per-setting scores in replicate j alone."""
        return {t: self.scores[t][:, j] for t in self.tasks}

    def point(self) -> dict[str, np.ndarray]:
        return {t: np.nanmean(self.scores[t], axis=1) for t in self.tasks}

    def resampler(self, seed: int = 0) -> Callable[[], dict[str, np.ndarray]]:
        """A function drawing one bootstrap sample of every task's per-setting scores."""
        rng = np.random.default_rng([seed, 9173])
        if self.n_rep >= 2:
            def draw() -> dict[str, np.ndarray]:
                idx = rng.integers(0, self.n_rep, self.n_rep)
                with np.errstate(all="ignore"):
                    return {t: np.nanmean(self.scores[t][:, idx], axis=1) for t in self.tasks}
            return draw

        def draw_images() -> dict[str, np.ndarray]:
            out = {}
            for t in self.tasks:
                point = np.nanmean(self.scores[t], axis=1)
                n = next((len(c) for c in self.correct.get(t, []) if c is not None), 0)
                idx = rng.integers(0, n, n) if n else None
                out[t] = np.array([c[idx].mean() if c is not None and idx is not None and len(c) == n else p
                                   for c, p in zip(self.correct.get(t, [None] * len(point)), point)])
            return out
        return draw_images


def build_cube(ok: pd.DataFrame, factor: str) -> Cube:
    reps = sorted(ok["replicate"].unique())
    tasks = ok.groupby("task")["distance"].first().sort_values(kind="stable")
    cube = Cube(factor, list(tasks.index), tasks.to_dict(), {}, reps, {})
    for task in cube.tasks:
        rows = ok[ok["task"] == task]
        values = A.sort_values(factor, rows[factor].dropna().unique())
        mat = np.full((len(values), len(reps)), np.nan)
        best_jobs: list[str | None] = []
        for i, v in enumerate(values):
            sub = rows[rows[factor].astype(str) == str(v)]
            for j, r in enumerate(reps):
                cell = sub[sub["replicate"] == r]
                if len(cell):
                    mat[i, j] = cell["target_score"].max()
            best_jobs.append(sub.loc[sub["target_score"].idxmax(), "job_dir"] if len(sub) else None)
        cube.values[task], cube.scores[task] = values, mat
        if len(reps) == 1 and (rows["target_metric"] == "accuracy").all():
            cube.correct[task] = [_correct(j) if j else None for j in best_jobs]
    return cube


def _optimal_ordinals(cube: Cube, scores: dict[str, np.ndarray]) -> dict[str, float]:
    """Per task, the ordinal of the best setting; tied best settings count as their mean ordinal (taking the
    first would push ties - common near chance - toward early layers, one of the directions tested)."""
    out = {}
    for t, s in scores.items():
        s = np.asarray(s, dtype=float)
        if not np.isfinite(s).any():
            out[t] = math.nan
            continue
        tied = np.flatnonzero(s == np.nanmax(s))
        out[t] = float(np.mean([A.ordinal(cube.factor, cube.values[t][i]) for i in tied]))
    return out


def effect_fn(cube: Cube) -> Callable[[dict[str, np.ndarray]], float] | None:
    """The statistic of the factor's direction, as a function of one (bootstrap) sample of the scores."""
    f = cube.factor
    dist = np.array([cube.distance[t] for t in cube.tasks], dtype=float)
    if f in A.ORDINAL and f in ("layer",):
        return lambda sc: S.spearman(dist, [_optimal_ordinals(cube, sc)[t] for t in cube.tasks])
    if f == "finetune":
        def gain_rho(sc: dict[str, np.ndarray]) -> float:
            gains = []
            for t in cube.tasks:
                vals = [str(v) for v in cube.values[t]]
                if "none" not in vals or len(vals) < 2:
                    gains.append(math.nan)
                    continue
                tuned = [s for v, s in zip(vals, sc[t]) if v != "none"]
                gains.append(np.nanmax(tuned) - sc[t][vals.index("none")])
            return S.spearman(dist, gains)
        return gain_rho
    if f in DIRECTIONS:
        def hi_minus_lo(sc: dict[str, np.ndarray]) -> float:
            d = [s[-1] - s[0] for s in sc.values() if len(s) >= 2]
            return float(np.nanmean(d)) if d else math.nan
        return hi_minus_lo
    return None


def _equal_budget(ok: pd.DataFrame) -> bool:
    budget = ok["source_num_classes"].astype(float) * ok["source_images_per_class"].astype(float)
    return budget.nunique() == 1


def findings(df: pd.DataFrame, n_boot: int = S.N_BOOT) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The findings table (one row per direction the sweep covers) and the per-factor details for plots/json."""
    ok, kind = add_axes(df)
    rows, details = [], {"distance_axis": kind}
    for factor in A.swept_factors(df):
        if factor not in DIRECTIONS:
            continue
        if factor == "source_num_classes" and not _equal_budget(ok):
            continue
        cube = build_cube(ok, factor)
        fn = effect_fn(cube)
        draw = cube.resampler()
        direction, measure, sign = DIRECTIONS[factor]
        if 2 <= cube.n_rep < S.SMALL_N:  # too few replicates to bootstrap: t interval of per-replicate effects
            per_rep = [fn(cube.replicate(j)) for j in range(cube.n_rep)]
            effect, lo, hi = S.t_ci(per_rep)
            if measure.startswith("Spearman"):  # a t interval can leave rho's range; what lies outside is not rho
                lo, hi = max(lo, -1.0), min(hi, 1.0)
            basis = (f"{cube.n_rep} replicates ({cube.n_seeds} source seeds): mean of per-replicate effects, t "
                     f"interval ({int(np.isfinite(per_rep).sum())} defined)")
        else:
            effect = fn(cube.point())
            lo, hi = S.percentile_ci(np.array([fn(draw()) for _ in range(n_boot)]))
        if cube.n_rep >= 2:
            if cube.n_rep >= S.SMALL_N:
                basis = f"{cube.n_rep} replicates ({cube.n_seeds} source seeds): percentile bootstrap"
        elif any(c is not None for cs in cube.correct.values() for c in cs):
            basis = f"test images only: {S.fmt_ci(lo, hi, 2)}"
        else:
            basis, lo, hi = "n/a (no per-image results)", math.nan, math.nan
        rows.append({"direction": direction, "factor": factor, "effect measured as": measure,
                     "effect": effect, "95% CI": S.fmt_ci(lo, hi, cube.n_rep), "CI basis": basis,
                     "verdict": S.verdict(effect, lo, hi, sign, cube.n_rep, cube.n_seeds), "tasks": len(cube.tasks)})
        details[factor] = {"effect": effect, "ci": [lo, hi], "replicates": cube.replicates,
                           "optimal_band": _optimal_band(cube, draw, n_boot) if factor in A.ORDINAL else None,
                           "curves": {t: {"values": [A._plain(v) for v in cube.values[t]],
                                          "mean": np.nanmean(cube.scores[t], axis=1).tolist()} for t in cube.tasks},
                           "distance": cube.distance}
    return pd.DataFrame(rows), details


def _optimal_band(cube: Cube, draw: Callable, n_boot: int) -> dict[str, list[float]]:
    """Per task: [point optimal ordinal, CI lo, CI hi] of the optimal setting: a t interval of the replicates'
    own optima below SMALL_N replicates, else over bootstrap samples."""
    point = _optimal_ordinals(cube, cube.point())
    if 2 <= cube.n_rep < S.SMALL_N:
        own = [_optimal_ordinals(cube, cube.replicate(j)) for j in range(cube.n_rep)]
        return {t: [point[t], *S.t_ci([o[t] for o in own])[1:]] for t in cube.tasks}
    samples = [_optimal_ordinals(cube, draw()) for _ in range(n_boot)]
    return {t: [point[t], *S.percentile_ci(np.array([s[t] for s in samples]))] for t in cube.tasks}


def setting_table(df: pd.DataFrame, baseline: dict[str, Any], n_boot: int = S.N_BOOT) -> pd.DataFrame:
    """Per task and setting of the swept factors: mean score, 95% CI (replicates, else test images), and per task
    the paired difference best - baseline with its CI."""
    ok, _ = add_axes(df)
    factors = A.swept_factors(df)
    if not factors:
        return pd.DataFrame()
    ok["setting"] = ok[factors].astype(str).agg(", ".join, axis=1)
    rows = []
    for task, g in ok.groupby("task", sort=False):
        reps = sorted(g["replicate"].unique())
        means = g.groupby("setting")["target_score"].mean()
        best = means.idxmax()
        base = g[g.apply(A.matches, axis=1, baseline=baseline, factors=factors)]["setting"]
        base = base.iloc[0] if len(base) else None
        for setting, cell in g.groupby("setting"):
            if len(reps) >= 2:
                mean, lo, hi = S.mean_ci(cell.groupby("replicate")["target_score"].mean().to_numpy(), n_boot)
                ci = S.fmt_ci(lo, hi, len(reps))
            else:
                c = _correct(cell["job_dir"].iloc[0]) if (cell["target_metric"] == "accuracy").all() else None
                mean = float(cell["target_score"].mean())
                ci = "n/a" if c is None else "images " + S.fmt_ci(*S.mean_ci(c, n_boot)[1:], 2)
            diff, dci = _paired_diff(g, best, base, reps, n_boot) if setting == best and base else (math.nan, "")
            rows.append({"task": task, "distance": g["distance"].iloc[0], "setting": setting,
                         "replicates": len(reps), "mean": mean, "95% CI": ci,
                         "best": "best" if setting == best else ("baseline" if setting == base else ""),
                         "best - baseline": diff, "diff 95% CI": dci})
    return pd.DataFrame(rows).sort_values(["distance", "task"], kind="stable").reset_index(drop=True)


def _paired_diff(g: pd.DataFrame, best: str, base: str, reps: list[str], n_boot: int) -> tuple[float, str]:
    if len(reps) >= 2:
        per = g.groupby(["setting", "replicate"])["target_score"].mean().unstack()
        d = (per.loc[best] - per.loc[base]).to_numpy()
        mean, lo, hi = S.mean_ci(d, n_boot)
        return mean, S.fmt_ci(lo, hi, len(reps))
    a = _correct(g[g["setting"] == best]["job_dir"].iloc[0])
    b = _correct(g[g["setting"] == base]["job_dir"].iloc[0])
    point = float(g[g["setting"] == best]["target_score"].mean() - g[g["setting"] == base]["target_score"].mean())
    if a is None or b is None or len(a) != len(b):
        return point, S.NO_CI
    _, lo, hi = S.mean_ci(a - b, n_boot)
    return point, f"{S.NO_CI}; images {S.fmt_ci(lo, hi, 2)}"


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


def findings_section(df: pd.DataFrame, baseline: dict[str, Any], out: Path,
                     md_table: Callable[[pd.DataFrame], str]) -> tuple[list[str], dict[str, Any]]:
    """report.md lines (tables rendered by the report's `md_table`) and analysis.json entries for replicates, CIs
    and the findings table."""
    from src.report.findings_plots import findings_plots

    ok, kind = add_axes(df)
    if ok.empty:
        return [], {}
    n_rep = ok["replicate"].nunique()
    table, details = findings(df)
    settings = setting_table(df, baseline)
    how = (f"Student's t intervals (fewer than {S.SMALL_N} replicates: a bootstrap of so few gives their range, "
           "not a 95% CI)" if n_rep < S.SMALL_N else "percentile bootstrap over replicates")
    rep_note = (f"{n_rep} replicates ({', '.join(sorted(ok['replicate'].unique()))}): CIs are {how}; a direction is "
                "called supported only with 2 or more source seeds" if n_rep >= 2 else
                f"{S.NO_CI} (one seed and one target sample); the CIs shown are over the test images only and say "
                "nothing about another source seed, so no direction is called supported")
    md = ["## Findings\n", f"Distance axis: {kind}. {rep_note}.\n"]
    if len(table):
        md += [md_table(table), ""]
    else:
        md += ["The sweep covers none of the paper's directions (layer, width, depth, classes vs images, "
               "fine-tuning, training length).\n"]
    if len(settings):
        md += ["## Per setting, with 95% CIs\n",
               "Mean score per task and setting over replicates; `best - baseline` is the paired difference "
               "(same replicates, or the same test images) between the best setting and the standard one; the best is "
               "chosen on the same data, so that difference is optimistic.\n",
               md_table(settings), ""]
    plots = findings_plots(details, out)
    if plots:
        md += [f"![{p}]({p})" for p in plots] + [""]
    return md, {"findings": table.to_dict("records"), "findings_details": details,
                "settings_ci": settings.to_dict("records"), "replicates": n_rep, "distance_axis": kind}
