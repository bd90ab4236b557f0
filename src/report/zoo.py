"""Estimators judged on a model zoo, as in the transferability papers: for each target, rank the source nets by
each estimator and compare with the ranking by the measured score (the ground truth), by weighted Kendall tau
(scipy's `weightedtau`, hyperbolic weights: the top of the ranking counts most, as in SFDA's and ETran's
evaluation code) and plain Kendall tau; the mean over targets with a 95% Student's t interval over targets; each
estimator's margin over the static baselines (rank by source val accuracy, by parameter count), paired by target
and computed on the nets where both are known, and the top estimator against each other one, each with a t test
over targets whose p-value the report Holm-adjusts together with its other calls (`calls`, `decide`); and the
regret of picking the net the estimator ranks first.

Reads the report's flat table only (one row per job: factor columns, `target_score`, `tr_<estimator>` columns).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy import stats

from src.report import analysis as A
from src.report import numbers as N
from src.report import stats as S

# The columns that identify a source net (whatever of them a sweep has); jobs that share them and the target are
# the same (net, target) pair and are averaged.
NET_COLUMNS = ["source", "source_num_classes", "source_images_per_class", "source_epochs", "snapshot", "arch", "model",
               "width", "depth", "layer", "pooling", "seed"]
# Static rankers that need no target data: a good estimator has to beat them.
STATIC = {"source_val_acc": "source val accuracy", "source_num_params": "parameter count"}
# ETran's published score combines its parts after min-max scaling them across the zoo, per target
# (mgholamikn/ETran tw.py: 0.85 * LDA + 0.15 * energy).
ETRAN_WEIGHTS = {"etran_lda": 0.85, "etran_energy": 0.15}
# What the estimators saw per job (metrics.estimate_inputs): kept per net as "@n", "@classes", "@dim" columns
INPUTS = {"estimate_inputs_n": "@n", "estimate_inputs_classes": "@classes", "estimate_inputs_dim": "@dim"}


def _minmax(s: pd.Series) -> pd.Series:
    span = s.max() - s.min()
    return (s - s.min()) / span if span > 0 else s * 0.0


def ground_truths(df: pd.DataFrame) -> list[str]:
    """The ground truths a sweep measured: `probe` (finetune=none rows), and `finetune=<kind>` for each fine-tuning
    it ran (the estimates always come from the probe rows: a fine-tuned run records none)."""
    kinds = sorted(set(df["finetune"].dropna())) if "finetune" in df else ["none"]
    return ["probe" if k == "none" else f"finetune={k}" for k in kinds]


def per_target_scores(df: pd.DataFrame, truth: str = "probe") -> dict[str, pd.DataFrame]:
    """target -> one row per source net: `truth` (the mean measured score under the chosen ground truth) and one
    column per estimator / static baseline (from the probe rows)."""
    ok = df[(df["status"] == "ok") & df["target_score"].notna()] if "status" in df else df
    kind = "none" if truth == "probe" else truth.split("=", 1)[1]
    if "finetune" in ok:
        probe_rows, truth_rows = ok[ok["finetune"].fillna("none") == "none"], ok[ok["finetune"].fillna("none") == kind]
    else:
        probe_rows = truth_rows = ok
    nets = [c for c in NET_COLUMNS if c in ok.columns and ok[c].notna().any()]
    scores = [c for c in ok.columns if c.startswith("tr_")] + [c for c in STATIC if c in ok.columns] + \
        [c for c in INPUTS if c in ok.columns]

    def key(g):
        return A.as_text(g[nets]).agg("|".join, axis=1) if nets else pd.Series(range(len(g)), index=g.index)

    out = {}
    for target, g in probe_rows.groupby("target"):
        table = g[scores].apply(pd.to_numeric, errors="coerce").groupby(key(g)).mean()
        table.columns = [c[3:] if c.startswith("tr_") else INPUTS.get(c, c) for c in table.columns]
        t = truth_rows[truth_rows["target"] == target]
        table.insert(0, "truth", t["target_score"].astype(float).groupby(key(t)).mean() if len(t) else np.nan)
        table = table[table["truth"].notna()]
        if all(p in table for p in ETRAN_WEIGHTS):
            table["etran"] = sum(w * _minmax(table[p]) for p, w in ETRAN_WEIGHTS.items())
        out[str(target)] = table
    return out


def _taus(tab: pd.DataFrame, cols: list[str], min_nets: int) -> dict[str, float] | None:
    """Weighted Kendall tau of each column against truth, all on the same nets (rows where truth and every column
    are known); None if too few nets or a constant truth. A constant column ranks nothing: tau 0."""
    sub = _known(tab[["truth", *cols]].to_numpy(dtype=float))
    if len(sub) < min_nets or len(np.unique(sub[:, 0])) < 2:
        return None
    cols_v = {c: S.snap_ties(sub[:, i]) for i, c in enumerate(cols, start=1)}
    return {c: stats.weightedtau(v, sub[:, 0]).statistic if len(np.unique(v)) > 1 else 0.0 for c, v in cols_v.items()}


def _known(rows: np.ndarray) -> np.ndarray:
    """The rows with no NaN (what `DataFrame.dropna` keeps), on plain arrays: the zoo's loops run per (target,
    estimator), and pandas' per-call overhead was most of a replicated study's report."""
    return rows[~np.isnan(rows).any(axis=1)]


def _paired(diffs: list[list[float]], bound: float) -> list[dict[str, float]]:
    """Per list of per-target values or differences (NaN where a target lacks one of the two): the mean, 95% t
    interval (cut at +-`bound`, the range the statistic can take: S.within) and two-sided t-test p over the
    targets where both are known (rows with as many targets batched together)."""
    rows = [np.asarray(d, dtype=float) for d in diffs]
    rows = [r[np.isfinite(r)] for r in rows]
    out: list[dict[str, float]] = [{} for _ in rows]
    for n in {len(r) for r in rows}:
        idx = [i for i, r in enumerate(rows) if len(r) == n]
        mean, lo, hi, p = S.t_interval(np.array([rows[i] for i in idx]).reshape(len(idx), n))
        lo, hi = S.within(lo, hi, -bound, bound)
        for j, i in enumerate(idx):
            out[i] = {"mean": float(mean[j]), "ci_low": float(lo[j]), "ci_high": float(hi[j]), "p": float(p[j]),
                      "targets": n}
    return out


def zoo_agreement(df: pd.DataFrame, truth: str = "probe", min_nets: int = 3) -> dict:
    """Weighted and plain Kendall tau of every estimator per target against `truth` (see `ground_truths`), their
    means over targets with 95% t intervals, margins over the static baselines, the top estimator against each
    other one, and top-1 regret. Targets with fewer than `min_nets` source nets are left out (a ranking of two
    says little). The calls' p-values are raw until `decide` gets them Holm-adjusted."""
    tables = {t: tab for t, tab in per_target_scores(df, truth).items() if len(tab) >= min_nets}
    if not tables:
        return {}
    names = sorted({c for tab in tables.values() for c in tab.columns if c != "truth" and not c.startswith("@")})
    # A static baseline that is the same for every net of each target (the layers of one net share its parameter
    # count and source accuracy) ranks nothing: it has no tau to report and no margin to beat, and its calls would
    # only swell the Holm family. Named in the notes instead.
    flat = [b for b in STATIC if b in names and all(b not in tab or tab[b].nunique() < 2 for tab in tables.values())]
    names = [n for n in names if n not in flat]
    if not names:  # no estimator values in these results (e.g. jobs that recorded none): nothing to rank
        return {}
    wtau, ktau, regret = (np.full((len(names), len(tables)), np.nan) for _ in range(3))
    for j, tab in enumerate(tables.values()):
        for i, name in enumerate(names):
            if name not in tab:
                continue
            sub = _known(tab[["truth", name]].to_numpy(dtype=float))
            measured, est = sub[:, 0], S.snap_ties(sub[:, 1])
            if len(sub) < min_nets or len(np.unique(measured)) < 2:
                continue
            regret[i, j] = pick_regret(measured, est)
            if len(np.unique(est)) < 2:  # a constant estimate ranks nothing (e.g. a saturated score): tau 0
                # (leaving the target out would flatter it); its regret is that of a random net's
                wtau[i, j] = ktau[i, j] = 0.0
                continue
            wtau[i, j] = stats.weightedtau(est, measured).statistic
            ktau[i, j] = stats.kendalltau(est, measured).statistic
    wtau, ktau, regret = (pd.DataFrame(a, index=names, columns=list(tables)) for a in (wtau, ktau, regret))
    margin_diffs = {}
    for base in [b for b in STATIC if b in names]:
        for name in [n for n in names if n not in STATIC]:
            # Paired by target and, within a target, on the same nets (a baseline is undefined for pretrained
            # nets, an estimator can fail on some): both taus over the nets where both are known.
            diff = []
            for tab in tables.values():
                both = _taus(tab, [name, base], min_nets) if name in tab and base in tab else None
                diff.append(both[name] - both[base] if both else math.nan)
            margin_diffs[(name, base)] = diff
    res = inference(wtau, ktau, regret, margin_diffs)
    res["summary"] = res["summary"].merge(regime_marks(tables, names, min_nets), on="estimator", how="left")
    return {"truth": truth, "weighted_tau": wtau, "kendall_tau": ktau, "regret": regret, **res,
            "nets_per_target": {t: len(tab) for t, tab in tables.items()}, "constant_baselines": flat}


