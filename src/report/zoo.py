"""Estimators judged on a model zoo, as in the transferability papers: for each target, rank the source nets by
each estimator and compare with the ranking by the measured score (the ground truth), by weighted Kendall tau
(scipy's `weightedtau`, hyperbolic weights: the top of the ranking counts most, as in SFDA's and ETran's
evaluation code) and plain Kendall tau; the mean over targets with a 95% CI (src.report.stats.mean_ci: bootstrap
over targets, Student's t below 5); each estimator's margin over the static baselines (rank by source val accuracy,
by parameter count), paired by target and computed on the nets where both are known, with its CI; and the regret
of picking the net the estimator ranks first.

Reads the report's flat table only (one row per job: factor columns, `target_score`, `tr_<estimator>` columns).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from src.report import stats as S

# The columns that identify a source net (whatever of them a sweep has); jobs that share them and the target are
# the same (net, target) pair and are averaged.
NET_COLUMNS = ["source", "source_num_classes", "source_images_per_class", "source_epochs", "snapshot", "arch",
               "width", "depth", "layer", "pooling", "seed"]
# Static rankers that need no target data: a good estimator has to beat them.
STATIC = {"source_val_acc": "source val accuracy", "source_num_params": "parameter count"}
# ETran's published score combines its parts after min-max scaling them across the zoo, per target
# (mgholamikn/ETran tw.py: 0.85 * LDA + 0.15 * energy).
ETRAN_WEIGHTS = {"etran_lda": 0.85, "etran_energy": 0.15}


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
    scores = [c for c in ok.columns if c.startswith("tr_")] + [c for c in STATIC if c in ok.columns]

    def key(g):
        return g[nets].astype(str).agg("|".join, axis=1) if nets else pd.Series(range(len(g)), index=g.index)

    out = {}
    for target, g in probe_rows.groupby("target"):
        table = g[scores].apply(pd.to_numeric, errors="coerce").groupby(key(g)).mean()
        table.columns = [c[3:] if c.startswith("tr_") else c for c in table.columns]
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
    sub = tab[["truth", *cols]].dropna()
    if len(sub) < min_nets or sub["truth"].nunique() < 2:
        return None
    return {c: stats.weightedtau(sub[c], sub["truth"]).statistic if sub[c].nunique() > 1 else 0.0 for c in cols}


def zoo_agreement(df: pd.DataFrame, truth: str = "probe", n_boot: int = 2000, seed: int = 0,
                  min_nets: int = 3) -> dict:
    """Weighted and plain Kendall tau of every estimator per target against `truth` (see `ground_truths`), their
    means over targets with 95% bootstrap CIs, margins over the static baselines, and top-1 regret. Targets with
    fewer than `min_nets` source nets are left out (a ranking of two says little)."""
    tables = {t: tab for t, tab in per_target_scores(df, truth).items() if len(tab) >= min_nets}
    if not tables:
        return {}
    names = sorted({c for tab in tables.values() for c in tab.columns if c != "truth"})
    if not names:  # no estimator values in these results (e.g. jobs that recorded none): nothing to rank
        return {}
    wtau = pd.DataFrame(index=names, columns=list(tables), dtype=float)
    ktau, regret = wtau.copy(), wtau.copy()
    for target, tab in tables.items():
        for name in names:
            if name not in tab:
                continue
            sub = tab[["truth", name]].dropna()
            if len(sub) < min_nets or sub["truth"].nunique() < 2:
                continue
            if sub[name].nunique() < 2:  # a constant estimate ranks nothing (e.g. a saturated score): tau 0, and
                # its pick is arbitrary: the expected regret of a random net (leaving the target out would flatter it)
                wtau.loc[name, target] = ktau.loc[name, target] = 0.0
                regret.loc[name, target] = float(sub["truth"].max() - sub["truth"].mean())
                continue
            wtau.loc[name, target] = stats.weightedtau(sub[name], sub["truth"]).statistic
            ktau.loc[name, target] = stats.kendalltau(sub[name], sub["truth"]).statistic
            regret.loc[name, target] = float(sub["truth"].max() - sub.loc[sub[name].idxmax(), "truth"])
    summary = []
    for name in names:
        mean, lo, hi = S.mean_ci(wtau.loc[name].to_numpy(float), n_boot, seed)
        summary.append({"estimator": name, "weighted_tau_mean": mean, "ci_low": lo, "ci_high": hi,
                        "kendall_tau_mean": float(np.nanmean(ktau.loc[name])) if ktau.loc[name].notna().any()
                        else math.nan,
                        "top1_regret_mean": float(np.nanmean(regret.loc[name])) if regret.loc[name].notna().any()
                        else math.nan,
                        "targets": int(wtau.loc[name].notna().sum()), "static": name in STATIC})
    margins = []
    for base in [b for b in STATIC if b in names]:
        for name in [n for n in names if n not in STATIC]:
            # Paired by target and, within a target, on the same nets (a baseline is undefined for pretrained
            # nets, an estimator can fail on some): both taus over the nets where both are known.
            diff = []
            for tab in tables.values():
                both = _taus(tab, [name, base], min_nets) if name in tab and base in tab else None
                diff.append(both[name] - both[base] if both else math.nan)
            mean, lo, hi = S.mean_ci(np.array(diff, dtype=float), n_boot, seed)
            margins.append({"estimator": name, "baseline": base, "margin_mean": mean, "ci_low": lo, "ci_high": hi,
                            "beats_baseline": bool(lo > 0) if not math.isnan(lo) else False})
    return {"truth": truth, "weighted_tau": wtau, "kendall_tau": ktau, "regret": regret,
            "summary": pd.DataFrame(summary).sort_values("weighted_tau_mean", ascending=False, na_position="last"),
            "margins": pd.DataFrame(margins), "nets_per_target": {t: len(tab) for t, tab in tables.items()}}


def zoo_markdown(res: dict) -> list[str]:
    """The report's section: the per-target weighted-tau table (papers' layout), the summary and the margins."""
    if not res:
        return []
    wtau, summary, margins = res["weighted_tau"], res["summary"], res["margins"]
    targets = list(wtau.columns)
    nets = ", ".join(f"{t}: {n}" for t, n in res["nets_per_target"].items())
    what = ("the tuned linear probe's test score (C chosen on val)" if res["truth"] == "probe"
            else f"the test score after fine-tuning ({res['truth']})")
    md = [f"## Estimators on the source-net zoo (ground truth: {res['truth']})\n",
          f"Ground truth: {what}, per (net, target); the estimates come from the probe runs' features. "
          f"Nets per target: {nets}. Weighted Kendall tau (scipy `weightedtau`), mean over targets "
          "with a 95% CI over targets (a percentile bootstrap; Student's t below 5 targets); `etran` = 0.85 "
          "minmax(LDA) + 0.15 minmax(energy) per target.\n",
          "| estimator | " + " | ".join(targets) + " | mean wtau [95% CI] | mean Kendall tau | top-1 regret |",
          "|---" * (len(targets) + 4) + "|"]
    for _, r in summary.iterrows():
        cells = " | ".join("" if math.isnan(v) else f"{v:.2f}" for v in wtau.loc[r["estimator"]].to_numpy(float))
        label = f"{r['estimator']} (static)" if r["static"] else r["estimator"]
        md.append(f"| {label} | {cells} | {r['weighted_tau_mean']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}] | "
                  f"{r['kendall_tau_mean']:.3f} | {r['top1_regret_mean']:.4f} |")
    if len(margins):
        md += ["", "Margin over the static baselines (mean per-target difference in weighted tau, both on the same "
               "nets; 95% CI over targets; *yes* = the CI excludes 0):\n",
               "| estimator | baseline | margin [95% CI] | beats it |", "|---|---|---|---|"]
        for _, m in margins.sort_values(["baseline", "margin_mean"], ascending=[True, False]).iterrows():
            md.append(f"| {m['estimator']} | {STATIC[m['baseline']]} | {m['margin_mean']:+.3f} "
                      f"[{m['ci_low']:+.3f}, {m['ci_high']:+.3f}] | {'yes' if m['beats_baseline'] else 'no'} |")
    return md + [""]


def selection_regret(df: pd.DataFrame) -> pd.DataFrame:
    """For any sweep or search that recorded estimates next to the probe: per target, the job each estimator
    ranks first (what a search with `objective=<estimator>` picks) and its regret in probe score, best measured
    score minus the picked job's score (0 = the estimator picks what the probe would)."""
    ok = df[(df["status"] == "ok") & df["target_score"].notna()] if "status" in df else df
    rows = []
    for col in [c for c in ok.columns if c.startswith("tr_")]:
        for target, g in ok.groupby("target"):
            sub = g[[col, "target_score"]].apply(pd.to_numeric, errors="coerce").dropna()
            if len(sub) < 2:
                continue
            best, picked = float(sub["target_score"].max()), float(sub.loc[sub[col].idxmax(), "target_score"])
            rows.append({"estimator": col[3:], "target": target, "jobs": len(sub), "best_probe_score": best,
                         "picked_probe_score": picked, "regret": best - picked})
    return pd.DataFrame(rows)


def zoo_json(res: dict) -> dict:
    """The zoo analysis in plain JSON types (analysis.json)."""
    if not res:
        return {}
    frames = ("weighted_tau", "kendall_tau", "regret")
    return {"truth": res["truth"], **{k: res[k].astype(object).where(res[k].notna(), None).to_dict() for k in frames},
            "summary": res["summary"].to_dict("records"), "margins": res["margins"].to_dict("records"),
            "nets_per_target": res["nets_per_target"]}
