"""transferfactors: Hydra sweeps over the factors of transferability of ConvNet representations."""

from pathlib import Path

from omegaconf import OmegaConf

REPO_ROOT = Path(__file__).resolve().parent.parent

# `${repo_root:}` in conf/paths: the cache defaults to <repo>/.cache wherever the command is run from.
OmegaConf.register_resolver("repo_root", lambda: str(REPO_ROOT), replace=True)
# `${int_div:a,b}`: e.g. images_per_class = total // num_classes in the diversity/density study.
OmegaConf.register_resolver("int_div", lambda a, b: int(a) // int(b), replace=True)