def regime_marks(tables: dict[str, pd.DataFrame], names: list[str], min_nets: int) -> pd.DataFrame:
    """Per estimator: how many (net, target) cells are outside its regime by its own definition (saturated SFDA,
    degenerate H-score: `src.transferability.estimators`), and its mean weighted tau over targets on the cells
    inside (targets with fewer than `min_nets` such nets left out). Jobs that did not record what the estimators
    saw (older results) cannot be judged: their cells count as unknown."""
    from src.transferability.estimators import ESTIMATORS

    rows = []
    for name in names:
        est = ESTIMATORS.get(name)
        outside = unknown = 0
        taus = []
        for tab in tables.values():
            if name not in tab:
                continue
            if est is None or est.regime is None:
                inside = tab
            elif all(c in tab for c in ("@n", "@classes", "@dim")):
                marked = [est.outside(int(n), int(k), int(d)) is not None if np.isfinite([n, k, d]).all() else None
                          for n, k, d in tab[["@n", "@classes", "@dim"]].to_numpy(dtype=float)]
                unknown += sum(m is None for m in marked)
                outside += sum(m is True for m in marked)
                inside = tab[[m is False for m in marked]]
            else:
                unknown += int(tab[name].notna().sum())
                continue
            t = _taus(inside, [name], min_nets)
            if t is not None:
                taus.append(t[name])
        rows.append({"estimator": name, "cells_outside_regime": outside if est is not None and est.regime else 0,
                     "cells_unknown_regime": unknown,
                     "weighted_tau_mean_inside": float(np.mean(taus)) if taus else math.nan})
    return pd.DataFrame(rows)


