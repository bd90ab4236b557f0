"""Framework patches: what `experiment=layer_study`'s 56 jobs cost outside the science with and without each guarded
patch of Hydra/OmegaConf internals (src/compose_once.py, src/config_copy.py; switches in src/patching.py).

The study is run once at tiny sizes to fill its sweep dir; every timed run is the same command again, so each job
is already done and skipped right after Hydra has composed, copied and set it up: what is left is the sweep's
fixed overhead (imports, composition, Hydra's per-job set-up, the progress line). The variants run interleaved,
`--rounds` times each; the row is the median. A patch is worth keeping when switching it off costs more in every
round (paired with that round's run with both patches), the median paired cost being the saving reported.
"""

from __future__ import annotations

import statistics
import tempfile

from benchmarks.common import parser, run_main, write

TINY = ["width=tiny", "source.num_classes=4", "source.images_per_class=40", "source.val_per_class=10",
        "source.epochs=1", "trainer.num_threads=1"]  # a tiny source; the study's own targets (their keys differ)
VARIANTS = {  # name -> environment
    "both patches": {},
    "without compose_once": {"TRANSFER_PATCH_COMPOSE_ONCE": "0"},
    "without config_copy": {"TRANSFER_PATCH_CONFIG_COPY": "0"},
    "stock Hydra and OmegaConf": {"TRANSFER_PATCHES": "0"},
}


def main(argv=None) -> dict:
    ap = parser(__doc__)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    rounds = 1 if args.smoke else args.rounds
    work = tempfile.mkdtemp(prefix="patch-bench-")
    cmd = ["experiment=layer_study", *TINY, f"hydra.sweep.dir={work}/sweep", "~hydra.callbacks.summary"]
    if args.smoke:  # one target, two layers: the same code paths
        cmd += ["target=digits", "layer=fc6,fc7"]
    env = {"TRANSFER_CACHE_DIR": f"{work}/cache"}
    run_main(*cmd, env=env)  # fills the sweep dir: from here on every job is skipped as done
    walls: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for _ in range(rounds):
        for name, switch in VARIANTS.items():
            walls[name].append(run_main(*cmd, env={**env, **switch}))
    return summarize(walls, rounds, args.smoke)


def summarize(walls: dict[str, list[float]], rounds: int, smoke: bool) -> dict:
    """The JSON row from the rounds' wall times (variant -> one time per round, rounds in the same order)."""
    med = {v: statistics.median(w) for v, w in walls.items()}
    base = walls["both patches"]
    paired = {v: [a - b for a, b in zip(w, base)] for v, w in walls.items()}
    rows = [{"variant": v, "median_s": med[v], "min_s": min(w), "max_s": max(w),
             "saving_median_s": statistics.median(paired[v]), "saving_min_s": min(paired[v])}
            for v, w in walls.items()]
    keep = {v: min(paired[v]) > 0 for v in VARIANTS if v != "both patches"}
    stock = med["stock Hydra and OmegaConf"]
    return write("framework_patches", "Framework patches: layer_study sweep overhead (all jobs done), stock / patched",
                 rows, stock / med["both patches"], "each patch saves time in every round (paired)",
                 all(keep.values()), smoke, ours=f"patched {med['both patches']:.1f} s (compose_once saves "
                 f"{statistics.median(paired['without compose_once']):.1f} s, config_copy "
                 f"{statistics.median(paired['without config_copy']):.1f} s; medians of {rounds} paired rounds)",
                 reference=f"stock {stock:.1f} s", keep=keep, rounds=rounds, raw=walls)


if __name__ == "__main__":
    main()
