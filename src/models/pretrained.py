"""Torchvision ImageNet networks users bring (`arch=tv_alexnet|tv_vgg16|tv_resnet50`, `source=imagenet_torchvision`).

Weights come from `source.weights_path` or from torch hub's cache (`$TORCH_HOME/hub/checkpoints/`, the file name
torchvision's weights enum gives). Nothing is downloaded unless `source.download=true`. Inputs get the weights'
own preprocessing (resize, centre crop, ImageNet mean/std). Our layer vocabulary maps onto their modules through
`src.models.spec.TORCHVISION_NETS`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
import torchvision

from src.errors import ConfigError
from src.models.registry import arch_spec
from src.models.spec import TORCHVISION_NETS, ArchSpec


class MissingWeightsError(ConfigError, FileNotFoundError):
    """Pretrained weights are not on disk and downloading was not allowed (a one-line user error)."""


def weights_enum(arch: str, weights_name: str = "DEFAULT"):
    enum = torchvision.models.get_model_weights(TORCHVISION_NETS[arch][0])
    return enum[weights_name] if weights_name != "DEFAULT" else enum.DEFAULT


def weights_file(arch: str, source_cfg: Mapping[str, Any]) -> Path:
    """Where the state dict is expected: `weights_path` if given, else torch hub's checkpoint cache."""
    if source_cfg.get("weights_path"):
        return Path(os.path.expanduser(str(source_cfg["weights_path"])))
    w = weights_enum(arch, source_cfg.get("weights", "DEFAULT"))
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(w.url).name


def ensure_weights(arch: str, source_cfg: Mapping[str, Any]) -> Path:
    """The weights file on disk: downloaded into torch hub's cache only if `download=true`, else a one-line error."""
    w = weights_enum(arch, source_cfg.get("weights", "DEFAULT"))
    path = weights_file(arch, source_cfg)
    if not path.is_file() and source_cfg.get("download") and not source_cfg.get("weights_path"):
        w.get_state_dict(progress=True)  # torch hub saves it at `path`
    if not path.is_file():
        raise MissingWeightsError(
            f"pretrained weights for arch={arch} not found at {path}; put the file there (download {w.url}), "
            f"set source.weights_path=..., or run once with source.download=true"
        )
    return path


def load_pretrained(arch: str, source_cfg: Mapping[str, Any]) -> torch.nn.Module:
    model = torchvision.models.get_model(TORCHVISION_NETS[arch][0], weights=None)
    path = ensure_weights(arch, source_cfg)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as e:  # not a state dict, another arch's, truncated: name the file, not torch's internals
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{path} is not a usable state dict for arch={arch} ({first[:200]}); "
                          f"point source.weights_path at torchvision's {arch[3:]} weights") from None
    return model.eval()


def preprocess_for(arch: str, source_cfg: Mapping[str, Any]) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 (N, 3, H, W) -> the weights' own transform (resize, crop, normalise), batched."""
    transform = weights_enum(arch, source_cfg.get("weights", "DEFAULT")).transforms(antialias=True)

    def prep(x: torch.Tensor) -> torch.Tensor:
        return transform(x.float() / 255.0).contiguous(memory_format=torch.channels_last)

    return prep


def tap_nodes(arch: str | ArchSpec) -> dict[str, str]:
    """Our tap name -> torchvision's module path (`arch`: a name or its spec)."""
    return dict((arch if isinstance(arch, ArchSpec) else arch_spec(arch, None, 1.0, 1000)).nodes)


# --- the arch registry's torch-side protocol (src.models.registry) -----------------------------------------


def load(spec: ArchSpec, source_cfg: Mapping[str, Any], weights_file: Path | None = None) -> torch.nn.Module:
    return load_pretrained(spec.family, source_cfg)


def preprocess(spec: ArchSpec, source_cfg: Mapping[str, Any]) -> Callable[[torch.Tensor], torch.Tensor]:
    return preprocess_for(spec.family, source_cfg)


def head_path(spec: ArchSpec) -> str:
    return spec.head