def inference(wtau: pd.DataFrame, ktau: pd.DataFrame | None = None, regret: pd.DataFrame | None = None,
              margin_diffs: dict[tuple[str, str], list[float]] | None = None) -> dict:
    """The zoo's numbers from the per-target tau table (estimators x targets): the summary (mean weighted tau
    over targets with its t interval), each estimator's margin over each static baseline (per-target differences:
    `margin_diffs`, else the plain difference of the two rows) and the top estimator against each other one,
    with raw t-test p-values for `decide`."""
    names = list(wtau.index)
    taus = wtau.to_numpy(dtype=float)
    ktau = ktau.to_numpy(dtype=float) if ktau is not None else np.full_like(taus, math.nan)
    regret = regret.to_numpy(dtype=float) if regret is not None else np.full_like(taus, math.nan)
    stat = dict(zip(names, _paired(list(taus), 1.0)))  # a tau lies in [-1, 1], a difference of two in [-2, 2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an estimator with no defined target: NaN means
        summary = pd.DataFrame({
            "estimator": names, "weighted_tau_mean": [stat[n]["mean"] for n in names],
            "ci_low": [stat[n]["ci_low"] for n in names], "ci_high": [stat[n]["ci_high"] for n in names],
            "kendall_tau_mean": np.nanmean(ktau, axis=1), "top1_regret_mean": np.nanmean(regret, axis=1),
            "targets": np.isfinite(taus).sum(axis=1), "static": [n in STATIC for n in names]})
    if margin_diffs is None:
        row = dict(zip(names, taus))
        margin_diffs = {(n, b): row[n] - row[b] for b in STATIC if b in names for n in names if n not in STATIC}
    pairs = list(margin_diffs)
    m = _paired([margin_diffs[k] for k in pairs], 2.0)
    margins = pd.DataFrame({"estimator": [k[0] for k in pairs], "baseline": [k[1] for k in pairs],
                            "margin_mean": [x["mean"] for x in m], "ci_low": [x["ci_low"] for x in m],
                            "ci_high": [x["ci_high"] for x in m], "p": [x["p"] for x in m],
                            "p_holm": math.nan, "targets": [x["targets"] for x in m], "beats_baseline": False})
    summary = summary.sort_values("weighted_tau_mean", ascending=False, na_position="last")
    # The top estimator (highest mean weighted tau) against each other one, paired by target: it is named the
    # best only if every comparison holds after the adjustment; otherwise the ones it does not beat are tied.
    ranked = [n for n in summary["estimator"] if n not in STATIC and summary.set_index("estimator").loc[n, "targets"]]
    row = dict(zip(names, taus))
    v = _paired([row[ranked[0]] - row[o] for o in ranked[1:]], 2.0) if len(ranked) > 1 else []
    versus = pd.DataFrame({"top": ranked[0] if ranked else None, "other": ranked[1:],
                           "difference": [x["mean"] for x in v], "ci_low": [x["ci_low"] for x in v],
                           "ci_high": [x["ci_high"] for x in v], "p": [x["p"] for x in v], "p_holm": math.nan,
                           "targets": [x["targets"] for x in v]})
    return {"summary": summary, "margins": margins, "versus_top": versus, "best": None, "tied_with_top": None}


