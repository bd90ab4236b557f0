"""N worker processes on one Optuna study: the way to run a search in parallel.

    python -m src.search.workers 4 search=factors_tpe hydra.sweeper.storage=postgresql://user@host/db [...]

Hydra's Optuna sweeper runs one batch of `hydra.sweeper.n_jobs` trials at a time and waits for the slowest; N
independent workers instead each ask the shared study for their next trial as soon as their last one is done
(and TPE sees every finished trial of every worker). Each worker is `python -m src.main ARGS` with its own sweep
dir (`<hydra.sweep.dir or multirun/workers/<time>>/worker<i>`) and sampler seed (the given seed + i, so that
their random start-up trials differ), and runs `hydra.sweeper.n_trials` trials: the study gains N x n_trials.
A password in the storage URL is moved to PGPASSWORD first (src/storage_url.py); logs: `<dir>/worker<i>.log`.
On SLURM, N jobs of the same command do the same (README, "Cluster").
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import src
from src.argv import prepare
from src.errors import ArgumentParser, ConfigError


def worker_args(args: list[str], i: int, base_dir: Path) -> list[str]:
    """Worker i's command-line overrides: the shared ones, its own sweep dir and sampler seed."""
    own = {"hydra.sweep.dir", "hydra.sweeper.sampler.seed"}
    seed = next((int(a.split("=", 1)[1]) for a in args if a.startswith("hydra.sweeper.sampler.seed=")), 0)
    return [a for a in args if a.split("=", 1)[0] not in own] + [
        f"hydra.sweep.dir={base_dir / f'worker{i}'}", f"hydra.sweeper.sampler.seed={seed + i}"]


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m src.search.workers", description=__doc__.split("\n\n")[0])
    p.add_argument("n", type=int, help="number of worker processes")
    p.add_argument("overrides", nargs=argparse.REMAINDER, help="python -m src.main arguments (a search= preset)")
    ns = p.parse_args(argv)
    if ns.n < 1:
        p.error(f"n={ns.n}: need at least 1 worker")
    presets = sorted(f.stem for f in (src.REPO_ROOT / "conf" / "search").glob("*.yaml"))
    chosen = [a.split("=", 1)[1] for a in ns.overrides if a.split("=", 1)[0].lstrip("+") == "search"]
    if not chosen:  # else each worker fails alone
        p.error(f"no search= preset among the overrides ({' '.join(ns.overrides) or 'none'}): the workers share one "
                f"Optuna study; valid: {', '.join(f'search={s}' for s in presets)}")
    if chosen[-1] not in presets:  # else each worker fails alone, its error only in its log
        p.error(f"search={chosen[-1]} is not a search preset; valid: {', '.join(f'search={s}' for s in presets)}")
    env = dict(os.environ)
    try:
        args = prepare(list(ns.overrides), env)
    except ConfigError as e:
        p.error(str(e))
    given = next((a.split("=", 1)[1] for a in args if a.startswith("hydra.sweep.dir=")), None)
    base = Path(given) if given else src.REPO_ROOT / "multirun" / "workers" / time.strftime("%Y-%m-%d_%H-%M-%S")
    base.mkdir(parents=True, exist_ok=True)
    procs = []
    for i in range(ns.n):
        log = open(base / f"worker{i}.log", "wb")
        cmd = [sys.executable, "-m", "src.main", *worker_args(args, i, base)]
        procs.append(subprocess.Popen(cmd, cwd=src.REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
        print(f"worker {i}: pid {procs[-1].pid}, log {base / f'worker{i}.log'}", flush=True)
    codes = [proc.wait() for proc in procs]
    for i, code in enumerate(codes):
        print(f"worker {i}: exit {code}")
    return max(codes, key=abs)


if __name__ == "__main__":
    sys.exit(main())
