"""Run every benchmark (`make bench`; `make bench-smoke` with --smoke) and write results/summary.md."""

from __future__ import annotations

import importlib
import sys
import time

from benchmarks.common import RESULTS

FIGURES = ["p6_cli", "p2_extraction", "p3_pretraining", "p1_sweep_reuse", "p5_search", "p4_probe", "scaling"]


def main() -> None:
    smoke = "--smoke" in sys.argv
    only = [a for a in sys.argv[1:] if not a.startswith("--")] or FIGURES
    t0 = time.perf_counter()
    results = {}
    for name in only:
        t = time.perf_counter()
        results[name] = importlib.import_module(f"benchmarks.{name}").main(["--smoke"] if smoke else [])
        print(f"[{name}: {time.perf_counter() - t:.1f}s]")
    lines = ["| figure | ratio | goal | met |", "|---|---|---|---|"]
    for name, r in results.items():
        ratio = "n/a" if r["ratio"] is None else f"{r['ratio']:.3g}"
        lines.append(f"| {r['figure']} | {ratio} | {r['goal']} | {'yes' if r['goal_met'] else 'no'} |")
    if not smoke:
        (RESULTS / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"total {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main()
