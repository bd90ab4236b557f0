"""Architecture specs and the tap (layer) vocabulary, without importing torch.

An `ArchSpec` is what the config check and the stages know of one net: its family (the `arch=` name), depth,
width-scaled layer sizes, the layer names a user may tap (with their dims and whether they are spatial maps), the
graph node behind each tap (torchvision's feature extraction asks for exactly these) and the module path of the
classification head (fine-tuning replaces it). Each family registered in `src.models.registry` builds its spec with
one of the functions here (or its own, for a family added elsewhere).

Families built by our code (width and depth are free axes; BatchNorm in every conv so short CPU schedules train):
  alexnet  5 conv layers + fc6, fc7, fc8; reference widths = torchvision's AlexNet (64, 192, 384, 256, 256; fc 4096)
  vgg      3x3 conv stacks, depth = weight layers (8, 11, 13, 16, 19; conv layers = depth - 3), + fc6, fc7, fc8
  resnet   basic-block residual net, 4 stages (64, 128, 256, 512 at width 1), depth = 8n + 2 (10, 18, 26)
Width multipliers scale every channel and fc unit count of the family's reference net.

Vocabulary: alexnet/vgg `conv1..convN`, `conv_last` (alias of the last conv), `fc6`, `fc7`, `fc8`; resnet
`stage1..stage4`, `pool`, `logits`. Model-library nets (`src.models.backbones`): their graph node names,
`pre_logits`, `logits` and the config's `arch.aliases` (the `tv_*` presets give torchvision's ImageNet nets the
names above). Every spec also resolves
`depth:<fraction>` (the block at that fraction of the network: `ArchSpec.at_depth`), and marks the taps that are
token sequences (N, T, D), pooled by `cls` / `avg` / `max`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

INPUT_CHANNELS = 3  # every loader yields RGB images (N, 3, H, W): arch.mean / arch.std give one value per channel
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
POOL_OUT = {"alexnet": 2, "vgg": 1}  # spatial size of the adaptive pool before fc6
# Feature-dim factor of each pooling: conv maps take avg, max, spp (1x1 + 2x2 grid); token sequences (ViT) take
# avg (mean of the patch tokens), max (over them) and cls (the class token).
POOLINGS = {"avg": 1, "max": 1, "spp": 5, "cls": 1}
TOKEN_POOLINGS = ("avg", "max", "cls")

@dataclass(frozen=True)
class ConvSpec:
    name: str  # tap name, e.g. "conv3"
    out_channels: int
    kernel: int
    pool_after: bool  # a 2x2 max pool follows this conv (after its ReLU)


@dataclass(frozen=True)
class ArchSpec:
    family: str  # the registered arch name
    depth: int | None
    num_classes: int
    # Ordered vocabulary: layer name -> (canonical tap, dim, spatial?). Aliases map to another tap's entry.
    vocab: dict[str, tuple[str, int, bool]] = field(hash=False)
    nodes: dict[str, str] = field(hash=False, default_factory=dict)  # canonical tap -> the model's graph node
    head: str = ""  # module path of the classification head (its last tap's module)
    pretrained: bool = False  # weights come from a file (nothing is trained here)
    convs: tuple[ConvSpec, ...] = ()  # alexnet / vgg
    fc_units: int = 0
    pool_out: int = 1
    stages: tuple[tuple[int, int], ...] = ()  # resnet: (channels, blocks) per stage
    min_input: int = 1  # smallest input side the net accepts
    tokens: frozenset = field(default=frozenset(), hash=False)  # taps that are token sequences (N, T, D)
    blocks: tuple[str, ...] = ()  # the taps `depth:<fraction>` picks from, input side first (empty: every tap)
    extra: dict = field(default_factory=dict, hash=False, compare=False)  # a model library's own settings
    # A trained family's own `arch.<key>` options (Arch.fields) as this run sets them: its builder reads them here,
    # and they enter the source net's cache key (src.keys.source_payload).
    options: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def fc_in(self) -> int:
        return self.convs[-1].out_channels * self.pool_out**2

    def taps(self) -> list[str]:
        """Every layer name a user may ask for, input side first."""
        return list(self.vocab)

    def depth_taps(self) -> list[str]:
        """The taps `depth:<fraction>` chooses among, input side first: the blocks, else every canonical tap but the
        classifier's output."""
        if self.blocks:
            return list(self.blocks)
        taps = [t for t, (canon, _, _) in self.vocab.items() if t == canon]
        return taps[:-1] if len(taps) > 1 else taps

    def at_depth(self, fraction: float) -> str:
        """The block at `fraction` of the network (block i of n sits at (i + 1) / n; the nearest, ties inward)."""
        taps = self.depth_taps()
        n = len(taps)
        return taps[min(range(n), key=lambda i: (round(abs((i + 1) / n - fraction), 9), i))]

    def resolve(self, layer: str) -> str:
        """Canonical tap for a layer name (aliases and `depth:<fraction>` resolved); raises ValueError listing the
        valid ones."""
        layer = str(layer)
        if layer.startswith("depth:"):
            try:
                fraction = float(layer[len("depth:"):])
            except ValueError:
                fraction = -1.0
            if not 0.0 < fraction <= 1.0:
                raise ValueError(f"layer={layer!r}: a relative depth is depth:<fraction> with 0 < fraction <= 1, "
                                 f"e.g. depth:0.5")
            return self.vocab[self.at_depth(fraction)][0]
        if layer not in self.vocab:
            depth = f" depth={self.depth}" if self.depth else ""
            model = f" model={self.extra['label']}" if self.extra.get("label") else ""
            names = list(self.vocab)
            if len(names) > 40:  # a library model: its blocks and aliases, and where the rest is listed
                shown = [n for n in names if n in self.blocks or self.vocab[n][0] != n][:40]
                listing = (f"{', '.join(shown)}, depth:<fraction> or any of its {len(names)} graph nodes "
                           f"(`python -m src.models arch={self.family} arch.model=...` lists them)")
            else:
                listing = ", ".join(names) + (", depth:<fraction>" if self.extra else "")
            raise ValueError(f"layer={layer!r} does not exist in arch={self.family}{model}{depth}; valid layers: "
                             f"{listing}")
        return self.vocab[layer][0]

    def always_tapped(self) -> list[str]:
        """The taps every extraction of a library net writes, whichever layer the job asked for: the blocks (what
        `depth:` picks), pre_logits, logits and the nodes `arch.aliases` names, so a sweep over these shares one
        cache entry. A library net has hundreds of graph nodes; writing them all would cost far more than the pass."""
        named = [self.vocab[a][0] for a in ("pre_logits", "logits") if a in self.vocab]
        return list(dict.fromkeys([*self.blocks, *named, *self.extra.get("aliased", ())]))

    def is_conv(self, tap: str) -> bool:
        """Whether a tap is a spatial map (pooled by `pooling`) rather than a vector or a token sequence."""
        return self.vocab[tap][2] and tap not in self.tokens

    def check_pooling(self, tap: str, pooling: str) -> None:
        """ValueError when `pooling` does not apply to the tap's kind of output."""
        if tap in self.tokens:
            if pooling not in TOKEN_POOLINGS or (pooling == "cls" and not self.extra.get("prefix_tokens")):
                valid = [p for p in TOKEN_POOLINGS if p != "cls" or self.extra.get("prefix_tokens")]
                raise ValueError(f"pooling={pooling} does not apply to layer {tap} (a token sequence); "
                                 f"valid: {', '.join(valid)}")
        elif pooling == "cls":
            raise ValueError(f"pooling=cls (the class token) applies to token outputs only; layer {tap} is "
                             f"{'a spatial map' if self.is_conv(tap) else 'a vector'}; valid: avg, max, spp")

    def tap_dim(self, layer: str, pooling: str = "avg") -> int:
        tap = self.resolve(layer)
        _, dim, _ = self.vocab[tap]
        return dim * POOLINGS[pooling] if self.is_conv(tap) else dim


