"""Simulated sweeps for the calibration suite (tests/test_calibration.py): score arrays with a known truth, in the
shape the report's questions read (`test[sweep, task, setting, seed]` and its `val` twin), and as result.json
files for the end-to-end check.

A job's score = the task's true curve mu[task, setting]
  + the source net's effect on that setting, shared by every task       (seed x setting,         sd_net)
  + how that source net suits that task at that setting                  (seed x task x setting,  sd_fit)
  + the target sample's effect (new classes and images)                  (sample x task x setting, sd_sample)
  + evaluation noise, independent for the val and the test split        (sd_test, sd_val)
Val and test share everything but the evaluation noise (they are two splits of one target sample). Target samples
are tied to source seeds (one each, as `replicates=N` runs them) or crossed (every seed with every sample).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import zlib

import numpy as np

N_TASKS = 7
N_LAYERS = 8


@dataclass(frozen=True)
class Noise:
    sd_net: float = 0.01
    sd_fit: float = 0.01
    sd_sample: float = 0.01
    sd_test: float = 0.01
    sd_val: float = 0.015


@dataclass(frozen=True)
class Scenario:
    name: str
    truth: str  # flattening | flat | moving | level
    noise: Noise = Noise()
    samples: int = 0  # 0: one target sample per source seed (tied); k: k samples crossed with every seed
    effect: float = 0.0  # moving: layers the optimum moves over the distance range; level: last - first
    settings: int = N_LAYERS
    start: float = 6.0  # moving: the best layer of the nearest task

    def with_effect(self, effect: float) -> "Scenario":
        return replace(self, effect=effect)


def true_curves(sc: Scenario, rng: np.random.Generator, n: int, distance: np.ndarray) -> np.ndarray:
    """mu[sweep, task, setting]: each sweep draws its own tasks (task-to-task variation is part of the truth)."""
    d = distance[None, :, None]
    l = np.arange(sc.settings)[None, None, :]
    base = rng.uniform(0.4, 0.8, size=(n, len(distance), 1))
    if sc.truth == "flattening":
        # Every task's best layer is the last; the advantage per layer falls from 0.021 (nearest) to 0.001
        # (farthest), each task's slope scaled by its own factor (positive: the optimum never moves).
        per_layer = (0.021 - 0.020 * d) * np.exp(0.3 * rng.standard_normal((n, len(distance), 1)))
        return base + per_layer * l
    if sc.truth == "flat":
        # No relation to distance anywhere: each task has its own fixed bumps (sd 0.01), near and far alike.
        return base + 0.01 * rng.standard_normal((n, len(distance), sc.settings))
    if sc.truth == "moving":
        # The best layer moves from fc7 (6) at the nearest task `effect` layers toward the input at the
        # farthest; the score falls 0.02 per layer away from it; each task's optimum is off by sd 0.5 layer.
        optimum = sc.start - sc.effect * d + 0.5 * rng.standard_normal((n, len(distance), 1))
        return base - 0.02 * np.abs(l - optimum)
    if sc.truth == "level":
        # The last setting beats the first by `effect` on average; tasks differ by sd 0.01 in that gain.
        gain = sc.effect + 0.01 * rng.standard_normal((n, len(distance), 1))
        return base + gain * l / (sc.settings - 1) + 0.005 * rng.standard_normal((n, len(distance), sc.settings))
    raise ValueError(sc.truth)


def simulate(sc: Scenario, n_sweeps: int, n_seeds: int, seed: int = 0,
             distance: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(test, val, distance): test/val [sweep, task, setting, source seed], target samples averaged within a
    seed as the report does."""
    rng = np.random.default_rng([seed, n_seeds, sc.settings, zlib.crc32(sc.name.encode())])
    distance = np.linspace(0.0, 1.0, N_TASKS) if distance is None else distance
    T, K, S, z = len(distance), sc.settings, n_seeds, sc.noise
    mu = true_curves(sc, rng, n_sweeps, distance)[..., None]  # (n, T, K, 1)
    shared = (z.sd_net * rng.standard_normal((n_sweeps, 1, K, S))
              + z.sd_fit * rng.standard_normal((n_sweeps, T, K, S)))
    if sc.samples:  # crossed: the same k target samples under every source seed, then averaged within a seed
        sample = z.sd_sample * rng.standard_normal((n_sweeps, T, K, 1, sc.samples))
        test = mu + shared + (sample + z.sd_test * rng.standard_normal((n_sweeps, T, K, S, sc.samples))).mean(-1)
        val = mu + shared + (sample + z.sd_val * rng.standard_normal((n_sweeps, T, K, S, sc.samples))).mean(-1)
        return test, val, distance
    sample = z.sd_sample * rng.standard_normal((n_sweeps, T, K, S))
    test = mu + shared + sample + z.sd_test * rng.standard_normal((n_sweeps, T, K, S))
    val = mu + shared + sample + z.sd_val * rng.standard_normal((n_sweeps, T, K, S))
    return test, val, distance


LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")
# The layer study's targets (conf/experiment/layer_study.yaml), for sweeps of that size; more tasks get plain names.
STUDY_TARGETS = ("synth_objects_new", "synth_scenes", "synth_finegrained", "synth_attributes", "synth_count",
                 "synth_retrieval", "digits")


def write_factor_sweep(root, n_tasks: int = N_TASKS, n_seeds: int = 4, seed: int = 0, factor: str = "layer",
                      settings: tuple = LAYERS, names: list[str] | None = None) -> list[str]:
    """A layer study's result.json files (8 layers, `n_seeds` source seeds, target samples tied) with the tasks'
    measured distance, whose best layer moves toward the input with distance ("moving", 3 layers over the range):
    the report's every plot and question without training anything. Another `factor` and its `settings` (in
    order) make the same sweep of that factor (a level question's: width, depth). `names`: the tasks' own names
    (default: the study's targets for 7 tasks, else synth_target_<i>). Returns the task names, nearest first."""
    import json
    from pathlib import Path

    if names is None:
        names = list(STUDY_TARGETS) if n_tasks == len(STUDY_TARGETS) else [f"synth_target_{i:02d}" for i in range(n_tasks)]
    rng = np.random.default_rng(seed)
    distance = np.sort(rng.uniform(0.2, 1.8, n_tasks))  # measured: unevenly spaced, like a real proxy A-distance
    scenario = Scenario("plots", "moving", effect=3.0, settings=len(settings), start=len(settings) - 2.0)
    test, val, _ = simulate(scenario, 1, n_seeds, seed, (distance - 0.2) / 1.6)
    job = 0
    for t, name in enumerate(names):
        for k, setting in enumerate(settings):
            for s in range(n_seeds):
                path = Path(root) / str(job)
                path.mkdir(parents=True)
                (path / "result.json").write_text(json.dumps({
                    "status": "ok", "factors": {"source": "synthetic", "arch": "alexnet", "depth": 8, "layer": "fc7",
                                                "target": name, "seed": s, "target_seed": s, "group": f"g{t % 4}",
                                                "distance_rank": 1 + t % 6, factor: setting},
                    "metrics": {"target_score": float(test[0, t, k, s]), "target_metric": "accuracy",
                                "best_C": 1.0, "val_scores": {"0.1": float(val[0, t, k, s]) - 0.1,
                                                              "1.0": float(val[0, t, k, s])},
                                "distance": {"pad": float(distance[t])}},
                    "timings_s": {"total": 1.0}, "cache": {}, "keys": {}}))
                job += 1
    return names
