"""Shared error types and the one-line checks every registry's validator uses (a leaf: imports nothing of ours)."""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """A composed config that cannot run; the message is one line for the user."""


def positive(name: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{name}={value!r} must be a positive number")


def positive_int(name: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name}={value!r} must be a positive integer")


def one_of(name: str, value: Any, valid, what: str = "") -> None:
    """`name=value` must be one of `valid` (a registry's keys); the error lists them ("valid <what>: ...")."""
    if value not in valid:
        label = f"valid {what}:" if what else "valid:"
        raise ConfigError(f"{name}={value!r} is unknown; {label} {', '.join(map(str, valid))}")
