"""Torch builders for the ConvNet families described in `src.models.spec`.

Module names are the tap vocabulary: `features.conv3` is the output of conv3's block (after its ReLU),
`fc6`/`fc7` the outputs after their ReLUs, `fc8` the logits. Feature extraction asks torchvision's
`create_feature_extractor` for exactly these node names, so the spec's vocabulary and the modules agree by
construction.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from src.models.spec import ArchSpec


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

    def tap_nodes(self) -> dict[str, str]:
        """Graph node name for every canonical tap (aliases such as conv_last are resolved by the spec)."""
        nodes = {c.name: f"features.{c.name}" for c in self.spec.convs}
        nodes.update(fc6="fc6", fc7="fc7", fc8="fc8")
        return nodes


def build_model(spec: ArchSpec) -> ConvNet:
    return ConvNet(spec)


def min_input_size(spec: ArchSpec) -> int:
    """Smallest input side that survives the net's 2x2 max pools."""
    return 2 ** sum(c.pool_after for c in spec.convs)
