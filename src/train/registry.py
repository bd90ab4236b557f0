"""What source training and fine-tuning may be configured with: optimisers (`trainer.optim.name`,
`finetune.optimizer`) and batch augmentations (`source.augment`, `finetune.augment`). Torch-free registries (the
config check reads the names); an entry's torch code is imported only when a net is trained.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping

from src.registry import Registry

OPTIMIZERS = Registry("trainer.optim.name", "optimizers")  # name -> (params, optim cfg) -> torch optimizer
AUGMENTS = Registry("source.augment", "augmentations")  # name -> "module:function" on a uint8 batch, or None


def _sgd(params, o: Mapping[str, Any]):
    import torch

    return torch.optim.SGD(params, lr=o["lr"], momentum=o.get("momentum", 0.9), nesterov=True,
                           weight_decay=o["weight_decay"])


def _adamw(params, o: Mapping[str, Any]):
    import torch

    return torch.optim.AdamW(params, lr=o["lr"], weight_decay=o["weight_decay"])


OPTIMIZERS.register("sgd", _sgd)  # Nesterov momentum
OPTIMIZERS.register("adamw", _adamw)
# Every option an optimiser reads beyond the ones every training reads (lr, weight_decay, batch_size,
# label_smoothing), including those another optimiser reads too (an RMSprop would list momentum and alpha). An option
# that some optimiser lists and this one does not is inert under this one, so it stays out of the trained net's
# cache key. An optimiser registered without an entry here keeps every option in the key.
OWN_OPTIONS: dict[str, tuple[str, ...]] = {"sgd": ("momentum",), "adamw": ()}
AUGMENTS.register("flip_crop", "src.train.source:augment_batch")  # random horizontal flip + padded random crop
AUGMENTS.register("none", None)


def is_float32(precision: Any) -> bool:
    """Whether `trainer.precision` names float32 training (Lightning's `32-true`, or `32` as typed)."""
    return str(precision) in ("32-true", "32")


def read_options(name: Any, options: Mapping[str, Any]) -> dict[str, Any]:
    """`options` without the other optimisers' own options that optimiser `name` does not read (a cache key's
    view of `trainer.optim` or `finetune`: AdamW's nets do not differ by momentum)."""
    if name not in OWN_OPTIONS:
        return dict(options)
    inert = {o for own in OWN_OPTIONS.values() for o in own} - set(OWN_OPTIONS[name])
    return {k: v for k, v in options.items() if k not in inert}


def augmentation(name: str) -> Callable | None:
    """The batch function of a registered augmentation (None: the batch as it is)."""
    target = AUGMENTS.get_valid(name)
    if target is None:
        return None
    module, _, fn = target.partition(":")
    return getattr(importlib.import_module(module), fn)
