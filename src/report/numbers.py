"""Numbers as the report prints them, in one place for report.md, report.html and the notes between tables.

A table column is printed with one number of decimals, chosen so that its largest value shows `SIGNIFICANT`
significant digits: a column of scores reads 0.912, 0.874, 0.000 (not 0.912, 0.87, -7.2e-15), and a column of
small regrets keeps its digits (0.00412). A difference that is a tie up to floating-point rounding prints as 0 at
the column's precision, never as -0.000 or -7e-15. A column of
intervals is printed the same way, at the decimals that its widest end needs. p-values print with 3 decimals, and
as "p < 0.001" below that:
a randomisation or t test says nothing finer that a reader should act on.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

SIGNIFICANT = 3
MAX_DECIMALS = 6
P_FLOOR = 0.001
# Below this a value is floating-point noise around an exact tie (a difference of two equal means): it does not
# set a column's precision.
NOISE = 1e-9


def decimals(values: Iterable[float], significant: int = SIGNIFICANT) -> int:
    """Decimals that give the largest finite |value| `significant` significant digits (0 for >= 10^significant)."""
    finite = [abs(float(v)) for v in values if v is not None and math.isfinite(float(v)) and abs(float(v)) >= NOISE]
    if not finite:
        return significant
    return max(0, min(MAX_DECIMALS, significant - 1 - math.floor(math.log10(max(finite)))))


def number(v: Any, places: int | None = None) -> str:
    """One number with `places` decimals (default: its own `SIGNIFICANT` significant digits); integers as they
    are; NaN/None as empty; a value that rounds to zero as 0 without a sign."""
    if v is None:
        return ""
    if hasattr(v, "item"):  # numpy scalars
        v = v.item()
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if math.isnan(v):
        return ""
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    places = decimals([v]) if places is None else places
    text = f"{v:.{places}f}"
    return text.lstrip("-") if float(text) == 0 else text


def pvalue(p: Any) -> str:
    """A p-value: 3 decimals, "p < 0.001" below that, empty when there is none."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return ""
    p = float(p)
    return f"p < {P_FLOOR:g}" if p < P_FLOOR else f"{p:.3f}"


def is_pvalue(column: str) -> bool:
    """Whether a table column holds p-values (`p`, `task-level p`, `p (Holm)`, `p_holm`, `pvalue`)."""
    name = column.strip().lower()
    return name in {"p", "pvalue", "p-value", "p_value", "p_holm"} or name.endswith(" p") or name.startswith("p (")


def interval(lo: float, hi: float, places: int | None = None) -> str:
    """'[lo, hi]' at `places` decimals (default: the wider end's `SIGNIFICANT` significant digits, so each
    interval of a column reads at the same significant digits), or 'n/a' when there is none."""
    lo, hi = float(lo), float(hi)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "n/a"
    places = decimals([lo, hi]) if places is None else places
    return f"[{number(lo, places)}, {number(hi, places)}]"


class Interval(str):
    """'[lo, hi]' text (`interval`) that keeps its ends, so that a table column of intervals prints at one
    precision (`column`), as a column of numbers does."""

    def __new__(cls, lo: float, hi: float, prefix: str = "", suffix: str = "") -> "Interval":
        text = super().__new__(cls, prefix + interval(lo, hi) + suffix)  # e.g. "test images [0.61, 0.74]"
        text.lo, text.hi, text.prefix, text.suffix = float(lo), float(hi), prefix, suffix
        return text

    def __reduce__(self):
        return Interval, (self.lo, self.hi, self.prefix, self.suffix)


def frame(data: list[dict] | dict[str, Any]):
    """A pandas DataFrame of table rows (or columns) whose Interval cells stay Interval objects: pandas 3 infers its
    str dtype for a column of strings and would turn them into plain text, so the column could no longer print at
    one precision (`column`)."""
    import pandas as pd

    df = pd.DataFrame(data)
    for c in df.columns:
        values = list(data[c]) if isinstance(data, dict) else [r.get(c) for r in data]
        if any(isinstance(v, Interval) for v in values):
            df[c] = pd.Series(values, index=df.index, dtype=object)
    return df


def _is_number(v: Any) -> bool:
    if hasattr(v, "item") and not isinstance(v, str):
        v = v.item()
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def column(name: str, values: list[Any]) -> list[str]:
    """A table column as text: p-values as `pvalue`; numbers at one precision for the column."""
    if is_pvalue(name):
        return [pvalue(v) if _is_number(v) else ("" if v is None else str(v)) for v in values]
    if any(isinstance(v, Interval) for v in values):
        ends = [e for v in values if isinstance(v, Interval) for e in (v.lo, v.hi)]
        places = decimals(ends)
        return [v.prefix + interval(v.lo, v.hi, places) + v.suffix if isinstance(v, Interval)
                else ("" if v is None else str(v)) for v in values]
    finite = [float(v) for v in values if _is_number(v) and not isinstance(v, int) and math.isfinite(float(v))]
    # Whole numbers stored as floats (a count or rank column that pandas widened for a missing value) stay whole.
    places = 0 if finite and all(v.is_integer() and abs(v) < 1e15 for v in finite) else decimals(finite)
    out = []
    for v in values:
        if _is_number(v):
            out.append(number(v, places))
        else:
            out.append(number(v))  # text, None and NaN
    return out
