"""What the report's figures say about each task, read back from matplotlib's artists: one distinct colour per task,
the same in every figure; each score axis names its metric, and an accuracy and an mAP never share one; each task's
chance level drawn where the records determine it (1/k; a random ranking's mAP for a retrieval target) and said to
be missing where they do not; a distance at its measure's maximum marked; a question's figure names the tasks'
metrics and its task-level p."""

import itertools
import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.collections import PathCollection
from matplotlib.colors import to_rgb
from matplotlib.lines import Line2D

from src.record import PRIMARY_DISTANCE_MAX
from src.report import analysis as A
from src.report import findings as F
from src.report import numbers as N
from src.report import plot_tasks as P
from src.report.collect import load_results
from src.report.findings_plots import findings_figures
from src.report.plots import figures
from tests.simulate_sweeps import write_factor_sweep

RETRIEVAL = "synth_retrieval"


def _study(root: Path, n_tasks: int = 7, records: bool = True):
    """A simulated layer study (tests.simulate_sweeps) as the report reads it, with what the real records hold:
    10 classes per target (synth_count 4); synth_retrieval scored in mAP over 50 instances x 4 database views (no
    val scores: no C search), its job config saying so; digits measured at the distance's maximum. Returns (df,
    findings details, distance axis, keys, {name: figure})."""
    names = write_factor_sweep(root, n_tasks, n_seeds=3)
    if records:
        for path in root.glob("*/result.json"):
            r = json.loads(path.read_text())
            target, m = r["factors"]["target"], r["metrics"]
            m["estimate_inputs"] = {"n": 600, "classes": 4 if target == "synth_count" else 10, "dim": 16}
            if target == "digits":
                m["distance"]["pad"] = PRIMARY_DISTANCE_MAX
            if target == RETRIEVAL:
                m.update(target_metric="map", best_C=None, val_scores=None,
                         estimate_inputs={"n": 200, "classes": 50, "dim": 16})
                (path.parent / ".hydra").mkdir()
                (path.parent / ".hydra" / "config.yaml").write_text(
                    "target:\n  name: synth_retrieval\n  metric: map\n  evaluator: retrieval\n  data:\n"
                    "    task: retrieval\n    num_instances: 50\n    database_per_instance: 4\n")
            path.write_text(json.dumps(r))
    df = F.with_task_axes(load_results([root]))
    items, kind = F.answers(df)
    details = {a.q.id: F.details(a) for a in items}
    keys = P.task_keys(df)
    figs = dict([*findings_figures(details, kind, keys), *figures(df, A.optimal_settings(df), keys)])
    assert set(figs) == {"findings_score_vs_layer", "findings_layer_gap_shrinks", "findings_layer_optimum_shift",
                         "score_vs_layer", "heatmap_layer", "optimal_layer_vs_distance"}
    assert list(keys) == names or not records  # the report's distance order
    return df, details, kind, keys, figs


def _task_colours(fig, tasks) -> dict[str, tuple]:
    """Per task, the colour its labelled artists are drawn in (a line's colour; a marker's fill, or its edge when
    hollow), over every axes of the figure; a task drawn in two colours fails."""
    out: dict[str, set] = {}
    for ax in fig.axes:
        for artist in ax.get_children():
            task = str(artist.get_label()).split(" (")[0]
            if task not in tasks:
                continue
            if isinstance(artist, Line2D):
                colour = to_rgb(artist.get_color())
            elif isinstance(artist, PathCollection):
                face = artist.get_facecolor()[0]
                colour = tuple(artist.get_edgecolor()[0][:3]) if tuple(face[:3]) == (1, 1, 1) else tuple(face[:3])
            else:
                continue
            out.setdefault(task, set()).add(tuple(round(c, 6) for c in colour))
    assert all(len(c) == 1 for c in out.values()), out
    return {t: next(iter(c)) for t, c in out.items()}


