"""A sweep's plan before any job runs: which shared stages its jobs need, which are cached, who builds the rest.

A factor study is a DAG: a few source nets, then per (source, target) an extraction (with its fine-tuned net, if
any), then many cheap probes. Launched as a flat grid, jobs that share a missing stage start together and all but
one wait on its cache lock, holding their allocation (a GPU, on a cluster) while they wait. The plan orders them:

  - a *unit* is a shared stage: a source net (with its val features, when jobs need them), or a (source, target)
    extraction (features, or the fine-tuned net a fine-tuned classifier is scored with);
  - the *builder* of a missing unit is the first job (in sweep order) that needs it; every other job that needs it
    runs after its builder, so no job waits on a lock;
  - a job already done (result.json ok with this config) or that fails the config check needs nothing.

`plan_sweep` builds the plan from the composed job configs (the ones Hydra's sweeper composed to validate the
batch: `src.compose_once`), torch-free apart from hashing a pretrained source's weights file. The launchers
(`hydra_plugins.transferfactors_plugins`) run it: the local ones through `LocalSchedule` (builders first, the
rest as their units appear), SLURM as source jobs and dependent arrays. `describe` is what `--plan` prints; the
estimates come from the durations the cache recorded (`.timings/`, by `src.keys.cost_class`).
"""

from __future__ import annotations

import copy
import json
import logging
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from src.cache import Store
from src.errors import ConfigError

log = logging.getLogger(__name__)
PLAN_FILE = "plan.json"  # in the sweep dir: the plan a launcher ran
STAGE_OF = {"source": "source", "source_val_features": "features", "finetune": "finetune", "features": "features"}


@dataclass
class Unit:
    """A shared stage: `source` (a source net, and its val features when needed) or `extract` (a (source, target)
    extraction: features, or a fine-tuned net)."""

    id: str  # "<kind>:<key>"
    kind: str
    keys: dict[str, str]  # what the unit builds (a name of STAGE_OF) -> its cache key
    missing: list[str]  # the names in `keys` that are not cached
    label: str
    cost: str  # its cost class (src.keys.cost_class)
    jobs: list[int] = field(default_factory=list)  # job nums that need it
    builder: int | None = None  # the first of `jobs` (missing units only)
    estimate_s: float | None = None  # seconds to build, from the cache's recorded builds

    @property
    def cached(self) -> bool:
        return not self.missing

    @property
    def main(self) -> tuple[str, str]:
        """(cache stage, key) of what the unit is for: the source net, or the features (else the fine-tuned net)."""
        name = "source" if self.kind == "source" else "features" if "features" in self.keys else "finetune"
        return STAGE_OF[name], self.keys[name]


@dataclass
class Job:
    num: int  # hydra.job.num
    overrides: list[str]
    out_dir: str
    state: str  # run | done (ok with this config) | invalid (fails the config check; runs to record it)
    error: str | None = None
    source: str | None = None  # unit ids
    extract: str | None = None
    cfg: Any = field(default=None, repr=False, compare=False)  # the job's config (DictConfig), for source jobs
    probe_cost: str | None = None
    probe_estimate_s: float | None = None

    def units(self) -> list[str]:
        return [u for u in (self.source, self.extract) if u is not None]


@dataclass
class SweepPlan:
    jobs: list[Job]
    units: dict[str, Unit]
    cache_dir: str
    seconds: float = 0.0  # to plan

    def job(self, num: int) -> Job:
        return self._by_num[num]

    def __post_init__(self) -> None:
        self._by_num = {j.num: j for j in self.jobs}

    def missing(self, kind: str) -> list[Unit]:
        return [u for u in self.units.values() if u.kind == kind and not u.cached]

    def waits_on(self, job: Job) -> list[str]:
        """The missing units `job` needs and does not build itself (it must run after their builders)."""
        return [u for u in job.units() if not self.units[u].cached and self.units[u].builder != job.num]

    def builds(self, job: Job) -> list[str]:
        """The missing units `job` builds: its own, and with a replicate group every member's source net."""
        return [u.id for u in self.units.values() if not u.cached and u.builder == job.num]

    def group(self, job: Job) -> list[str]:
        """The source units `job` trains as one replicate group (empty: none, or a single net)."""
        built = [u for u in self.builds(job) if self.units[u].kind == "source"]
        return built if len(built) > 1 else []

    def to_json(self) -> str:
        return json.dumps({"cache_dir": self.cache_dir, "seconds": round(self.seconds, 3),
                           "units": [asdict(u) for u in self.units.values()],
                           "jobs": [{k: v for k, v in asdict(j).items() if k != "cfg"} for j in self.jobs]},
                          indent=1, default=str)


