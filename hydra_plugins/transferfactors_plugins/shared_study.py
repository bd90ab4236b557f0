"""`hydra/sweeper=optuna_shared`: Hydra's Optuna sweeper on a heartbeat storage (src/search/storage.py), so that
many worker processes (or SLURM jobs) can share one study in one database and a dead worker's trial is failed."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf
from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
from omegaconf import DictConfig, OmegaConf


log = logging.getLogger(__name__)
SEARCH_NOT_PLANNED = ("an Optuna search is not planned: each trial trains the stages it needs, in the order the "
                      "sampler asks for them")


class SharedStudySweeper(OptunaSweeper):
    def __init__(self, storage: Any | None, heartbeat_interval: int, grace_period: int, **kwargs: Any) -> None:
        from hydra_plugins.transferfactors_plugins.staged import PlanShown, plan_only

        if plan_only():  # before the study exists: `--plan` creates no study and starts no heartbeat thread
            print(f"no plan: {SEARCH_NOT_PLANNED}")
            raise PlanShown()
        if isinstance(storage, str) and "://" in storage:
            from src.search.storage import open_storage

            storage = open_storage(storage, heartbeat_interval, grace_period)
        kwargs["sampler"] = _continued_seed(kwargs.get("sampler"), storage, kwargs.get("study_name"))
        self._config: DictConfig | None = None
        self._storage = storage
        super().__init__(storage=storage, **kwargs)

    def setup(self, *, hydra_context: Any, task_function: Any, config: DictConfig) -> None:
        self._config = config
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> None:
        if self._config is not None:
            # The search's own multirun.yaml, as Hydra's basic sweeper writes one for a grid: the report's command
            # block then shows the search command (not one trial's overrides) and reads the study's settings.
            sweep_dir = Path(str(self._config.hydra.sweep.dir))
            sweep_dir.mkdir(parents=True, exist_ok=True)
            OmegaConf.save(self._config, sweep_dir / "multirun.yaml")
        try:
            return super().sweep(arguments)
        except BaseException:
            # A launcher's error (a bad override found at launch) leaves the trials asked for it running: failed
            # here, so the study does not hold them as running until another worker's grace period ends.
            if hasattr(self._storage, "fail_running"):
                self._storage.fail_running()
            raise


def _continued_seed(sampler: Any, storage: Any, study_name: str | None) -> Any:
    """The sampler config, its seed moved on by the trials the study already holds. Running the same search command
    again adds trials to the same study; with the preset's fixed seed its random start-up trials would replay the
    first run's (same settings, same scores: trials spent on nothing new). The new seed is drawn from (seed, n), so
    a continued run stays reproducible from the study's state; not seed + n, which is the seed of the worker next
    to it (`python -m src.search.workers` gives worker i seed + i): worker 0 starting once worker 1 had made its
    first trial took worker 1's seed, and the two sampled the same settings."""
    import optuna

    seed = OmegaConf.select(sampler, "seed", default=None) if OmegaConf.is_config(sampler) else None
    if seed is None or storage is None or study_name is None:
        return sampler
    try:
        n = len(optuna.load_study(study_name=study_name, storage=storage).trials)
    except KeyError:  # no such study yet: the first run keeps its seed
        return sampler
    if not n:
        return sampler
    moved = continued_seed(int(seed), n)
    log.info("study %s has %d trials: the sampler seed moves from %d to %d, so this run samples new settings",
             study_name, n, int(seed), moved)
    return {**OmegaConf.to_container(sampler, resolve=True), "seed": moved}  # (read-only in Hydra's config)


def continued_seed(seed: int, n: int) -> int:
    """The sampler seed of a run that finds `n` trials in its study, given `seed`: distinct (seed, n) pairs give
    distinct seeds (a 32-bit draw), so workers with their own seeds never meet on one."""
    import numpy as np

    return int(np.random.SeedSequence([seed, n]).generate_state(1)[0])


def check_settings(config: DictConfig) -> None:
    """One-line ConfigError for Optuna sweeper settings that would fail only once trials have run (`src.argv` calls
    it on the config the command line composes, before Hydra writes anything): a direction
    Optuna does not know, a direction count other than the objective count (every trial's values are then refused,
    so the study ends with no trial), a negative `sampler.n_startup_trials` (TPE takes it as "no random start")."""
    from hydra_plugins.hydra_optuna_sweeper.config import Direction

    from src.errors import ConfigError
    from src.fields import Choice, Int

    sweeper = config.hydra.sweeper
    if "direction" not in sweeper:  # not an Optuna sweeper
        return
    given = sweeper.direction
    directions = [d.name if isinstance(d, Direction) else d for d in (given if OmegaConf.is_list(given) else [given])]
    valid = Choice([d.name for d in Direction])
    for d in directions:
        valid.check("hydra.sweeper.direction", d)
    objective = config.get("objective")
    names = [objective] if isinstance(objective, str) else list(objective or [])
    if len(directions) != len(names):
        raise ConfigError(f"hydra.sweeper.direction={_show(directions)} gives {len(directions)} direction(s) for "
                          f"{len(names)} objective(s) (objective={_show(names)}); give one per objective, in "
                          f"order, each one of {valid.valid()}")
    startup = OmegaConf.select(sweeper, "sampler.n_startup_trials", default=None)
    if startup is not None:
        Int(0, None).check("hydra.sweeper.sampler.n_startup_trials", startup)


def _show(names: list) -> str:
    return str(names[0]) if len(names) == 1 else f"[{','.join(map(str, names))}]"


@dataclass
class SharedStudySweeperConf(OptunaSweeperConf):
    _target_: str = "hydra_plugins.transferfactors_plugins.shared_study.SharedStudySweeper"
    # Seconds between a running trial's heartbeats, and without one before another worker fails the trial.
    heartbeat_interval: int = 10
    grace_period: int = 30


ConfigStore.instance().store(group="hydra/sweeper", name="optuna_shared", node=SharedStudySweeperConf,
                             provider="transferfactors")
