"""The report's PNG plots: score vs each swept factor, task x setting heatmaps, optimal setting vs distance (the
optimum chosen on val; a description).

Every plot has a title, axis labels and a legend outside the axes (one entry per target, so 7-20 targets never
cover the data or each other), laid out to fit inside its figure (src.report.layout); the layer axis lists every
layer of the sweep's archs in network order, evenly spaced.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from src.report import analysis as A
from src.report.layout import MARKERS, figure, legend_outside, save, wrap
from src.report.layout import plt as _plt


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


def _targets(ranks: pd.Series):
    """(target, colour, marker) per target in distance order: distinct for up to 20 targets."""
    cmap = _plt().get_cmap("tab20" if len(ranks) > 10 else "tab10")
    return [(t, cmap(i % cmap.N), MARKERS[i % len(MARKERS)]) for i, t in enumerate(ranks.index)]


def write_plots(df: pd.DataFrame, out: Path, fd: dict[str, dict]) -> list[str]:
    """Every plot as `out/<name>.png`; returns the file names in report order. `fd`: per ordinal factor, each
    task's optimal setting and distance (src.report.analysis.optimal_settings)."""
    return [save(fig, out / f"{name}.png") for name, fig in figures(df, fd)]


def figures(df: pd.DataFrame, fd: dict[str, dict]):
    """(name, matplotlib figure) for each plot of the report."""
    tasks = A.task_table(df)
    axis_name = A.distance_column(tasks)  # shift or measured distance where known, else distance_rank
    ranks = tasks.set_index("target")[axis_name].map(lambda v: f"{v:.3g}" if isinstance(v, float) else v)
    styles = {t: (c, m) for t, c, m in _targets(ranks)}
    for factor in A.swept_factors(df):
        table = A.score_by_setting(df, factor)
        labels = [str(c) for c in table.columns]
        # Layers sit at their place in the net (conv3 leaves a gap between conv2 and conv4 when not swept).
        axis = layer_axis(df, set(table.columns)) if factor == "layer" else list(table.columns)
        x = [axis.index(c) for c in table.columns]
        fig, ax = figure(max(6.0, 0.55 * len(axis) + 3) + (1.6 if len(table) > 14 else 0.0), 4.4)
        lo, hi = _seed_band(df, factor, table)
        for target, row in table.iterrows():
            c, m = styles[target]
            ax.plot(x, row.to_numpy(dtype=float), marker=m, color=c, label=f"{target} ({ranks[target]})")
            if lo is not None:
                ax.fill_between(x, lo.loc[target].to_numpy(float), hi.loc[target].to_numpy(float), color=c,
                                alpha=0.12, lw=0)
        ax.set_xticks(range(len(axis)), [str(a) for a in axis], rotation=30 if len(axis) > 6 else 0)
        ax.set_xlabel(factor)
        ax.set_ylabel("test score (other factors chosen on val)")
        ax.set_title(wrap(f"Target score vs {factor}" + ("; band: 95% t interval over source seeds"
                                                          if lo is not None else ""), 45))
        legend_outside(fig, ax, len(table), title="target (distance)")
        ax.grid(alpha=0.3)
        yield f"score_vs_{factor}", fig

        fig, ax = figure(4.0 + 0.8 * len(labels), 1.8 + 0.3 * len(table))
        values = table.to_numpy(dtype=float)
        im = ax.imshow(values, cmap="magma", aspect="auto")
        mid = np.nanmin(values) + 0.5 * (np.nanmax(values) - np.nanmin(values)) if np.isfinite(values).any() else 0
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
        ax.set_yticks(range(len(table)), [f"{t} ({ranks[t]})" for t in table.index], fontsize=8)
        for i in range(len(table)):
            for j in range(len(labels)):
                v = table.iat[i, j]
                if not (isinstance(v, float) and math.isnan(v)):
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if v < mid else "black")  # readable on dark and light cells
        fig.colorbar(im, ax=ax, label="target score")
        ax.set_xlabel(factor)
        ax.set_ylabel("target (distance)")
        ax.set_title(f"Target score: task x {factor}")
        yield f"heatmap_{factor}", fig

    for factor, entry in fd.items():
        yield f"optimal_{factor}_vs_distance", _optimal_vs_distance(df, factor, entry, styles)


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


def _optimal_vs_distance(df: pd.DataFrame, factor: str, entry: dict, styles: dict):
    """Each target's optimal setting against its distance; the y axis holds every setting, evenly spaced (for
    layers: every layer of the arch in network order); tasks on the same point sit side by side. With several
    source seeds, a bar per task spans the seeds' own optima."""
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
    for (x, y), group in points.items():
        for i, t in enumerate(group):
            dx = (i - (len(group) - 1) / 2) * (0.12 if integral else 0.02 * span)  # side by side, not on top
            c, m = styles[t]
            if len(per_seed.get(t, [])) >= 2:
                seeds = [pos(v) for v in per_seed[t]]
                ax.plot([x + dx] * 2, [min(seeds), max(seeds)], color=c, lw=1.6, marker="_", ms=9, alpha=0.9,
                        zorder=2)
            ax.scatter([x + dx], [y], color=c, marker=m, s=55, label=f"{t} ({entry['distance'][t]:.3g})",
                       edgecolor="black", linewidth=0.4, zorder=3)
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
    bars = "; bar: the source seeds' own optima" if per_seed else ""
    bars += "; hollow: tied optima" if entry.get("ties") else ""
    ax.set_title(wrap(f"Optimal {factor} (best mean val score over source seeds{bars}) vs distance: a "
                      "description (Findings tests it)", 70), fontsize=9)
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    order = np.argsort([list(styles).index(lb.rsplit(" (", 1)[0]) for lb in labels])
    legend_outside(fig, ax, len(labels), title="target (distance)", handles=[handles[i] for i in order],
                   labels=[labels[i] for i in order])
    return fig