# --- building the plan ------------------------------------------------------------------------------------------


def job_out_dir(sweep_cfg: DictConfig) -> Path:
    return Path(str(sweep_cfg.hydra.sweep.dir)) / str(sweep_cfg.hydra.sweep.subdir)


def task_config(sweep_cfg: DictConfig, out_dir: Path | None = None) -> DictConfig:
    """A composed sweep job's config as its task function gets it (Hydra's run_job drops the `hydra` node) and as
    the job sets it before running (`src.main.job_config`), resolved: the plan reads every job's config several
    times (check, keys, hash), and resolving its interpolations once is most of what that costs. A deep copy (the
    same node types and flags as the job's own config) resolved in place: rebuilding it from a resolved plain
    container took twice as long."""
    from src.main import job_config

    cfg = copy.deepcopy(sweep_cfg)
    with read_write(cfg), open_dict(cfg):
        for key in [k for k in cfg if k != "hydra"]:  # with `hydra` still there: `${hydra.x}` resolves as in the job
            if OmegaConf.is_interpolation(cfg, key):
                cfg[key] = cfg[key]
            if OmegaConf.is_config(cfg[key]):
                OmegaConf.resolve(cfg[key])
        del cfg["hydra"]
    job_config(cfg, sweep_cfg.hydra, out_dir if out_dir is not None else job_out_dir(sweep_cfg))
    return cfg


def _unresolvable(sweep_cfg: DictConfig, e: Exception) -> str:
    """Why a job's config does not resolve, in one line: a ??? value it reads as the job's own check names it
    (target.root for target.data.root: ${..root}), else the resolver's error."""
    from src.check import missing_keys, required

    try:
        missing = [k for k in missing_keys(sweep_cfg) if not k.startswith("hydra.")]
    except Exception:  # noqa: BLE001  (the resolver's own error then)
        missing = []
    return required(sweep_cfg, missing) if missing else " ".join(f"{type(e).__name__}: {e}".split())


def _uses_hydra_resolver(cfg: DictConfig, overrides: Sequence[str]) -> bool:
    """Whether a job's config reads Hydra's own config (`${hydra:...}`): then each job's is set while it is
    planned, as it will be while it runs (a copy per job, which plain configs do not need)."""
    return any("${hydra:" in o for o in overrides) or "${hydra:" in OmegaConf.to_yaml(
        OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=False)


RANDOM_INIT = "random init"  # a model library's net without weights: its key has no digest (`src.keys`)


def weights_digest(plan, store: Store) -> str | None:
    """A pretrained source's weights digest (its key needs it), RANDOM_INIT for a model library's net at random
    init, None when the file is not there (the job fails with its own message)."""
    from src.cache import file_digest

    from src.models.external import weights_file  # arch=timm|torchvision|module|backbone

    try:
        path = weights_file(plan.spec)
    except ConfigError:
        return None
    return RANDOM_INIT if path is None else file_digest(path, store.root) if path.is_file() else None


def _labels(cfg: DictConfig, plan) -> tuple[str, str]:
    from src.record import width_label

    src = cfg.source
    what = (plan.spec.extra["label"] if plan.spec.extra else
            f"{plan.spec.family}/{width_label(cfg.width)} depth {plan.spec.depth} seed {cfg.seed} "
            f"({src.name}, {src.epochs} epochs)")
    tuned = f" finetune={cfg.finetune.name}" if cfg.finetune.name != "none" else ""
    return what, f"{what} -> {cfg.target.name}{tuned}"


class _Estimates:
    """Median recorded seconds per (stage, cost class) from the cache's `.timings/`."""

    def __init__(self, store: Store):
        self.store = store
        self._by: dict[str, dict[str | None, list[float]]] = {}

    def _records(self, stage: str) -> dict[str | None, list[float]]:
        if stage not in self._by:
            by: dict[str | None, list[float]] = {}
            for r in self.store.timings(stage):
                if isinstance(r.get("seconds"), (int, float)):
                    by.setdefault(r.get("cost"), []).append(float(r["seconds"]))
            self._by[stage] = by
        return self._by[stage]

    def get(self, stage: str, cost: str) -> float | None:
        """The median of this cost class's records, else None (unknown: other settings' builds say little about
        this one's, a 1-epoch tiny net's about a 10-epoch VGG's)."""
        by = self._records(stage)
        return statistics.median(by[cost]) if by.get(cost) else None


