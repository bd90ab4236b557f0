"""Plots of the findings: per factor, score-vs-setting curves (mean over source seeds; each task in the colour and
marker it has in every figure of the report, its chance level dotted, one panel per metric), and per question the
statistic's own picture (each task's point in its colour; its metric named on the axis):
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
import pandas as pd
from matplotlib.collections import LineCollection
from matplotlib.container import ErrorbarContainer
from matplotlib.lines import Line2D

from src.report import analysis as A
from src.report import numbers as N
from src.report import plot_tasks as P
from src.report import stats as S
from src.report.layout import figure, fit_titles, legend_outside, save, wrap
from src.report.questions import BY_ID

CONTRAST = {"layer_gap_shrinks": "late-minus-early gap", "layer_optimum_shift": "best earlier - best late layer",
            "finetune_far_gain": "fine-tuning gain"}


def findings_plots(details: dict[str, Any], axis: str, out: Path, keys: dict[str, P.TaskKey] | None = None
                   ) -> list[str]:
    """Every findings figure as `out/<name>.png`; returns the file names in report order. `keys`: each task's
    colour, metric and chance level (src.report.plot_tasks.task_keys; the report's other plots use the same)."""
    return [save(fig, out / f"{name}.png") for name, fig in findings_figures(details, axis, keys)]


def findings_figures(details: dict[str, Any], axis: str, keys: dict[str, P.TaskKey] | None = None
                     ) -> Iterator[tuple[str, Any]]:
    """(name, matplotlib figure) for each findings plot: one score-vs-setting per factor, one per question. Without
    `keys`, the tasks' colours follow their distance order here and no metric or chance level is known."""
    if keys is None:
        distance = {t: v for d in details.values() for t, v in d["distance"].items()}
        keys = P.keys_for(list(distance), distance)
    curves_done = set()
    # A factor no question answers (experiment=estimator_zoo: width never crossed with arch and depth) gets no
    # curve here: the Findings' score-vs-width, a mean over whichever nets each width has, drew the comparison its
    # row refuses ("not answered: width is not crossed with ...").
    answered = {d["factor"] for d in details.values() if "contrast" in d}
    for qid, d in details.items():
        if d["factor"] not in curves_done and d["factor"] in answered:
            curves_done.add(d["factor"])
            yield f"findings_score_vs_{d['factor']}", fit_titles(_curves(d, keys))
        if "contrast" in d:
            yield f"findings_{qid}", fit_titles(_contrast_plot(qid, d, axis, keys))


def _axis_name(axis: str) -> str:
    """The distance axis's name without what the report's note adds to it: its source ('shift
    (target.data.shift)' -> 'shift'), how it was measured and the seeds' agreement ('measured proxy A-distance
    from the sweep's source net(s) ...; the 6 source seeds ...' -> 'measured proxy A-distance')."""
    return axis.split(";")[0].split(" (")[0].split(" from ")[0]


def _curves(d: dict[str, Any], keys: dict[str, P.TaskKey]):
    """The question's score table: one line per task in the task's own colour and marker (the same as in every
    figure of the report; the legend gives each task's distance), its chance level dotted, one panel per metric."""
    from src.report.plots import score_curves

    table = pd.DataFrame.from_dict(d["curves"], orient="index", columns=[str(v) for v in d["settings"]])
    n = len(d["seeds"])
    title = (f"Test score vs {d['factor']}: one line per task, the mean over {n} source seed{'s' if n != 1 else ''}"
             " (no interval drawn: the question's own figure has them)")
    return score_curves(table, list(range(len(table.columns))), list(table.columns), d["factor"], keys, title)


def _task_intervals(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per task (rows) the mean over source seeds (columns) and its 95% t interval (NaN with one seed)."""
    mean, lo, hi, _ = S.t_interval(values)
    return np.asarray(mean, float), np.asarray(lo, float), np.asarray(hi, float)


def _contrast_plot(qid: str, d: dict[str, Any], axis: str, keys: dict[str, P.TaskKey]):
    q = BY_ID[qid]
    tasks = sorted(d["contrast"], key=lambda t: d["distance"][t])
    values = np.array([d["contrast"][t] for t in tasks], dtype=float)  # task x defined source seed
    n_seeds = values.shape[1]
    level = q.kind == "level"
    fig, ax = figure(width=8.4 + (1.6 if len(tasks) > 14 else 0.0), height=5.0)
    x = np.arange(len(tasks), dtype=float) if level else np.array([d["distance"][t] for t in tasks])
    for j in range(n_seeds):
        ax.scatter(x, values[:, j], s=9, color="grey", alpha=0.45, linewidths=0,
                   label="one source seed" if j == 0 else None, zorder=2)
    mean, lo, hi = _task_intervals(values)
    bars = np.vstack([mean - lo, hi - mean]) if n_seeds >= 2 else None
    # Each task in its own colour and marker (the report's every figure uses the same), hollow where its metric is
    # not the one most tasks have: the contrast is a difference of that task's own scores.
    colours = [keys[t].colour for t in tasks]
    common = P.main_metric(tasks, keys)
    if bars is not None:
        ax.errorbar(x, mean, yerr=bars, fmt="none", ecolor=colours, elinewidth=1.2, zorder=3)
        ax.scatter(np.r_[x, x], np.r_[lo, hi], marker="_", s=40, c=colours + colours, linewidths=1.2, zorder=3)
    marks = {}
    for xi, m, t in zip(x, mean, tasks):
        k = keys[t]
        other = k.metric != common
        marks[t] = ax.scatter([xi], [m], marker=k.marker, s=42, zorder=4, linewidths=1.2 if other else 0.5,
                              facecolor="white" if other else k.colour, edgecolor=k.colour if other else "black",
                              label=k.label(t, metric=other))
    proxy = ErrorbarContainer((Line2D([], [], marker="o", ls="none", color="0.2"), (),
                               (LineCollection([], colors="0.2"),)), has_yerr=bars is not None)
    key = [(proxy, "task: mean over seeds" + (", 95% t interval" if bars is not None else ""))]
    est, (e_lo, e_hi) = d["estimate"], d["ci"]
    if level:
        key.append((ax.axhline(est, color="0.15", lw=1.5), "estimate: mean over tasks"))
        if math.isfinite(e_lo):
            key.append((ax.axhspan(e_lo, e_hi, color="0.55", alpha=0.22, lw=0), "seed-level 95% CI"))
        ax.set_xticks(x, tasks, rotation=35 if len(tasks) > 4 else 0, ha="right" if len(tasks) > 4 else "center",
                      fontsize=7 if len(tasks) > 10 else 8)
        ax.set_xlabel(wrap(f"task, in order of {_axis_name(axis)} (nearest first; evenly spaced)", 90))
    elif np.ptp(x) > 0:
        _trend(ax, x, values, q.kind, d.get("bootstrap_ends_cov"))
        ax.set_xlabel(wrap(axis.split("; ")[0], 90))  # what the axis is; the report's text says the rest
        P.ceiling_line(ax, axis, x)
    ax.axhline(0, color="black", lw=0.6)
    ordered = A.sort_values(d["factor"], d["settings"])
    contrast = CONTRAST.get(qid, f"{ordered[-1]} - {ordered[0]}")
    ax.set_ylabel(wrap(f"{contrast} (test {P.metrics_text(tasks, keys)})", 40))
    ci = N.interval(e_lo, e_hi) if math.isfinite(e_lo) else f"no interval ({n_seeds} source seed)"
    rise = " (the line's change from the nearest to the farthest task)" if q.kind == "trend" else ""
    p = N.pvalue(d.get("task_p"))  # "0.168", or "p < 0.001"
    p = "; " + f"task-level {p if p.startswith('p') else 'p ' + p}".replace(" ", "\xa0") if p else ""  # unbroken
    ax.set_title(wrap(f"{qid}: {q.short}", 65) + "\n" + wrap(f"estimate {N.number(est)}{rise}, seed-level 95% CI "
                                                             f"{ci}{p}", 65), fontsize=9)
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    stats = [(h, lb) for h, lb in zip(handles, labels) if lb not in {m.get_label() for m in marks.values()}]
    stats = stats[:1] + key + stats[1:]  # the seeds' points, the tasks' means, then the statistic
    legend_outside(fig, ax, len(stats), below=True, handles=[h for h, _ in stats], labels=[lb for _, lb in stats])
    order = [t for t in keys if t in marks]
    legend_outside(fig, ax, len(order), title="task (distance)", handles=[marks[t] for t in order],
                   labels=[marks[t].get_label() for t in order])
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
    ax.plot(grid, mean, color="0.15", lw=1.6, label=f"OLS {what} over tasks")  # (black and grey: no task's colour)
    if values.shape[1] >= 2:
        ax.fill_between(grid, lo, hi, color="0.55", alpha=0.22, lw=0, label="its seed-level 95% band")
