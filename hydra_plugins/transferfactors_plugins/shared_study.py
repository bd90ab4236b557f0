"""`hydra/sweeper=optuna_shared`: Hydra's Optuna sweeper on a heartbeat storage (src/search/storage.py), so that
many worker processes (or SLURM jobs) can share one study in one database and a dead worker's trial is failed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf
from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper


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


@dataclass
class SharedStudySweeperConf(OptunaSweeperConf):
    _target_: str = "hydra_plugins.transferfactors_plugins.shared_study.SharedStudySweeper"
    # Seconds between a running trial's heartbeats, and without one before another worker fails the trial.
    heartbeat_interval: int = 10
    grace_period: int = 30


ConfigStore.instance().store(group="hydra/sweeper", name="optuna_shared", node=SharedStudySweeperConf,
                             provider="transferfactors")
