"""Plots of the findings: per factor, score-vs-setting curves coloured by distance (mean over source seeds), and per
question the statistic's own picture:
  trend, ends  each task's contrast against distance: a point per task (mean over source seeds) with its own 95% t
               interval over seeds as a bar (tasks are not joined: each is its own target), the OLS line over
               tasks the statistic is read from, and its seed-level 95% band (the line of each source seed, a t
               interval at every distance; for `ends`, the seed bootstrap's interval of the line: at the far end
               it is the estimate's interval);
  level        each task's contrast on an evenly spaced axis of tasks in distance order, with the mean over tasks
               (the estimate) and its seed-level 95% interval as a band.
Every figure is laid out by matplotlib's constrained layout with titles wrapped to the figure and legends outside
the axes, so no text leaves the figure and no legend covers data (tests/test_plot_layout.py checks the drawn
artists).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from src.report import analysis as A
from src.report import numbers as N
from src.report import stats as S
from src.report.layout import MARKERS, figure, legend_outside, save, wrap
from src.report.layout import plt as pyplot
from src.report.questions import BY_ID

CONTRAST = {"layer_gap_shrinks": "late-minus-early gap", "layer_optimum_shift": "best earlier - best late layer",
            "finetune_far_gain": "fine-tuning gain"}


def findings_plots(details: dict[str, Any], axis: str, out: Path) -> list[str]:
    """Every findings figure as `out/<name>.png`; returns the file names in report order."""
    return [save(fig, out / f"{name}.png") for name, fig in findings_figures(details, axis)]


def findings_figures(details: dict[str, Any], axis: str) -> Iterator[tuple[str, Any]]:
    """(name, matplotlib figure) for each findings plot: one score-vs-setting per factor, one per question."""
    curves_done = set()
    for qid, d in details.items():
        if d["factor"] not in curves_done:
            curves_done.add(d["factor"])
            yield f"findings_score_vs_{d['factor']}", _curves(d, axis)
        if "contrast" in d:
            yield f"findings_{qid}", _contrast_plot(qid, d, axis)


def _axis_name(axis: str) -> str:
    """The distance axis's name without what the report's note adds to it: its source ('shift
    (target.data.shift)' -> 'shift'), how it was measured and the seeds' agreement ('measured proxy A-distance
    from the sweep's source net(s) ...; the 6 source seeds ...' -> 'measured proxy A-distance')."""
    return axis.split(";")[0].split(" (")[0].split(" from ")[0]


def _curves(d: dict[str, Any], axis: str):
    import matplotlib

    plt = pyplot()  # the Agg backend before pyplot picks one
    factor, dist = d["factor"], d["distance"]
    finite = [v for v in dist.values() if math.isfinite(v)]
    lo, hi = min(finite, default=0.0), max(finite, default=1.0)
    norm = matplotlib.colors.Normalize(lo, max(hi, lo + 1e-9))
    cmap = plt.get_cmap("viridis")
    n = len(d["curves"])
    fig, ax = figure(width=7.4 + (2.2 if n > 14 else 0.0), height=4.4)
    labels = [str(v) for v in d["settings"]]
    for i, (task, mean) in enumerate(d["curves"].items()):
        colour = cmap(norm(dist[task])) if math.isfinite(dist[task]) else "grey"
        # A marker per task as well as a colour: tasks at similar distances get similar colours.
        ax.plot(range(len(labels)), mean, marker=MARKERS[i % len(MARKERS)], ms=5, color=colour,
                label=f"{task} ({N.number(dist[task])})")
    ax.set_xticks(range(len(labels)), labels, rotation=30 if len(labels) > 8 else 0)
    ax.set_xlabel(factor)
    ax.set_ylabel(wrap(f"test score (mean over {len(d['seeds'])} source seeds)", 40))
    coloured = ", coloured by distance" if finite else ""
    ax.set_title(wrap(f"Test score vs {factor}: one line per task{coloured}", 70), fontsize=10)
    ax.grid(alpha=0.3)
    if finite:
        bar = fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, pad=0.02, aspect=30)
        bar.set_label(wrap(_axis_name(axis), 30), fontsize=8)
        bar.ax.tick_params(labelsize=7)
    legend_outside(fig, ax, n, title="task (distance)")
    return fig


def _task_intervals(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per task (rows) the mean over source seeds (columns) and its 95% t interval (NaN with one seed)."""
    mean, lo, hi, _ = S.t_interval(values)
    return np.asarray(mean, float), np.asarray(lo, float), np.asarray(hi, float)


def _contrast_plot(qid: str, d: dict[str, Any], axis: str):
    q = BY_ID[qid]
    tasks = sorted(d["contrast"], key=lambda t: d["distance"][t])
    values = np.array([d["contrast"][t] for t in tasks], dtype=float)  # task x defined source seed
    n_seeds = values.shape[1]
    level = q.kind == "level"
    fig, ax = figure(width=6.8, height=4.8)
    x = np.arange(len(tasks), dtype=float) if level else np.array([d["distance"][t] for t in tasks])
    for j in range(n_seeds):
        ax.scatter(x, values[:, j], s=9, color="grey", alpha=0.45, linewidths=0,
                   label="one source seed" if j == 0 else None, zorder=2)
    mean, lo, hi = _task_intervals(values)
    bars = np.vstack([mean - lo, hi - mean]) if n_seeds >= 2 else None
    ax.errorbar(x, mean, yerr=bars, fmt="o", ms=5, color="C0", ecolor="C0", elinewidth=1.2, capsize=3, zorder=3,
                label="task: mean over seeds" + (", 95% t interval" if bars is not None else ""))
    est, (e_lo, e_hi) = d["estimate"], d["ci"]
    if level:
        ax.axhline(est, color="C1", lw=1.5, label="estimate: mean over tasks")
        if math.isfinite(e_lo):
            ax.axhspan(e_lo, e_hi, color="C1", alpha=0.2, lw=0, label="seed-level 95% CI")
        ax.set_xticks(x, tasks, rotation=35 if len(tasks) > 4 else 0, ha="right" if len(tasks) > 4 else "center",
                      fontsize=7 if len(tasks) > 10 else 8)
        ax.set_xlabel(wrap(f"task, in order of {_axis_name(axis)} (nearest first; evenly spaced)", 90))
    elif np.ptp(x) > 0:
        _trend(ax, x, values, q.kind, d.get("bootstrap_ends_cov"))
        ax.set_xlabel(wrap(axis.split("; ")[0], 90))  # what the axis is; the report's text says the rest
    ax.axhline(0, color="black", lw=0.6)
    ordered = A.sort_values(d["factor"], d["settings"])
    ax.set_ylabel(wrap(CONTRAST.get(qid, f"{ordered[-1]} - {ordered[0]}"), 36))
    ci = N.interval(e_lo, e_hi) if math.isfinite(e_lo) else f"no interval ({n_seeds} source seed)"
    ax.set_title(wrap(f"{qid}: {q.short}", 90) + "\n" + f"estimate {N.number(est)}, seed-level 95% CI {ci}",
                 fontsize=9)
    ax.grid(alpha=0.3)
    legend_outside(fig, ax, 4, below=True)
    return fig


def _trend(ax, x: np.ndarray, values: np.ndarray, kind: str, ends_cov: list | None = None) -> None:
    """The OLS line over tasks (of the seed means: the mean of the seeds' own lines) and, with two or more source
    seeds, the pointwise 95% t interval over the seeds' lines: the seed-level band of the statistic. An `ends`
    question whose interval comes from the seed bootstrap (its seeds' values are cross-fitted) gets the band of
    that bootstrap instead: at each distance the line's bootstrap variance, from the covariance `ends_cov` of its
    (far, near) ends, in the same interval (stats.bootstrap_interval), so the band at either end is the interval
    the findings table prints."""
    grid = np.linspace(x.min(), x.max(), 60)
    coefs = np.polyfit(x, values, 1)  # one line per source seed (columns)
    lines = np.outer(coefs[0], grid) + coefs[1][:, None]  # seed x grid
    mean, lo, hi, _ = S.t_interval(lines.T)
    if ends_cov is not None:
        (ff, fn), (_, nn) = np.asarray(ends_cov, dtype=float)
        u = (grid - x.min()) / np.ptp(x)  # 0 at the near end, 1 at the far end
        var = ff * u ** 2 + nn * (1 - u) ** 2 + 2 * fn * u * (1 - u)
        _, lo, hi, _, _ = S.bootstrap_interval(mean, var, values.shape[1])
    what = "trend" if kind == "trend" else "line (the estimate is its far end)"
    ax.plot(grid, mean, color="C1", lw=1.6, label=f"OLS {what} over tasks")
    if values.shape[1] >= 2:
        ax.fill_between(grid, lo, hi, color="C1", alpha=0.2, lw=0, label="its seed-level 95% band")
