"""Shared helpers: machine facts, timing, and writing benchmarks/results/<name>.json."""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import subprocess
import sys
import tempfile
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
    """Wall seconds of `python -m src.main ARGS` in a subprocess (fails loudly). In smoke mode (`fork_cli_runs`)
    the process is forked from one that has already imported what src.main imports, where the run's environment
    allows it."""
    return run_module("src.main", *args, env=env, timeout=timeout)[0]


def run_module(module: str, *args: str, env: dict | None = None, timeout: float = 1800) -> tuple[float, str]:
    """Wall seconds and stdout of `python -m MODULE ARGS` in a subprocess (fails loudly), forked from the smoke
    mode's server as `run_main` is."""
    full_env = {**os.environ, **(env or {})}
    t0 = time.perf_counter()
    server = _fork_server(full_env)
    if server is None:
        r = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=full_env, capture_output=True,
                           text=True, timeout=timeout)
        returncode, stdout, stderr = r.returncode, r.stdout, r.stderr
    else:
        with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
            reply = server.request(op="run", module=module, args=list(args), cwd=str(REPO), env=full_env,
                                   stdout=f"{tmp}/stdout", stderr=f"{tmp}/stderr", timeout=timeout)
            returncode = reply["returncode"]
            stdout, stderr = (Path(f"{tmp}/{f}").read_text(errors="replace") for f in ("stdout", "stderr"))
        if reply["timed_out"]:
            raise subprocess.TimeoutExpired([module, *args], timeout, stderr=stderr)
    wall = time.perf_counter() - t0
    if returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed:\n{stderr[-3000:]}")
    return wall, stdout


_FORK: dict = {}  # "on": set by fork_cli_runs(); "server": the fork server, started on first use


def fork_cli_runs() -> None:
    """Smoke mode: run_main and run_module fork each run from the test suite's CLI server (tests/cli_server.py),
    which has imported torch, Lightning, scikit-learn and Hydra once. A smoke run only checks that a figure runs,
    and those imports are most of a tiny run's CPU time. Full-size figures never fork: their timings include the
    start-up."""
    _FORK["on"] = True


def _fork_server(env: dict):
    """The fork server when run_main may fork a run with `env` (smoke mode, and the server's import-time variables:
    tests/cli_server.py); else None. The patch switches (src/patching.py) are read when a run installs the patches,
    so a forked run honours its own."""
    if not _FORK.get("on"):
        return None
    if "server" not in _FORK:
        from tests.cli_server import Client

        _FORK["server"] = Client(dict(os.environ), REPO)
        atexit.register(_FORK["server"].close)
    return _FORK["server"] if _FORK["server"].forks(env) else None


def best_of(fn, reps: int) -> float:
    """The fastest of `reps` timed calls of `fn`, in seconds."""
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def fp32_kernel_rates(smoke: bool = False, reps: int = 5) -> dict[str, float]:
    """GFLOP/s of the library's two fastest fp32 kernel families on this CPU, each the best of `reps` calls after a
    warm-up: the BLAS GEMM (a large `torch.mm`) and oneDNN's direct convolution (a 3x3, 256-channel, channels-last
    conv: the kernel our convolutions use). Neither alone is the peak on every CPU: BLAS libraries take slower
    code paths on some vendors' CPUs (there oneDNN's convolution runs at twice the GEMM's rate), and on others the
    GEMM is the faster of the two."""
    import torch

    def best(fn) -> float:
        fn()  # warm-up: first calls pick kernels and allocate
        return best_of(fn, reps)

    n = 1024 if smoke else 4096
    a, b = torch.randn(n, n), torch.randn(n, n)
    rates = {"gemm": 2 * n**3 / best(lambda: torch.mm(a, b)) / 1e9}
    batch, ch, side = (8, 128, 16) if smoke else (64, 256, 16)
    conv = torch.nn.Conv2d(ch, ch, 3, padding=1, bias=False).to(memory_format=torch.channels_last)
    x = torch.randn(batch, ch, side, side).to(memory_format=torch.channels_last)
    with torch.inference_mode():
        rates["conv3x3"] = 2 * batch * ch * ch * 9 * side * side / best(lambda: conv(x)) / 1e9
    return rates

