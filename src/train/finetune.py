"""Fine-tuning (`finetune=last|full`): start from the cached source net, replace its head, train on the target.

`last` trains only the new head (the backbone, BatchNorm statistics included, stays as pretrained); `full`
trains every layer. The fine-tuned weights are cached under their own key (source key, snapshot, target data,
finetune config, seed). Classification targets are scored with the fine-tuned net's own predictions;
retrieval targets are re-tapped with it and ranked like any other features.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pytorch_lightning as pl
import torch

from src.models.registry import get_arch
from src.models.spec import ArchSpec
from src.train import snapshot_file
from src.train.source import ClassifierModule, fit


def replace_head(model: torch.nn.Module, spec: ArchSpec, num_classes: int) -> torch.nn.Module:
    impl = get_arch(spec.family).torch()
    if hasattr(impl, "replace_head"):  # a model library's own way (timm's reset_classifier)
        return impl.replace_head(model, spec, num_classes)
    path = impl.head_path(spec)
    parent_path, _, name = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    old = getattr(parent, name)
    new = torch.nn.Linear(old.in_features, num_classes)
    setattr(parent, name, new)
    return new


def finetune(
    out_dir: Path,
    model: torch.nn.Module,
    spec: ArchSpec,
    splits: Mapping[str, tuple[np.ndarray, np.ndarray]],
    ft_cfg: Mapping[str, Any],
    trainer_cfg: Mapping[str, Any],
    preprocess: Callable[[torch.Tensor], torch.Tensor],
    seed: int,
    loggers: Sequence = (),
) -> dict[str, Any]:
    """Fine-tune `model` on splits["train"] (val for monitoring) into `out_dir`; writes weights + metrics."""
    pl.seed_everything(seed, workers=True, verbose=False)
    n_classes = int(max(y.max() for _, y in splits.values()) + 1)
    head = replace_head(model, spec, n_classes)
    if ft_cfg["name"] == "last":
        for p in model.parameters():
            p.requires_grad_(False)
        for p in head.parameters():
            p.requires_grad_(True)
        trainable = list(head.parameters())
    else:
        trainable = None
        model.train()
    steps = math.ceil(len(splits["train"][1]) / ft_cfg["batch_size"])
    optim = {"name": ft_cfg["optimizer"], "lr": ft_cfg["lr"], "momentum": ft_cfg.get("momentum", 0.9),
             "weight_decay": ft_cfg["weight_decay"]}
    module = ClassifierModule(
        model, optim, ft_cfg.get("augment", "flip_crop"), int(ft_cfg["epochs"]) * steps, preprocess, trainable,
        what="fine-tuning", lr_key="finetune.lr",
    )
    metrics = fit(module, splits, out_dir, int(ft_cfg["epochs"]), ft_cfg["batch_size"], trainer_cfg, seed, loggers)
    # Only the final weights are kept: the per-epoch snapshots of a fine-tuning run are not an axis.
    last = snapshot_file(out_dir, int(ft_cfg["epochs"]))
    last.rename(out_dir / "finetuned.pt")
    for p in out_dir.glob("snapshot_*.pt"):
        p.unlink()
    metrics["num_classes"] = n_classes
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return metrics


def load_finetuned(entry: Path, model: torch.nn.Module, spec: ArchSpec, num_classes: int) -> torch.nn.Module:
    replace_head(model, spec, num_classes)
    model.load_state_dict(torch.load(entry / "finetuned.pt", map_location="cpu", weights_only=True))
    return model.eval()


@torch.inference_mode()
def predict(model: torch.nn.Module, images: np.ndarray, preprocess, batch_size: int = 256,
            device: str = "cpu") -> np.ndarray:
    model = model.to(device)
    out = [model(preprocess(torch.from_numpy(images[i : i + batch_size]).to(device))).argmax(1).cpu().numpy()
           for i in range(0, len(images), batch_size)]
    return np.concatenate(out)
