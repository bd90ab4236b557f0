"""Run every benchmark (`make bench`; `make bench-smoke` with --smoke) and write results/summary.md."""

from __future__ import annotations

import importlib
import json
import sys
import time

from benchmarks.common import RESULTS

FIGURES = ["p6_cli", "framework_patches", "p2_extraction", "p3_pretraining", "p1_sweep_reuse", "p5_search", "p4_probe", "layer_study_split",
           "p7_estimators", "scaling"]
GPU_FIGURES = ["p4_probe_gpu", "p7_estimators_gpu"]


def table(results: dict) -> str:
    lines = ["| figure | ours | reference | ratio | goal | met |", "|---|---|---|---|---|---|"]
    for r in results.values():
        ratio = "n/a" if r["ratio"] is None else f"{r['ratio']:.3g}"
        lines.append(f"| {r['figure']} | {r.get('ours', '')} | {r.get('reference', '')} | {ratio} | {r['goal']} | "
                     f"{'yes' if r['goal_met'] else 'no'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    smoke = "--smoke" in sys.argv
    only = [a for a in sys.argv[1:] if not a.startswith("--")] or FIGURES
    t0 = time.perf_counter()
    if "--summarize" not in sys.argv:  # --summarize: only rebuild summary.md from the latest JSON files
        for name in only:
            t = time.perf_counter()
            importlib.import_module(f"benchmarks.{name}").main(["--smoke"] if smoke else [])
            print(f"[{name}: {time.perf_counter() - t:.1f}s]")
    suffix = ".smoke.json" if smoke else ".json"
    # GPU figures are run on a GPU machine (`--gpu` modes, bash benchmarks/gpu_check.sh); their latest JSON is listed.
    names = FIGURES + ([] if smoke else GPU_FIGURES)
    results = {n: json.loads((RESULTS / f"{n}{suffix}").read_text()) for n in names if (RESULTS / f"{n}{suffix}").exists()}
    text = table(results)
    if not smoke:
        (RESULTS / "summary.md").write_text(text)
    print(text)
    print(f"total {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main()
