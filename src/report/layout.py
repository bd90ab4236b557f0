"""The report's figure layout, shared by every plot: matplotlib's constrained layout sizes the axes so that titles,
labels, colour bars and a legend outside the axes all fit inside the figure; long titles and axis names are wrapped
to the figure's width instead of running past it."""

from __future__ import annotations

import textwrap
from pathlib import Path

MARKERS = "osD^vP*Xph<>"
DPI = 110


def plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    return pyplot


def figure(width: float, height: float):
    """(figure, axes) laid out by constrained layout."""
    fig = plt().figure(figsize=(width, height), layout="constrained")
    # A little more than the default padding: a colour bar's end tick label sits half outside its axes.
    fig.get_layout_engine().set(w_pad=6 / 72, h_pad=8 / 72)
    return fig, fig.add_subplot()


def figure_rows(width: float, heights: list[float]):
    """(figure, list of axes) stacked top to bottom, each `heights[i]` inches tall (plus the shared margins), laid
    out by constrained layout like `figure`: one panel per metric, so that scores in different metrics never share
    an axis."""
    fig, ax = figure(width, sum(heights) + 0.9 * (len(heights) > 1))
    if len(heights) == 1:
        return fig, [ax]
    ax.remove()
    return fig, list(fig.subplots(len(heights), 1, gridspec_kw={"height_ratios": heights}, squeeze=False)[:, 0])


def fit_titles(fig):
    """`fig` widened until each axes title fits over its axes, and returned. An axes title is centred on its axes,
    and constrained layout makes room for it above the axes but not beside them: where a legend of long task names
    takes the figure's right side, the axes are narrower than the wrapped title, which then ran past the figure's
    left edge and under the legend (a 3-task width sweep's score-vs-width plot). Widening the figure widens the
    axes by as much (the legend keeps its size)."""
    for _ in range(3):  # constrained layout re-balances after each widening: settle in a few rounds
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        extra = max((ax.title.get_window_extent(renderer).width - ax.get_window_extent(renderer).width
                     for ax in fig.axes if ax.get_title()), default=0.0) / fig.dpi
        if extra <= 0:
            break
        fig.set_figwidth(fig.get_figwidth() + extra + 0.1)
    return fig


def wrap(text: str, width: int) -> str:
    """`text` broken into lines of at most `width` characters (at spaces)."""
    return textwrap.fill(text, width=width, break_long_words=False, break_on_hyphens=False)


def legend_outside(fig, ax, n: int, title: str | None = None, handles=None, labels=None, below: bool = False):
    """The axes' legend outside the axes, where constrained layout leaves room for it, so it never covers the
    data whatever the number of tasks: at the figure's right edge (two columns past 14 entries), or under the
    axes (`below`, two columns: a few long entries)."""
    if handles is None:
        handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return None
    where = {"loc": "outside lower center", "ncols": 2} if below else {"loc": "outside right upper",
                                                                        "ncols": 1 if n <= 14 else 2}
    return fig.legend(handles, labels, fontsize=7, title=title, title_fontsize=7, frameon=False, **where)


def save(fig, path: Path) -> str:
    """`fig` as the PNG `path` (written whole or not at all: a crash leaves the previous figure), then closed."""
    from src.cache import atomic_open

    try:
        with atomic_open(path, "wb", durable=False) as f:
            fig.savefig(f, dpi=DPI, format=path.suffix.lstrip(".") or "png")  # (a file object has no extension)
    finally:
        plt().close(fig)
    return path.name
