"""Replicated studies: `experiment=layer_study replicates=6` (six source seeds, 336 jobs) from an empty cache, against
its compute floor and against the 1-seed study (56 jobs), both measured in the same round.

The science is what the jobs compute, summed from their result.json `timings_s` (source training, extraction, the
source-val extraction and measured distance, the cheap estimates, the probe). Two floors, each the science of the
6-seed study's jobs plus a start-up:
- the floor (issue 30's definition, the goal's): the start-up is what the 1-seed study takes outside its science
  (its wall minus its jobs' science: the imports, its 56 jobs' composition, checks and records, its report). What
  the 6-seed study takes beyond this floor is what replicating adds besides the replicas' science.
- the strict floor: the start-up is only a process importing what a sweep imports once (`python -c "import
  src.main, src.experiment"`); everything else (composing and checking each job's config, planning, writing
  results, the sweep's record and report) counts as overhead.
Goals (issue 30): the 6-seed study <= 1.05 x its floor, and <= 5.3 x the 1-seed study. The second ratio is the
two studies' science ratio (below 6: the 6-seed study's trainings run a little faster per seed) averaged with
their outside-science ratio, weighted by the 1-seed study's parts. Per-job overhead shrinks both studies, so cutting
it barely moves this ratio; a smaller fixed start-up raises it toward the science ratio. Training is compute-bound,
so six seeds cost six trainings however they are scheduled; on the CPU replicates are trained one by one (grouped
training wins only on a GPU: see the grouped replicate figure). `--smoke`: 2 seeds, 1 target x 2 layers, tiny
sizes, no report. `--rounds N` (default 3): medians over N rounds, each from empty caches.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import REPO, parser, run_main, write
from benchmarks.p1_sweep_reuse import SMOKE

SCIENCE = ("source", "finetune", "extract", "source_val_extract", "distance", "estimate", "probe")


def startup_s(reps: int = 3) -> float:
    """Wall seconds of a process that imports what a sweep imports once (the smallest of `reps`)."""
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import src.main, src.experiment"], cwd=REPO, check=True)
        times.append(time.perf_counter() - t0)
    return min(times)


def study(seeds: int, tmp: Path, smoke: bool) -> dict:
    # The smoke mode checks that the figure runs: its studies leave the report out (the full figure times it).
    extra = [*SMOKE, "target=synth_objects_new", "layer=fc6,fc7", "hydra.callbacks.summary.report=false"] if smoke \
        else []
    reps = [f"replicates={seeds}"] if seeds > 1 else []
    wall = run_main("experiment=layer_study", *reps, *extra, f"hydra.sweep.dir={tmp / 'sweep'}",
                    env={"TRANSFER_CACHE_DIR": str(tmp / "cache")}, timeout=3600)
    results = [json.loads(p.read_text()) for p in (tmp / "sweep").glob("*/result.json")]
    if any(r["status"] != "ok" for r in results):
        raise RuntimeError(f"layer_study with {seeds} seed(s): a job failed")
    sums = {s: sum(r["timings_s"].get(s) or 0.0 for r in results) for s in SCIENCE}
    return {"seeds": seeds, "jobs": len(results), "wall_s": wall, "science_s": sum(sums.values()),
            "source_s": sums["source"]}


def one_round(tmp: Path, seeds: int, smoke: bool) -> dict:
    one = study(1, tmp / "one", smoke)
    many = study(seeds, tmp / "many", smoke)
    start = startup_s(1 if smoke else 3)
    one_seed_outside = one["wall_s"] - one["science_s"]
    floor = one_seed_outside + many["science_s"]
    strict = start + many["science_s"]
    return {"seeds": seeds, "jobs": many["jobs"], "wall_s": many["wall_s"], "science_s": many["science_s"],
            "source_s": many["source_s"], "one_seed_wall_s": one["wall_s"], "one_seed_science_s": one["science_s"],
            "one_seed_outside_science_s": one_seed_outside, "floor_s": floor, "overhead_s": many["wall_s"] - floor,
            "over_floor": many["wall_s"] / floor, "startup_s": start, "strict_floor_s": strict,
            "strict_overhead_s": many["wall_s"] - strict, "over_strict_floor": many["wall_s"] / strict,
            "over_one_seed": many["wall_s"] / one["wall_s"]}


def main(argv=None) -> dict:
    ap = parser(__doc__)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    rounds, seeds = (1, 2) if args.smoke else (args.rounds, 6)
    runs = []
    for i in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            runs.append(one_round(Path(tmp), seeds, args.smoke))
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0] if k not in ("seeds", "jobs")}
    spread = {k: f"{min(r[k] for r in runs):.3f}-{max(r[k] for r in runs):.3f}"
              for k in ("over_floor", "over_strict_floor", "over_one_seed")}
    goal_one = 5.3 * seeds / 6
    met = med["over_floor"] <= 1.05 and med["over_one_seed"] <= goal_one
    return write("replicates", f"{seeds}-seed layer_study from an empty cache: wall / compute floor", runs,
                 med["over_floor"], f"<= 1.05 x the floor and <= {goal_one:.2f} x the 1-seed study", met, args.smoke,
                 ours=f"{seeds} seeds ({runs[0]['jobs']} jobs): wall {med['wall_s']:.0f} s, floor {med['floor_s']:.0f} s "
                      f"(the 1-seed study outside its science {med['one_seed_outside_science_s']:.1f} s + science "
                      f"{med['science_s']:.0f} s, of which training {med['source_s']:.0f} s), overhead "
                      f"{med['overhead_s']:.1f} s; strict floor (start-up {med['startup_s']:.1f} s + science) "
                      f"{med['over_strict_floor']:.3f}; wall / 1-seed study {med['over_one_seed']:.2f} (medians of "
                      f"{rounds}; spreads: floor {spread['over_floor']}, strict floor {spread['over_strict_floor']}, "
                      f"1-seed {spread['over_one_seed']})",
                 reference=f"1-seed study {med['one_seed_wall_s']:.0f} s", medians=med, spreads=spread)


if __name__ == "__main__":
    main()
