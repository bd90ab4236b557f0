"""Architecture specs and the tap (layer) vocabulary, without importing torch.

This is the one place that knows, for each family, which depths exist, how wide each layer is and which
layer names a user may tap. The torch builders (`src.models.nets`) consume these specs, and the config
check (`src.check`) uses them to validate `layer`, `depth` and PCA sizes before any expensive work.

Width multipliers scale every conv channel count and fc unit count of the family's reference net:
  alexnet  reference conv channels (64, 192, 384, 256, 256), fc6/fc7 4096 units (torchvision's AlexNet)
  vgg      reference stage channels (64, 128, 256, 512, 512), fc6/fc7 4096 units
Depth counts weight layers as the papers do: vgg depth d has d - 3 conv layers plus fc6, fc7, fc8.
All conv blocks use BatchNorm so that short CPU schedules train reliably at every depth.
"""

from __future__ import annotations

from dataclasses import dataclass

ALEXNET_CHANNELS = (64, 192, 384, 256, 256)
VGG_CHANNELS = (64, 128, 256, 512, 512)
FC_UNITS = 4096
# Convs per stage for each vgg depth (weight layers = convs + 3 fc).
VGG_STAGES = {
    8: (1, 1, 1, 1, 1),
    11: (1, 1, 2, 2, 2),
    13: (2, 2, 2, 2, 2),
    16: (2, 2, 3, 3, 3),
    19: (2, 2, 4, 4, 4),
}
FAMILY_DEPTHS = {"alexnet": (8,), "vgg": tuple(VGG_STAGES)}
DEFAULT_DEPTH = {"alexnet": 8, "vgg": 11}
# Spatial size the adaptive pool before fc6 produces, per family.
POOL_OUT = {"alexnet": 2, "vgg": 1}
POOLINGS = {"avg": 1, "max": 1, "spp": 5}  # feature-dim factor of each conv pooling (spp = 1x1 + 2x2 grid)


@dataclass(frozen=True)
class ConvSpec:
    name: str  # tap name, e.g. "conv3"
    out_channels: int
    kernel: int
    pool_after: bool  # a 2x2 max pool follows this conv (after its ReLU)


@dataclass(frozen=True)
class ArchSpec:
    family: str
    depth: int
    convs: tuple[ConvSpec, ...]
    fc_units: int
    pool_out: int
    num_classes: int

    @property
    def fc_in(self) -> int:
        return self.convs[-1].out_channels * self.pool_out**2

    def taps(self) -> list[str]:
        """Every layer name a user may ask for, input side first (`conv_last` is an alias)."""
        return [c.name for c in self.convs] + ["conv_last", "fc6", "fc7", "fc8"]

    def resolve(self, layer: str) -> str:
        """Canonical tap for a layer name (aliases resolved); raises ValueError listing the valid ones."""
        if layer not in self.taps():
            raise ValueError(
                f"layer={layer!r} does not exist in arch={self.family} depth={self.depth}; "
                f"valid layers: {', '.join(self.taps())}"
            )
        return self.convs[-1].name if layer == "conv_last" else layer

    def is_conv(self, tap: str) -> bool:
        return tap.startswith("conv")

    def tap_dim(self, layer: str, pooling: str = "avg") -> int:
        tap = self.resolve(layer)
        if self.is_conv(tap):
            channels = next(c.out_channels for c in self.convs if c.name == tap)
            return channels * POOLINGS[pooling]
        return {"fc6": self.fc_units, "fc7": self.fc_units, "fc8": self.num_classes}[tap]

    def layer_index(self, layer: str) -> int:
        """Position of a layer from the input (1-based); the ordinal used by reports."""
        return self.taps().index(self.resolve(layer)) + 1


def scaled(n: int, width: float) -> int:
    return max(4, int(round(n * width)))


def arch_spec(family: str, depth: int | None, width: float, num_classes: int) -> ArchSpec:
    """The spec for a family at a given depth (None = the family's default) and width multiplier."""
    if family not in FAMILY_DEPTHS:
        raise ValueError(f"arch={family!r} is unknown; valid archs: {', '.join(FAMILY_DEPTHS)}")
    depth = DEFAULT_DEPTH[family] if depth is None else int(depth)
    if depth not in FAMILY_DEPTHS[family]:
        raise ValueError(
            f"depth={depth} is not available for arch={family}; valid depths: "
            f"{', '.join(map(str, FAMILY_DEPTHS[family]))}"
        )
    if not width > 0:
        raise ValueError(f"width multiplier must be positive, got {width}")
    if family == "alexnet":
        kernels = (5, 5, 3, 3, 3)
        pools = (True, True, False, False, True)
        convs = tuple(
            ConvSpec(f"conv{i + 1}", scaled(c, width), k, p)
            for i, (c, k, p) in enumerate(zip(ALEXNET_CHANNELS, kernels, pools))
        )
    else:
        convs_list = []
        for stage, (channels, n) in enumerate(zip(VGG_CHANNELS, VGG_STAGES[depth])):
            for j in range(n):
                convs_list.append(
                    ConvSpec(f"conv{len(convs_list) + 1}", scaled(channels, width), 3, j == n - 1)
                )
        convs = tuple(convs_list)
    return ArchSpec(family, depth, convs, scaled(FC_UNITS, width), POOL_OUT[family], int(num_classes))