def _score_axes(fig) -> list:
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def _chance_lines(ax) -> dict[float, tuple]:
    """The axes' horizontal dotted lines: level -> colour."""
    return {round(float(line.get_ydata()[0]), 6): to_rgb(line.get_color()) for line in ax.get_lines()
            if line.get_linestyle() == ":" and len(set(np.asarray(line.get_ydata(), float))) == 1}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = _study(tmp_path_factory.mktemp("plots") / "sw")
    yield out
    for fig in out[-1].values():
        plt.close(fig)


def test_each_task_has_one_distinct_colour_the_same_in_every_figure(study):
    _, _, _, keys, figs = study
    tasks = list(keys)
    seen = {name: _task_colours(fig, tasks) for name, fig in figs.items() if not name.startswith("heatmap")}
    for name, colours in seen.items():
        assert set(colours) == set(tasks), name  # every task drawn, in its own colour
        assert colours == {t: tuple(round(c, 6) for c in to_rgb(keys[t].colour)) for t in tasks}, name
    rgb = np.array([to_rgb(keys[t].colour) for t in tasks])
    # Far apart, not shades of one colour map (tasks at near distances were near-identical purples).
    assert min(np.linalg.norm(a - b) for a, b in itertools.combinations(rgb, 2)) > 0.25
    # Twenty tasks: twenty colours, and no two tasks share colour and marker.
    many = P.task_styles([f"t{i}" for i in range(20)])
    assert len({to_rgb(c) for c, _ in many.values()}) == 20
    assert len({(to_rgb(c), m) for c, m in P.task_styles([f"t{i}" for i in range(40)]).values()}) == 40


def test_accuracy_and_map_never_share_a_score_axis_and_each_names_its_metric(study):
    _, _, _, keys, figs = study
    for name in ("score_vs_layer", "findings_score_vs_layer", "heatmap_layer"):
        axes = _score_axes(figs[name])
        assert len(axes) == 2, name
        if name.startswith("heatmap"):  # the rows of each panel, and its colour bar's metric
            rows = [[t.get_text().split(" (")[0] for t in ax.get_yticklabels()] for ax in axes]
            bars = [ax.get_ylabel() for ax in figs[name].axes if ax.get_label() == "<colorbar>"]
            assert bars == ["test accuracy", "test mAP"]
        else:
            rows = [[str(line.get_label()).split(" (")[0] for line in ax.get_lines() if line.get_label() in {
                k.label(t, chance=True) for t, k in keys.items()}] for ax in axes]
            assert [ax.get_ylabel() for ax in axes] == ["test accuracy", "test mAP"], name
        assert rows == [[t for t in keys if t != RETRIEVAL], [RETRIEVAL]], name
    # A question's contrast is a difference of each task's own scores: the axis says which metric is which, and
    # the mAP task's marker is hollow.
    for qid in ("layer_gap_shrinks", "layer_optimum_shift"):
        ax = figs[f"findings_{qid}"].axes[0]
        assert ax.get_ylabel().replace("\n", " ").endswith("(test accuracy; mAP: synth_retrieval)")
        (mark,) = [c for c in ax.collections if str(c.get_label()).startswith(RETRIEVAL)]
        assert tuple(mark.get_facecolor()[0][:3]) == (1, 1, 1) and "mAP" in mark.get_label()


def test_each_score_axis_draws_its_tasks_chance_levels(study):
    _, _, _, keys, figs = study
    assert keys["synth_objects_new"].chance == pytest.approx(0.1) and keys["synth_count"].chance == 0.25
    ap = P.random_ranking_ap(4, 200)
    assert keys[RETRIEVAL].chance == pytest.approx(ap) and ap == pytest.approx(0.0440, abs=1e-4)  # > prior 0.02
    for name in ("score_vs_layer", "findings_score_vs_layer"):
        accuracy, retrieval = _score_axes(figs[name])
        lines = _chance_lines(accuracy)
        # 1/10 is shared by five tasks (grey); 1/4 is synth_count's alone (its colour)
        assert set(lines) == {0.1, 0.25}, name
        assert lines[0.25] == to_rgb(keys["synth_count"].colour) and lines[0.1] == to_rgb("0.35")
        assert set(_chance_lines(retrieval)) == {round(ap, 6)}, name
        assert accuracy.get_ylim()[0] <= 0.1  # the chance level is in view
        title = accuracy.get_title().replace("\n", " ")
        assert "dotted: chance (1/k, a random ranking's mAP)" in title and "no chance level" not in title
        legend = [t.get_text() for t in figs[name].legends[0].get_texts()]
        assert any(t.startswith("synth_count (") and t.endswith("; chance 0.25)") for t in legend)


