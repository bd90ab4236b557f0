"""Read every result.json under one or more sweep dirs into one flat pandas table (ok and failed jobs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import pandas as pd

from src.record import RESULT, Result

def find_results(dirs: Iterable[str | Path]) -> list[Path]:
    out: list[Path] = []
    for d in dirs:
        d = Path(d)
        out += [d] if d.name == RESULT else sorted(d.rglob(RESULT))
    return out


def load_results(dirs: Iterable[str | Path]) -> pd.DataFrame:
    rows = []
    for p in find_results(dirs):
        try:
            raw = json.loads(p.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            raw = None
        if isinstance(raw, dict):
            rows.append(Result.from_dict(raw).row(p.parent))
        else:  # damaged or not ours (a JSON list, a number): listed as unreadable, not fatal
            rows.append({"job_dir": str(p.parent), "status": "unreadable"})
    return pd.DataFrame(rows)
