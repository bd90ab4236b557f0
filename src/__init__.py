"""transferfactors: Hydra sweeps over the factors of transferability of ConvNet representations."""

import os
from pathlib import Path

# numpy and scipy each bring their own OpenBLAS, and torch its OpenMP pool. OpenBLAS's idle workers spin for 2^28
# cycles (~0.1 s) after every threaded call, so on a few cores the next library's threads (scipy's Cholesky after
# numpy's GEMM, the torch probe after the numpy estimators) run against busy-waiting ones and a job's estimates and
# probe slow down by up to 2x. 2^20 cycles (~0.4 ms) keeps back-to-back calls of one library warm. Read when
# OpenBLAS loads, so it is set before anything imports numpy; a value the user set wins.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "20")

from omegaconf import OmegaConf  # noqa: E402  (after the environment above)

REPO_ROOT = Path(__file__).resolve().parent.parent

# `${repo_root:}` in conf/paths: the cache defaults to <repo>/.cache wherever the command is run from.
OmegaConf.register_resolver("repo_root", lambda: str(REPO_ROOT), replace=True)
# `${int_div:a,b}`: e.g. images_per_class = total // num_classes in the diversity/density study.
OmegaConf.register_resolver("int_div", lambda a, b: int(a) // int(b), replace=True)
