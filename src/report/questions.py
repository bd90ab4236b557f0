"""The paper's directions as questions a sweep can answer: one argmax-free statistic each, and its analysis.

A question reads a score array `test[..., task, setting, seed]` (and the same-shaped `val`, what settings are
chosen on: the probe's val score of the chosen C, or the test score for a target that records none), where `seed` is the source seed (target samples already averaged within it)
and settings are in the factor's order (input side / narrow / small first). It turns each (task, seed) into one
number, the *contrast*, and then:
  trend  per seed, the OLS slope of the contrast over tasks against distance scaled to 0 (nearest task) .. 1
         (farthest); the task-level test randomises which task has which distance;
  level  per seed, the contrast's mean over tasks; the task-level test flips each task's sign;
  ends   per seed, the OLS line of the contrast over tasks evaluated at the far end (and the near end); the task
         level is the OLS t test of those fitted values over tasks (src.report.stats.end_test).
The estimate is the mean of the per-seed statistics, which for trend and level equals the statistic of the
seed-averaged contrasts (both are linear), so the seed-level interval and the task-level test speak of one number.
Leading axes are a batch (the calibration suite runs hundreds of simulated sweeps in one call).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from src.report import stats as S


def late_split(k: int) -> int:
    """Index of the first "late" setting among k ordered ones: the last third (at least one) is late."""
    return k - max(1, math.ceil(k / 3))


def late_minus_early(test: np.ndarray, val: np.ndarray, settings: list) -> np.ndarray:
    """Mean test score over the late settings minus the mean over the earlier ones (no maximum anywhere)."""
    cut = late_split(len(settings))
    return test[..., cut:, :].mean(axis=-2) - test[..., :cut, :].mean(axis=-2)


def _chosen(test: np.ndarray, val: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Per (..., task, seed): the test score of the setting with the best val score over the OTHER source seeds
    (cross-fitting; a single seed falls back on its own), tied choices averaged. The seed's own data never
    choose, so neither its test noise nor how its net happens to suit the task inflates the chosen score.
    `weights` (broadcast against val, last axis the seed): how often each seed was drawn in a bootstrap resample;
    a seed then chooses on the val scores of the others, weighted by their counts (never on its own copies), and
    NaN where it has no other seed."""
    n = val.shape[-1]
    if n == 1:
        other = val
    else:
        w = np.ones(n) if weights is None else weights
        with np.errstate(invalid="ignore", divide="ignore"):
            other = ((val * w).sum(axis=-1, keepdims=True) - val * w) / (np.sum(w, axis=-1, keepdims=True) - w)
    with np.errstate(invalid="ignore"):
        top = S.at_max(other, axis=-2)
        return (test * top).sum(axis=-2) / top.sum(axis=-2)


def early_minus_late(test: np.ndarray, val: np.ndarray, settings: list, weights: np.ndarray | None = None
                     ) -> np.ndarray:
    """The chosen earlier setting's test score minus the chosen late setting's (each chosen on the other seeds'
    val scores among its own group: the earlier settings, and the last third; `weights`: `_chosen`'s)."""
    cut = late_split(len(settings))
    return (_chosen(test[..., :cut, :], val[..., :cut, :], weights)
            - _chosen(test[..., cut:, :], val[..., cut:, :], weights))


def last_minus_first(test: np.ndarray, val: np.ndarray, settings: list) -> np.ndarray:
    return test[..., -1, :] - test[..., 0, :]


def tuned_gain(test: np.ndarray, val: np.ndarray, settings: list) -> np.ndarray:
    """Mean test score over the fine-tuning kinds minus the probe's on the frozen net (finetune=none)."""
    names = [str(s) for s in settings]
    i = names.index("none")
    tuned = [j for j in range(len(names)) if j != i]
    return test[..., tuned, :].mean(axis=-2) - test[..., i, :]


@dataclass(frozen=True)
class Question:
    id: str
    factors: tuple[str, ...]  # the factor it reads (the first of these the sweep varies)
    question: str
    statistic: str
    short: str
    kind: str  # trend | level | ends
    sign: int  # the paper's expected sign of the statistic
    contrast: Callable[[np.ndarray, np.ndarray, list], np.ndarray]
    min_settings: int = 2


