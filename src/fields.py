"""A config key's declaration: its type and its range or choices (`Field`), and the constructors the schema
(`src.schema`) and the registries use to declare keys. A registry entry that brings keys of its own (a target task
with its own data options) declares them with these, so adding it needs no edit of the schema.
A leaf module: no torch, nothing of ours but the error type.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from src.errors import ConfigError


@dataclass(frozen=True)
class Field:
    """One key: `kind` int / float / bool / str / path / choice / list / node, and what it accepts."""

    kind: str
    doc: str = ""
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low itself is not valid
    choices: tuple | Callable[[], Iterable[Any]] | None = None
    null: bool = False  # None is valid (it means "the default" or "none", as the doc says)
    item: "Field | None" = None  # list: the field of every item (None: items are nodes declared as key[].x)
    min_items: int = 0
    scalar_ok: bool = False  # list: a single item without the brackets is valid too (objective)
    free: bool = False  # node: its keys are the user's (constructor arguments), not declared here
    registered: bool = False  # choice: a registry's names, which a module of the user's (`extensions`) can extend

    def valid(self) -> str:
        """What is valid, as the error messages and the reference say it."""
        null = ", or null" if self.null else ""
        if self.kind == "choice":
            return ", ".join(str(o).lower() if isinstance(o, bool) else str(o) for o in self.options()) + null
        if self.kind in ("int", "float"):
            if self.low is None:
                return ("an integer" if self.kind == "int" else "a number") + null
            if self.high is None or math.isinf(self.high):
                return f"{'>' if self.low_open else '>='} {_show(self.low)}{null}"
            if self.low_open:
                return f"> {_show(self.low)} and <= {_show(self.high)}{null}"
            return f"{_show(self.low)}..{_show(self.high)}{null}"
        if self.kind == "list":
            return f"a {'non-empty ' if self.min_items else ''}list of {self._entries()}{null}"
        return {"bool": "true or false", "str": "a string", "path": "a path", "node": "a group of keys"}[self.kind] + null

    def _entries(self) -> str:
        item = self.item
        if item is None:
            return "groups of keys"
        if item.kind in ("int", "float") and item.low is not None:
            return f"{'integers' if item.kind == 'int' else 'numbers'} {item.valid()}"
        return {"choice": f"entries among {item.valid()}", "str": "strings", "path": "paths"}.get(item.kind, item.kind)

    def options(self) -> tuple:
        return tuple(self.choices() if callable(self.choices) else self.choices or ())

    def check(self, key: str, value: Any) -> None:
        if value is None:
            if not self.null:
                raise ConfigError(f"{key}=null is not allowed; valid: {self.valid()}")
            return
        typed = {
            "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
            "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
            "bool": lambda v: isinstance(v, bool),
            "str": lambda v: isinstance(v, str),
            "path": lambda v: isinstance(v, str) and v.strip() != "",
            # (a number among text choices as the command line types it: trainer.precision=32 is "32")
            "choice": lambda v: not isinstance(v, (dict, list)) and (v in self.options() or (
                isinstance(v, int) and not isinstance(v, bool) and str(v) in self.options())),
            "list": lambda v: isinstance(v, list) or (self.scalar_ok and not isinstance(v, dict)),
            "node": lambda v: isinstance(v, dict),
        }[self.kind](value)
        if not typed:
            if self.kind == "list":
                raise ConfigError(f"{key}={_show(value)} must be {self.valid()}")
            if self.kind == "path":
                raise ConfigError(f"{key}={_show(value)} is empty or not a path; set a directory")
            if self.kind == "bool":
                raise ConfigError(f"{key}={_show(value)} must be true or false{' (or null)' if self.null else ''}")
            word = {"choice": "is unknown", "int": "must be an integer", "float": "must be a number"}.get(
                self.kind, "has the wrong type")
            hint = (" (an entry of your own: name the module that registers it in extensions=[...])"
                    if self.registered else "")
            raise ConfigError(f"{key}={_show(value)} {word}; valid: {self.valid()}{hint}")
        if self.kind in ("int", "float") and self.low is not None:
            if not ((value > self.low if self.low_open else value >= self.low)
                    and (self.high is None or value <= self.high)):
                raise ConfigError(f"{key}={_show(value)} is out of range; valid: {self.valid()}")
        if self.kind == "list":
            items = value if isinstance(value, list) else [value]
            if len(items) < self.min_items:
                raise ConfigError(f"{key}={_show(value)} must be {self.valid()}")
            if self.item is not None:
                for item in items:
                    try:
                        self.item.check(key, item)
                    except ConfigError:
                        if not isinstance(value, list):
                            raise
                        raise ConfigError(f"{key} has {_show(item)}; every entry must be {self.item.valid()}") from None


def _show(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, str):
        return repr(v)
    return "null" if v is None else str(v)


def Int(low=None, high=None, doc="", null=False, low_open=False) -> Field:
    return Field("int", doc, low, high, low_open, null=null)


def Float(low=None, high=None, doc="", null=False, low_open=False) -> Field:
    return Field("float", doc, low, high, low_open, null=null)


def Bool(doc="", null=False) -> Field:
    return Field("bool", doc, null=null)


def Str(doc="", null=False) -> Field:
    return Field("str", doc, null=null)


def Path(doc="", null=False) -> Field:
    return Field("path", doc, null=null)


def Choice(choices, doc="", null=False, registered=False) -> Field:
    return Field("choice", doc, choices=choices if callable(choices) else tuple(choices), null=null,
                 registered=registered)


def same_type(a: Field, b: Field) -> bool:
    """Whether two declarations accept the same values (their docs aside): what two registry entries declaring one
    key (two families' `arch.<key>`) must agree on, since the config check keeps one declaration per key."""
    from dataclasses import replace

    return replace(a, doc="", item=None) == replace(b, doc="", item=None) and (
        (a.item is None) == (b.item is None) and (a.item is None or same_type(a.item, b.item)))


def refuse_clash(what: str, name: str, prefix: str, fields: dict[str, Field], entries) -> None:
    """A registry entry's own keys (`prefix.<key>`) against the other entries': one that another entry declares as
    another type is refused (ValueError), since the config check keeps one declaration per key."""
    for key, f in fields.items():
        clash = next((e.name for e in entries if key in e.fields and not same_type(e.fields[key], f)), None)
        if clash is not None:
            raise ValueError(f"{what} {name!r}: option {prefix}.{key} is already declared by {what} {clash!r} as "
                             "another type; name it differently")


def List(item: Field | None, doc="", null=False, min_items=0, scalar_ok=False) -> Field:
    return Field("list", doc, item=item, min_items=min_items, null=null, scalar_ok=scalar_ok)


def Node(doc="", null=False, free=False) -> Field:
    return Field("node", doc, null=null, free=free)
