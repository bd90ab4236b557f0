"""The measured (source, target) distance: a pipeline stage, cached, recorded in result.json, and it orders the
synth_shift family by its controlled distance."""

import json

import numpy as np
import pytest
from scipy.stats import spearmanr

from src.main import execute
from src.transferability.distance import proxy_a_distance

SHIFTS = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
# A tiny source net, but enough source val images (200) and target images (250) for a stable domain classifier.
SMALL_SHIFT = ["target=synth_shift", "source.val_per_class=50", "target.data.num_classes=10",
               "target.data.train_per_class=10", "target.data.val_per_class=5", "target.data.test_per_class=10"]


@pytest.mark.slow
def test_measured_distance_orders_the_shift_family(make_cfg, tmp_path, cache_dir):
    measured = []
    for i, shift in enumerate(SHIFTS):
        cfg = make_cfg(*SMALL_SHIFT, f"target.data.shift={shift}", tiny="source")
        result = execute(cfg, tmp_path / str(i))
        d = result["metrics"]["distance"]
        assert d["layer"] == "conv2" and d["primary"] == "pad" and 0 <= d["pad"] <= 2 and d["frechet"] >= 0
        assert json.loads((tmp_path / str(i) / "result.json").read_text())["metrics"]["distance"]["pad"] == d["pad"]
        # One 1/0 per test image next to result.json, agreeing with the recorded accuracy.
        correct = np.load(tmp_path / str(i) / "test_correct.npy")
        assert len(correct) == 100 and correct.mean() == result["metrics"]["target_score"]
        measured.append(d["pad"])
    rho = spearmanr(SHIFTS, measured).statistic
    assert rho >= 0.9, f"proxy A-distance vs shift: rho={rho:.2f}, distances {measured}"
    # Another layer of the same (source, target) pair reuses the cached distance (the layer probed is irrelevant).
    again = execute(make_cfg(*SMALL_SHIFT, "target.data.shift=1.0", "layer=conv1", tiny="source"), tmp_path / "again")
    assert again["keys"]["distance"] == result["keys"]["distance"] and again["cache"]["distance_hit"] is True
    assert again["metrics"]["distance"]["pad"] == measured[-1]


def test_proxy_a_distance_is_zero_for_one_distribution_and_two_for_separable_ones():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(300, 8)), rng.normal(size=(300, 8))
    assert proxy_a_distance(a, b) < 0.3
    assert proxy_a_distance(a, b + 5.0 * np.eye(8)[0]) > 1.9


@pytest.mark.slow
def test_tiny_distance_study_end_to_end(cache_dir, tmp_path):
    """experiment=distance_study as users run it (2 seeds x 3 shifts x 2 layers on a tiny source): every job records
    its distance and shift, and the sweep's report answers the layer questions (estimates, seed-level CIs, no verdict
    from 2 source seeds)."""
    from tests.conftest import TINY_SOURCE, run_cli

    sweep = tmp_path / "study"
    r = run_cli("experiment=distance_study", *TINY_SOURCE, "seed=0,1", "target.data.shift=0.0,0.5,1.0",
                "layer=conv2,fc7", "target.data.train_per_class=10", "target.data.val_per_class=5",
                "target.data.test_per_class=10", f"hydra.sweep.dir={sweep}")
    assert r.returncode == 0, r.stderr[-3000:]
    jobs = [json.loads(p.read_text()) for p in sweep.glob("*/result.json")]
    assert len(jobs) == 12 and all(j["status"] == "ok" for j in jobs)
    assert {j["factors"]["shift"] for j in jobs} == {0.0, 0.5, 1.0}
    assert all(j["metrics"]["distance"]["pad"] is not None for j in jobs)
    analysis = json.loads((sweep / "report" / "analysis.json").read_text())
    gap = analysis["findings"]["layer_gap_shrinks"]
    # 2 source seeds (the preset's target samples are not tied here): estimates and t intervals, and no verdict,
    # saying how many seeds the study needs (its report.min_seeds).
    assert gap["source_seeds"] == 2 and len(gap["ci"]) == 2
    # 3 tasks (shifts): no task-level p can go below 2/3! = 0.333, which the verdict says too.
    assert gap["verdict"] == ("no verdict: 2 source seeds, needs 6 (replicates=6); 3 tasks cap it at \"these tasks "
                              "only\" (smallest possible task-level p 0.333; \"supported\" needs 5 tasks)")
    assert analysis["study"]["primary"] == "layer_optimum_shift"
    assert analysis["findings"]["layer_optimum_shift"]["role"] == "primary"
    assert analysis["distance_axis"].startswith("shift")
    report = (sweep / "report" / "report.md").read_text()
    assert "## Findings" in report and "findings_layer_gap_shrinks.png" in report
    assert (sweep / "report" / "findings_layer_optimum_shift.png").is_file()


def test_the_far_end_of_the_shift_family_is_learnable():
    """shift measures distance, not difficulty: a linear probe on raw pixels (which owes nothing to the source)
    stays far above chance (0.1) at shift=1 and within a few points of shift=0."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from src.data.shift import build_shift_task

    def raw_pixel_accuracy(shift: float) -> float:
        d = dict(shift=shift, num_classes=10, train_per_class=40, val_per_class=0, test_per_class=50, seed=1)
        x, y = build_shift_task(d, 32)
        x = np.asarray(x, np.float32).reshape(len(x), -1)
        idx = np.random.default_rng(0).permutation(len(x))
        te, tr = idx[:500], idx[500:]
        scale = StandardScaler().fit(x[tr])
        probe = LogisticRegression(C=0.01, max_iter=300).fit(scale.transform(x[tr]), y[tr])
        return probe.score(scale.transform(x[te]), y[te])

    near, far = raw_pixel_accuracy(0.0), raw_pixel_accuracy(1.0)
    assert far >= 0.2 and far >= near - 0.08, (near, far)
