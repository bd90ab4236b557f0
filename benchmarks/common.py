"""Shared helpers: machine facts, timing, and writing benchmarks/results/<name>.json."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent


def machine() -> dict:
    info = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()}
    try:
        import torch

        info.update(torch=torch.__version__, torch_threads=torch.get_num_threads())
    except ImportError:
        pass
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
        info["cpu"] = model
    except (OSError, StopIteration):
        pass
    return info


def parser(doc: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script runs, numbers mean little")
    return ap


def write(name: str, figure: str, rows: list[dict], ratio: float | None, goal: str, met: bool | None,
          smoke: bool, **extra) -> dict:
    """Print a table and write benchmarks/results/<name>.json (<name>.smoke.json in smoke mode)."""
    out = {"figure": figure, "ratio": ratio, "goal": goal, "goal_met": met, "smoke": smoke, "rows": rows,
           "machine": machine(), "when": time.strftime("%Y-%m-%d %H:%M:%S"), **extra}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}{'.smoke' if smoke else ''}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(out, indent=1, default=str))
    tmp.replace(path)
    print(f"\n{figure}")
    if rows:
        cols = list(rows[0])
        widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in cols}
        print("  ".join(c.ljust(widths[c]) for c in cols))
        for r in rows:
            print("  ".join(_fmt(r.get(c)).ljust(widths[c]) for c in cols))
    status = "n/a" if met is None else ("MET" if met else "MISSED")
    print(f"ratio: {_fmt(ratio)}  goal: {goal}  -> {status}   ({path.relative_to(REPO)})")
    return out


def _fmt(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def run_main(*args: str, env: dict | None = None, timeout: float = 1800) -> float:
    """Wall seconds of `python -m src.main ARGS` in a subprocess (fails loudly)."""
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "src.main", *args], cwd=REPO, env={**os.environ, **(env or {})},
                       capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"src.main {' '.join(args)} failed:\n{r.stderr[-3000:]}")
    return wall


def measured_fp32_peak(n: int = 4096, reps: int = 5) -> float:
    """This CPU's fp32 peak as measured, GFLOP/s: the best of `reps` float32 n x n torch.mm calls (after a warm-up),
    in the same process and minutes as the figure it is compared with. A formula from the nominal clock misses
    turbo (and a large GEMM is the fastest kernel the library has: nothing it runs goes faster)."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9