def test_the_random_ranking_map_is_what_random_rankings_score():
    from src.probe.retrieval import average_precision

    rng = np.random.default_rng(0)
    for relevant, n in [(4, 200), (1, 30), (10, 40)]:
        hits = np.arange(n) < relevant
        aps = [average_precision(hits, rng.random(n)) for _ in range(3000)]
        assert P.random_ranking_ap(relevant, n) == pytest.approx(np.mean(aps), abs=4 * np.std(aps) / np.sqrt(3000))


def test_no_chance_level_without_the_records_and_said_so(tmp_path):
    _, _, _, keys, figs = _study(tmp_path / "sw", records=False)
    assert all(k.chance is None and k.metric == "accuracy" for k in keys.values())
    (ax,) = _score_axes(figs["score_vs_layer"])
    assert _chance_lines(ax) == {} and ax.get_ylabel() == "test accuracy"
    assert "no chance level in the records for 7 tasks" in ax.get_title().replace("\n", " ")
    # a multi-label mAP (no retrieval config): its prevalence is not in the records
    jobs = A.ok_rows(load_results([tmp_path / "sw"])).head(2).assign(target_metric="map", estimate_inputs_n=600,
                                                                     estimate_inputs_classes=5)
    assert P.chance_level(jobs, "map") == (None, "")
    for fig in figs.values():
        plt.close(fig)


def test_distance_ceiling_chosen_on_test_and_task_level_p_are_shown(study):
    _, details, kind, keys, figs = study
    assert "proxy A-distance" in kind
    for name in ("findings_layer_gap_shrinks", "findings_layer_optimum_shift", "optimal_layer_vs_distance"):
        ax = figs[name].axes[0]
        ceiling = [line for line in ax.get_lines() if list(line.get_xdata()) == [PRIMARY_DISTANCE_MAX] * 2
                   and line.get_linestyle() == "--"]  # (not a task's bar of its seeds' optima there)
        assert len(ceiling) == 1, name
    title = figs["findings_layer_gap_shrinks"].axes[0].get_title().replace("\n", " ").replace("\xa0", " ")
    p = N.pvalue(details["layer_gap_shrinks"]["task_p"])
    assert f"task-level {p if p.startswith('p') else 'p ' + p}" in title
    assert "the line's change from the nearest to the farthest task" in title  # what the trend's estimate is
    optimal = figs["optimal_layer_vs_distance"]
    assert keys[RETRIEVAL].on_test and not keys["digits"].on_test
    labels = [t.get_text() for t in optimal.legends[0].get_texts()]
    assert [lb for lb in labels if lb.endswith(" *")] == [f"{RETRIEVAL} ({keys[RETRIEVAL].distance}) *"]
    assert "* no val score: chosen on test" in optimal.axes[0].get_title().replace("\n", " ")


def test_findings_figures_alone_colour_tasks_in_distance_order(study):
    """Without the report's keys (findings_figures called on its own) the colours still follow the distance order,
    so they match the report's, and no chance level is claimed."""
    _, details, kind, keys, _ = study
    alone = dict(findings_figures(details, kind))
    try:
        colours = _task_colours(alone["findings_score_vs_layer"], list(keys))
        assert colours == {t: tuple(round(c, 6) for c in to_rgb(keys[t].colour)) for t in keys}
        assert all(_chance_lines(ax) == {} for ax in _score_axes(alone["findings_score_vs_layer"]))
    finally:
        for fig in alone.values():
            plt.close(fig)