def output_node(module: str, nodes: list[str]) -> str | None:
    """A module's output in the traced graph: its own node, else the last node inside it (a container)."""
    inside = [n for n in nodes if n == module or n.startswith(module + ".")]
    return module if module in nodes else (inside[-1] if inside else None)


def scaled(n: int, width: float) -> int:
    return max(4, int(round(n * width)))


def _conv_spec(family: str, depth: int, convs: tuple[ConvSpec, ...], width: float, num_classes: int) -> ArchSpec:
    fc = scaled(FC_UNITS, width)
    vocab = {c.name: (c.name, c.out_channels, True) for c in convs}
    vocab["conv_last"] = (convs[-1].name, convs[-1].out_channels, True)
    vocab.update(fc6=("fc6", fc, False), fc7=("fc7", fc, False), fc8=("fc8", num_classes, False))
    nodes = {c.name: f"features.{c.name}" for c in convs} | {"fc6": "fc6", "fc7": "fc7", "fc8": "fc8"}
    return ArchSpec(family, depth, num_classes, vocab, nodes=nodes, head="fc8", convs=convs, fc_units=fc,
                    pool_out=POOL_OUT[family], min_input=2 ** sum(c.pool_after for c in convs))


def alexnet_spec(depth: int, width: float, num_classes: int) -> ArchSpec:
    kernels, pools = (5, 5, 3, 3, 3), (True, True, False, False, True)
    convs = tuple(ConvSpec(f"conv{i + 1}", scaled(c, width), k, p)
                  for i, (c, k, p) in enumerate(zip(ALEXNET_CHANNELS, kernels, pools)))
    return _conv_spec("alexnet", depth, convs, width, num_classes)


def vgg_spec(depth: int, width: float, num_classes: int) -> ArchSpec:
    convs: list[ConvSpec] = []
    for channels, n in zip(VGG_CHANNELS, VGG_STAGES[depth]):
        for j in range(n):
            convs.append(ConvSpec(f"conv{len(convs) + 1}", scaled(channels, width), 3, j == n - 1))
    return _conv_spec("vgg", depth, tuple(convs), width, num_classes)


def resnet_spec(depth: int, width: float, num_classes: int) -> ArchSpec:
    stages = tuple((scaled(c, width), RESNET_BLOCKS[depth]) for c in RESNET_CHANNELS)
    vocab = {f"stage{i + 1}": (f"stage{i + 1}", c, True) for i, (c, _) in enumerate(stages)}
    vocab.update(pool=("pool", stages[-1][0], False), logits=("logits", num_classes, False))
    return ArchSpec("resnet", depth, num_classes, vocab, nodes={t: t for t in vocab}, head="logits", stages=stages,
                    min_input=8)
