"""The architecture registry: one record per `arch=` option, the single place that says what a family is (no torch).

A family is added by one `register_arch(Arch(...))` call and one `conf/arch/<name>.yaml` (`name: <name>`):
  name            the `arch=` value (and `ArchSpec.family`)
  about           one line for `python -m src.models`
  spec            (depth, width multiplier, num_classes) -> ArchSpec, torch-free (`src.models.spec` has ours):
                  the layer vocabulary, dims, graph nodes and head the check and the stages use
  builder         "module:callable" taking the ArchSpec and returning the freshly initialised nn.Module (trained
                  families; imported only when a net is built)
  depths          the valid depths (None: fixed, as for pretrained nets), and default_depth
  distance_layer  the early layer the measured (source, target) distance is taken at (trained families)
  fields          the family's own `arch.<key>` options with their types (`src.fields`), if it has any
  configured      the spec depends on the family's own options (a model library's `arch.model`): spec_fn then also
                  takes the `arch` config node and the cache dir (`src.models.backbones`), and the torch side is
                  `src.models.external`; nothing is trained here (`pretrained`): the weights come from the library,
                  a file or a random init
Everything else (training, tapping, fine-tuning, the measured distance, `python -m src.models`, the report's layer
order) reads these records, so a new family needs no other edit (tests/test_extending.py registers a toy one).
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from types import ModuleType
from typing import Callable

from src.errors import ConfigError
from src.fields import refuse_clash
from src.models.spec import ArchSpec, alexnet_spec, resnet_spec, vgg_spec
from src.registry import Registry


@dataclass(frozen=True)
class Arch:
    name: str
    about: str
    spec_fn: Callable[[int | None, float, int], ArchSpec]
    builder: str | None = None  # "module:callable" -> nn.Module from the spec (trained families)
    depths: tuple[int, ...] | None = None
    default_depth: int | None = None
    distance_layer: str | None = None
    fields: dict = field(default_factory=dict)  # the family's own `arch.<key>` options (src.fields), if any
    configured: bool = False  # spec_fn(depth, width, num_classes, arch_cfg, cache_dir): a model library's net

    @property
    def pretrained(self) -> bool:
        """Nothing is trained here: only a model library's net (`configured`) brings its own weights."""
        return self.configured

    def __post_init__(self) -> None:
        if not self.pretrained and (self.builder is None or self.distance_layer is None):
            raise ValueError(f"arch {self.name!r}: a trained family needs a builder and a distance_layer")

    def spec(self, depth: int | None, width: float, num_classes: int, arch_cfg=None, cache_dir=None) -> ArchSpec:
        """The spec at `depth` (None: the default) and width multiplier; ConfigError listing the valid values.
        A configured family reads `arch_cfg` (its `arch` node) and may cache what it learns under `cache_dir`."""
        if self.depths is None:
            if depth is not None:
                raise ConfigError(f"depth={depth} cannot be set for arch={self.name} (fixed by its weights); "
                                  "leave depth=null")
        else:
            depth = self.default_depth if depth is None else depth
            if isinstance(depth, bool) or not isinstance(depth, int) or depth not in self.depths:
                raise ConfigError(f"depth={depth} is not available for arch={self.name}; valid depths: "
                                  f"{', '.join(map(str, self.depths))}")
        if self.configured:
            if arch_cfg is None:
                raise ConfigError(f"arch={self.name} needs its options (arch.model=...) to say which net it is")
            spec = self.spec_fn(depth, float(width), num_classes, arch_cfg, cache_dir)
        else:
            spec = self.spec_fn(depth, float(width), num_classes)
            if self.fields and arch_cfg is not None:
                spec = dataclasses.replace(spec, options=self.options(arch_cfg))
        if spec.family != self.name:
            raise ValueError(f"arch {self.name!r}: its spec says family {spec.family!r}")
        return spec

    def options(self, arch_cfg) -> dict:
        """The family's own options (`fields`) that `arch_cfg` sets (not None), as plain values: an option added to
        a family later, and left unset, keeps the keys of the nets it already trained."""
        from omegaconf import OmegaConf

        node = OmegaConf.to_container(arch_cfg, resolve=True) if OmegaConf.is_config(arch_cfg) else dict(arch_cfg)
        return {key: node[key] for key in sorted(self.fields) if node.get(key) is not None}

    def torch(self) -> ModuleType:
        """The module implementing the torch side (load, tap_nodes, preprocess, head_path; imports torch)."""
        if self.configured:
            return importlib.import_module("src.models.external")
        return importlib.import_module("src.models.nets")

    def build(self, spec: ArchSpec):
        """A freshly initialised net of this (trained) family (imports torch)."""
        module, _, fn = str(self.builder).partition(":")
        return getattr(importlib.import_module(module), fn)(spec)


