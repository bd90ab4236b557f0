"""Calibration of the model-selection report's interval (src.report.selection): the paired bootstrap over test
images of an estimator's weighted tau against the probe's ranking covers the tau against the backbones' true
accuracies at about its nominal rate, and the top-1 agreement tracks how often the probe's best is the true best."""

from __future__ import annotations

import numpy as np
import pytest
import pandas as pd

from src.report import selection


def simulate(rng, true_acc, n_images, hardness_sd=1.0):
    """1/0 correctness of each backbone on the same n test images: a shared per-image difficulty (the images
    that are hard for one backbone are hard for the others), so the backbones' accuracies are correlated."""
    from scipy.special import expit, logit

    hard = rng.normal(0, hardness_sd, n_images)
    p = expit(logit(np.asarray(true_acc))[:, None] - hard[None, :])
    return (rng.random(p.shape) < p).astype(float)


def test_tau_interval_covers_the_true_ranking_at_its_nominal_rate(monkeypatch):
    monkeypatch.setattr(selection, "N_RESAMPLES", 400)
    rng = np.random.default_rng(0)
    true_acc = np.array([0.62, 0.58, 0.55, 0.45])  # close enough that test sampling reorders them
    estimate = np.array([0.9, 0.5, 0.7, 0.1])  # a fixed estimator that swaps the 2nd and 3rd backbone
    from scipy.special import expit, logit

    # The backbones' accuracies over the image population (the difficulty integrated out), by Monte Carlo.
    hard = rng.normal(0, 1.0, 400_000)
    population = expit(logit(true_acc)[:, None] - hard[None, :]).mean(1)
    truth = selection._wtau(estimate, population)
    covered, widths = [], []
    for _ in range(150):
        correct = simulate(rng, true_acc, 300)
        _, lo, hi, _ = selection.tau_interval(estimate, correct, seed=int(rng.integers(1 << 30)))
        covered.append(lo - 1e-9 <= truth <= hi + 1e-9)
        widths.append(hi - lo)
    coverage = float(np.mean(covered))
    print(f"coverage {coverage:.3f}, mean width {np.mean(widths):.2f}")
    assert 0.88 <= coverage <= 1.0, coverage  # nominal 0.95; 150 simulations: +-0.035 binomial SE x 2
    assert np.mean(widths) > 0.1  # not covering by being degenerate: the ranking does move at this n


def test_tau_interval_equals_the_per_resample_statistic(monkeypatch):
    """The interval computes weighted tau once per distinct order of the resampled accuracies: the same bounds as
    scipy's bootstrap calling it on every resample, ties included (5 backbones, 2 of them equally good)."""
    from scipy import stats

    monkeypatch.setattr(selection, "N_RESAMPLES", 300)
    rng = np.random.default_rng(3)
    est = np.array([0.3, -1.0, 2.0, 0.3, 1.1])
    correct = (rng.random((5, 60)) < np.array([[0.5], [0.6], [0.6], [0.4], [0.55]])).astype(float)
    correct[3] = correct[1]  # identical test results: tied accuracies on every resample
    _, lo, hi, _ = selection.tau_interval(est, correct, seed=7)
    ref = stats.bootstrap(tuple(correct), lambda *rows: selection._wtau(est, [r.mean() for r in rows]), paired=True,
                          vectorized=False, method="percentile", n_resamples=300, rng=np.random.default_rng(7))
    assert (lo, hi) == (ref.confidence_interval.low, ref.confidence_interval.high)


def test_report_table_ranks_backbones_and_times_estimators(tmp_path):
    rng = np.random.default_rng(1)
    rows = []
    for i, (model, acc) in enumerate([("timm:a", 0.8), ("timm:b", 0.5), ("torchvision:c", 0.6)]):
        job = tmp_path / str(i)
        job.mkdir()
        correct = (rng.random(200) < acc).astype(np.uint8)
        np.save(job / "test_correct.npy", correct)
        rows.append({"job_dir": str(job), "status": "ok", "model": model, "target": "mine", "finetune": "none",
                     "target_score": correct.mean(), "tr_logme": acc, "tr_nce": -acc,
                     "time_estimate_logme": 0.01 * (i + 1), "time_extract_s": 1.0, "time_probe_s": 0.5})
    out = selection.model_selection(pd.DataFrame(rows))["mine"]
    assert list(out["backbones"]["backbone"]) == ["timm:a", "torchvision:c", "timm:b"]
    assert list(out["backbones"]["rank"]) == [1, 2, 3]
    est = out["estimators"].set_index("estimator")
    assert est.loc["logme", "weighted tau"] == pytest.approx(1.0)
    assert est.loc["nce", "weighted tau"] == pytest.approx(-1.0)
    assert est.loc["logme", "picks"] == "timm:a" and est.loc["logme", "median s per backbone"] == 0.02
    assert est.loc["logme", "top-1 agreement"] > 0.95 and est.loc["nce", "top-1 agreement"] < 0.05


def test_backbones_at_chance_and_estimators_outside_their_regime_are_named(tmp_path):
    """A backbone whose probe is not shown above 1/classes is named (its rank is noise), one clearly above is not;
    an estimator outside its own regime on a backbone (SFDA with d/(n-C) >= 0.6) is named with those backbones."""
    rng = np.random.default_rng(1)
    rows = []
    for model, acc, dim in (("timm:good", 0.8, 64), ("torchvision:flat", 0.36, 1024)):
        job = tmp_path / model.replace(":", "_")
        job.mkdir()
        np.save(job / "test_correct.npy", (rng.random(120) < acc).astype(np.int8))
        rows.append({"status": "ok", "target": "mine", "model": model, "job_dir": str(job), "target_score": acc,
                     "target_metric": "accuracy", "estimate_inputs_n": 180, "estimate_inputs_classes": 3,
                     "estimate_inputs_dim": dim, "tr_sfda": rng.random(), "tr_logme": rng.random()})
    notes = selection.model_selection(pd.DataFrame(rows))["mine"]["notes"]
    chance = [n for n in notes if n.startswith("Not shown better than chance (1/3")]
    assert len(chance) == 1 and "torchvision:flat" in chance[0] and "timm:good" not in chance[0]
    regime = [n for n in notes if n.startswith("sfda is outside its regime on 1 of 2 backbones (torchvision:flat)")]
    assert len(regime) == 1 and not any(n.startswith("logme") for n in notes)
