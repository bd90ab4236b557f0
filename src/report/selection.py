"""Model selection on one target (`experiment=model_selection`): the backbones ranked by the probe's test score,
and each transferability estimator's ranking of them against the probe's, with what each took.

Per target: one row per backbone (the `model` factor): the probe's test accuracy with a BCa interval over test
images, its rank, every estimator's value and rank, the extraction and probe seconds. Per estimator: weighted
Kendall tau (scipy's `weightedtau`, hyperbolic weights: the top of the ranking counts most) between its values and
the probe's scores, with a 95% percentile-bootstrap interval over test images (the backbones are scored on the same
test images, so the images are resampled jointly: a paired bootstrap, `scipy.stats.bootstrap(paired=True)`), how
often it picks the probe's best backbone across those resamples, and its median seconds per backbone.
The interval speaks of new test images for these backbones and this target's training sample: the estimators are
computed once on the labelled split, so it holds their values fixed and varies the ground truth (docs/statistics.md).
Reads the report's flat table only.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from src.record import PER_IMAGE
from src.report import stats as S

N_RESAMPLES = 2000


def _correct(job_dir: str) -> np.ndarray | None:
    p = Path(job_dir) / PER_IMAGE
    return np.load(p).astype(float) if p.is_file() else None


def _wtau(x, y) -> float:
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if np.ptp(y) == 0 or np.ptp(x) == 0:
        return 0.0  # a constant ranking ranks nothing
    return float(stats.weightedtau(x, y).statistic)


def tau_interval(estimate: np.ndarray, correct: np.ndarray, level: float = S.LEVEL, seed: int = 0
                 ) -> tuple[float, float, float, float]:
    """(weighted tau, lo, hi, top-1 agreement) of an estimator's values (one per backbone) against the probe's
    accuracies, bootstrapping the test images jointly (`correct`: backbones x images, 1/0)."""
    est = np.asarray(estimate, dtype=float)
    point = _wtau(est, correct.mean(1))
    best = int(np.argmax(est))

    def tau(*rows, axis=-1):
        # Weighted tau sees the accuracies only through their order and ties, and a few backbones have few
        # orders: scipy's statistic once per distinct one (identical values to calling it on every resample).
        acc = np.stack([np.asarray(r).mean(axis=axis) for r in rows])  # backbones x resamples...
        orders, which = np.unique(stats.rankdata(acc.reshape(len(rows), -1), axis=0).T, axis=0, return_inverse=True)
        return np.array([_wtau(est, o) for o in orders])[which.ravel()].reshape(acc.shape[1:])

    rng = np.random.default_rng(seed)
    res = stats.bootstrap(tuple(correct), tau, paired=True, vectorized=True, method="percentile",
                          confidence_level=level, n_resamples=N_RESAMPLES, rng=rng)
    idx = np.random.default_rng(seed + 1).integers(0, correct.shape[1], (N_RESAMPLES, correct.shape[1]))
    acc = correct[:, idx].mean(2)  # backbones x resamples
    top = float(np.mean(acc.argmax(0) == best))
    return point, float(res.confidence_interval.low), float(res.confidence_interval.high), top


def model_selection(df: pd.DataFrame) -> dict[str, dict]:
    """target -> {"backbones": table, "estimators": table} for every target with two or more backbones."""
    if "model" not in df or "target_score" not in df:
        return {}
    ok = df[(df["status"] == "ok") & df["model"].notna() & df["target_score"].notna()]
    if "finetune" in ok:
        ok = ok[ok["finetune"].fillna("none") == "none"]
    out = {}
    for target, g in ok.groupby("target"):
        g, replicate_notes = _one_replicate(g)
        g = g.drop_duplicates("model", keep="last").set_index("model")
        if len(g) < 2:
            continue
        # an estimate equal up to rounding noise on every backbone (H-score's C - 1) ranks nothing: left out
        est_cols = sorted(c for c in g.columns if c.startswith("tr_") and g[c].notna().all()
                          and len(np.unique(S.snap_ties(g[c].to_numpy(float)))) > 1)
        rows = []
        correct = {m: _correct(j) for m, j in g["job_dir"].items()}
        for m, r in g.iterrows():
            c = correct[m]
            _, lo, hi = S.image_ci(c) if c is not None else (math.nan, math.nan, math.nan)
            rows.append({"backbone": m, "probe score": float(r["target_score"]), "95% CI low": lo,
                         "95% CI high": hi, "extract s": r.get("time_extract_s"), "probe s": r.get("time_probe_s"),
                         **{c[3:]: float(r[c]) for c in est_cols}})
        table = pd.DataFrame(rows).sort_values("probe score", ascending=False).reset_index(drop=True)
        table.insert(1, "rank", range(1, len(table) + 1))
        lengths = {len(c) for c in correct.values() if c is not None}
        paired = None
        if len(lengths) == 1 and all(c is not None for c in correct.values()):
            paired = np.stack([correct[m] for m in g.index])
        ests = []
        for col in est_cols:
            name = col[3:]
            values = S.snap_ties(g[col].to_numpy(float))
            if paired is not None:
                tau, lo, hi, top = tau_interval(values, paired)
            else:
                tau, lo, hi, top = _wtau(values, g["target_score"]), math.nan, math.nan, math.nan
            tied_top = list(g.index[S.at_max(values, 0)])  # every backbone tied at the estimator's top
            picks = " = ".join(map(str, tied_top))
            seconds = g.get(f"time_estimate_{name}")
            ests.append({"estimator": name, "weighted tau": tau, "95% CI low": lo, "95% CI high": hi,
                         "picks": picks, "picks the probe's best": tied_top == [table["backbone"].iloc[0]],
                         "top-1 agreement": top,
                         "median s per backbone": float(np.nanmedian(seconds)) if seconds is not None else math.nan})
        estimators = pd.DataFrame(ests)
        if len(estimators):
            estimators = estimators.sort_values("weighted tau", ascending=False).reset_index(drop=True)
        out[str(target)] = {"backbones": table, "estimators": estimators, "test_images": next(iter(lengths), None),
                            "notes": replicate_notes + _at_chance(g, correct) + _outside_regime(g, est_cols)}
    return out


REPLICATE = ("seed", "target_seed")  # a job's replicate: its source seed and target sample


def _one_replicate(g: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """One target's jobs at one replicate (seed, target sample) that every backbone ran, the first in seed order,
    and a note saying so; unchanged when there is one replicate. With `replicates=N` each backbone has N jobs, one
    per target sample, and keeping one job per backbone in the table's order compared backbones on different test
    images (resnet18 on sample 2, resnet10t on sample 1) while the paired interval resampled image indices as if
    they were shared."""
    cols = [c for c in REPLICATE if c in g]
    if not cols:
        return g, []
    rep = g[cols].astype(object).where(g[cols].notna(), "-").astype(str).agg("/".join, axis=1)
    if rep.nunique() < 2:
        return g, []
    have = rep.groupby(g["model"]).agg(lambda r: set(r))
    common = set.intersection(*have)

    def order(r: str) -> tuple:
        return tuple((0, float(p)) if p.lstrip("-").replace(".", "", 1).isdigit() else (1, p) for p in r.split("/"))

    what = " / ".join({"seed": "seed", "target_seed": "target sample"}[c] for c in cols)
    if not common:
        return g, [f"The backbones share no replicate ({what}): each is ranked on its own last job, so they are "
                   "compared on different test images and the paired interval's pairing does not hold."]
    pick = min(common, key=order)
    n = rep.nunique()
    return g[rep == pick], [f"{n} replicates ({what}: {', '.join(sorted(set(rep), key=order))}): this section "
                            f"ranks the backbones on one, {pick}, which every backbone ran, so that they are scored "
                            "on the same test images (the paired interval needs them shared); the other replicates "
                            "are in results.csv."]


def _at_chance(g: pd.DataFrame, correct: dict[str, np.ndarray | None]) -> list[str]:
    """Backbones whose probe is not shown better than guessing (exact one-sided binomial test at 0.05 against 1 /
    classes, on the test images): a rank among them is noise, whatever the table's order (a random-init net whose
    features are almost constant can come first)."""
    if "estimate_inputs_classes" not in g or ("target_metric" in g and (g["target_metric"] != "accuracy").any()):
        return []
    weak = []
    for m, r in g.iterrows():
        c, k = correct.get(m), r.get("estimate_inputs_classes")
        if c is None or not (isinstance(k, (int, float)) and math.isfinite(k) and k >= 2):
            continue
        p = S.above_chance_p(int(c.sum()), len(c), int(k))
        if p >= S.ALPHA:
            weak.append(f"{m} ({c.mean():.3f} of {len(c)}, p = {p:.2g})")
    return [f"Not shown better than chance (1/{int(g['estimate_inputs_classes'].max())}; exact binomial test, "
            f"one-sided, 0.05): {', '.join(weak)}. Their ranks say nothing about these backbones."] if weak else []


def _outside_regime(g: pd.DataFrame, est_cols: list[str]) -> list[str]:
    """Estimators outside their own regime on some backbone here (src.transferability.estimators: saturated
    SFDA, degenerate H-score): there their values do not depend on the labels, so neither does their ranking."""
    from src.transferability.estimators import ESTIMATORS

    cols = ("estimate_inputs_n", "estimate_inputs_classes", "estimate_inputs_dim")
    if not all(c in g for c in cols):
        return []
    lines = []
    for col in est_cols:
        est = ESTIMATORS.get(col[3:])
        if est is None or est.regime is None:
            continue
        out = [m for m, r in g.iterrows() if np.isfinite(r[list(cols)].to_numpy(float)).all()
               and est.outside(*(int(r[c]) for c in cols)) is not None]
        if out:
            lines.append(f"{col[3:]} is outside its regime on {len(out)} of {len(g)} backbones ({', '.join(out)}): "
                         f"there its value does not depend on the labels (docs/statistics.md, Estimators outside "
                         f"their regime).")
    return lines
