"""layer_study wall time split by stage: `experiment=layer_study` from an empty cache, once with the default probe
(classifier=linear_svm, the C-path solver) and once with the reference (classifier=linear_svm_liblinear).

Each run goes to its own temp cache and sweep dir; the stage times are summed from the jobs' result.json
`timings_s` (`estimate`, the cheap transferability estimates every job records, apart from `probe`). Goals
(issue 14): the probe's share of the jobs' time <= 15%, and the study's wall time <= 1.5 x (source training + one
extraction per target). `--smoke`: 1 target x 2 layers, tiny sizes.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

from benchmarks.common import parser, run_main, write
from benchmarks.p1_sweep_reuse import SMOKE

STAGES = ("source", "extract", "estimate", "probe")  # estimate: the cheap transferability estimates every job records


def study(classifier: str, tmp: Path, smoke: bool) -> dict:
    extra = [*SMOKE, "target=synth_objects_new", "layer=fc6,fc7"] if smoke else []
    tmp.mkdir(parents=True, exist_ok=True)
    wall = run_main("experiment=layer_study", f"classifier={classifier}", *extra,
                    f"hydra.sweep.dir={tmp / classifier}", "hydra.callbacks.summary.report=false",
                    env={"TRANSFER_CACHE_DIR": str(tmp / f"cache-{classifier}")})
    results = [json.loads(p.read_text()) for p in (tmp / classifier).glob("*/result.json")]
    if any(r["status"] != "ok" for r in results):
        raise RuntimeError(f"layer_study with classifier={classifier}: a job failed")
    sums = {s: sum(r["timings_s"][s] for r in results) for s in STAGES}
    total = sum(r["timings_s"]["total"] for r in results)
    # The floor: what the study cannot avoid (one source training, one extraction per target).
    floor = sums["source"] + sums["extract"]
    return {"classifier": classifier, "jobs": len(results), "wall_s": wall, "jobs_total_s": total, **sums,
            "probe_share": sums["probe"] / total, "wall_over_floor": wall / floor}


def median_round(runs: list[dict]) -> dict:
    """The round with the median wall/floor, with both goals' medians and spreads over all rounds."""
    row = dict(sorted(runs, key=lambda r: r["wall_over_floor"])[len(runs) // 2])
    for key in ("probe_share", "wall_over_floor"):
        values = [r[key] for r in runs]
        row[key] = statistics.median(values)
        row[f"{key}_spread"] = f"{min(values):.3f}-{max(values):.3f}"
    return {**row, "rounds": len(runs)}


def main(argv=None) -> dict:
    ap = parser(__doc__)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    rounds = 1 if args.smoke else args.rounds
    with tempfile.TemporaryDirectory() as tmp:
        runs = [study("linear_svm", Path(tmp) / f"round{i}", args.smoke) for i in range(rounds)]
        ref = study("linear_svm_liblinear", Path(tmp) / "reference", args.smoke)
    ours = median_round(runs)
    met = ours["probe_share"] <= 0.15 and ours["wall_over_floor"] <= 1.5
    return write("layer_study_split", "layer_study from an empty cache: probe share of the jobs' time", [ours, ref],
                 ours["probe_share"], "probe share <= 0.15 and wall <= 1.5 x (source + extraction)", met, args.smoke,
                 ours=f"path probe: wall {ours['wall_s']:.0f} s, probe {ours['probe']:.1f} s "
                      f"({100 * ours['probe_share']:.0f}%), wall/floor {ours['wall_over_floor']:.2f} (medians of "
                      f"{rounds}; spreads: share {ours['probe_share_spread']}, wall/floor "
                      f"{ours['wall_over_floor_spread']})",
                 rounds=runs,
                 reference=f"LinearSVC probe: wall {ref['wall_s']:.0f} s, probe {ref['probe']:.1f} s "
                           f"({100 * ref['probe_share']:.0f}%)")


if __name__ == "__main__":
    main()