def calls(res: dict) -> list[float]:
    """The zoo's raw p-values, margins first, then the top-vs-other comparisons (the order `decide` expects)."""
    if not res:
        return []
    return res["margins"].get("p", pd.Series(dtype=float)).tolist() + \
        res["versus_top"].get("p", pd.Series(dtype=float)).tolist()


def decide(res: dict, adjusted: list[float], alpha: float = S.ALPHA) -> None:
    """Fill in the Holm-adjusted p-values and the calls they make: `beats_baseline` (the margin's adjusted p
    below alpha and the margin positive) and `best` (the top estimator, if it beats every other one)."""
    if not res:
        return
    n = len(res["margins"])
    if n:
        res["margins"]["p_holm"] = adjusted[:n]
        res["margins"]["beats_baseline"] = (res["margins"]["p_holm"] < alpha) & (res["margins"]["margin_mean"] > 0)
    vs = res["versus_top"]
    if len(vs):
        vs["p_holm"] = adjusted[n:n + len(vs)]
        beaten = (vs["p_holm"] < alpha) & (vs["difference"] > 0)
        top = vs["top"].iloc[0]
        res["best"] = top if beaten.all() else None
        res["tied_with_top"] = [top] + vs.loc[~beaten, "other"].tolist()


def zoo_content(res: dict) -> tuple[list[str], list[tuple[str, pd.DataFrame]]]:
    """The zoo section's notes and tables: the per-target weighted-tau table (papers' layout) with the summary,
    the margins over the static baselines, and the top estimator against the others."""
    if not res:
        return [], []
    wtau, summary, margins, vs = res["weighted_tau"], res["summary"], res["margins"], res["versus_top"]
    nets = ", ".join(f"{t}: {n}" for t, n in res["nets_per_target"].items())
    what = ("the tuned linear probe's test score (C chosen on val)" if res["truth"] == "probe"
            else f"the test score after fine-tuning ({res['truth']})")
    notes = [f"Ground truth: {res['truth']}, {what}, per (net, target), where a net is one source net at one layer "
             f"and pooling (a layer sweep ranks its layers); the estimates come from the probe runs' features. Nets "
             f"per target: {nets}. `etran` = 0.85 minmax(LDA) + 0.15 minmax(energy) per target."]
    if res.get("constant_baselines"):
        flat = " and ".join(STATIC[b] for b in res["constant_baselines"])
        notes.append(f"Static baseline{'s' if len(res['constant_baselines']) > 1 else ''} left out: {flat} "
                     f"{'are' if len(res['constant_baselines']) > 1 else 'is'} the same for every net of each "
                     "target here, so it ranks nothing (no tau, no margin to beat, no call in the Holm family).")
    if "cells_outside_regime" in summary:
        notes.append("Cells outside its regime: (net, target) cells where the estimator's value does not depend on "
                     "the labels by its own definition (SFDA saturated from d/(n-C) >= "
                     f"{_thresholds()[0]}; H-score C - 1 from d/(n-C) >= {_thresholds()[1]}; d features, n labelled "
                     "images, C classes); the last column is its mean weighted tau on the other cells.")
    above = _static_above_top(summary, res.get("best") or (res.get("tied_with_top") or [None])[0])
    if res.get("best"):
        notes.append(f"Best estimator: {res['best']} (it beats every other estimator, paired over targets, "
                     f"Holm-adjusted){above}.")
    elif res.get("tied_with_top"):
        top, rest = res["tied_with_top"][0], res["tied_with_top"][1:]
        notes.append(f"No best estimator: {top} has the highest mean weighted tau of the estimators, but after the "
                     f"adjustment it is not shown better than {', '.join(rest)} (paired over targets); they are tied "
                     f"with it{above}.")
    table = N.frame([{"estimator": f"{r['estimator']} (static)" if r["static"] else r["estimator"],
                           **{t: wtau.loc[r["estimator"], t] for t in wtau.columns},
                           "mean wtau": r["weighted_tau_mean"], "95% CI": S.fmt_ci(r["ci_low"], r["ci_high"]),
                           "mean Kendall tau": r["kendall_tau_mean"], "top-1 regret": r["top1_regret_mean"],
                           "cells outside its regime": _regime_cell(r),
                           "mean wtau inside its regime": r.get("weighted_tau_mean_inside", math.nan)}
                          for _, r in summary.iterrows()])
    tables = [(f"Weighted Kendall tau per target (ground truth: {res['truth']})", table)]
    if len(margins):
        m = margins.sort_values(["baseline", "margin_mean"], ascending=[True, False])
        tables.append(("Margin over the static baselines (mean per-target difference in weighted tau, both on the "
                       "same nets; 95% t interval over targets; beats it = Holm-adjusted p below 0.05 and a "
                       "positive margin)", N.frame({
                           "estimator": m["estimator"], "baseline": m["baseline"].map(STATIC),
                           "margin": m["margin_mean"], "95% CI": [S.fmt_ci(a, b) for a, b in
                                                                  zip(m["ci_low"], m["ci_high"])],
                           "targets": m["targets"], "p": m["p"], "p (Holm)": m["p_holm"],
                           "beats it": np.where(m["beats_baseline"], "yes", "no")})))
    if len(vs):
        tables.append((f"The top estimator ({vs['top'].iloc[0]}) against each other one (paired over targets)",
                       N.frame({"other": vs["other"], "difference": vs["difference"],
                                     "95% CI": [S.fmt_ci(a, b) for a, b in zip(vs["ci_low"], vs["ci_high"])],
                                     "targets": vs["targets"], "p": vs["p"], "p (Holm)": vs["p_holm"]})))
    return notes, tables