def plan_sweep(sweep_cfgs: Sequence[DictConfig], nums: Sequence[int] | None = None) -> SweepPlan:
    """The plan of a batch of composed sweep job configs (each with its `hydra` node and `hydra.job.num` set)."""
    from hydra.core.hydra_config import HydraConfig

    from src.check import validate
    from src.keys import cost_classes, stage_keys
    from src.main import previous_result

    t0 = time.perf_counter()
    jobs: list[Job] = []
    units: dict[str, Unit] = {}
    stores: dict[str, Store] = {}
    cache_dir = ""
    hydra_resolver: bool | None = None
    for i, sweep_cfg in enumerate(sweep_cfgs):
        num = int(nums[i]) if nums is not None else int(sweep_cfg.hydra.job.num)
        overrides = list(sweep_cfg.hydra.overrides.task)
        if hydra_resolver is None:
            hydra_resolver = _uses_hydra_resolver(sweep_cfg, ())
        if hydra_resolver or any("${hydra:" in o for o in overrides):
            HydraConfig.instance().set_config(sweep_cfg)  # `${hydra:...}` resolves as in the job
        out_dir = job_out_dir(sweep_cfg)
        try:
            cfg = task_config(sweep_cfg, out_dir)
            cache_dir = str(cfg.paths.cache_dir)
        except Exception as e:  # noqa: BLE001  (an interpolation that fails: the job records it)
            jobs.append(Job(num, overrides, str(out_dir), "invalid", error=_unresolvable(sweep_cfg, e)))
            continue
        if previous_result(out_dir, cfg) is not None:
            jobs.append(Job(num, overrides, str(out_dir), "done"))
            continue
        try:
            plan = validate(cfg, OmegaConf.to_container(cfg, resolve=True))  # (resolved already: one walk, not two)
        except ConfigError as e:
            jobs.append(Job(num, overrides, str(out_dir), "invalid", error=str(e)))
            continue
        store = stores.setdefault(cache_dir, Store(cache_dir))
        digest = weights_digest(plan, store) if plan.spec.pretrained else None
        if plan.spec.pretrained and digest is None:
            jobs.append(Job(num, overrides, str(out_dir), "invalid", error="pretrained weights file missing"))
            continue
        keys = stage_keys(cfg, plan, None if digest == RANDOM_INIT else digest)
        source_label, extract_label = _labels(cfg, plan)
        extract = "features" if keys["features"] else "finetune"
        cost = cost_classes(cfg, plan, ("probe", "source", extract))
        job = Job(num, overrides, str(out_dir), "run", cfg=cfg, probe_cost=cost["probe"])
        if not plan.spec.pretrained:  # a pretrained source is a file: nothing to build
            built = {k: keys[k] for k in ("source", "source_val_features") if keys[k]}
            job.source = _unit(units, store, "source", built, source_label, cost["source"], num)
        built = {k: keys[k] for k in ("finetune", "features") if keys[k]}
        if built:
            job.extract = _unit(units, store, "extract", built, extract_label, cost[extract], num)
        jobs.append(job)
    sweep = SweepPlan(jobs, units, cache_dir)
    _group_replicates(sweep)
    _estimate(sweep, stores)
    sweep.seconds = time.perf_counter() - t0
    return sweep


def _unit(units: dict[str, Unit], store: Store, kind: str, keys: dict[str, str], label: str, cost: str,
          num: int) -> str:
    main = keys.get("source") or keys.get("features") or keys["finetune"]
    uid = f"{kind}:{main}"
    if uid not in units:
        missing = [name for name, key in keys.items() if not store.complete(STAGE_OF[name], key)]
        units[uid] = Unit(uid, kind, keys, missing, label, cost)
    unit = units[uid]
    unit.jobs.append(num)
    if unit.missing and unit.builder is None:
        unit.builder = num
    return uid


def _group_replicates(sweep: SweepPlan) -> None:
    """Missing source nets of one config but their seeds (one cost class: `src.keys.cost_class`) whose builders ask
    for grouping (`trainer.group_replicates`, `src.train.grouping`) get one builder: the first of them, which trains
    them as one batched group (`src.experiment.build_source_group`). A job of such a group that fails the config
    check refuses the sweep here, before anything runs: the group would otherwise train without it and its job be
    recorded as failed, which a replicated study's verdict cannot use."""
    from src.train.grouping import wants_group

    groups: dict[str, list[Unit]] = {}
    for u in sweep.units.values():
        if u.kind == "source" and not u.cached and "source" in u.missing:
            cfg = sweep.job(u.builder).cfg
            if wants_group(cfg):
                groups.setdefault(u.cost + "|" + _run_settings(cfg), []).append(u)
    grouped = [g for g in groups.values() if len(g) > 1]
    if not grouped:
        return
    _refuse_bad_members(sweep, grouped)
    for members in grouped:
        lead = min(u.builder for u in members)
        for u in members:
            u.builder = lead


