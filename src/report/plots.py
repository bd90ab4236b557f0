"""The report's PNG plots: score vs each swept factor, task x setting heatmaps, optimal setting vs distance (the
optimum chosen on val; a description).

Every plot has a title, axis labels and a legend outside the axes (one entry per target, so 7-20 targets never
cover the data or each other), laid out to fit inside its figure (src.report.layout); the layer axis lists every
layer of the sweep's archs in network order, evenly spaced. A task has the colour and marker of
src.report.plot_tasks in every figure; scores in different metrics get their own panels, each task's chance level
dotted.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from src.report import analysis as A
from src.report import plot_tasks as P
from src.report.layout import figure, figure_rows, fit_titles, legend_outside, save, wrap


def layer_axis(df: pd.DataFrame, values: set) -> list[str]:
    """Every layer of the sweep's archs, input side first, from the arch registry (aliases such as conv_last
    only when a job used them); falls back to the settings present if an arch is unknown."""
    from src.models.registry import ARCHS

    ok = A.ok_rows(df)
    layers: set[str] = set()
    try:
        for name, depth in ok[["arch", "depth"]].drop_duplicates().itertuples(index=False):
            arch = ARCHS[name]
            unset = depth is None or (isinstance(depth, float) and math.isnan(depth))
            d = None if not arch.depths or unset else int(depth)
            layers |= {n for n, (tap, _, _) in arch.spec(d, 1.0, 10).vocab.items() if tap == n}
    except Exception:  # an arch this checkout does not know: the settings present still make an axis
        layers = set()
    return A.sort_values("layer", layers | set(values))


def write_plots(df: pd.DataFrame, out: Path, fd: dict[str, dict], keys: dict[str, P.TaskKey] | None = None
                ) -> list[str]:
    """Every plot as `out/<name>.png`; returns the file names in report order. `fd`: per ordinal factor, each
    task's optimal setting and distance (src.report.analysis.optimal_settings); `keys`: each task's colour,
    metric and chance level (src.report.plot_tasks.task_keys: the report passes the same to the findings plots)."""
    return [save(fig, out / f"{name}.png") for name, fig in figures(df, fd, keys)]


def figures(df: pd.DataFrame, fd: dict[str, dict], keys: dict[str, P.TaskKey] | None = None):
    """(name, matplotlib figure) for each plot of the report."""
    keys = keys if keys is not None else P.task_keys(df)
    ok = A.ok_rows(df)
    seeds = ok["seed"].astype(str).nunique() if "seed" in ok else 1
    swept = A.swept_factors(df)
    # what each cell is: a mean over source seeds (of the job chosen on val among the other factors' settings)
    what = f"mean over {seeds} source seed{'s' if seeds != 1 else ''}" + (
        "; other factors chosen on val" if len(swept) > 1 else "")
    for factor in swept:
        table = A.score_by_setting(df, factor)
        # Layers sit at their place in the net (conv3 leaves a gap between conv2 and conv4 when not swept).
        axis = layer_axis(df, set(table.columns)) if factor == "layer" else list(table.columns)
        x = [axis.index(c) for c in table.columns]
        lo, hi = _seed_band(df, factor, table)
        band = "; band: 95% t interval over source seeds" if lo is not None else ""
        title = f"Target test score vs {factor} ({what}){band}"
        curves = score_curves(table, x, [str(a) for a in axis], factor, keys, title, lo, hi)
        yield f"score_vs_{factor}", fit_titles(curves)
        yield f"heatmap_{factor}", fit_titles(_heatmap(table, factor, keys, what))

    for factor, entry in fd.items():
        yield f"optimal_{factor}_vs_distance", fit_titles(_optimal_vs_distance(df, factor, entry, keys))


def score_curves(table: pd.DataFrame, x: list, axis: list[str], factor: str, keys: dict[str, P.TaskKey],
                 title: str, lo: pd.DataFrame | None = None, hi: pd.DataFrame | None = None):
    """One line per task (rows of `table`, settings at positions `x` of the tick labels `axis`), in its colour and
    marker, with its chance level dotted and, given `lo`/`hi`, its interval as a band; one panel per metric (an
    accuracy and an mAP never share a score axis), one legend for all."""
    panels = P.by_metric(list(table.index), keys)
    width = max(6.0, 0.55 * len(axis) + 3) + (1.6 if len(table) > 14 else 0.0)
    fig, axes = figure_rows(width, [4.4] if len(panels) == 1 else [3.2 if len(ts) > 2 else 2.3 for _, ts in panels])
    lines = {}
    for ax, (metric, tasks) in zip(axes, panels):
        for target in tasks:
            k = keys[target]
            lines[target], = ax.plot(x, table.loc[target].to_numpy(dtype=float), marker=k.marker, color=k.colour,
                                     label=k.label(target, chance=True))
            if lo is not None:
                ax.fill_between(x, lo.loc[target].to_numpy(float), hi.loc[target].to_numpy(float), color=k.colour,
                                alpha=0.12, lw=0)
        P.chance_lines(ax, tasks, keys)
        ax.set_xticks(range(len(axis)), axis, rotation=30 if len(axis) > 6 else 0)
        ax.set_xlabel(factor)
        ax.set_ylabel(wrap(f"test {P.metric_name(metric)}", 30))
        ax.grid(alpha=0.3)
    note = P.chance_note(list(table.index), keys)
    axes[0].set_title(wrap(title + ("; one panel per metric" if len(panels) > 1 else "") + (f"; {note}" if note
                                                                                            else ""), 60), fontsize=10)
    order = [t for t in keys if t in lines]
    chance = any(keys[t].chance is not None for t in order)
    legend_outside(fig, axes[0], len(order), title="target (distance; chance)" if chance else "target (distance)",
                   handles=[lines[t] for t in order], labels=[lines[t].get_label() for t in order])
    return fig


def _heatmap(table: pd.DataFrame, factor: str, keys: dict[str, P.TaskKey], what: str):
    """task x setting, the mean test score in each cell; one panel (and colour scale) per metric."""
    labels = [str(c) for c in table.columns]
    panels = P.by_metric(list(table.index), keys)
    fig, axes = figure_rows(4.4 + 0.8 * len(labels), [0.3 * len(ts) + (1.5 if len(panels) == 1 else 0.9)
                                                      for _, ts in panels])
    for ax, (metric, tasks) in zip(axes, panels):
        values = table.loc[tasks].to_numpy(dtype=float)
        im = ax.imshow(values, cmap="magma", aspect="auto")
        finite = np.isfinite(values).any()
        mid = np.nanmin(values) + 0.5 * (np.nanmax(values) - np.nanmin(values)) if finite else 0
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
        ax.set_yticks(range(len(tasks)), [keys[t].label(t, chance=True) for t in tasks], fontsize=8)
        for i in range(len(tasks)):
            for j in range(len(labels)):
                v = values[i, j]
                if not math.isnan(v):
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if v < mid else "black")  # readable on dark and light cells
        fig.colorbar(im, ax=ax, label=wrap(f"test {P.metric_name(metric)}", 20))
        ax.set_xlabel(factor)
        ax.set_ylabel("target (distance; chance)" if any(keys[t].chance is not None for t in tasks)
                      else "target (distance)", fontsize=8)
    axes[0].set_title(wrap(f"Target test score ({what}): task x {factor}" + (
        "; one panel and colour scale per metric" if len(panels) > 1 else ""), 80), fontsize=10)
    return fig


def _seed_band(df: pd.DataFrame, factor: str, table: pd.DataFrame):
    """(lo, hi) tables shaped like `table`: per target and setting, the 95% t interval over source seeds of each
    seed's score (its target samples averaged), cut at [0, 1]; (None, None) with fewer than 2 seeds."""
    from src.report import stats as S

    per = [p.reindex(index=table.index, columns=table.columns) for p in _per_seed(df, factor)]
    if not per:
        return None, None
    values = np.stack([p.to_numpy(float) for p in per], axis=-1)  # target x setting x seed
    _, lo, hi, _ = S.t_interval(values)
    lo, hi = S.within(lo, hi, 0.0, 1.0)
    return (pd.DataFrame(lo, index=table.index, columns=table.columns),
            pd.DataFrame(hi, index=table.index, columns=table.columns))


