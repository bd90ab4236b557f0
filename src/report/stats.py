"""Replicate-aware statistics for reports: 95% CIs over replicates (or over test images when a sweep has one
replicate), Spearman rho with a CI, and a direction's verdict from its CI.

Which interval: with fewer than SMALL_N replicates a percentile bootstrap is no 95% CI (3 replicates have only 10
distinct resamples, and the one repeating a single replicate has probability 1/27 > 2.5%, so the "CI" is the
replicates' min..max, covering ~75%); there the CI is Student's t interval of the per-replicate values (t(0.975, 2)
= 4.30 for 3). From SMALL_N replicates on, and over test images, it is the percentile bootstrap.

A *replicate* is one (seed, target_seed) pair: `seed` draws the source net (data, initialisation, batch order),
`target.data.seed` the target sample. A *task* is a target at one distance (`synth_shift` at each `shift` is its
own task). Everything here is numpy/scipy on plain arrays; the callers (src.report.findings) shape the tables.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
from scipy import stats

N_BOOT = 1000
LEVEL = 0.95
SMALL_N = 5
NO_CI = "1 replicate: no CI"


def percentile_ci(samples: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """(lo, hi) of the central `level` interval of bootstrap samples; (nan, nan) if more of them are undefined
    (NaN, e.g. a Spearman rho of a constant resample) than the interval leaves out: dropping them would build the
    interval from a biased subset."""
    s = np.asarray(samples, dtype=float)
    finite = np.isfinite(s)
    if not finite.any() or (~finite).mean() > (1 - level) / 2:
        return math.nan, math.nan
    s = s[finite]
    a = (1 - level) / 2
    return float(np.quantile(s, a)), float(np.quantile(s, 1 - a))


def bootstrap(stat: Callable[[np.ndarray], float], n: int, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """`stat(idx)` on `n_boot` resamples (with replacement) of the indices 0..n-1."""
    rng = np.random.default_rng([seed, 4241])
    return np.array([stat(rng.integers(0, n, n)) for _ in range(n_boot)], dtype=float)


def t_ci(values: np.ndarray, level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, lo, hi): Student's t interval of the mean of a few values (NaNs ignored; no CI below 2 values)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return math.nan, math.nan, math.nan
    if len(v) < 2:
        return float(v.mean()), math.nan, math.nan
    half = stats.t.ppf(1 - (1 - level) / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    return float(v.mean()), float(v.mean() - half), float(v.mean() + half)


def mean_ci(values: np.ndarray, n_boot: int = N_BOOT, seed: int = 0) -> tuple[float, float, float]:
    """(mean, lo, hi): the mean of `values` (one per replicate, or one per test image) and its 95% CI: Student's
    t below SMALL_N values, else a percentile bootstrap; with fewer than 2 values the CI is (nan, nan)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) < SMALL_N:
        return t_ci(v)
    boots = bootstrap(lambda idx: v[idx].mean(), len(v), n_boot, seed)
    return (float(v.mean()), *percentile_ci(boots))


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rho, NaN when either side is constant or there are fewer than 3 points."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(stats.spearmanr(x, y).statistic)


def verdict(effect: float, lo: float, hi: float, expected_sign: int, replicates: int,
            source_seeds: int | None = None) -> str:
    """supported / contradicted / not resolved, from the CI of an effect whose expected sign is `expected_sign`.
    Never 'supported' from one replicate, nor from one source seed (target samples alone say nothing about
    another source net); never a verdict from an undefined effect. The side is the CI's, not the point's."""
    if replicates < 2:
        return "not resolved (1 replicate)"
    if source_seeds is not None and source_seeds < 2:
        return "not resolved (1 source seed)"
    if not (math.isfinite(effect) and math.isfinite(lo) and math.isfinite(hi)):
        return "not resolved (no CI)"
    if lo > 0 or hi < 0:
        return "supported" if (1 if lo > 0 else -1) == expected_sign else "contradicted"
    return "not resolved (CI includes 0)"


def fmt_ci(lo: float, hi: float, replicates: int, digits: int = 3) -> str:
    """'[lo, hi]' or the reason there is none."""
    if replicates < 2:
        return NO_CI
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "n/a"
    return f"[{lo:.{digits}f}, {hi:.{digits}f}]"