def _run_settings(cfg: DictConfig) -> str:
    """How a group trains, which is not in the source key but must be one for all its members."""
    t = cfg.trainer
    return f"{t.accelerator}|{t.precision}|{t.num_threads}"


def _refuse_bad_members(sweep: SweepPlan, grouped: list[list[Unit]]) -> None:
    def unseeded(overrides: Sequence[str]) -> tuple[str, ...]:
        return tuple(sorted(o for o in overrides if not o.split("=", 1)[0].lstrip("+~").endswith("seed")))

    members = {unseeded(sweep.job(n).overrides) for g in grouped for u in g for n in u.jobs}
    for job in sweep.jobs:
        if job.state == "invalid" and unseeded(job.overrides) in members:
            raise ConfigError(f"{job.error} (job {job.num}, a member of a replicate group that "
                              f"trainer.group_replicates trains together; fix it or set trainer.group_replicates=off)")


def _estimate(sweep: SweepPlan, stores: dict[str, Store]) -> None:
    est = _Estimates(stores.get(sweep.cache_dir) or Store(sweep.cache_dir or "."))
    for u in sweep.units.values():
        u.estimate_s = est.get(u.main[0], u.cost)
    for j in sweep.jobs:
        j.probe_estimate_s = est.get("probe", j.probe_cost) if j.probe_cost else None


# --- running it on local workers ----------------------------------------------------------------------------------


class LocalSchedule:
    """Which job a free local worker runs next: builders of missing source nets first, then builders of missing
    extractions, then the rest, each as soon as what it needs is built (never before: no worker waits on a lock).

    `finished(num)` is called when a job ends; a source net its builder did not leave in the cache fails the jobs
    that need it (returned with the reason, for the launcher to record), instead of each retraining it; an
    extraction a builder did not leave passes to the next job that needs it.
    """

    def __init__(self, plan: SweepPlan, store: Store | None = None):
        self.plan = plan
        self.store = store or Store(plan.cache_dir or ".")
        self.pending = [j.num for j in plan.jobs]  # in sweep order
        self.running: set[int] = set()
        self.done: set[int] = set()

    def _ready(self, num: int) -> bool:
        return all(self.plan.units[u].builder in self.done for u in self.plan.waits_on(self.plan.job(num)))

    def next(self) -> int | None:
        """The next job to start (None: none is ready now). Linear in the pending jobs and the units (a sweep of
        thousands of jobs asks once per job)."""
        builds: dict[int, set[str]] = {}  # builder -> the kinds of the missing units it builds
        for u in self.plan.units.values():
            if not u.cached and u.builder is not None:
                builds.setdefault(u.builder, set()).add(u.kind)

        def rank(n: int) -> int:
            kinds = builds.get(n, ())
            return 0 if "source" in kinds else 1 if kinds else 2

        ready = [(rank(n), i, n) for i, n in enumerate(self.pending) if self._ready(n)]
        if not ready:
            return None
        _, i, num = min(ready)
        del self.pending[i]
        self.running.add(num)
        return num

    def finished(self, num: int) -> list[tuple[int, str]]:
        """Mark `num` ended; returns (job num, reason) for the pending jobs that can no longer run."""
        self.running.discard(num)
        self.done.add(num)
        dropped: list[tuple[int, str]] = []
        for uid in self.plan.builds(self.plan.job(num)):
            unit = self.plan.units[uid]
            stage, key = unit.main
            if self.store.complete(stage, key):
                unit.missing = []
                continue
            waiting = [n for n in self.pending if uid in self.plan.job(n).units()]
            if unit.kind == "source":
                reason = f"source net {key} was not built: job {num}, which trains it, failed{_job_error(self.plan.job(num))}"
                for n in waiting:
                    self.pending.remove(n)
                    self.done.add(n)
                    dropped.append((n, reason))
            elif waiting:  # the next job that needs the extraction builds it
                unit.builder = waiting[0]
        return dropped

    def exhausted(self) -> bool:
        return not self.pending


