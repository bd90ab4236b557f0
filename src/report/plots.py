"""The report's PNG plots: score vs each swept factor, task x setting heatmaps, optimal setting vs distance (the
optimum chosen on val; a description).

Every plot has a title, axis labels and a legend outside the axes (one entry per target, so 7-20 targets never
cover the data or each other); the layer axis lists every layer of the sweep's archs in network order.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from src.report import analysis as A

MARKERS = "osD^vP*Xph<>"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> str:
    # bbox "tight" grows the canvas to hold the outside legend instead of clipping it.
    fig.savefig(path, dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return path.name


def _legend(ax, n: int) -> None:
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
              ncol=1 if n <= 14 else 2, title="target (distance)", title_fontsize=7, frameon=False)


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
    return [_save(fig, out / f"{name}.png") for name, fig in figures(df, fd)]


def figures(df: pd.DataFrame, fd: dict[str, dict]):
    """(name, matplotlib figure) for each plot of the report."""
    plt = _plt()
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
        fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(axis) + 3), 4.2))
        for target, row in table.iterrows():
            c, m = styles[target]
            ax.plot(x, row.to_numpy(dtype=float), marker=m, color=c, label=f"{target} ({ranks[target]})")
        ax.set_xticks(range(len(axis)), [str(a) for a in axis], rotation=30 if len(axis) > 6 else 0)
        ax.set_xlabel(factor)
        ax.set_ylabel("test score (other factors chosen on val)")
        ax.set_title(f"Target score vs {factor}")
        _legend(ax, len(table))
        ax.grid(alpha=0.3)
        yield f"score_vs_{factor}", fig

        fig, ax = plt.subplots(figsize=(2.5 + 0.8 * len(labels), 1.4 + 0.4 * len(table)))
        values = table.to_numpy(dtype=float)
        im = ax.imshow(values, cmap="magma", aspect="auto")
        mid = np.nanmin(values) + 0.5 * (np.nanmax(values) - np.nanmin(values)) if np.isfinite(values).any() else 0
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
        ax.set_yticks(range(len(table)), [f"{t} ({ranks[t]})" for t in table.index])
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
        yield f"optimal_{factor}_vs_distance", _optimal_vs_distance(plt, df, factor, entry, styles)


def _optimal_vs_distance(plt, df: pd.DataFrame, factor: str, entry: dict, styles: dict):
    """Each target's optimal setting against its distance; the y axis holds every setting (for layers: every
    layer of the arch, evenly spaced in network order); tasks on the same point sit side by side."""
    targets = list(entry["optimal"])
    optimal = {t: entry["optimal"][t] for t in targets}
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
    fig, ax = plt.subplots(figsize=(6.5, max(3.6, 0.28 * len(axis or []) + 1.5)))
    for (x, y), group in points.items():
        for i, t in enumerate(group):
            dx = (i - (len(group) - 1) / 2) * (0.12 if integral else 0.02 * span)  # side by side, not on top
            c, m = styles[t]
            ax.scatter([x + dx], [y], color=c, marker=m, s=55, label=f"{t} ({entry['distance'][t]:.3g})",
                       edgecolor="black", linewidth=0.4, zorder=3)
    if axis is not None:
        ax.set_yticks(range(len(axis)), axis)
        ax.set_ylim(-0.6, len(axis) - 0.4)
    if integral:
        ax.set_xticks(xs)
    pad = 0.6 if integral else 0.08 * span
    ax.set_xlim(min(xs) - pad, max(xs) + pad)
    ax.set_xlabel(df.attrs.get("distance_axis", "distance_rank (a priori distance from the source task)"))
    ax.set_ylabel(f"optimal {factor}")
    ax.set_title(f"Optimal {factor} (best on val) vs distance: a description (Findings tests it)", fontsize=9)
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    order = np.argsort([list(styles).index(lb.rsplit(" (", 1)[0]) for lb in labels])
    ax.legend([handles[i] for i in order], [labels[i] for i in order], fontsize=7, loc="upper left",
              bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, ncol=1 if len(labels) <= 14 else 2,
              title="target (distance)", title_fontsize=7, frameon=False)
    return fig
