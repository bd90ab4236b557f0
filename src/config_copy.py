"""Deep copies of OmegaConf configs without re-running the node constructors.

Hydra deep-copies a job's whole config (~240 nodes: the job's and Hydra's own) four times as it starts each job in
the launcher's process (`run_job`: the task config, the `hydra` node, and `HydraConfig.set_config`'s masked copy,
twice), and the sweep's composition copies it again. OmegaConf's `__deepcopy__` builds every copied node through
its validating constructor and copies each node's metadata dataclass through `copy`'s generic reduce protocol,
which makes the copies a large part of what a sweep spends outside the science.

`install()` replaces the `__deepcopy__` of OmegaConf's dict and list containers and of its plain value nodes by
one that copies a node's attributes directly: the same classes, the same metadata field by field (its flag dict and
resolver cache copied, the rest: types, keys, flags root, immutable), the values shared (as OmegaConf does), every
child copied through `copy.deepcopy` with the same memo and re-parented to its new container. A node's cache of
inherited flags is copied for containers (as OmegaConf does) and recomputed on demand for value nodes (OmegaConf
keeps whatever its blank constructor cached). Any other node class (unions, tuples, interpolation results) and any
metadata value that is not plainly immutable go through the original copy. `tests/test_config_copy.py` compares
both copies node by node on the real job configs, and checks that no mutable attribute is shared.

A guarded patch of OmegaConf's internals (`GUARD`, src/patching.py): `TRANSFER_PATCH_CONFIG_COPY=0` turns it off,
and OmegaConf versions it was not checked against keep OmegaConf's own copy. What it saves: `python -m
benchmarks.framework_patches`.
"""

from __future__ import annotations

import copy
import enum
from collections import defaultdict
from typing import Any

from src.patching import Guard

ORIGINAL: dict[type, Any] = {}  # class -> OmegaConf's own __deepcopy__, while the patch is installed
_IMMUTABLE = (type(None), bool, int, float, complex, str, bytes, type, enum.Enum)


def _shared(value: Any) -> bool:
    """A metadata value that a deep copy would hand back unchanged (or as an equal immutable typing object)."""
    return isinstance(value, _IMMUTABLE) or type(value).__module__ == "typing"


def _copy_metadata(meta: Any, memo: dict) -> Any:
    new = object.__new__(type(meta))
    fields = new.__dict__
    for name, value in meta.__dict__.items():
        if name == "flags" and type(value) is dict:
            value = dict(value)  # flag -> bool or None
        elif name == "resolver_cache" and type(value) is defaultdict and not value:
            value = defaultdict(dict)
        elif not _shared(value):
            value = copy.deepcopy(value, memo)
        fields[name] = value
    return new


_OWN_COPY = ("_val", "_parent", "_metadata", "_flags_cache")  # set below, or shared (the value, the parent link)


def _copy_value_node(self: Any, memo: dict) -> Any:
    res = object.__new__(type(self))
    fields = res.__dict__
    for name, value in self.__dict__.items():
        if name not in _OWN_COPY and not _shared(value):  # e.g. an EnumNode's member table
            value = copy.deepcopy(value, memo)
        fields[name] = value  # the value is shared, as OmegaConf's own copy does
    fields["_metadata"] = _copy_metadata(self.__dict__["_metadata"], memo)
    fields["_flags_cache"] = None
    return res


def _copy_children(res: Any, children, memo: dict):
    for child in children:
        parent = child.__dict__["_parent"]
        try:  # (as OmegaConf: a child class with its own copy must not follow the link up to this tree)
            child.__dict__["_parent"] = None
            new = copy.deepcopy(child, memo)
        finally:
            child.__dict__["_parent"] = parent
        new.__dict__["_parent"] = res
        yield new


def _copy_container(self: Any, memo: dict) -> Any:
    res = object.__new__(type(self))
    fields = res.__dict__
    fields.update(self.__dict__)
    fields["_metadata"] = _copy_metadata(self.__dict__["_metadata"], memo)
    cache = self.__dict__["_flags_cache"]
    fields["_flags_cache"] = None if cache is None else dict(cache)
    content = self.__dict__["_content"]
    if isinstance(content, dict):  # (otherwise a list, or None, "???" or an interpolation string: kept as is)
        fields["_content"] = dict(zip(content, _copy_children(res, content.values(), memo)))
    elif isinstance(content, list):
        fields["_content"] = list(_copy_children(res, content, memo))
    return res


GUARD = Guard("config_copy", "omegaconf", ("2.4.1rc1",), "OmegaConf's own deep copies")


def installed() -> bool:
    return bool(ORIGINAL)


def install() -> bool:
    """Patch OmegaConf's deep copies (once per process) if `GUARD` allows it; returns whether it is in place."""
    if installed():
        return True
    if not GUARD.allowed():
        return False
    from omegaconf import DictConfig, ListConfig, nodes

    values = (nodes.AnyNode, nodes.StringNode, nodes.PathNode, nodes.IntegerNode, nodes.BytesNode, nodes.FloatNode,
              nodes.BooleanNode, nodes.EnumNode, nodes.LiteralNode, nodes.NoneNode)
    for cls in (DictConfig, ListConfig, *values):
        ORIGINAL[cls] = cls.__dict__["__deepcopy__"]
        cls.__deepcopy__ = _copy_container if cls in (DictConfig, ListConfig) else _copy_value_node
    return True


def uninstall() -> None:
    """OmegaConf's own deep copies again (tests compare both)."""
    for cls, original in ORIGINAL.items():
        cls.__deepcopy__ = original
    ORIGINAL.clear()
