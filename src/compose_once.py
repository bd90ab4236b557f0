"""Compose each sweep job's config once, not twice.

Hydra's basic sweeper first composes every job of a batch to fail early on a bad override
(`Sweeper.validate_batch_is_legal`), then the launcher composes each job again to run it: with this config tree a
composition takes ~0.18 s on the 2-core CPU, so `experiment=layer_study` (56 jobs) spent ~10 s composing configs
it had already composed. `install()` keeps the configs the validation composed and hands each to the launcher's
identical `load_sweep_config` call, once, when the launcher runs the jobs in this process (Hydra's basic one);
anything else (another override list, a second call, joblib or SLURM jobs) composes as before. The validation
itself is unchanged, so bad input still fails before any job runs.
"""

from __future__ import annotations

from typing import Any

_composed: dict[tuple, Any] = {}  # (loader, master config, overrides) -> the config the validation composed


def _key(loader: Any, master_config: Any, overrides: Any) -> tuple:
    return id(loader), id(master_config), tuple(overrides)


def install() -> None:
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.core_plugins.basic_launcher import BasicLauncher
    from hydra.plugins.sweeper import Sweeper

    if getattr(Sweeper.validate_batch_is_legal, "_compose_once", False):
        return
    compose, check = ConfigLoaderImpl.load_sweep_config, Sweeper.validate_batch_is_legal

    def validate_batch_is_legal(self, batch) -> None:
        _composed.clear()
        if not isinstance(getattr(self, "launcher", None), BasicLauncher):  # jobs composed in other processes
            return check(self, batch)  # (joblib, SLURM): keep nothing
        loader = self.hydra_context.config_loader
        for overrides in batch:
            _composed[_key(loader, self.config, overrides)] = loader.load_sweep_config(self.config, list(overrides))

    def load_sweep_config(self, master_config, sweep_overrides):
        cfg = _composed.pop(_key(self, master_config, sweep_overrides), None)
        return cfg if cfg is not None else compose(self, master_config, sweep_overrides)

    validate_batch_is_legal._compose_once = True
    Sweeper.validate_batch_is_legal = validate_batch_is_legal
    ConfigLoaderImpl.load_sweep_config = load_sweep_config
