"""Framework patches: what `experiment=layer_study`'s 56 jobs cost outside the science with and without each guarded
patch of Hydra/OmegaConf internals (src/compose_once.py, src/config_copy.py; switches in src/patching.py).

The study is run once at tiny sizes to fill its sweep dir; every timed run is the same command again, so each job
is already done and skipped right after Hydra has composed, copied and set it up: what is left is the sweep's
fixed overhead (imports, composition, Hydra's per-job set-up, the progress line). The variants run interleaved,
`--rounds` times each; the row is the median. A patch is worth keeping when switching it off costs clearly more
than the spread between rounds.
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
    med = {v: statistics.median(w) for v, w in walls.items()}
    base = med["both patches"]
    rows = [{"variant": v, "median_s": med[v], "min_s": min(w), "max_s": max(w), "extra_s": med[v] - base}
            for v, w in walls.items()]
    spread = max(max(w) - min(w) for w in walls.values())
    keep = {v: med[v] - base > spread for v in VARIANTS if v != "both patches"}
    return write("framework_patches", "Framework patches: layer_study sweep overhead (all jobs done), stock / patched",
                 rows, med["stock Hydra and OmegaConf"] / base, "each patch saves more than the rounds' spread",
                 all(keep.values()), args.smoke, ours=f"patched {base:.1f} s",
                 reference=f"stock {med['stock Hydra and OmegaConf']:.1f} s", spread_s=spread, keep=keep,
                 rounds=rounds, raw=walls)


if __name__ == "__main__":
    main()
