"""Torch side of the families trained here: the ConvNet and ResNet modules our registered families build, and the
arch registry's torch-side protocol (load / tap_nodes / preprocess / head_path) for every trained family.

Module names are the tap vocabulary: `features.conv3` is the output of conv3's block (after its ReLU),
`fc6`/`fc7` the outputs after their ReLUs, `fc8` the logits; for resnet `stage1`..`stage4`, `pool`, `logits`.
Feature extraction asks torchvision's `create_feature_extractor` for the spec's graph nodes (`ArchSpec.nodes`), so
the spec's vocabulary and the modules agree by construction.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from src.models.spec import ArchSpec

# Inputs are uint8 in [0, 255]; this maps them to roughly zero mean, unit variance.
PIXEL_MEAN, PIXEL_STD = 127.5, 64.0


def to_input(x: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> normalised float32 in channels_last layout (faster convs on CPU)."""
    x = (x.float() - PIXEL_MEAN) / PIXEL_STD
    return x.contiguous(memory_format=torch.channels_last)


def _conv_block(c_in: int, c_out: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False),
            bn=nn.BatchNorm2d(c_out),
            relu=nn.ReLU(inplace=True),
        )
    )


def _fc(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(OrderedDict(linear=nn.Linear(c_in, c_out), relu=nn.ReLU(inplace=True)))


class ConvNet(nn.Module):
    """AlexNet- and VGG-style nets: conv blocks, adaptive average pool, fc6, fc7, fc8."""

    def __init__(self, spec: ArchSpec, dropout: float = 0.5):
        super().__init__()
        self.spec = spec
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        c_in = 3
        for c in spec.convs:
            layers[c.name] = _conv_block(c_in, c.out_channels, c.kernel)
            if c.pool_after:
                layers[f"pool_{c.name}"] = nn.MaxPool2d(2)
            c_in = c.out_channels
        self.features = nn.Sequential(layers)
        self.avgpool = nn.AdaptiveAvgPool2d(spec.pool_out)
        self.fc6 = _fc(spec.fc_in, spec.fc_units)
        self.drop6 = nn.Dropout(dropout)
        self.fc7 = _fc(spec.fc_units, spec.fc_units)
        self.drop7 = nn.Dropout(dropout)
        self.fc8 = nn.Linear(spec.fc_units, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x)).flatten(1)
        x = self.drop6(self.fc6(x))
        x = self.drop7(self.fc7(x))
        return self.fc8(x)


class BasicBlock(nn.Module):
    """3x3-3x3 residual block with a 1x1 projection shortcut when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = (
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
            if stride != 1 or c_in != c_out
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR-style residual net: 3x3 stem, four stages (stride 1, 2, 2, 2), global average pool, logits."""

    def __init__(self, spec: ArchSpec):
        super().__init__()
        self.spec = spec
        c0 = spec.stages[0][0]
        self.stem = _conv_block(3, c0, 3)
        c_in = c0
        for i, (c, blocks) in enumerate(spec.stages):
            layers = [BasicBlock(c_in if b == 0 else c, c, (1 if i == 0 else 2) if b == 0 else 1) for b in range(blocks)]
            self.add_module(f"stage{i + 1}", nn.Sequential(*layers))
            c_in = c
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.logits = nn.Linear(c_in, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for i in range(len(self.spec.stages)):
            x = getattr(self, f"stage{i + 1}")(x)
        return self.logits(self.pool(x))


def build_model(spec: ArchSpec) -> nn.Module:
    """A freshly initialised net of a trained family, by its registered builder (pretrained ones: src.models.external)."""
    from src.models.registry import get_arch

    return get_arch(spec.family).build(spec)


# --- the arch registry's torch-side protocol (src.models.registry) for every family trained here --------------


def load(spec: ArchSpec, source_cfg: Mapping[str, Any] | None = None, weights_file: Path | None = None) -> nn.Module:
    """The net in eval mode, with the weights of `weights_file` (a snapshot state_dict) if given."""
    model = build_model(spec)
    if weights_file is not None:
        model.load_state_dict(torch.load(weights_file, map_location="cpu", weights_only=True))
    return model.eval().to(memory_format=torch.channels_last)


def tap_nodes(spec: ArchSpec) -> dict[str, str]:
    """Graph node name for every canonical tap (aliases such as conv_last are resolved by the spec)."""
    return dict(spec.nodes)


def preprocess(spec: ArchSpec, source_cfg: Mapping[str, Any] | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    return to_input


def head_path(spec: ArchSpec) -> str:
    return spec.head
