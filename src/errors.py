"""The user-facing error type, and the command-line parser of the project's small CLIs (a leaf: imports nothing
of ours)."""

from __future__ import annotations

import argparse


class ConfigError(ValueError):
    """A composed config that cannot run; the message is one line for the user."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the project's bad-input contract: a bad argument is one line on stderr (`error: ...`, naming
    it and what is valid) and exit status 1, as `python -m src.main` does, not argparse's usage block and 2."""

    def error(self, message: str):
        self.exit(1, f"error: {self.prog}: {' '.join(message.split())}\n")
