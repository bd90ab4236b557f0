"""Read every result.json under one or more sweep dirs into one flat pandas table (ok and failed jobs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import pandas as pd

RESULT = "result.json"


def find_results(dirs: Iterable[str | Path]) -> list[Path]:
    out: list[Path] = []
    for d in dirs:
        d = Path(d)
        out += [d] if d.name == RESULT else sorted(d.rglob(RESULT))
    return out


def flatten(result: dict, path: Path) -> dict:
    row = {"job_dir": str(path.parent), "status": result.get("status", "unknown")}
    row.update(result.get("factors", {}))
    for k, v in result.get("metrics", {}).items():
        if not isinstance(v, dict):
            row[k] = v
    for k, v in (result.get("metrics", {}).get("transferability") or {}).items():
        row[f"tr_{k}"] = v
    for k, v in result.get("timings_s", {}).items():
        row[f"time_{k}_s"] = v
    for k, v in result.get("cache", {}).items():
        row[k] = v
    for k, v in (result.get("keys") or {}).items():
        row[f"{k}_key"] = v
    err = result.get("error") or {}
    row["error_type"] = err.get("type")
    row["error_message"] = err.get("message")
    return row


def load_results(dirs: Iterable[str | Path]) -> pd.DataFrame:
    rows = []
    for p in find_results(dirs):
        try:
            rows.append(flatten(json.loads(p.read_text()), p))
        except json.JSONDecodeError:
            rows.append({"job_dir": str(p.parent), "status": "unreadable"})
    return pd.DataFrame(rows)
