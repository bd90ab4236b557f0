"""The user-facing error type (a leaf: imports nothing of ours)."""

from __future__ import annotations


class ConfigError(ValueError):
    """A composed config that cannot run; the message is one line for the user."""
