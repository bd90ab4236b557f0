"""Replicate-aware statistics for reports: percentile bootstrap CIs over replicates (or over test images when a
sweep has one replicate), Spearman rho with a bootstrap CI, and a direction's verdict from its CI.

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
NO_CI = "1 replicate: no CI"


def percentile_ci(samples: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """(lo, hi) of the central `level` interval of bootstrap samples, NaNs ignored; (nan, nan) if none."""
    s = np.asarray(samples, dtype=float)
    s = s[np.isfinite(s)]
    if len(s) == 0:
        return math.nan, math.nan
    a = (1 - level) / 2
    return float(np.quantile(s, a)), float(np.quantile(s, 1 - a))


def bootstrap(stat: Callable[[np.ndarray], float], n: int, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """`stat(idx)` on `n_boot` resamples (with replacement) of the indices 0..n-1."""
    rng = np.random.default_rng([seed, 4241])
    return np.array([stat(rng.integers(0, n, n)) for _ in range(n_boot)], dtype=float)


def mean_ci(values: np.ndarray, n_boot: int = N_BOOT, seed: int = 0) -> tuple[float, float, float]:
    """(mean, lo, hi): the mean of `values` (one per replicate, or one per test image) and its bootstrap CI;
    with fewer than 2 values the CI is (nan, nan)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return math.nan, math.nan, math.nan
    if len(v) < 2:
        return float(v.mean()), math.nan, math.nan
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


def verdict(effect: float, lo: float, hi: float, expected_sign: int, replicates: int) -> str:
    """supported / contradicted / not resolved, from the CI of an effect whose expected sign is `expected_sign`.
    Never 'supported' from one replicate: a test-image CI says nothing about another source seed."""
    if replicates < 2:
        return "not resolved (1 replicate)"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "not resolved (no CI)"
    if lo > 0 or hi < 0:
        return "supported" if np.sign(effect) == expected_sign else "contradicted"
    return "not resolved (CI includes 0)"


def fmt_ci(lo: float, hi: float, replicates: int, digits: int = 3) -> str:
    """'[lo, hi]' or the reason there is none."""
    if replicates < 2:
        return NO_CI
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "n/a"
    return f"[{lo:.{digits}f}, {hi:.{digits}f}]"
