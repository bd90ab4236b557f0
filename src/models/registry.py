"""The architecture registry: every `arch=` option, what it is and where its torch side lives (no torch here).

Each entry knows its depths (None: fixed, as for pretrained nets), whether it is pretrained, how to build its
`ArchSpec` (the layer vocabulary, dims; `src.models.spec`) and which module implements its torch side. That
module provides the same four functions, so the stages never branch on the family:
  load(spec, source_cfg, weights_file)   the net in eval mode (our nets: a snapshot file; pretrained: ImageNet's)
  tap_nodes(spec)                        our tap name -> the model's graph node (torchvision feature extraction)
  preprocess(spec, source_cfg)           uint8 batch -> the net's input
  head_path(spec)                        module path of the classification head (fine-tuning replaces it)
Ours are `src.models.nets`; torchvision's ImageNet nets (`get_model` / `get_model_weights`) `src.models.pretrained`.
`python -m src.models` lists every arch's layers.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from src.errors import ConfigError
from src.models.spec import DEFAULT_DEPTH, FAMILY_DEPTHS, TORCHVISION_ARCHS, ArchSpec, arch_spec


@dataclass(frozen=True)
class Arch:
    name: str
    depths: tuple[int, ...] | None  # None: fixed by the weights
    default_depth: int | None
    pretrained: bool
    impl: str  # module with load / tap_nodes / preprocess / head_path
    about: str

    def spec(self, depth: int | None, width: float, num_classes: int) -> ArchSpec:
        """The spec at `depth` (None: the default) and width multiplier; ConfigError listing valid values."""
        try:
            return arch_spec(self.name, depth, width, num_classes)
        except ValueError as e:
            raise ConfigError(str(e)) from None

    def torch(self) -> ModuleType:
        """The module implementing this arch's torch side (imports torch)."""
        return importlib.import_module(self.impl)


ABOUT = {
    "alexnet": "5 conv + fc6, fc7, fc8 (torchvision AlexNet's widths at width=large)",
    "vgg": "3x3 conv stacks + fc6, fc7, fc8",
    "resnet": "basic-block residual net, 4 stages",
}
ARCHS: dict[str, Arch] = {
    **{name: Arch(name, depths, DEFAULT_DEPTH[name], False, "src.models.nets", ABOUT[name])
       for name, depths in FAMILY_DEPTHS.items()},
    **{name: Arch(name, None, None, True, "src.models.pretrained", f"torchvision's ImageNet {tv['builder']}")
       for name, tv in TORCHVISION_ARCHS.items()},
}


def get_arch(name: str) -> Arch:
    if name not in ARCHS:
        raise ConfigError(f"arch={name!r} is unknown; valid archs: {', '.join(ARCHS)}")
    return ARCHS[name]


def layer_table() -> list[dict]:
    """One row per (arch, depth): its layer names, input side first (what `layer=` accepts)."""
    rows = []
    for arch in ARCHS.values():
        for depth in arch.depths or (None,):
            spec = arch.spec(depth if arch.depths else None, 1.0, 1000)
            rows.append({"arch": arch.name, "depth": depth if depth is not None else "-",
                         "layers": " ".join(spec.taps())})
    return rows


def layer_order() -> list[str]:
    """Every layer name of every arch, input side first (a topological merge of their vocabularies): the
    ordinal the report's 'optimal layer vs distance' uses."""
    from graphlib import TopologicalSorter

    graph: dict[str, set[str]] = {}
    for arch in ARCHS.values():
        for depth in arch.depths or (None,):
            taps = arch.spec(depth, 1.0, 1000).taps()
            for before, after in zip([None, *taps], taps):
                graph.setdefault(after, set()).update({before} if before else set())
    return list(TopologicalSorter(graph).static_order())
