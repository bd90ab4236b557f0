"""The user-facing error type, the command-line parser of the project's small CLIs, and an exception as one line
(a leaf: imports nothing of ours)."""

from __future__ import annotations

import argparse


class ConfigError(ValueError):
    """A composed config that cannot run; the message is one line for the user."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the project's bad-input contract: a bad argument is one line on stderr (`error: ...`, naming
    it and what is valid) and exit status 1, as `python -m src.main` does, not argparse's usage block and 2."""

    def error(self, message: str):
        self.exit(1, f"error: {self.prog}: {' '.join(message.split())}\n")


def one_line(e: BaseException) -> str:
    """An exception as one line: Hydra's multi-line messages (e.g. the available options) joined with '; '."""
    text = str(e).split("Config search path")[0]  # Hydra's search path is noise for a user
    parts: list[str] = []
    listing = False  # after a line ending in ':', the lines are list items (e.g. Hydra's available options)
    for ln in filter(None, (ln.strip() for ln in text.splitlines())):
        if listing:
            parts[-1] += (" " if parts[-1].endswith(":") else ", ") + ln
        else:
            parts.append(ln)
            listing = ln.endswith(":")
    text = "; ".join(parts) or type(e).__name__
    cause = e.__cause__
    if text.startswith("Error merging override") and cause is not None and str(cause).strip():
        # Hydra names the override but not what is wrong; OmegaConf's first line says it ("... could not be
        # converted to Integer": the type the key takes)
        text += f": {str(cause).strip().splitlines()[0]}"
    ours = isinstance(e, ConfigError) or type(e).__module__.startswith("hydra")  # their messages say it all
    return text if ours else f"{type(e).__name__}: {text}"
