"""report.html opened in a real headless Chromium (Debian's package), and the plots' layout at 7-20 targets."""

import re
from html.parser import HTMLParser

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from src.report import analysis as A
from src.report.build import build_report
from src.report.sections import SECTIONS
from src.report.plots import figures, layer_axis
from tests.services.chromium import dump_dom, screenshot


class Sections(HTMLParser):
    """Section ids and the text under each, from the DOM Chromium dumped."""

    def __init__(self):
        super().__init__()
        self.text, self.current = {}, None

    def handle_starttag(self, tag, attrs):
        if tag == "section":
            self.current = dict(attrs)["id"]
            self.text[self.current] = ""

    def handle_endtag(self, tag):
        if tag == "section":
            self.current = None

    def handle_data(self, data):
        if self.current:
            self.text[self.current] += data


def test_report_html_renders_every_section_and_image_in_chromium(fake_sweep, tmp_path):
    """On the conftest's fake sweep: 4 tasks x 4 layers and one failed job."""
    (fake_sweep / "multirun.yaml").write_text(
        "hydra:\n  overrides:\n    task: ['layer=conv3,conv5,fc6,fc7', target=near]\nlayer: fc6\nseed: 0\n")
    out = build_report([fake_sweep], tmp_path / "out", baseline={"layer": "fc7"})
    page = out / "report.html"
    assert "http://" not in page.read_text() and "https://" not in page.read_text()  # nothing to fetch
    dom = dump_dom(page, tmp_path / "profile")
    # The inline script ran after load and counted the images the browser decoded.
    check = re.search(r'id="render-check"[^>]*data-images-ok="(\d+)" data-images-total="(\d+)"', dom)
    assert check, "the page's render check did not run"
    n_png = len(list(out.glob("*.png")))
    assert n_png >= 3 and int(check.group(1)) == int(check.group(2)) == n_png  # every plot the report wrote
    parsed = Sections()
    parsed.feed(dom)
    assert list(parsed.text) == [sid for sid, _, _, _ in SECTIONS]
    text = parsed.text
    assert "farthest" in text["per-task"] and "conv3" in text["per-task"]
    assert "structured" in text["best-practice"]
    assert "farthest=conv3" in text["optimal"]  # each task's optimal layer, described
    assert "no verdict: 1 source seed, needs 3" in text["findings"]  # one seed: an estimate, no verdict
    assert "logme" in text["estimator-agreement"] and "nce" in text["estimator-agreement"]
    assert "layer='conv9' does not exist" in text["failed-jobs"]
    assert "python -m src.main -m layer=conv3,conv5,fc6,fc7 target=near" in text["command"]
    shot = screenshot(page, tmp_path / "report.png", tmp_path / "profile")
    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[1] == 1280 and pixels[..., :3].std() > 0.05  # a page was drawn, not a blank canvas


def _fake_sweep(n_targets: int) -> pd.DataFrame:
    rng = np.random.default_rng(n_targets)
    rows = [{"status": "ok", "target": f"synth_target_{i:02d}", "group": f"g{i % 4}", "distance_rank": 1 + i % 6,
             "arch": "alexnet", "depth": 8, "layer": layer, "target_score": float(rng.uniform(0.2, 0.9))}
            for i in range(n_targets) for layer in ("conv1", "conv2", "conv4", "fc6", "fc7")]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("n_targets", [7, 20])
def test_plots_have_titles_labels_and_a_legend_clear_of_the_data(n_targets):
    df = _fake_sweep(n_targets)
    figs = dict(figures(df, A.optimal_settings(df)))
    assert set(figs) == {"score_vs_layer", "heatmap_layer", "optimal_layer_vs_distance"}
    for name, fig in figs.items():
        fig.canvas.draw()
        ax = fig.axes[0]
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel(), name
        if name.startswith("heatmap"):  # its colour bar is the key; every task is a labelled row
            assert len(ax.get_yticklabels()) == n_targets
            continue
        (legend,) = fig.legends  # the figure's, outside the axes (tests/test_plot_layout.py checks the layout)
        assert len(legend.get_texts()) == n_targets, name
        assert not legend.get_window_extent().overlaps(ax.get_window_extent()), name
    # Every layer of the arch on the axis, in network order, swept or not: conv4 -> fc6 is two steps (conv5).
    optimal = figs["optimal_layer_vs_distance"].axes[0]
    assert [t.get_text() for t in optimal.get_yticklabels()] == ["conv1", "conv2", "conv3", "conv4", "conv5",
                                                                  "fc6", "fc7", "fc8"]
    score = figs["score_vs_layer"].axes[0]
    assert [t.get_text() for t in score.get_xticklabels()][3:6] == ["conv4", "conv5", "fc6"]


def test_layer_axis_follows_the_arch_registry():
    df = pd.DataFrame([{"status": "ok", "target": "t", "target_score": 0.5, "arch": "vgg", "depth": 11,
                        "layer": "fc6"}])
    assert layer_axis(df, {"fc6"}) == [f"conv{i}" for i in range(1, 9)] + ["fc6", "fc7", "fc8"]