def _per_seed(df: pd.DataFrame, factor: str, score: str = "target_score") -> list[pd.DataFrame]:
    """Each source seed's target x setting table (`A.score_by_setting` of its own jobs); [] with fewer than 2."""
    ok = A.ok_rows(df)
    if "seed" not in ok or ok["seed"].astype(str).nunique() < 2:
        return []
    return [A.score_by_setting(jobs, factor, score) for _, jobs in ok.groupby(ok["seed"].astype(str))]


def _per_seed_optimum(df: pd.DataFrame, factor: str) -> dict[str, list]:
    """Per task, each source seed's own optimal setting (best val score of that seed's jobs, its target samples
    averaged): how much the optimum moves between source nets."""
    out: dict[str, list] = {}
    for table in _per_seed(df, factor, "val_score"):
        for task, row in table.iterrows():
            out.setdefault(task, []).extend(A.tied_best(row))  # a seed's tied optima: the bar spans them all
    return out


def _optimal_vs_distance(df: pd.DataFrame, factor: str, entry: dict, keys: dict[str, P.TaskKey]):
    """Each target's optimal setting against its distance; the y axis holds every setting, evenly spaced (for
    layers: every layer of the arch in network order); tasks on the same point sit side by side. With several
    source seeds, a bar per task spans the seeds' own optima. A task without val scores (chosen on test) says so
    in the legend; a measured distance at its maximum is marked (the task may be farther)."""
    targets = list(entry["optimal"])
    optimal = {t: entry["optimal"][t] for t in targets}
    per_seed = _per_seed_optimum(df, factor)
    swept = set(A.score_by_setting(df, factor).columns)
    if factor in A.NUMERIC:
        axis = None  # the value itself is the position
    elif factor == "layer":
        axis = layer_axis(df, swept)
    else:
        axis = A.sort_values(factor, swept | set(optimal.values()))
    pos = (lambda v: float(v)) if axis is None else (lambda v: float(axis.index(v)))
    points: dict[tuple, list[str]] = {}
    for t in targets:
        points.setdefault((entry["distance"][t], pos(optimal[t])), []).append(t)
    xs = sorted(set(entry["distance"].values()))
    span = (max(xs) - min(xs)) or 1.0
    integral = all(float(x).is_integer() for x in xs)  # a priori ranks: one tick per rank
    fig, ax = figure(6.8 + (1.6 if len(targets) > 14 else 0.0), max(3.8, 0.28 * len(axis or []) + 1.8))
    marks = {}
    for (x, y), group in points.items():
        for i, t in enumerate(group):
            dx = (i - (len(group) - 1) / 2) * (0.12 if integral else 0.02 * span)  # side by side, not on top
            c, m = keys[t].colour, keys[t].marker
            if len(per_seed.get(t, [])) >= 2:
                seeds = [pos(v) for v in per_seed[t]]
                ax.plot([x + dx] * 2, [min(seeds), max(seeds)], color=c, lw=1.6, marker="_", ms=9, alpha=0.9,
                        zorder=2)
            marks[t] = ax.scatter([x + dx], [y], color=c, marker=m, s=55, edgecolor="black", linewidth=0.4, zorder=3,
                                  label=keys[t].label(t) + (" *" if keys[t].on_test else ""))
            others = [pos(v) for v in entry.get("ties", {}).get(t, [])[1:]]  # tied optima: hollow markers
            if others:
                ax.scatter([x + dx] * len(others), others, facecolor="none", edgecolor=c, marker=m, s=55,
                           linewidth=1.2, zorder=3)
    if axis is not None:
        ax.set_yticks(range(len(axis)), axis)
        ax.set_ylim(-0.6, len(axis) - 0.4)
    else:  # a numeric factor (depth, epochs, n_components): ticks at the settings, not at fractions between them
        ticks = sorted({float(v) for v in swept | set(optimal.values())})
        ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
        step = min((b - a for a, b in zip(ticks, ticks[1:])), default=1.0)
        ax.set_ylim(ticks[0] - 0.5 * step, ticks[-1] + 0.5 * step)
    if integral:
        ax.set_xticks(xs)
    pad = 0.6 if integral else 0.08 * span
    ax.set_xlim(min(xs) - pad, max(xs) + pad)
    axis_name = df.attrs.get("distance_axis", "distance_rank (a priori distance from the source task)")
    ax.set_xlabel(wrap(axis_name.split("; ")[0], 70))  # what the axis is (the report's text says the rest)
    ax.set_ylabel(f"optimal {factor}")
    ceiling = P.ceiling_line(ax, axis_name, xs)
    bars = "; bar: the source seeds' own optima" if per_seed else ""
    bars += "; hollow: tied optima" if entry.get("ties") else ""
    bars += "; * no val score: chosen on test" if any(keys[t].on_test for t in targets) else ""
    bars += "; dashed: the distance's maximum, a task there may be farther" if ceiling else ""
    # Only the layer has a question about its optimum and distance (layer_optimum_shift); width_helps and the other
    # level questions ask whether one end of the factor beats the other, not whether the optimum moves.
    tested = ("the test is the Findings' layer_optimum_shift row" if factor == "layer"
              else "no Findings question tests whether it moves")
    ax.set_title(wrap(f"Optimal {factor} (best mean val score over source seeds{bars}) vs distance: a "
                      f"description ({tested})", 62), fontsize=9)
    ax.grid(alpha=0.3)
    order = [t for t in keys if t in marks]
    legend_outside(fig, ax, len(order), title="target (distance)", handles=[marks[t] for t in order],
                   labels=[marks[t].get_label() for t in order])
    return fig
