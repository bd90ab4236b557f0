"""Numbers as people read them: one formatting function (src.report.numbers) behind report.md and report.html."""

import pandas as pd

from src.report import numbers as N
from src.report.html import _table
from src.report.sections import Section, render_md


def test_a_tie_prints_as_zero_and_a_column_keeps_one_precision():
    # (err_base - err_best) / err_base of two equal means over replicates: rounding noise, not a loss.
    assert N.column("rel_error_reduction", [-7.243e-15, 0.4167, 0.25, float("nan")]) == ["0.000", "0.417", "0.250", ""]
    assert N.column("regret", [0.00412, 0.0001, 0.0]) == ["0.00412", "0.00010", "0.00000"]  # small values keep digits
    assert N.column("seconds", [1234.6, 12.25]) == ["1235", "12"]  # 3 significant digits of the largest
    assert N.column("tasks", [7, 20]) == ["7", "20"]
    assert N.column("distance_rank", [1.0, 2.0, float("nan")]) == ["1", "2", ""]  # whole numbers pandas widened
    assert N.number(-1e-16) == "0.000" and N.number(-0.0004, 3) == "0.000"  # no "-0.000"


def test_pvalues_below_the_floor_and_intervals_at_their_significant_digits():
    assert N.column("task-level p", [0.0004, 0.01234, 1.0, None]) == ["p < 0.001", "0.012", "1.000", ""]
    assert N.column("p (Holm)", [1e-9]) == ["p < 0.001"] and N.is_pvalue("p") and not N.is_pvalue("top")
    assert N.interval(-0.1051, -0.048) == "[-0.105, -0.048]" and N.interval(0.00123, 0.0041) == "[0.00123, 0.00410]"
    assert N.interval(-1e-15, 0.2) == "[0.000, 0.200]" and N.interval(float("nan"), 1.0) == "n/a"


def test_markdown_and_html_print_the_same_text():
    table = pd.DataFrame({"task": ["near", "far"], "rel_error_reduction": [-7.243e-15, 0.31],
                          "task-level p": [0.0002, 0.0412], "seed-level 95% CI": [N.interval(0.01, 0.2),
                                                                                  N.interval(-0.02, 0.051)]})
    section = Section("x").table(table)
    rows = section.tables[0]["rows"]
    assert rows == [["near", "0.000", "p < 0.001", "[0.010, 0.200]"], ["far", "0.310", "0.041", "[-0.0200, 0.0510]"]]
    md = render_md([{"title": "x", "intro": "", "empty": "", "notes": [], "after": [], "images": [], "code": [],
                     "tables": section.tables}])
    page = _table(section.tables[0])
    for cell in (c for r in rows for c in r):
        assert cell in md and f">{cell.replace('<', '&lt;')}</td>" in page
    assert 'class="num">p &lt; 0.001</td>' in page  # aligned and sorted as a number
    assert "e-" not in md


def test_a_column_of_intervals_prints_at_one_precision():
    """The report's intervals (S.fmt_ci) keep their ends, so a column of them reads at one precision, set by its
    widest end, as a column of numbers does; text cells ("n/a", "1 source seed: no CI") stay as they are."""
    from src.report import stats as S

    cells = [S.fmt_ci(-0.29, 1.0), S.fmt_ci(-0.0142, 0.918), S.fmt_ci(float("nan"), 1.0), "1 source seed: no CI"]
    assert cells[0] == "[-0.29, 1.00]" and cells[1] == "[-0.014, 0.918]"  # each alone: its own digits
    assert N.column("95% CI", cells) == ["[-0.29, 1.00]", "[-0.01, 0.92]", "n/a", "1 source seed: no CI"]
    # cut at the statistic's range: the same coverage (the true value lies inside the range)
    assert S.within(-0.95, 1.7, 0.0, 1.0) == (0.0, 1.0)


def test_a_table_of_intervals_keeps_them_through_pandas():
    """pandas 3 stores a column of strings as its str dtype, which turns Interval cells into plain text; a table
    built with N.frame keeps them, so the column prints at one precision."""
    rows = [{"ci": N.Interval(0.157, 0.259)}, {"ci": N.Interval(0.3512, 1.0)}]
    assert all(isinstance(v, N.Interval) for v in N.frame(rows)["ci"])
    assert N.column("95% CI", list(N.frame(rows)["ci"])) == ["[0.16, 0.26]", "[0.35, 1.00]"]