def _static_above_top(summary: pd.DataFrame, top: str | None) -> str:
    """The static baselines whose mean weighted tau is above the top estimator's, as a clause ("" when none): "the
    highest mean" of the estimators is not the highest of the table when parameter count ranks the nets better (a
    width or depth sweep, where the parameter count is the factor itself)."""
    if top is None:
        return ""
    means = summary.set_index("estimator")["weighted_tau_mean"]
    static = summary.loc[summary["static"], "estimator"]
    higher = [b for b in static if means[b] > means[top]]
    if not higher:
        return ""
    places = N.decimals([means[b] for b in higher] + [means[top]])
    named = " and ".join(f"{STATIC[b]} ({N.number(means[b], places)})" for b in higher)
    return (f"; the static baseline{'s' if len(higher) > 1 else ''} {named} rank{'' if len(higher) > 1 else 's'} "
            f"the nets better on average than {top} ({N.number(means[top], places)}): see the margins")


def _thresholds() -> tuple[float, float]:
    from src.transferability.estimators import HSCORE_DEGENERATE, SFDA_SATURATED

    return SFDA_SATURATED, HSCORE_DEGENERATE


def _regime_cell(r) -> str:
    out, unknown = r.get("cells_outside_regime"), r.get("cells_unknown_regime")
    if out is None or (isinstance(out, float) and math.isnan(out)):
        return ""
    return f"{int(out)}" + (f" ({int(unknown)} not recorded)" if unknown else "")


