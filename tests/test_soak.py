"""Crash safety across processes: a sweep killed with SIGKILL again and again, and 4 processes racing for one
cache entry. Both run real `python -m src.main` processes on a private cache (slow: CI runs them)."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from src.cache import verify
from tests.conftest import NO_REPORT, TINY, run_cli, spawn_cli

pytestmark = pytest.mark.slow

# 2 source nets (seeds) x 3 targets: every source is shared by 3 jobs.
SWEEP = ["-m", "seed=0,1", "target=synth_objects_new,synth_count,synth_scenes", NO_REPORT, *TINY]
# What each kill waits for before a random extra delay: the stage it aims at ("any": a random moment). The sweep
# trains both source nets before any extraction (stage scheduling), so the two source kills come first.
SCHEDULE = ["source", "source", "features", "probe", "features", "any", "any"]
MIN_KILLS = 5


def staging(cache: Path, stage: str) -> list[Path]:
    return list((cache / stage).glob(".*.tmp-*")) if (cache / stage).is_dir() else []


def last_log_line(sweep: Path) -> str:
    logs = sorted(sweep.glob("*/main.log"), key=lambda p: p.stat().st_mtime_ns)
    lines = logs[-1].read_text().strip().splitlines() if logs else []
    return lines[-1] if lines else ""


def reached(want: str, cache: Path, sweep: Path, started: float, at: float) -> bool:
    if want in ("source", "features"):
        return bool(staging(cache, want))
    if want == "probe":
        return "probe:" in last_log_line(sweep)
    return time.time() - started >= at


def kill_group(proc) -> bool:
    """SIGKILL the sweep's process group; False if the sweep had already ended. Right after the spawn (a stale
    staging dir makes the wait end at once) the child may not have made its own group yet: killpg then finds no
    such group although the process runs, so it is tried again for a while."""
    for _ in range(500):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
            return True
        except ProcessLookupError:
            if proc.poll() is not None:
                return False
            time.sleep(0.01)
    proc.kill()
    return True


def log_events(sweep: Path, verb: str, stage: str) -> Counter:
    pattern = re.compile(rf"cache: {verb} {stage}/(\w+)")
    return Counter(m.group(1) for log in sweep.glob("*/main.log") for m in pattern.finditer(log.read_text()))


def test_sweep_survives_repeated_sigkill(tmp_path):
    cache, sweep = tmp_path / "cache", tmp_path / "sweep"
    env = {**os.environ, "TRANSFER_CACHE_DIR": str(cache)}
    args = [*SWEEP, f"hydra.sweep.dir={sweep}"]
    seed = int(os.environ.get("SOAK_SEED", time.time_ns() % 10**6))
    rng = random.Random(seed)
    kills: list[str] = []  # what each kill interrupted
    interrupted_training: Counter = Counter()  # source key -> kills that hit its training
    seen_staging: set[str] = set()
    for want in SCHEDULE:
        proc = spawn_cli(*args, env=env)
        started, at = time.time(), rng.uniform(4, 20)
        while proc.poll() is None and not reached(want, cache, sweep, started, at):
            time.sleep(0.01)
        if proc.poll() is not None:  # the sweep finished before reaching that stage: nothing left to kill
            break
        # A tiny source trains (and its features extract) in about a second on a quiet machine: aim at those builds
        # with a short delay, so a kill lands inside them.
        time.sleep(rng.uniform(0, 0.02 if want in ("source", "features") else 0.5))
        doing = last_log_line(sweep)
        if not kill_group(proc):  # the sweep ended during that short delay: nothing left to kill, as above
            break
        proc.wait()
        # A build the kill interrupted leaves its staging dir (a dead process cleans nothing up).
        staged_now = set()
        for tmp in staging(cache, "source"):  # each interrupted training leaves its own (uniquely named) dir, which
            if tmp.name not in seen_staging:   # stays until a later run takes that key's lock: count it once
                seen_staging.add(tmp.name)
                staged_now.add(tmp.name[1:].split(".tmp-")[0])
                interrupted_training[tmp.name[1:].split(".tmp-")[0]] += 1
        # The store logs a start before it makes the staging dir: a kill between the two leaves only the line (as
        # the last line this run wrote: a log untouched since the spawn holds an earlier run's line).
        logs = sorted(sweep.glob("*/main.log"), key=lambda p: p.stat().st_mtime_ns)
        fresh = bool(logs) and logs[-1].stat().st_mtime >= started
        cut = re.search(r"cache: building source/(\w+)$", last_log_line(sweep)) if fresh else None
        if cut and cut.group(1) not in staged_now:
            interrupted_training[cut.group(1)] += 1
        hit = ("training" if staging(cache, "source") else "extraction" if staging(cache, "features")
               else "probe" if "probe:" in doing else "other (start-up, loading, result writing)")
        kills.append(hit)
    final = run_cli(*args, env=env)
    print(f"soak seed {seed}: {len(kills)} kills {Counter(kills)}, {len(kills) + 1} runs")
    assert final.returncode == 0, final.stderr[-3000:]
    assert len(kills) >= MIN_KILLS and {"training", "extraction"} <= set(kills), (seed, kills)

    results = {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/result.json")}
    assert sorted(results) == [str(i) for i in range(6)] and all(r["status"] == "ok" for r in results.values())
    source_keys = {r["keys"]["source"] for r in results.values()}
    assert len(source_keys) == 2
    built, building = log_events(sweep, "built", "source"), log_events(sweep, "building", "source")
    print(f"soak seed {seed}: trainings started {dict(building)}, completed {dict(built)}")
    for key in source_keys:  # one completed training per source; every other start was a killed one
        assert built[key] == 1 and building[key] == 1 + interrupted_training[key], (seed, key, building, built)
    # The cache holds complete entries only: no staging dir, quarantine, lock file or unlisted file.
    names = [p.name for p in cache.rglob("*")]
    assert not [n for n in names if ".tmp-" in n or n.endswith(".lock") or n == ".quarantine"], names
    # Exactly the entries the results name (2 sources, 6 target feature sets, each source's val features and the 6
    # measured distances), each complete.
    stages = ("source", "features", "distance")
    entries = [e for stage in stages for e in (cache / stage).iterdir()]
    named = {r["keys"][k] for r in results.values() for k in ("source", "features", "source_val_features", "distance")
             if r["keys"].get(k)}
    assert sorted(e.name for e in entries) == sorted(named) and len(named) == 2 + 6 + 2 + 6
    assert all(verify(e, e.name) is None for e in entries)


def test_four_processes_on_one_config_train_once_and_agree(tmp_path):
    env = {**os.environ, "TRANSFER_CACHE_DIR": str(tmp_path / "cache")}
    procs = [spawn_cli(*TINY, f"hydra.run.dir={tmp_path / f'run{i}'}", env=env, stdout=tmp_path / f"out{i}",
                       stderr=tmp_path / f"err{i}") for i in range(4)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    results = [json.loads((tmp_path / f"run{i}" / "result.json").read_text()) for i in range(4)]
    assert sorted(r["cache"]["source_hit"] for r in results) == [False, True, True, True]
    assert sorted(r["cache"]["features_hit"] for r in results) == [False, True, True, True]
    metrics = [{k: r["metrics"][k] for k in ("target_score", "source_val_acc", "best_C", "val_scores")} for r in results]
    assert all(m == metrics[0] for m in metrics)
    assert sum(log_events(tmp_path, "building", "source").values()) == 1
