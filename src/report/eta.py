"""How long a sweep has left, from what its remaining jobs still have to compute.

A sweep's work is shared: each source net is trained once, each (net, target) extraction runs once, and every job
then fits its own probe. So the time left is not (jobs left) x (a typical job): it is the stages no finished job
has built yet, each counted once however many jobs share it, plus each remaining job's own work:

    remaining = sum over missing (stage, key) of time[stage] + jobs left x time[job], over the parallel workers

with each stage's time the median of what this sweep's jobs recorded when they built one (result.json
`timings_s`), and a source net's, until one is trained here, what the cache recorded for the sweep's trained
ones (`metrics.json` `wall_s`). `remaining` takes any list of jobs with their stage keys, such as a
scheduler's plan; `src.report.progress` builds one from the sweep's job configs.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Collection, Iterable, Mapping

from src.job_plan import BUILT  # the stages a plan counts once per key
JOB = "job"  # a job's own work: its probe and estimates, cache look-ups, and the launcher's per-job overhead
TIMING = {"source": "source", "finetune": "finetune", "features": "extract"}  # result.json timings_s names


@dataclass(frozen=True)
class Remaining:
    """The time a sweep still needs: `seconds` of work with a recorded time, and the stage builds (per stage)
    that no job has timed yet, which `seconds` leaves out."""

    seconds: float
    untimed: dict[str, int] = field(default_factory=dict)


def remaining(jobs: Iterable[Mapping[str, str | None]], cached: Collection[tuple[str, str]],
              times: Mapping[str, float | None], workers: int = 1) -> Remaining:
    """What the `jobs` still need: each (stage, key) of theirs that is not `cached`, once, at `times[stage]`,
    plus `times[JOB]` per job, divided over `workers`; builds of a stage without a time are counted apart."""
    jobs = list(jobs)
    todo = Counter(stage for stage, _ in {(stage, key) for job in jobs for stage, key in job.items()
                                          if stage in BUILT and key and (stage, key) not in cached})
    timed = sum(n * times[stage] for stage, n in todo.items() if times.get(stage) is not None)
    own = len(jobs) * (times.get(JOB) or 0.0)
    untimed = {stage: n for stage, n in todo.items() if times.get(stage) is None}
    return Remaining((timed + own) / max(1, workers), untimed)


def built_stages(result: Mapping[str, Any]) -> dict[str, float]:
    """Seconds a finished job spent building shared stages (the cache misses in its result.json)."""
    hits, timings = result.get("cache") or {}, result.get("timings_s") or {}
    return {stage: float(timings[TIMING[stage]]) for stage in BUILT
            if hits.get(f"{stage}_hit") is False and timings.get(TIMING[stage]) is not None}


def stage_times(records: Iterable[Mapping[str, Any]], source_walls: Iterable[float] = ()) -> dict[str, float | None]:
    """Per stage, the median of the finished jobs' build times (`records`, each with `built`: `built_stages`; `total`:
    result.json's total seconds, None when the job ran nothing; `wall`: its seconds from start to end; `cold`: the
    first job of its process). A source net with no build here yet takes the median of `source_walls`
    (trainings the cache recorded). A job's own time is its total less what it built, plus the launcher's
    overhead around it (wall - total), measured on warm jobs only: a process's first job also imports torch, once."""
    records = list(records)
    times: dict[str, float | None] = {}
    for stage in BUILT:
        seen = [r["built"][stage] for r in records if stage in (r.get("built") or {})]
        times[stage] = statistics.median(seen) if seen else None
    walls = list(source_walls)
    if times["source"] is None and walls:
        times["source"] = statistics.median(walls)
    own, overhead = [], []
    for r in records:
        built = sum((r.get("built") or {}).values())
        ran = r.get("total") if r.get("total") is not None else r.get("wall")
        if ran is not None:
            own.append(max(0.0, ran - built))
        if r.get("total") is not None and r.get("wall") is not None and not r.get("cold"):
            overhead.append(max(0.0, r["wall"] - r["total"]))
    times[JOB] = statistics.median(own) + (statistics.median(overhead) if overhead else 0.0) if own else None
    return times
