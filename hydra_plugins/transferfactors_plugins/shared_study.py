"""`hydra/sweeper=optuna_shared`: Hydra's Optuna sweeper on a heartbeat storage (src/search/storage.py), so that
many worker processes (or SLURM jobs) can share one study in one database and a dead worker's trial is failed."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf
from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper


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
        super().__init__(storage=storage, **kwargs)

    def sweep(self, arguments: list[str]) -> None:
        self._reseed_when_continued()
        self._save_record()
        return super().sweep(arguments)

    def _save_record(self) -> None:
        """The search's own multirun.yaml, as Hydra's basic sweeper writes one for a grid: the report's command
        block then shows the search command (not one trial's overrides) and reads the study's report settings."""
        from pathlib import Path

        from omegaconf import OmegaConf

        config = getattr(getattr(self, "sweeper", None), "config", None)
        if config is None:
            return
        sweep_dir = Path(str(config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(config, sweep_dir / "multirun.yaml")

    def _reseed_when_continued(self) -> None:
        """Running the same search command again adds trials to the same study; with the preset's fixed sampler
        seed its random start-up trials would replay the first run's (same settings, same scores: trials spent on
        nothing new). A study that already has trials gets a sampler with a fresh random state instead."""
        import optuna

        impl = getattr(self, "sweeper", None)  # hydra-optuna-sweeper's implementation object
        if impl is None or impl.storage is None or impl.study_name is None:
            return
        try:
            study = optuna.load_study(study_name=impl.study_name, storage=impl.storage)
        except KeyError:  # no such study yet: the first run keeps the seed (reproducible)
            return
        if study.trials and hasattr(impl.sampler, "reseed_rng"):
            impl.sampler.reseed_rng()
            log.info("study %s has %d trials: its sampler is reseeded so that this run samples new settings",
                     impl.study_name, len(study.trials))


@dataclass
class SharedStudySweeperConf(OptunaSweeperConf):
    _target_: str = "hydra_plugins.transferfactors_plugins.shared_study.SharedStudySweeper"
    # Seconds between a running trial's heartbeats, and without one before another worker fails the trial.
    heartbeat_interval: int = 10
    grace_period: int = 30


ConfigStore.instance().store(group="hydra/sweeper", name="optuna_shared", node=SharedStudySweeperConf,
                             provider="transferfactors")