QUESTIONS: tuple[Question, ...] = (
    Question("layer_gap_shrinks", ("layer",),
             "Does the advantage of later over earlier layers shrink with distance?",
             "change over the distance range (OLS slope, nearest task 0 .. farthest 1) of the late-minus-early "
             "gap: mean score of the last third of the swept layers (rounded up) minus the mean of the others",
             "slope of the late-minus-early gap vs distance", "trend", -1, late_minus_early),
    Question("layer_optimum_shift", ("layer",),
             "Is the best layer of far tasks an earlier one (and that of near tasks a late one)?",
             "at the farthest distance (OLS line over tasks): test score of the best earlier layer minus the best "
             "of the last third of the swept layers (rounded up), each chosen on the other seeds' val scores (one "
             "seed: its own); supported also needs the opposite sign at the nearest distance",
             "far-end margin: best earlier - best late layer", "ends", +1, early_minus_late),
    Question("width_helps", ("width",), "Do wider source nets transfer better?",
             "score(widest) - score(narrowest), mean over tasks", "widest - narrowest", "level", +1,
             last_minus_first),
    Question("depth_helps", ("depth",), "Do deeper source nets transfer better?",
             "score(deepest) - score(shallowest), mean over tasks", "deepest - shallowest", "level", +1,
             last_minus_first),
    Question("classes_over_images", ("source_num_classes",),
             "At an equal number of source images, do more classes beat more images per class?",
             "score(most classes) - score(fewest), mean over tasks", "most - fewest classes", "level", +1,
             last_minus_first),
    Question("finetune_far_gain", ("finetune",), "Does fine-tuning help far tasks more than near ones?",
             "change over the distance range (OLS slope, nearest 0 .. farthest 1) of the fine-tuning gain: mean "
             "score over the fine-tuning kinds minus the frozen probe's", "slope of the fine-tuning gain vs distance",
             "trend", +1, tuned_gain),
    Question("training_longer_helps", ("source_epochs", "snapshot"), "Does longer source training help?",
             "score(longest training) - score(shortest), mean over tasks", "longest - shortest training", "level",
             +1, last_minus_first),
)
BY_ID = {q.id: q for q in QUESTIONS}


def scale(distance: np.ndarray) -> np.ndarray:
    """Distances mapped to 0 (nearest task) .. 1 (farthest), so a trend reads as the change over the range."""
    d = np.asarray(distance, dtype=float)
    return (d - d.min()) / np.ptp(d)


@dataclass
class Result:
    """One question's numbers (arrays over the batch axes; 0-d for one sweep). `estimate`, `lo`, `hi`: the
    seed-level statistic and its t interval; `task_stat`, `task_p`: the task-level test (two-sided, raw);
    `per_seed`: the per-seed statistics; `near*`: the near-end line (ends only); `contrast`: per (task, seed)."""

    estimate: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    seed_p: np.ndarray
    task_stat: np.ndarray
    task_p: np.ndarray
    seed_side: np.ndarray
    per_seed: np.ndarray
    contrast: np.ndarray
    near: np.ndarray | None = None
    near_lo: np.ndarray | None = None
    near_hi: np.ndarray | None = None
    se: np.ndarray | None = None  # the interval's standard error where it is not the per-seed values' (bootstrap)
    near_se: np.ndarray | None = None
    boot_cov: np.ndarray | None = None  # (..., 2, 2): the bootstrap covariance of the (far, near) ends


