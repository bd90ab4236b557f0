"""Replicates, CIs and the findings table of the report, on sweeps written as result.json files (the report reads
results only). The scores are generated from a known truth plus seeded noise, so the verdicts have a right answer."""

import json

import numpy as np
import pandas as pd
import pytest

from src.report import stats as S
from src.report.build import build_report
from src.report.findings import findings, setting_table, with_task_axes
from src.report.collect import load_results

LAYERS = ["conv1", "conv3", "conv5", "fc7"]
SHIFTS = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]


def write_job(path, factors, score, distance=None, correct=None):
    path.mkdir(parents=True)
    (path / "result.json").write_text(json.dumps({
        "status": "ok", "factors": {"source": "synthetic", "arch": "alexnet", "group": "shift", **factors},
        "metrics": {"target_score": score, "target_metric": "accuracy", "distance": distance},
        "timings_s": {"total": 1.0}, "cache": {}, "keys": {}}))
    if correct is not None:
        np.save(path / "test_correct.npy", correct.astype(np.uint8))


def shift_sweep(root, seeds, noise=0.01, n_test=200):
    """Optimal layer index = 3 - round(3 * shift): near tasks peak late, far ones early (the paper's direction)."""
    rng = np.random.default_rng(0)
    job = 0
    for seed in seeds:
        for shift in SHIFTS:
            best = 3 - int(round(3 * shift))
            for i, layer in enumerate(LAYERS):
                score = 0.8 - 0.1 * abs(i - best) + rng.normal(0, noise)
                correct = (rng.random(n_test) < score)
                write_job(root / str(job), {"layer": layer, "target": "synth_shift", "shift": shift, "seed": seed,
                                            "target_seed": seed, "distance_rank": None},
                          float(correct.mean()) if len(seeds) == 1 else score,
                          distance={"pad": 1 + shift + rng.normal(0, 0.01)}, correct=correct)
                job += 1
    return root


def test_three_replicates_support_the_layer_direction_with_a_ci(tmp_path):
    df = load_results([shift_sweep(tmp_path / "sw", seeds=[0, 1, 2])])
    table, details = findings(df, n_boot=300)
    row = table.set_index("factor").loc["layer"]
    assert row["effect"] == pytest.approx(-1.0, abs=0.05)
    lo, hi = details["layer"]["ci"]
    assert hi < 0 and row["verdict"] == "supported" and row["CI basis"].startswith("3 replicates (3 source seeds)")
    # The band of the optimal layer per shift: fc7 (ordinal of fc7) at shift 0, conv1 at shift 1.
    band = details["layer"]["optimal_band"]
    assert band["synth_shift@0.0"][0] > band["synth_shift@1.0"][0]
    assert details["distance_axis"].startswith("shift")


def test_one_replicate_says_no_ci_and_never_supported(tmp_path):
    sweep = shift_sweep(tmp_path / "sw", seeds=[0], noise=0.0, n_test=400)
    df = load_results([sweep])
    table, _ = findings(df, n_boot=200)
    row = table.set_index("factor").loc["layer"]
    assert row["95% CI"] == S.NO_CI and row["verdict"] == "not resolved (1 replicate)"
    assert row["CI basis"].startswith("test images only: [")  # the per-image bootstrap still runs
    out = build_report([sweep], tmp_path / "out", baseline={"layer": "fc7"})
    assert "1 replicate: no CI" in (out / "report.md").read_text()
    settings = pd.DataFrame(json.loads((out / "analysis.json").read_text())["settings_ci"])
    assert settings["95% CI"].str.startswith("images [").all()


def test_paired_difference_and_per_setting_ci_over_replicates(tmp_path):
    df = load_results([shift_sweep(tmp_path / "sw", seeds=[0, 1, 2, 3], noise=0.01)])
    table = setting_table(df, baseline={"layer": "fc7"}, n_boot=300)
    far = table[(table["task"] == "synth_shift@1.0") & (table["best"] == "best")].iloc[0]
    # Best conv1 (0.8) vs baseline fc7 (0.5): a paired difference of 0.3 whose CI excludes 0.
    assert far["setting"] == "conv1" and far["best - baseline"] == pytest.approx(0.3, abs=0.03)
    lo, hi = (float(v) for v in far["diff 95% CI"].strip("[]").split(","))
    assert 0.2 < lo <= hi < 0.4
    assert (table["replicates"] == 4).all()


def test_measured_distance_orders_tasks_when_there_is_no_shift(tmp_path):
    """A real source (no distance_rank applies): tasks are ordered and correlated by the measured distance."""
    for job, (target, dist, rank) in enumerate([("far", 3.0, 1), ("near", 1.0, 6), ("mid", 2.0, 3)]):
        for i, layer in enumerate(LAYERS):
            write_job(tmp_path / "sw" / f"{job}-{i}", {"layer": layer, "target": target, "source": "imagefolder",
                                                     "seed": 0, "distance_rank": rank},
                      0.5 + 0.1 * i * (1 if target == "near" else -1), distance={"pad": dist})
    df = with_task_axes(load_results([tmp_path / "sw"]))
    assert df.attrs["distance_axis"].startswith("measured")
    assert df["distance_rank"].isna().all()  # ranks describe the synthetic source, not this one
    out = build_report([tmp_path / "sw"], tmp_path / "out")
    per_task = json.loads((out / "analysis.json").read_text())["per_task"]
    assert [r["target"] for r in per_task] == ["near", "mid", "far"]


def test_verdict_rules():
    assert S.verdict(0.3, 0.1, 0.5, +1, replicates=3) == "supported"
    assert S.verdict(0.3, 0.1, 0.5, -1, replicates=3) == "contradicted"
    assert S.verdict(0.3, -0.1, 0.5, +1, replicates=3) == "not resolved (CI includes 0)"
    assert S.verdict(0.3, 0.1, 0.5, +1, replicates=1) == "not resolved (1 replicate)"


def test_few_replicates_get_a_t_interval_not_their_range():
    """3 replicates: a percentile bootstrap would return min..max (~75% coverage); the t interval is wider."""
    mean, lo, hi = S.mean_ci(np.array([0.1, 0.5, 0.9]))
    assert mean == pytest.approx(0.5) and lo < 0.1 and hi > 0.9
    assert (hi - mean) == pytest.approx(4.303 * 0.4 / np.sqrt(3), rel=1e-3)  # t(0.975, 2) x sd / sqrt(n)
    assert np.isnan(S.mean_ci(np.array([0.7]))[1:]).all()  # one value: no CI


def test_undefined_effects_and_single_source_seeds_get_no_verdict():
    assert S.verdict(float("nan"), 0.2, 0.8, +1, replicates=3) == "not resolved (no CI)"
    assert S.verdict(0.5, 0.2, 0.8, +1, replicates=3, source_seeds=1) == "not resolved (1 source seed)"
    assert S.verdict(-0.1, 0.2, 0.8, +1, replicates=3, source_seeds=3) == "supported"  # the CI's side decides
    # Too many undefined resamples (a constant optimum gives a NaN rho): no CI rather than one from the survivors.
    assert np.isnan(S.percentile_ci(np.r_[np.full(10, np.nan), np.linspace(0.1, 0.9, 90)])[0])
    assert np.isfinite(S.percentile_ci(np.r_[np.full(2, np.nan), np.linspace(0.1, 0.9, 98)])[0])
