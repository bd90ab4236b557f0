"""Guards for the few places that change a framework's private internals (Hydra, OmegaConf, Optuna, torchvision).

Each such patch (`src.compose_once`, `src.config_copy`, `src.search.storage`, `src.job_plan`, `src.lazy_dynamo`,
`src.argv`'s reading of Hydra's argument parser, and the staged launchers in
`hydra_plugins/transferfactors_plugins/local_launchers.py`) declares a `Guard`: the distribution whose internals it
touches, the versions it was checked against, and an environment switch. `Guard.allowed()` is asked when the patch
is installed; the patch then either installs or leaves the framework's stock behaviour in place, saying why in one
log line:

  TRANSFER_PATCHES=0          every patch off (stock Hydra, OmegaConf, Optuna and torchvision behaviour)
  TRANSFER_PATCH_<NAME>=0     one patch off (e.g. TRANSFER_PATCH_CONFIG_COPY=0)

An installed version that is not on a patch's list turns that patch off (with a warning), so an upgrade can make
a sweep slower but never wrong: to re-enable it, run the patch's equivalence tests against the new version
(`tests/test_compose_once.py`, `tests/test_config_copy.py`, `tests/test_shared_study.py`, `tests/test_patches.py`,
`tests/test_job_overhead.py`, the staged-launcher tests) and add the version.
A leaf module: imports nothing of ours.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
from dataclasses import dataclass

log = logging.getLogger(__name__)
ALL = "TRANSFER_PATCHES"
_said: set[str] = set()  # a guard's reason is logged once per process


@dataclass(frozen=True)
class Guard:
    name: str  # e.g. "config_copy"
    package: str  # the distribution whose internals the patch touches
    versions: tuple[str, ...]  # the versions the patch's equivalence tests passed against
    stock: str  # what runs instead, for the log line

    @property
    def env(self) -> str:
        return f"TRANSFER_PATCH_{self.name.upper()}"

    def reason_off(self) -> str | None:
        """Why the patch must not be installed (None: it may)."""
        for var in (ALL, self.env):
            if os.environ.get(var, "").strip().lower() in ("0", "false", "no", "off"):
                return f"{var}={os.environ[var]}"
        try:
            version = importlib.metadata.version(self.package)
        except importlib.metadata.PackageNotFoundError:
            return f"{self.package} is not installed as a distribution"
        if version not in self.versions:
            return f"{self.package} {version} is not among the versions it was checked against ({', '.join(self.versions)})"
        return None

    def allowed(self) -> bool:
        reason = self.reason_off()
        if reason is not None and self.name not in _said:
            _said.add(self.name)
            # Turned off on purpose: info; by an unchecked version: a warning (the user may want the speed back).
            level = logging.INFO if reason.startswith(("TRANSFER_", ALL)) else logging.WARNING
            log.log(level, "patch %s off (%s): %s", self.name, reason, self.stock)
        return reason is None
