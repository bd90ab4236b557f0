"""The report's inference: intervals over source seeds, tests over tasks, Holm's adjustment, verdicts and power.

Two populations, two tools (docs/statistics.md says why and shows the calibration):
  seed level   these tasks, a new source net: Student's t interval over the source seeds' own statistics
               (`t_interval`), the same method at every number of seeds; for a statistic whose seeds choose on
               each other's scores (cross-fitting), a t interval with the standard error of a bootstrap over seeds
               that recomputes the choices in each resample (`seed_bootstrap`, `bootstrap_interval`);
  task level   tasks like these: an exact (or, past 9999 arrangements, Monte Carlo) randomisation test over the
               tasks of the seed-averaged statistic (`trend_test`, `level_test`), or, for a level at one end of
               the distance range, the OLS t test over tasks (`end_test`).
A finding is "supported" only when both agree and enough source seeds are defined (`verdict`). Everything works
on numpy arrays whose last axis is the replicate (seeds or tasks), so one call can also serve a batch of
simulated sweeps (tests/test_calibration.py).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import stats

LEVEL = 0.95
ALPHA = 1 - LEVEL
# Below this many defined source seeds no verdict at all, whatever a study asks for: the t interval then rests on
# a standard deviation with 1 degree of freedom (docs/statistics.md: calibration).
MIN_SEEDS = 3
POWER = 0.8
N_RESAMPLES = 9999  # randomisation tests: exact when the arrangements are fewer, else this many (seeded)
N_BOOTSTRAP = 2000  # seed-level bootstrap of a cross-fitted statistic (`seed_bootstrap`, seeded)


# Val scores are fractions of a few dozen or hundred images, so settings tie; averaged over replicates in different
# orders, tied means differ in their last bits (0.8166666666666665 vs ...68). Closer than this is a tie.
TIE = 1e-9


def snap_ties(values: np.ndarray, rel: float = 1e-10) -> np.ndarray:
    """A 1-d array of estimates with values equal up to floating-point noise made equal (each run of sorted
    neighbours within `rel` of their magnitude takes the run's first value), so that a rank correlation does not
    read order into the last bits: H-score is exactly C - 1 in its degenerate regime, computed as 48.999999999999986
    on one net and 49.0 on another. NaN stays NaN."""
    v = np.asarray(values, dtype=float).copy()
    order = np.argsort(v, kind="stable")
    finite = order[np.isfinite(v[order])]
    for a, b in zip(finite[:-1], finite[1:]):
        if v[b] - v[a] <= rel * max(abs(v[a]), abs(v[b])):
            v[b] = v[a]
    return v


def above_chance_p(correct: int, n: int, classes: int) -> float:
    """One-sided exact binomial p of `correct` of `n` against guessing among `classes` (the source nets' check on
    their val images, the model-selection report's on each backbone's test images)."""
    return float(stats.binomtest(int(correct), int(n), 1.0 / classes, alternative="greater").pvalue)


def at_max(values: np.ndarray, axis: int) -> np.ndarray:
    """Where `values` is tied (within TIE) with its maximum along `axis` (NaN: never)."""
    with np.errstate(invalid="ignore"):
        return np.asarray(values) >= np.max(values, axis=axis, keepdims=True) - TIE


def t_interval(values: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(mean, lo, hi, p) over the last axis: Student's t interval of the mean (quantiles of scipy.stats.t with
    n - 1 degrees of freedom) and the two-sided one-sample t-test p. The caller removes undefined values and says
    how many (never silently here): a NaN in `values` gives NaN results. Fewer than 2 values: the mean only."""
    v = np.asarray(values, dtype=float)
    n = v.shape[-1]
    with np.errstate(all="ignore"):
        mean = v.mean(axis=-1) if n else np.full(v.shape[:-1], math.nan)
        if n < 2:
            nan = np.full(np.shape(mean), math.nan)
            return mean, nan, nan.copy(), nan.copy()
        se = v.std(axis=-1, ddof=1) / math.sqrt(n)
        half = stats.t.ppf(0.5 + level / 2, n - 1) * se
        t = np.where(se > 0, mean / np.where(se > 0, se, 1.0), np.where(mean == 0, 0.0, np.inf))
        p = np.where(np.isfinite(mean) & np.isfinite(se), 2 * stats.t.sf(np.abs(t), n - 1), math.nan)
    return mean, mean - half, mean + half, np.asarray(p, dtype=float)


def seed_bootstrap(statistic, n: int, shape: tuple = (), n_resamples: int = N_BOOTSTRAP, seed: int = 0,
                   batch: int | None = None) -> np.ndarray:
    """Bootstrap replicates, `shape + (resamples,)`, of a statistic of `n` source seeds that cannot be written as a
    function of per-seed values (a seed's value depends on which other seeds there are): each resample draws n seeds
    with replacement (scipy.stats.bootstrap over the seeds' indices, seeded), and `statistic(weights)` recomputes
    the whole statistic from how often each seed was drawn (`weights`, (resamples, n), 0 = not drawn), returning
    `shape + (resamples,)`. Resamples on which it is undefined everywhere (NaN: a cross-fitted choice with one
    distinct seed drawn has no other seed to choose on) are left out. `batch`: resamples per call (memory)."""
    seeds = np.arange(n)

    def counts(idx, axis=-1):
        idx = idx[(0,) * len(shape)]  # the same resamples for every element of `shape`
        return statistic((idx[..., None] == seeds).sum(axis=-2).astype(float))

    data = np.broadcast_to(seeds, tuple(shape) + (n,))
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # scipy's own interval of NaN replicates (not used)
        res = stats.bootstrap((data,), counts, n_resamples=n_resamples, batch=batch, vectorized=True, axis=-1,
                              method="percentile", rng=np.random.default_rng(seed))
    reps = np.asarray(res.bootstrap_distribution, dtype=float)
    defined = ~np.isnan(reps).reshape(-1, reps.shape[-1]).all(axis=0)
    return reps[..., defined]


def bootstrap_interval(estimate: np.ndarray, var: np.ndarray, n: int, level: float = LEVEL
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(estimate, lo, hi, p, se) of a statistic of `n` source seeds from the variance of its `seed_bootstrap`
    replicates: standard error sqrt(var * n / (n - 1)) (the factor makes it s / sqrt(n) for a plain mean, as the t
    interval's), Student's t quantiles at n - 1 degrees of freedom. For a statistic whose per-seed values depend on
    each other (a seed's value uses the other seeds' choices), where the plain t interval of those values is too
    narrow (docs/statistics.md: calibration)."""
    estimate = np.asarray(estimate, dtype=float)
    with np.errstate(all="ignore"):
        se = np.sqrt(np.asarray(var, dtype=float) * n / (n - 1))
        half = stats.t.ppf(0.5 + level / 2, n - 1) * se
        t = np.where(se > 0, estimate / np.where(se > 0, se, 1.0), np.where(estimate == 0, 0.0, np.inf))
        p = np.where(np.isfinite(estimate) & np.isfinite(se), 2 * stats.t.sf(np.abs(t), n - 1), math.nan)
    return estimate, estimate - half, estimate + half, np.asarray(p, dtype=float), se


def slope(y: np.ndarray, x: np.ndarray, axis: int = -1) -> np.ndarray:
    """OLS slope of y on x along `axis` (x a fixed 1-d vector)."""
    y = np.moveaxis(np.asarray(y, dtype=float), axis, -1)
    xc = np.asarray(x, dtype=float) - np.mean(x)
    return (y * xc).sum(axis=-1) / (xc ** 2).sum()


def trend_test(y: np.ndarray, x: np.ndarray, seed: int = 0) -> np.ndarray:
    """Two-sided p of the OLS slope of y (last axis: tasks) on x, by randomising which task has which x
    (scipy.stats.permutation_test, permutation_type='pairings'): exact up to 9999 arrangements (7 tasks: 5040)."""
    y = np.asarray(y, dtype=float)
    if y.shape[-1] < 3 or np.ptp(x) == 0:
        return np.full(y.shape[:-1], math.nan)
    res = stats.permutation_test((y,), lambda v, axis=-1: slope(v, x, axis), permutation_type="pairings",
                                 vectorized=True, axis=-1, n_resamples=N_RESAMPLES, alternative="two-sided",
                                 rng=np.random.default_rng(seed))
    return np.asarray(res.pvalue, dtype=float)


def level_test(y: np.ndarray, seed: int = 0) -> np.ndarray:
    """Two-sided p of the mean of y (last axis: tasks) being 0, by flipping each task's sign (a randomisation
    test over tasks; scipy.stats.permutation_test with one sample): exact up to 13 tasks (2^13 = 8192
    arrangements), 9999 seeded random ones beyond."""
    y = np.asarray(y, dtype=float)
    if y.shape[-1] < 2:
        return np.full(y.shape[:-1], math.nan)
    res = stats.permutation_test((y,), np.mean, permutation_type="samples", vectorized=True, axis=-1,
                                 n_resamples=N_RESAMPLES, alternative="two-sided", rng=np.random.default_rng(seed))
    return np.asarray(res.pvalue, dtype=float)


def smallest_p(kind: str, n_tasks: int) -> float:
    """The smallest two-sided p the task-level test of a `kind` question can give over `n_tasks` tasks (distinct
    distances; tied ones only raise it): an exact randomisation test's one-sided p is at least 1 / (its number
    of arrangements: n! orderings of the distances for a trend, 2^n sign flips for a level), and scipy doubles it;
    past `N_RESAMPLES` arrangements, 2 / (N_RESAMPLES + 1) (the Monte Carlo p counts the observed one). The OLS t
    test of an end has no such floor from 3 tasks on. Holm's adjustment can leave a p at its raw value, so this
    bounds adjusted p-values too."""
    if kind == "ends":
        return 0.0 if n_tasks >= 3 else 1.0
    need = {"trend": 3, "level": 2}[kind]
    if n_tasks < need:
        return 1.0
    arrangements = math.factorial(n_tasks) if kind == "trend" else 2 ** n_tasks
    return min(1.0, 2 / min(arrangements, N_RESAMPLES + 1))


def tasks_for_alpha(kind: str, alpha: float = ALPHA) -> int:
    """The fewest tasks whose task-level test can give p < `alpha` (`smallest_p`); 0 when no number can (an
    alpha below the Monte Carlo floor)."""
    return next((n for n in range(2, 64) if smallest_p(kind, n) < alpha), 0)


def end_test(y: np.ndarray, x: np.ndarray, at: float) -> tuple[float, float]:
    """(fitted value, two-sided p) at x = `at` of the OLS line of y (one value per task) on x: the t test of the
    intercept of y ~ 1 + (x - at) (statsmodels), whose residual variance is the spread between tasks. NaN with
    fewer than 3 tasks."""
    import statsmodels.api as sm

    y, x = np.asarray(y, dtype=float), np.asarray(x, dtype=float)
    if len(y) < 3 or np.ptp(x) == 0 or not np.isfinite(y).all():
        return math.nan, math.nan
    fit = sm.OLS(y, sm.add_constant(x - at, has_constant="add")).fit()
    return float(fit.params[0]), float(fit.pvalues[0])


def fitted_at(y: np.ndarray, x: np.ndarray, at: float) -> np.ndarray:
    """The OLS line of y (last axis: tasks) on x, evaluated at x = `at` (per seed: the seed-level statistic whose
    seed-averaged twin `end_test` tests over tasks)."""
    y = np.asarray(y, dtype=float)
    return y.mean(axis=-1) + slope(y, x) * (at - np.mean(x))


def holm(pvalues: list[float]) -> list[float]:
    """Holm-adjusted p-values (statsmodels multipletests); NaNs stay NaN and are not counted in the family."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, dtype=float)
    out = np.full(len(p), math.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = multipletests(p[ok], alpha=ALPHA, method="holm")[1]
    return out.tolist()


def t_test_power(es: float, n: int, alpha: float = ALPHA) -> float:
    """Power of the two-sided one-sample t test at `alpha` with `n` values and standardised effect `es` >= 0: the
    probability of its upper rejection region plus its lower one's (statsmodels' ttest_power, one tail at a time).
    scipy's noncentral t gives the lower tail as NaN where it underflows (a large effect: es 5..100 at 2 values, and
    at every n in some range), which made the two-sided power NaN and a clear, strong effect read as "unreachable";
    such a tail counts 0 (it is never more than alpha / 2 for es >= 0)."""
    from statsmodels.stats.power import ttest_power

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        upper = float(ttest_power(es, n, alpha / 2, alternative="larger"))
        lower = float(ttest_power(es, n, alpha / 2, alternative="smaller"))
    return upper + (lower if math.isfinite(lower) else 0.0)


def seeds_for_power(effect: float, sd: float, power: float = POWER, alpha: float = ALPHA) -> float:
    """Source seeds a two-sided one-sample t test at `alpha` needs to detect `effect` with `power`, given the
    per-seed SD: the fewest n >= 2 whose power (`t_test_power`, which rises with n) reaches `power`; inf when the
    effect is 0 or undefined (or would need more than 2^40 seeds)."""
    if not (math.isfinite(effect) and math.isfinite(sd)) or effect == 0:
        return math.inf
    es = abs(effect) / sd if sd > 0 else math.inf
    if es == math.inf or t_test_power(es, 2, alpha) >= power:
        return 2.0
    lo, hi = 2, 4  # not enough at lo; at hi once the doubling stops
    while t_test_power(es, hi, alpha) < power:
        lo, hi = hi, hi * 2
        if hi > 2 ** 40:
            return math.inf
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if t_test_power(es, mid, alpha) >= power else (mid, hi)
    return float(hi)


def image_ci(values: np.ndarray, level: float = LEVEL, seed: int = 0) -> tuple[float, float, float]:
    """(mean, lo, hi) over test images (one value per image: 1/0 correct, or a paired difference): BCa bootstrap
    (scipy.stats.bootstrap). It speaks of new test images for this one source net and target sample only."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        return (float(v.mean()) if len(v) else math.nan), math.nan, math.nan
    if np.ptp(v) == 0:
        return float(v[0]), float(v[0]), float(v[0])
    res = stats.bootstrap((v,), np.mean, confidence_level=level, method="BCa", n_resamples=2000,
                          vectorized=True, rng=np.random.default_rng(seed))
    return float(v.mean()), float(res.confidence_interval.low), float(res.confidence_interval.high)


def side(lo, hi) -> np.ndarray:
    """+1 where an interval lies above 0, -1 below, 0 where it includes 0 (or is undefined)."""
    lo, hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    with np.errstate(invalid="ignore"):
        return np.where(lo > 0, 1, np.where(hi < 0, -1, 0))


SUPPORTED = "supported"
CONTRADICTED = "contradicted"
THESE_TASKS = "these tasks only"
OPPOSITE_THESE_TASKS = "opposite, these tasks only"
NOT_RESOLVED = "not resolved"


def verdict(seed_side, task_p, task_sign, expected: int, alpha: float = ALPHA) -> np.ndarray:
    """The verdict from the seed-level side (+1/-1/0: its interval excludes 0 above/below) and the task-level
    test (p, already adjusted where it must be, and the sign of its statistic):
      supported                   both say the expected direction
      contradicted                both say the opposite one
      these tasks only            the seed-level interval says it for these tasks, the task-level test does not
                                  for tasks like these
      opposite, these tasks only  the same, in the opposite direction
      not resolved                the seed-level interval includes 0
    The seed-count gate (`gate`) comes first."""
    seed_side = np.asarray(seed_side)
    with np.errstate(invalid="ignore"):
        task_side = np.where(np.asarray(task_p, dtype=float) < alpha, np.sign(task_sign), 0)
    return np.select([(seed_side == expected) & (task_side == expected),
                      (seed_side == -expected) & (task_side == -expected),
                      seed_side == expected, seed_side == -expected],
                     [SUPPORTED, CONTRADICTED, THESE_TASKS, OPPOSITE_THESE_TASKS], NOT_RESOLVED)


def gate(n_defined: int, n_seeds: int, min_seeds: int) -> str | None:
    """None when `n_defined` source seeds are enough for a verdict, else the reason there is none."""
    need = max(MIN_SEEDS, min_seeds)
    if n_defined >= need:
        return None
    what = f"{n_defined} source seed{'s' if n_defined != 1 else ''}"
    if n_defined < n_seeds:
        what = f"{n_defined} of {n_seeds} source seeds defined"
    return f"no verdict: {what}, needs {need} (replicates={need})"


def fmt_ci(lo: float, hi: float, prefix: str = "", suffix: str = "") -> str:
    """'[lo, hi]' (between `prefix` and `suffix`) at the interval's own significant digits (a table reprints it at
    its column's: src.report.numbers.Interval), or 'n/a' when there is no interval."""
    from src.report.numbers import Interval

    return Interval(lo, hi, prefix, suffix)


def within(lo, hi, low: float, high: float):
    """An interval cut at the range its statistic can take (a score's [0, 1], a Kendall tau's [-1, 1]): the true
    value lies in that range, so the cut interval covers it whenever the uncut one does (the same coverage), and
    a t interval over 2-3 values no longer reads as an accuracy below 0."""
    with np.errstate(invalid="ignore"):
        return np.clip(lo, low, high), np.clip(hi, low, high)
