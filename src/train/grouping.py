"""Whether a sweep trains the replicate source nets of one config as one batched group (`src.train.group`):
`trainer.group_replicates`. Torch-free (the sweep's plan reads it), apart from asking torch whether it sees a GPU
when `auto` meets `trainer.accelerator=auto`.

  off   every source net trains on its own;
  on    replicates of one config (configs that differ only in seeds) train as one group wherever they run;
  auto  on where a group wins: on a GPU, where one small net leaves the GPU mostly idle. Not on the CPU, where a
        training step is compute-bound and R nets together take longer than R nets one after another
        (`benchmarks/group_replicates.py` measures it on the machine it runs on).

A group trains in float32 (`trainer.precision=32-true`); other precisions train each net on its own.
"""

from __future__ import annotations

from src.train.registry import is_float32

GROUP_MODES = ("auto", "on", "off")


def wants_group(cfg) -> bool:
    """Whether this job's source net would be trained in a replicate group (when it has replicates to group)."""
    trainer = cfg.trainer
    mode = trainer.get("group_replicates") or "auto"
    if mode == "off" or not is_float32(trainer.precision):
        return False
    return mode == "on" or _sees_gpu(str(trainer.accelerator))


def _sees_gpu(accelerator: str) -> bool:
    if accelerator == "cpu":
        return False
    if accelerator in ("gpu", "cuda"):
        return True
    import torch  # accelerator=auto: only here does the plan need torch

    return torch.cuda.is_available()