def analyse(q: Question, test: np.ndarray, val: np.ndarray, settings: list, distance: np.ndarray | None,
            seed: int = 0) -> Result:
    """The question's statistics on complete data: every (task, setting, seed) finite (the caller removes
    seeds with a missing cell and says so)."""
    c = q.contrast(test, val, settings)  # (..., task, seed)
    if q.kind == "level":
        per_seed = c.mean(axis=-2)
        mean, lo, hi, p = S.t_interval(per_seed)
        cbar = c.mean(axis=-1)
        return Result(mean, lo, hi, p, cbar.mean(axis=-1), S.level_test(cbar, seed), S.side(lo, hi), per_seed, c)
    x = scale(distance)
    if q.kind == "trend":
        per_seed = S.slope(np.swapaxes(c, -1, -2), x)  # (..., seed)
        mean, lo, hi, p = S.t_interval(per_seed)
        cbar = c.mean(axis=-1)
        return Result(mean, lo, hi, p, S.slope(cbar, x), S.trend_test(cbar, x, seed), S.side(lo, hi), per_seed, c)
    # ends: the far end must favour the earlier layers and the near end the late ones (both tests must pass: an
    # intersection-union test, so no multiplicity within it)
    c_near = c
    far_s = S.fitted_at(np.swapaxes(c, -1, -2), x, 1.0)
    near_s = S.fitted_at(np.swapaxes(c_near, -1, -2), x, 0.0)
    n = c.shape[-1]
    if n >= 3:
        # Each seed's value uses the other seeds' val scores (cross-fitting), so the values are not independent
        # and their plain t interval is too narrow (it excluded a true 0 in 9-13% of simulated 6-seed nulls). The
        # bootstrap over seeds recomputes every choice in each resample (docs/statistics.md).
        reps = S.seed_bootstrap(lambda w: _ends_resampled(q, test, val, settings, x, w), n,
                                shape=far_s.shape[:-1] + (2,), seed=seed,
                                batch=max(1, 4_000_000 // max(1, test.size)))  # (..., end, resample)
        dev = reps - reps.mean(axis=-1, keepdims=True)
        boot_cov = dev @ np.swapaxes(dev, -1, -2) / (reps.shape[-1] - 1)  # (..., end, end)
        mean, lo, hi, p, se = S.bootstrap_interval(far_s.mean(axis=-1), boot_cov[..., 0, 0], n)
        near, near_lo, near_hi, _, near_se = S.bootstrap_interval(near_s.mean(axis=-1), boot_cov[..., 1, 1], n)
    else:  # (no verdict below 3 seeds: a description)
        mean, lo, hi, p = S.t_interval(far_s)
        near, near_lo, near_hi, _ = S.t_interval(near_s)
        se = near_se = boot_cov = None
    cbar, nbar = c.mean(axis=-1), c_near.mean(axis=-1)
    far_t = np.array([S.end_test(row, x, 1.0) for row in cbar.reshape(-1, cbar.shape[-1])])
    near_t = np.array([S.end_test(row, x, 0.0) for row in nbar.reshape(-1, nbar.shape[-1])])
    far_t, near_t = far_t.reshape(*cbar.shape[:-1], 2), near_t.reshape(*cbar.shape[:-1], 2)
    far_fit, p_far, near_fit, p_near = far_t[..., 0], far_t[..., 1], near_t[..., 0], near_t[..., 1]
    with np.errstate(invalid="ignore"):
        shift = (far_fit > 0) & (near_fit < 0)
        task_p = np.where(far_fit > 0, np.where(shift, np.maximum(p_far, p_near), 1.0), p_far)
        seed_side = np.where((S.side(lo, hi) == 1) & (S.side(near_lo, near_hi) == -1), 1,
                             np.where(S.side(lo, hi) == -1, -1, 0))
    return Result(mean, lo, hi, p, far_fit, task_p, seed_side, far_s, c, near, near_lo, near_hi, se, near_se,
                  boot_cov)


def _ends_resampled(q: Question, test: np.ndarray, val: np.ndarray, settings: list, x: np.ndarray,
                    weights: np.ndarray) -> np.ndarray:
    """(..., 2, resample): the far- and near-end estimates of bootstrap resamples of the source seeds, `weights`
    (resample, seed) how often each seed was drawn: every choice made again among the drawn seeds, each drawn
    seed's ends counted as often as it was drawn. NaN for a resample of one distinct seed (no other to choose on)."""
    w = np.asarray(weights, dtype=float)
    c = q.contrast(test[..., None, :, :, :], val[..., None, :, :, :], settings, weights=w[:, None, None, :])
    y = np.swapaxes(c, -1, -2)  # (..., resample, seed, task)
    ends = np.stack([S.fitted_at(y, x, 1.0), S.fitted_at(y, x, 0.0)], axis=-3)  # (..., 2, resample, seed)
    return (ends * w).sum(axis=-1) / w.sum(axis=-1)


def decide(q: Question, r: Result, task_p_adjusted) -> np.ndarray:
    """The verdict (before the seed-count gate) from the seed-level side and the (adjusted) task-level p."""
    return S.verdict(r.seed_side, task_p_adjusted, np.sign(r.task_stat), q.sign)
