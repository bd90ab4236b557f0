"""P5 search efficiency: Optuna TPE evaluations needed to reach a 48-point grid's best score (within 0.5 points).

The grid (8 layers x 3 poolings x 2 normalisations of the default source on synth_objects_new) is run once as a
multirun and its scores cached in benchmarks/results/p5_grid.json; TPE (our search preset's settings:
8 start-up trials) then searches the same space against that table, 5 seeds. Goal: median <= 1/3 of the grid.
"""

from __future__ import annotations

import itertools
import json
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.common import RESULTS, parser, run_main, write

SPACE = {"layer": ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"], "pooling": ["avg", "max", "spp"],
         "norm": ["l2", "power"]}


def grid_scores(smoke: bool) -> dict[tuple, float]:
    cache = RESULTS / "p5_grid.json"
    if smoke:  # a made-up table with one clear optimum: exercises the search-counting code only
        rng = np.random.default_rng(0)
        return {k: float(rng.uniform(0.3, 0.7)) + (0.2 if k == ("fc6", "spp", "l2") else 0)
                for k in itertools.product(*SPACE.values())}
    if not cache.exists():
        with tempfile.TemporaryDirectory() as tmp:
            run_main("-m", *(f"{k}={','.join(v)}" for k, v in SPACE.items()), f"hydra.sweep.dir={tmp}",
                     "hydra.callbacks.summary.report=false")
            table = {}
            for p in Path(tmp).glob("*/result.json"):
                r = json.loads(p.read_text())
                table["|".join(str(r["factors"][k]) for k in SPACE)] = r["metrics"]["target_score"]
        cache.write_text(json.dumps(table, indent=1))
    return {tuple(k.split("|")): v for k, v in json.loads(cache.read_text()).items()}


def evaluations_to_best(table: dict[tuple, float], seed: int, tolerance: float = 0.005) -> int:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    target = max(table.values()) - tolerance
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=8))
    for i in range(1, 4 * len(table) + 1):
        trial = study.ask()
        key = tuple(trial.suggest_categorical(k, v) for k, v in SPACE.items())
        study.tell(trial, table[key])
        if table[key] >= target:
            return i
    return 4 * len(table)


def main(argv=None) -> dict:
    args = parser(__doc__).parse_args(argv)
    table = grid_scores(args.smoke)
    counts = [evaluations_to_best(table, seed) for seed in range(5)]
    med = float(np.median(counts))
    ratio = med / len(table)
    best = max(table, key=table.get)
    rows = [{"seed": s, "evaluations_to_best": c} for s, c in enumerate(counts)]
    rows.append({"seed": "median", "evaluations_to_best": med})
    return write("p5_search", f"P5 search: TPE evaluations to the grid's best / grid size ({len(table)})", rows,
                 ratio, "<= 0.33", ratio <= 1 / 3, args.smoke, ours=f"median {med:.0f} TPE trials",
                 reference=f"grid {len(table)} jobs",
                 raw={"grid_size": len(table), "best": dict(zip(SPACE, best)), "best_score": table[best],
                      "counts": counts})


if __name__ == "__main__":
    main()