def _job_error(job: Job) -> str:
    try:
        err = json.loads((Path(job.out_dir) / "result.json").read_text()).get("error") or {}
    except (OSError, json.JSONDecodeError):
        return ""
    return f" ({err.get('type')}: {str(err.get('message', ''))[:300]})" if err else ""


# --- what --plan prints -------------------------------------------------------------------------------------------


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else \
        f"{seconds:.1f}s"


def _ranges(nums: Iterable[int]) -> str:
    nums = sorted(nums)
    out: list[str] = []
    for n in nums:
        if out and out[-1][1] == n - 1:
            out[-1] = (out[-1][0], n)
        else:
            out.append((n, n))  # type: ignore[arg-type]
    return ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in out)  # type: ignore[misc]


def _total(units: list[Unit]) -> float | None:
    known = [u.estimate_s for u in units if u.estimate_s is not None]
    return sum(known) if len(known) == len(units) else None


def describe(plan: SweepPlan, launcher_lines: Sequence[str] = ()) -> str:
    """The plan as `--plan` prints it."""
    jobs = plan.jobs
    run = [j for j in jobs if j.state == "run"]
    done = [j for j in jobs if j.state == "done"]
    invalid = [j for j in jobs if j.state == "invalid"]
    lines = [f"sweep plan: {len(jobs)} jobs ({len(run)} to run, {len(done)} already done, {len(invalid)} fail the "
             f"config check) | cache {plan.cache_dir} | planned in {plan.seconds:.1f}s"]
    rows = [("stage", "distinct", "cached", "to build", "each", "total")]
    for kind, name in (("source", "source nets"), ("extract", "extractions")):
        us = [u for u in plan.units.values() if u.kind == kind]
        missing = [u for u in us if not u.cached]
        each = [u.estimate_s for u in missing if u.estimate_s is not None]
        total = _total(missing)
        rows.append((name, str(len(us)), str(len(us) - len(missing)), str(len(missing)),
                     _clock(statistics.median(each)) if each else "-" if not missing else "?",
                     _clock(total) if missing else "-"))
    probes = [j.probe_estimate_s for j in run if j.probe_estimate_s is not None]
    rows.append(("probes (jobs)", str(len(run)), "-", str(len(run)),
                 _clock(statistics.median(probes)) if probes else "?" if run else "-",
                 _clock(sum(probes)) if probes and len(probes) == len(run) else "?" if run else "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines += ["  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
              for r in rows]
    src_builders = sorted({u.builder for u in plan.missing("source")})
    ext_builders = sorted({u.builder for u in plan.missing("extract")} - set(src_builders))
    if src_builders or ext_builders:
        lines.append(f"  order: source builds first (jobs {_ranges(src_builders) or '-'}), then extractions (jobs "
                     f"{_ranges(ext_builders) or '-'}), then each job once what it needs is built")
    for u in plan.units.values():
        if u.kind != "source":
            continue
        state = "cached" if u.cached else f"to train, ~{_clock(u.estimate_s)}" if u.estimate_s \
            else "to train"
        group = plan.group(plan.job(u.builder)) if not u.cached else []
        if group:
            state += f", in a group of {len(group)} by job {u.builder}"
        lines.append(f"  source {u.keys['source']} {u.label} [{state}]: jobs {_ranges(u.jobs)}")
    for j in invalid:
        lines.append(f"  job {j.num} fails the config check: {j.error}")
    lines += [f"  {line}" for line in launcher_lines]
    return "\n".join(lines)


def write(plan: SweepPlan, sweep_dir: Path) -> None:
    from src.cache import atomic_write_text

    atomic_write_text(Path(sweep_dir) / PLAN_FILE, plan.to_json())


def train_group_first(cfgs: list | None) -> None:
    """A replicate group's builder job trains the group's source nets before it runs (`src.sweep_plan`; the local
    launchers call this). A group that fails is logged and the job runs as it would have: it trains its own net (or
    records why it cannot), and the schedule fails the jobs whose nets were not built, with the reason."""
    if not cfgs:
        return
    import logging

    from src.experiment import build_source_group

    try:
        build_source_group(cfgs)
    except Exception as e:  # noqa: BLE001  (the job itself records the error if it is its own)
        logging.getLogger(__name__).error("replicate group of %d source nets failed (%s: %s)", len(cfgs),
                                          type(e).__name__, e)


def after_group(cfgs: list | None, run, *args):
    """In a worker process (joblib): the job's replicate group first, then `run(*args)` (the job)."""
    train_group_first(cfgs)
    return run(*args)
