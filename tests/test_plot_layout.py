"""Every plot of the report, drawn for simulated 7- and 20-task sweeps (result.json files, nothing trained), checked
from matplotlib's own artists after a draw: no text past the figure's edge, no legend over plotted data, legends
outside the axes; and the findings plots draw what the statistics are (per-task interval bars, the fitted line and
its seed-level band)."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.text import Text

from src.report import analysis as A
from src.report import findings as F
from src.report.collect import load_results
from src.report.findings_plots import findings_figures
from src.report.plot_tasks import task_keys
from src.report.plots import figures
from tests.simulate_sweeps import write_factor_sweep


def _hidden_ticks(fig) -> set[int]:
    """Tick labels of ticks outside their axis's view interval: matplotlib keeps them but never draws them."""
    hidden = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            eps = 1e-9 * max(1.0, hi - lo)
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if not lo - eps <= tick.get_loc() <= hi + eps:
                    hidden |= {id(tick.label1), id(tick.label2)}
    return hidden


def _data_points(ax) -> np.ndarray:
    """Display coordinates of the axes' plotted data: line vertices, scatter offsets, interval bars."""
    pts = [line.get_transform().transform(line.get_xydata()) for line in ax.get_lines() if len(line.get_xydata())]
    for c in ax.collections:
        if isinstance(c, LineCollection):
            pts += [c.get_transform().transform(np.asarray(s)) for s in c.get_segments() if len(s)]
        elif len(c.get_offsets()) and not isinstance(c, PolyCollection):
            pts.append(c.get_offset_transform().transform(c.get_offsets()))
    return np.concatenate(pts) if pts else np.zeros((0, 2))


def layout_problems(fig) -> list[str]:
    fig.canvas.draw()
    renderer, edge = fig.canvas.get_renderer(), fig.bbox
    problems = []
    hidden = _hidden_ticks(fig)
    for t in fig.findobj(Text):
        if not t.get_visible() or not t.get_text().strip() or id(t) in hidden:
            continue
        e = t.get_window_extent(renderer)
        if e.x0 < edge.x0 - 1 or e.x1 > edge.x1 + 1 or e.y0 < edge.y0 - 1 or e.y1 > edge.y1 + 1:
            problems.append(f"text {t.get_text()[:30]!r} past the figure's edge")
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    for legend in legends:
        box = legend.get_window_extent(renderer)
        for ax in fig.axes:
            pts = _data_points(ax)
            inside = ((pts[:, 0] >= box.x0) & (pts[:, 0] <= box.x1) & (pts[:, 1] >= box.y0) & (pts[:, 1] <= box.y1))
            if inside.any():
                problems.append(f"legend over {int(inside.sum())} plotted points")
            if ax.get_label() != "<colorbar>" and box.overlaps(ax.get_window_extent(renderer)):
                problems.append("legend inside the axes")
    return problems


def _every_plot(root, n_tasks: int, factor: str, settings: tuple):
    write_factor_sweep(root, n_tasks, n_seeds=4, factor=factor, settings=settings)
    df = F.with_task_axes(load_results([root]))
    items, kind = F.answers(df)
    details = {a.q.id: F.details(a) for a in items}
    keys = task_keys(df)  # as the report draws them: one colour per task in every figure
    return details, [*findings_figures(details, kind, keys), *figures(df, A.optimal_settings(df), keys)]


@pytest.mark.parametrize("n_tasks", [7, 20])
def test_every_plot_fits_its_figure_with_legends_clear_of_the_data(tmp_path, n_tasks):
    layer_details, layer = _every_plot(tmp_path / "layer", n_tasks, "layer",
                                       ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"))
    width_details, width = _every_plot(tmp_path / "width", n_tasks, "width", ("tiny", "small", "medium", "large"))
    figs = dict(layer + width)
    assert set(figs) >= {"findings_score_vs_layer", "findings_layer_gap_shrinks", "findings_layer_optimum_shift",
                         "findings_score_vs_width", "findings_width_helps", "score_vs_layer", "heatmap_layer",
                         "optimal_layer_vs_distance", "score_vs_width"}
    for name, fig in figs.items():
        assert layout_problems(fig) == [], name
        ax = fig.axes[0]
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel(), name
        if not name.startswith("heatmap"):  # a heatmap's key is its colour bar, its rows are labelled tasks
            # a question's figure: the statistic's key under the axes and the tasks' at the right; else the tasks'
            assert len(fig.legends) == (2 if name[len("findings_"):] in layer_details | width_details else 1), name

    # The trend's picture: one interval bar per task (not a polygon joining tasks), the OLS line, and its band,
    # which at the far end is the `ends` estimate's seed-level interval.
    ax = figs["findings_layer_optimum_shift"].axes[0]
    bars = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert len(bars) == 1 and len(bars[0].get_segments()) == n_tasks
    band = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(band) == 1
    far = band[0].get_paths()[0].vertices
    x_far = far[:, 0].max()
    at_far = far[np.isclose(far[:, 0], x_far), 1]
    lo, hi = layer_details["layer_optimum_shift"]["ci"]
    assert (at_far.min(), at_far.max()) == pytest.approx((lo, hi), abs=1e-9)
    # A level question: tasks on an evenly spaced axis, the estimate as a line with its interval as a band.
    ax = figs["findings_width_helps"].axes[0]
    assert [t.get_position()[0] for t in ax.get_xticklabels()] == list(range(n_tasks))
    # The optimal layer: every layer evenly spaced, a bar per task spanning the source seeds' own optima.
    ax = figs["optimal_layer_vs_distance"].axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6",
                                                             "fc7", "fc8"]
    assert np.diff(ax.get_yticks()).tolist() == [1.0] * 7
    for fig in figs.values():
        plt.close(fig)


def test_a_title_wider_than_its_axes_widens_the_figure(tmp_path):
    """A 3-task width sweep of the default targets (experiment=width_study with fewer targets): the legend's long
    task names took the figure's right side, the axes were narrower than the wrapped title, and the score-vs-width
    titles ran past the figure's left edge and under the legend. Each figure is now widened until its titles fit
    over their axes."""
    names = write_factor_sweep(tmp_path / "w", 3, n_seeds=3, factor="width", settings=("tiny", "small", "medium"),
                               names=["synth_objects_new", "synth_count", "digits"])
    assert names == ["synth_objects_new", "synth_count", "digits"]
    df = F.with_task_axes(load_results([tmp_path / "w"]))
    items, kind = F.answers(df)
    details = {a.q.id: F.details(a) for a in items}
    keys = task_keys(df)
    figs = dict([*findings_figures(details, kind, keys), *figures(df, A.optimal_settings(df), keys)])
    assert {"findings_score_vs_width", "score_vs_width"} <= set(figs)
    # Only the layer's optimum has a question about distance (layer_optimum_shift): the width's figure said
    # "Findings tests it" of a study whose only question compares the widest net with the narrowest.
    title = figs["optimal_width_vs_distance"].axes[0].get_title().replace("\n", " ")
    assert "no Findings question tests whether it moves" in title and "Findings tests it" not in title
    for name, fig in figs.items():
        assert layout_problems(fig) == [], name
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        for ax in fig.axes:
            if ax.get_title():
                title, box = ax.title.get_window_extent(renderer), ax.get_window_extent(renderer)
                assert box.x0 - 1 <= title.x0 and title.x1 <= box.x1 + 1, name  # over its axes
                assert not any(title.overlaps(lg.get_window_extent(renderer)) for lg in fig.legends), name
        plt.close(fig)
