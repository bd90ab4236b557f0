"""The paper's descriptive analyses on a results table: best settings per task and task group (chosen on val),
relative error reduction over a baseline, each task's optimal setting, and estimator-vs-probe agreement. The
inference (which directions hold) is src.report.findings.

All functions take the flat table of `src.report.collect.load_results` (one row per job).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from src.models.registry import layer_order
from src.report import stats as S
from src.record import FACTORS, width_presets  # noqa: F401  (FACTORS: the factor columns the analyses search)

WIDTH_MULTIPLIER = width_presets()  # conf/width's options: name -> multiplier
WIDTH_ORDER = sorted(WIDTH_MULTIPLIER, key=WIDTH_MULTIPLIER.get)  # narrowest first
_LAYER_ORDER: dict[tuple[str, ...], list[str]] = {}  # the registered archs' names -> their layer order


def _layer_order() -> list[str]:
    """`layer_order()` of the archs registered now: a family a sweep's extension module registers after this module
    was imported (`python -m src.report` imports the sweep's `extensions` first) orders its layers too."""
    from src.models.registry import ARCHS

    names = tuple(ARCHS)
    if names not in _LAYER_ORDER:
        _LAYER_ORDER.clear()
        _LAYER_ORDER[names] = layer_order()
    return _LAYER_ORDER[names]


NUMERIC = {"source_num_classes", "source_images_per_class", "source_epochs", "snapshot", "depth", "n_components"}
ORDINAL = {"layer", "width"} | NUMERIC


def ordinal(factor: str, value: Any) -> float:
    """A number that orders a factor's settings (input side / narrow / small first); NaN if not ordinal."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return math.nan
    if factor == "layer":
        order = _layer_order()
        return float(order.index(value)) if value in order else math.nan
    if factor == "width":  # by multiplier: a preset's name, or a multiplier of one's own (`x0.1`)
        if value in WIDTH_MULTIPLIER:
            return WIDTH_MULTIPLIER[value]
        try:
            return float(str(value).removeprefix("x"))
        except ValueError:
            return math.nan
    if factor in NUMERIC:
        return float(value)
    return math.nan


def sort_values(factor: str, values) -> list:
    values = [v for v in values if not (isinstance(v, float) and math.isnan(v))]
    if factor in ORDINAL:
        return sorted(values, key=lambda v: ordinal(factor, v))
    return sorted(values, key=str)


def setting_key(factors: list[str], values) -> tuple:
    """A sort key for one setting of several factors (a tuple of values, or one value): each factor in its own
    order (input side / narrow / small first; vgg 8 < 11 < 16), then as text."""
    values = values if isinstance(values, tuple) else (values,)
    key = []
    for f, v in zip(factors, values):
        o = ordinal(f, v)
        key.append((o if not math.isnan(o) else math.inf, str(v)))
    return tuple(key)


def ok_rows(df: pd.DataFrame) -> pd.DataFrame:
    ok = df[df["status"] == "ok"] if "status" in df else df
    return ok[ok["target_score"].notna()] if "target_score" in ok else ok.iloc[0:0]


def as_text(values: pd.DataFrame | pd.Series) -> pd.DataFrame | pd.Series:
    """Values as text for keys and labels, a missing one as "-" (pandas 3's astype(str) keeps NaN as NaN, so a
    factor that is unset for some jobs, e.g. n_components with dimred=none, would break a join or drop a group)."""
    return values.astype(object).where(values.notna(), "-").astype(str)


def swept_factors(df: pd.DataFrame) -> list[str]:
    """Factors that take more than one value among the successful jobs."""
    ok = ok_rows(df)
    return [f for f in FACTORS if f in ok and ok[f].astype(str).nunique() > 1]


def task_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per target: group, distance_rank and (when the report added it) the measured/controlled `distance`,
    ordered by `distance` if there is one, else by distance_rank."""
    ok = ok_rows(df)
    agg = {"group": ("group", "first"), "distance_rank": ("distance_rank", "first")}
    if "distance" in ok:
        agg["distance"] = ("distance", "first")
    tasks = ok.groupby("target", as_index=False).agg(**agg)
    return tasks.sort_values([distance_column(tasks), "target"]).reset_index(drop=True)


def distance_column(tasks: pd.DataFrame) -> str:
    """`distance` (shift or measured, see src.report.findings) where known, else the a priori distance_rank."""
    return "distance" if "distance" in tasks and tasks["distance"].notna().all() else "distance_rank"


def replicate(ok: pd.DataFrame) -> pd.Series:
    """A job's replicate, "s<seed>/t<target seed>" (one replicate if neither is recorded)."""
    seed = as_text(ok["seed"]) if "seed" in ok else pd.Series("0", index=ok.index)
    tseed = as_text(ok["target_seed"]) if "target_seed" in ok else pd.Series("-", index=ok.index)
    return "s" + seed + "/t" + tseed


def selection_score(ok: pd.DataFrame) -> tuple[pd.Series, list[str]]:
    """The score a setting is chosen on, and the targets where it is not a val score. Each job's val score (the
    chosen C's), so that a test score is never both the selector and the estimate; a job without one (a retrieval
    target's probe has no C search, an estimator-only run) falls back on its test score, and the report names
    those targets."""
    test = ok["target_score"].astype(float)
    name = "task" if "task" in ok else "target"
    val = ok["val_score"].astype(float) if "val_score" in ok else pd.Series(np.nan, index=ok.index)
    missing = val.isna()
    return val.where(~missing, test), sorted(map(str, ok.loc[missing, name].unique())) if name in ok else []


def tied_best(scores: pd.Series) -> list:
    """The labels of `scores` tied (within S.TIE) at its highest value (NaN ignored), in `scores`' order; [] when all
    are NaN. The report names every tied setting and scores the choice as their mean (as
    `findings.val_choice_gain` does), instead of letting idxmax's first position decide."""
    top = scores.max()
    return [] if pd.isna(top) else list(scores.index[scores >= top - S.TIE])


def tie_label(labels: list) -> Any:
    """One setting as it is, several tied ones joined ("conv2 = fc6"); NaN for none."""
    return math.nan if not labels else labels[0] if len(labels) == 1 else " = ".join(map(str, labels))


def score_by_setting(df: pd.DataFrame, factor: str, score: str = "target_score") -> pd.DataFrame:
    """target x setting matrix, per setting of `factor` and replicate the job chosen on val among the other
    factors' settings, its `score` (target_score, or val_score) averaged over replicates."""
    ok = ok_rows(df).copy()
    ok["_setting"], ok["_rep"] = ok[factor].astype(object), replicate(ok)
    ok["_select"], _ = selection_score(ok)
    chosen = ok.loc[ok.groupby(["target", "_setting", "_rep"])["_select"].idxmax()]
    column = "_select" if score == "val_score" else score
    table = chosen.groupby(["target", "_setting", "_rep"])[column].mean().groupby(
        level=["target", "_setting"]).mean().unstack("_setting")
    order = [t for t in task_table(df)["target"] if t in table.index]
    return table.loc[order, sort_values(factor, list(table.columns))]


def matches(row: pd.Series, baseline: dict[str, Any], factors: list[str]) -> bool:
    """Whether a job is at the baseline setting of every swept factor (snapshot "last" = its final epoch)."""

    def same(f: str) -> bool:
        if f == "snapshot" and str(baseline[f]) == "last":
            return str(row["snapshot"]) == str(row.get("source_epochs"))
        return same_value(row[f], baseline[f])

    return all(same(f) for f in factors if f in baseline)


def same_value(a: Any, b: Any) -> bool:
    """A job's factor value against a baseline value: unset on both sides (None, NaN: n_components without PCA) is
    the same; numbers compare as numbers (16 and 16.0); anything else as text."""
    def missing(v: Any) -> bool:
        return v is None or (isinstance(v, float) and math.isnan(v))

    if missing(a) or missing(b):
        return missing(a) and missing(b)
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return str(a) == str(b)


def per_task(df: pd.DataFrame, baseline: dict[str, Any]) -> pd.DataFrame:
    """Per target: the setting (of every swept factor together) with the best mean val score over replicates and
    its mean test score, the baseline's, and the relative error reduction."""
    ok, factors = ok_rows(df).copy(), swept_factors(df)
    ok["_rep"] = replicate(ok)
    ok["_select"], _ = selection_score(ok)
    rows = []
    for _, task in task_table(df).iterrows():
        jobs = ok[ok["target"] == task["target"]]
        keys = [f for f in factors if f in jobs]
        if keys:  # per setting and replicate the job chosen on val (unswept duplicates), then means over them
            chosen = jobs.loc[jobs.groupby([*keys, "_rep"], dropna=False)["_select"].idxmax()]
            means = chosen.groupby(keys, dropna=False)[["_select", "target_score"]].mean()
            means = means.loc[sorted(means.index, key=lambda v: setting_key(keys, v))]  # a tie's first: in order
            tied = tied_best(means["_select"])  # tied on val: the first stands for them, their mean test score
            settings = [t if isinstance(t, tuple) else (t,) for t in tied]
            best = {**dict(zip(keys, settings[0] if settings else [math.nan] * len(keys))),
                    "tied": tie_label(["/".join(map(str, s)) for s in settings]) if len(settings) > 1 else "",
                    "target_score": float(means.loc[tied, "target_score"].mean())}
        else:
            best = {"target_score": float(jobs.groupby("_rep")["target_score"].max().mean())}
        # without a swept factor there is no standard setting: every job would "match" it
        base = jobs[jobs.apply(matches, axis=1, baseline=baseline, factors=factors)] if factors else jobs.iloc[:0]
        base_score = float(base.groupby("_rep")["target_score"].mean().mean()) if len(base) else math.nan
        rows.append({
            "target": task["target"], "group": task["group"], "distance_rank": task["distance_rank"],
            **({"distance": task["distance"]} if "distance" in task else {}),
            **{f: best[f] for f in factors}, "tied on val": best.get("tied", ""),
            "best_score": float(best["target_score"]), "baseline_score": base_score,
            "rel_error_reduction": relative_error_reduction(base_score, float(best["target_score"])),
        })
    out = pd.DataFrame(rows)
    return out.drop(columns="tied on val") if len(out) and not out["tied on val"].astype(bool).any() else out


def relative_error_reduction(base_score: float, best_score: float) -> float:
    """(err_base - err_best) / err_base with err = 1 - score; NaN without a baseline, 0 if the baseline is perfect."""
    err_base, err_best = 1.0 - base_score, 1.0 - best_score
    if math.isnan(err_base):
        return math.nan
    return 0.0 if err_base == 0 else (err_base - err_best) / err_base


def best_practice(df: pd.DataFrame) -> pd.DataFrame:
    """Per task group and swept factor: the setting with the highest mean val score over the group's tasks, and
    its mean test score."""
    tasks = task_table(df).set_index("target")
    rows = []
    for factor in swept_factors(df):
        test, val = score_by_setting(df, factor), score_by_setting(df, factor, "val_score")
        for group, members in tasks.groupby("group", sort=False):
            names = [t for t in members.index if t in test.index]
            means, chooser = test.loc[names].mean(axis=0), val.loc[names].mean(axis=0)
            if chooser.notna().any():
                tied = tied_best(chooser)
                rows.append({"group": group, "factor": factor, "best": tie_label(tied),
                             "mean_score": float(means[tied].mean()), "tasks": len(names)})
    out = pd.DataFrame(rows)
    if len(out):
        order = {g: i for i, g in enumerate(tasks.sort_values(distance_column(tasks))["group"].unique())}
        out = out.sort_values(["group", "factor"], key=lambda s: s.map(order) if s.name == "group" else s)
    return out.reset_index(drop=True)


def optimal_settings(df: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """For each swept ordinal factor: each task's optimal setting (best mean val score over replicates) and its
    distance; where several settings tie, `optimal` holds the first in the factor's order and `ties` all of them.
    A description: whether the optimum moves with distance is a finding (src.report.findings), with the statistic
    and the inference that question needs."""
    out = {}
    tasks = task_table(df).set_index("target")
    for factor in swept_factors(df):
        if factor not in ORDINAL:
            continue
        val = score_by_setting(df, factor, "val_score")
        tied = {t: [_plain(v) for v in tied_best(row)] for t, row in val.iterrows()}
        tied = {t: v for t, v in tied.items() if v}
        x = tasks.loc[list(tied), distance_column(tasks)].astype(float).to_numpy()
        # a tie: the first tied setting in the factor's order stands for the task, and `ties` lists them all
        out[factor] = {"optimal": {t: v[0] for t, v in tied.items()},
                       "ties": {t: v for t, v in tied.items() if len(v) > 1},
                       "distance": {t: float(d) for t, d in zip(tied, x)}}
    return out


def estimator_agreement(df: pd.DataFrame) -> pd.DataFrame:
    """Kendall tau between each transferability estimate and the measured probe score (all jobs, and the mean of
    per-target taus, which compares settings within a task)."""
    ok = ok_rows(df)
    rows = []
    for col in [c for c in ok.columns if c.startswith("tr_")]:
        sub = ok[[col, "target_score", "target"]].dropna()
        if len(sub) < 3:
            continue
        tau_all = stats.kendalltau(sub[col], sub["target_score"]).statistic
        # within a task an estimate equal up to rounding noise (H-score's C - 1) ranks nothing: no tau there
        per = [stats.kendalltau(S.snap_ties(g[col].to_numpy(float)), g["target_score"]).statistic
               for _, g in sub.groupby("target") if len(g) >= 3]
        per = [t for t in per if not math.isnan(t)]
        rows.append({"estimator": col[3:], "kendall_tau_all": float(tau_all),
                     "kendall_tau_within_task": float(np.mean(per)) if per else math.nan,
                     "tasks_within": len(per), "jobs": len(sub)})
    return pd.DataFrame(rows)


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v