def pick_regret(measured: np.ndarray, est: np.ndarray) -> float:
    """Best measured score minus that of the item `est` ranks first. Items tied (within S.TIE) at the top of `est`
    count as a pick at random among them, their mean score: which one comes first is the order the items happen to
    be listed in (an estimator that reads only the source head, like LEEP, ties every layer of one net)."""
    return float(np.max(measured) - np.mean(measured[S.at_max(est, 0)]))


def selection_regret(df: pd.DataFrame) -> pd.DataFrame:
    """For any sweep or search that recorded estimates next to the probe: per target, the job each estimator
    ranks first (what a search with `objective=<estimator>` picks) and its regret in probe score, best measured
    score minus the picked job's score (0 = the estimator picks what the probe would; jobs tied at the estimator's
    top: their mean score, and `tied picks` says how many)."""
    ok = df[(df["status"] == "ok") & df["target_score"].notna()] if "status" in df else df
    rows = []
    for col in [c for c in ok.columns if c.startswith("tr_")]:
        for target, g in ok.groupby("target"):
            sub = g[[col, "target_score"]].apply(pd.to_numeric, errors="coerce").dropna()
            if len(sub) < 2:
                continue
            measured, est = sub["target_score"].to_numpy(float), S.snap_ties(sub[col].to_numpy(float))
            regret = pick_regret(measured, est)
            rows.append({"estimator": col[3:], "target": target, "jobs": len(sub),
                         "best_probe_score": float(measured.max()), "picked_probe_score": float(measured.max()) - regret,
                         "tied picks": int(S.at_max(est, 0).sum()), "regret": regret})
    out = pd.DataFrame(rows)
    return out.drop(columns="tied picks") if len(out) and (out["tied picks"] == 1).all() else out


def zoo_json(res: dict) -> dict:
    """The zoo analysis in plain JSON types (analysis.json)."""
    if not res:
        return {}
    frames = ("weighted_tau", "kendall_tau", "regret")
    return {"truth": res["truth"], **{k: res[k].astype(object).where(res[k].notna(), None).to_dict() for k in frames},
            "summary": res["summary"].to_dict("records"), "margins": res["margins"].to_dict("records"),
            "versus_top": res["versus_top"].to_dict("records"), "best": res.get("best"),
            "tied_with_top": res.get("tied_with_top"), "nets_per_target": res["nets_per_target"],
            "constant_baselines": res.get("constant_baselines", [])}