ARCHS = Registry("arch", "archs")


def register_arch(arch: Arch) -> Arch:
    """Register a family; refused when one of its own options shares an `arch.<key>` name with another family's
    option of another type (the config check has one declaration per key)."""
    refuse_clash("arch", arch.name, "arch", arch.fields, ARCHS.values())
    return ARCHS.register(arch.name, arch)


def get_arch(name: str) -> Arch:
    return ARCHS.get_valid(name)


def arch_spec(name: str, depth: int | None, width: float, num_classes: int) -> ArchSpec:
    """`get_arch(name).spec(...)`: the spec of a registered arch."""
    return get_arch(name).spec(depth, width, num_classes)


register_arch(Arch("alexnet", "5 conv + fc6, fc7, fc8 (torchvision AlexNet's widths at width=large)", alexnet_spec,
                   "src.models.nets:ConvNet", depths=(8,), default_depth=8, distance_layer="conv2"))
register_arch(Arch("vgg", "3x3 conv stacks + fc6, fc7, fc8", vgg_spec, "src.models.nets:ConvNet",
                   depths=(8, 11, 13, 16, 19), default_depth=11, distance_layer="conv2"))
register_arch(Arch("resnet", "basic-block residual net, 4 stages", resnet_spec, "src.models.nets:ResNet",
                   depths=(10, 18, 26), default_depth=10, distance_layer="stage2"))
# Any model of a library (timm, torchvision), the user's own nn.Module, or a "library:model[@weights]" reference.
from src.models import backbones as _backbones  # noqa: E402  (it registers its families with the records above)

for _name, _about in _backbones.FAMILIES.items():
    register_arch(Arch(_name, _about, _backbones.spec_fn(_name), fields=_backbones.FIELDS,
                       configured=True))


def layer_table() -> list[dict]:
    """One row per (arch, depth): its layer names, input side first (what `layer=` accepts)."""
    rows = []
    for arch in ARCHS.values():
        if arch.configured:  # a model library's layers depend on the model: `python -m src.models arch=timm ...`
            key = "builder" if arch.name == "module" else "model"
            rows.append({"arch": arch.name, "depth": "-",
                         "layers": f"the model's graph nodes (python -m src.models arch={arch.name} arch.{key}=...)"})
            continue
        for depth in arch.depths or (None,):
            spec = arch.spec(depth, 1.0, 1000)
            rows.append({"arch": arch.name, "depth": depth if depth is not None else "-",
                         "layers": " ".join(spec.taps())})
    return rows


def layer_order() -> list[str]:
    """Every layer name of every arch, input side first (a topological merge of their vocabularies): the
    ordinal the report's 'optimal layer vs distance' uses. Two families may use the same names in another order (a
    family of the user's own with an early `pool` before `stage1`, where resnet's `pool` follows `stage4`): the
    family registered first keeps its order, and the later one's pairs that would contradict it are left out (a
    cycle would otherwise fail every report); its other pairs still order its layers."""
    from graphlib import TopologicalSorter

    graph: dict[str, set[str]] = {}  # layer -> the layers before it

    def comes_before(a: str, b: str) -> bool:  # a is already (transitively) before b
        stack, seen = [b], {b}
        while stack:
            for p in graph.get(stack.pop(), ()):
                if p == a:
                    return True
                if p not in seen:
                    seen.add(p)
                    stack.append(p)
        return False

    for arch in ARCHS.values():
        if arch.configured:
            continue
        for depth in arch.depths or (None,):
            taps = arch.spec(depth, 1.0, 1000).taps()
            for i, after in enumerate(taps):
                graph.setdefault(after, set())
                for before in reversed(taps[:i]):  # every earlier layer: one edge left out loses no other
                    if before != after and not comes_before(after, before):
                        graph[after].add(before)
    return list(TopologicalSorter(graph).static_order())
