"""This project's Hydra plugins (Hydra only instantiates plugins from the `hydra_plugins` namespace):

- `slurm_launcher.IsolatingSlurmLauncher`: `hydra/launcher=slurm` (conf/hydra/launcher/slurm.yaml).
- `shared_study.SharedStudySweeper`: `hydra/sweeper=optuna_shared`, the Optuna sweeper of the `search=` presets,
  with heartbeats so that many worker processes can share one study (src/search/storage.py).

Hydra imports every module here at start-up: they import no torch and no Optuna at module level.
"""
