"""Architecture specs and the tap (layer) vocabulary, without importing torch.

This is the one place that knows, for each family, which depths exist, how wide each layer is and which
layer names a user may tap. The arch registry (`src.models.registry`) serves these specs to the torch builders
(`src.models.nets`, `src.models.pretrained`) and to the config check, which validates `layer`, `depth` and PCA
sizes with them before any expensive work.

Families built by our code (width and depth are free axes; BatchNorm in every conv so short CPU schedules train):
  alexnet  5 conv layers + fc6, fc7, fc8; reference widths = torchvision's AlexNet (64, 192, 384, 256, 256; fc 4096)
  vgg      3x3 conv stacks, depth = weight layers (8, 11, 13, 16, 19; conv layers = depth - 3), + fc6, fc7, fc8
  resnet   basic-block residual net, 4 stages (64, 128, 256, 512 at width 1), depth = 8n + 2 (10, 18, 26)
Width multipliers scale every channel and fc unit count of the family's reference net.
Pretrained torchvision ImageNet nets users bring (fixed width/depth): tv_alexnet, tv_vgg16, tv_resnet50.

Vocabulary: alexnet/vgg `conv1..convN`, `conv_last` (alias of the last conv for our nets; pool5 for
torchvision's), `fc6`, `fc7`, `fc8`; resnet `stage1..stage4`, `pool`, `logits`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ALEXNET_CHANNELS = (64, 192, 384, 256, 256)
VGG_CHANNELS = (64, 128, 256, 512, 512)
RESNET_CHANNELS = (64, 128, 256, 512)
FC_UNITS = 4096
# Convs per stage for each vgg depth (weight layers = convs + 3 fc).
VGG_STAGES = {
    8: (1, 1, 1, 1, 1),
    11: (1, 1, 2, 2, 2),
    13: (2, 2, 2, 2, 2),
    16: (2, 2, 3, 3, 3),
    19: (2, 2, 4, 4, 4),
}
RESNET_BLOCKS = {10: 1, 18: 2, 26: 3}  # basic blocks per stage; depth = 2 * 4 * blocks + 2
FAMILY_DEPTHS = {"alexnet": (8,), "vgg": tuple(VGG_STAGES), "resnet": tuple(RESNET_BLOCKS)}
DEFAULT_DEPTH = {"alexnet": 8, "vgg": 11, "resnet": 10}
POOL_OUT = {"alexnet": 2, "vgg": 1}  # spatial size of the adaptive pool before fc6
POOLINGS = {"avg": 1, "max": 1, "spp": 5}  # feature-dim factor of each conv pooling (spp = 1x1 + 2x2 grid)

# Torchvision ImageNet nets: tap -> (module path in torchvision's model, dim, spatial?).
TV_VGG16_CONVS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def _tv_vgg16_taps() -> dict[str, tuple[str, int, bool]]:
    taps, idx, n = {}, 0, 0
    for v in TV_VGG16_CONVS:
        if v == "M":
            idx += 1
            continue
        n += 1
        taps[f"conv{n}"] = (f"features.{idx + 1}", v, True)  # the ReLU after the conv
        idx += 2
    taps["conv_last"] = (f"features.{idx - 1}", 512, True)  # pool5
    taps.update(fc6=("classifier.1", 4096, False), fc7=("classifier.4", 4096, False), fc8=("classifier.6", 1000, False))
    return taps


TORCHVISION_ARCHS: dict[str, dict] = {
    "tv_alexnet": {
        "builder": "alexnet",
        "weights": "AlexNet_Weights",
        "taps": {
            "conv1": ("features.1", 64, True),
            "conv2": ("features.4", 192, True),
            "conv3": ("features.7", 384, True),
            "conv4": ("features.9", 256, True),
            "conv5": ("features.11", 256, True),
            "conv_last": ("features.12", 256, True),  # pool5, after the last ReLU
            "fc6": ("classifier.2", 4096, False),
            "fc7": ("classifier.5", 4096, False),
            "fc8": ("classifier.6", 1000, False),
        },
    },
    "tv_vgg16": {"builder": "vgg16", "weights": "VGG16_Weights", "taps": _tv_vgg16_taps()},
    "tv_resnet50": {
        "builder": "resnet50",
        "weights": "ResNet50_Weights",
        "taps": {
            "stage1": ("layer1", 256, True),
            "stage2": ("layer2", 512, True),
            "stage3": ("layer3", 1024, True),
            "stage4": ("layer4", 2048, True),
            "pool": ("flatten", 2048, False),
            "logits": ("fc", 1000, False),
        },
    },
}
ARCHS = tuple(FAMILY_DEPTHS) + tuple(TORCHVISION_ARCHS)


@dataclass(frozen=True)
class ConvSpec:
    name: str  # tap name, e.g. "conv3"
    out_channels: int
    kernel: int
    pool_after: bool  # a 2x2 max pool follows this conv (after its ReLU)


@dataclass(frozen=True)
class ArchSpec:
    family: str
    depth: int | None
    num_classes: int
    # Ordered vocabulary: layer name -> (canonical tap, dim, spatial?). Aliases map to another tap's entry.
    vocab: dict[str, tuple[str, int, bool]] = field(hash=False)
    convs: tuple[ConvSpec, ...] = ()  # alexnet / vgg
    fc_units: int = 0
    pool_out: int = 1
    stages: tuple[tuple[int, int], ...] = ()  # resnet: (channels, blocks) per stage
    min_input: int = 1  # smallest input side the net accepts

    @property
    def fc_in(self) -> int:
        return self.convs[-1].out_channels * self.pool_out**2

    @property
    def pretrained(self) -> bool:
        return self.family in TORCHVISION_ARCHS

    def taps(self) -> list[str]:
        """Every layer name a user may ask for, input side first."""
        return list(self.vocab)

    def resolve(self, layer: str) -> str:
        """Canonical tap for a layer name (aliases resolved); raises ValueError listing the valid ones."""
        if layer not in self.vocab:
            depth = f" depth={self.depth}" if self.depth else ""
            raise ValueError(
                f"layer={layer!r} does not exist in arch={self.family}{depth}; valid layers: {', '.join(self.vocab)}"
            )
        return self.vocab[layer][0]

    def is_conv(self, tap: str) -> bool:
        """Whether a tap is a spatial map (pooled by `pooling`) rather than a vector."""
        return self.vocab[tap][2]

    def tap_dim(self, layer: str, pooling: str = "avg") -> int:
        _, dim, spatial = self.vocab[self.resolve(layer)]
        return dim * POOLINGS[pooling] if spatial else dim


def scaled(n: int, width: float) -> int:
    return max(4, int(round(n * width)))


def _conv_vocab(convs: tuple[ConvSpec, ...], fc_units: int, num_classes: int) -> dict:
    vocab = {c.name: (c.name, c.out_channels, True) for c in convs}
    vocab["conv_last"] = (convs[-1].name, convs[-1].out_channels, True)
    vocab.update(fc6=("fc6", fc_units, False), fc7=("fc7", fc_units, False), fc8=("fc8", num_classes, False))
    return vocab


def arch_spec(family: str, depth: int | None, width: float, num_classes: int) -> ArchSpec:
    """The spec for a family at a given depth (None = the family's default) and width multiplier."""
    if family in TORCHVISION_ARCHS:
        taps = TORCHVISION_ARCHS[family]["taps"]
        if depth is not None:
            raise ValueError(f"depth={depth} cannot be set for the pretrained arch={family}; leave depth=null")
        return ArchSpec(family, None, 1000, {k: (k, d, s) for k, (_, d, s) in taps.items()}, min_input=32)
    if family not in FAMILY_DEPTHS:
        raise ValueError(f"arch={family!r} is unknown; valid archs: {', '.join(ARCHS)}")
    depth = DEFAULT_DEPTH[family] if depth is None else int(depth)
    if depth not in FAMILY_DEPTHS[family]:
        raise ValueError(
            f"depth={depth} is not available for arch={family}; valid depths: "
            f"{', '.join(map(str, FAMILY_DEPTHS[family]))}"
        )
    if not width > 0:
        raise ValueError(f"width multiplier must be positive, got {width}")
    if family == "resnet":
        stages = tuple((scaled(c, width), RESNET_BLOCKS[depth]) for c in RESNET_CHANNELS)
        vocab = {f"stage{i + 1}": (f"stage{i + 1}", c, True) for i, (c, _) in enumerate(stages)}
        vocab.update(pool=("pool", stages[-1][0], False), logits=("logits", num_classes, False))
        return ArchSpec(family, depth, num_classes, vocab, stages=stages, min_input=8)
    if family == "alexnet":
        kernels = (5, 5, 3, 3, 3)
        pools = (True, True, False, False, True)
        convs = tuple(
            ConvSpec(f"conv{i + 1}", scaled(c, width), k, p)
            for i, (c, k, p) in enumerate(zip(ALEXNET_CHANNELS, kernels, pools))
        )
    else:
        convs_list = []
        for channels, n in zip(VGG_CHANNELS, VGG_STAGES[depth]):
            for j in range(n):
                convs_list.append(ConvSpec(f"conv{len(convs_list) + 1}", scaled(channels, width), 3, j == n - 1))
        convs = tuple(convs_list)
    fc = scaled(FC_UNITS, width)
    return ArchSpec(
        family,
        depth,
        num_classes,
        _conv_vocab(convs, fc, num_classes),
        convs=convs,
        fc_units=fc,
        pool_out=POOL_OUT[family],
        min_input=2 ** sum(c.pool_after for c in convs),
    )
