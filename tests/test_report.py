import json
import math

import pandas as pd
import pytest

from src.report import analysis as A
from src.report.build import build_report

LAYERS = ["conv3", "conv5", "fc6", "fc7"]
# target -> (group, distance_rank, score per layer); the optimal layer moves to the input side with distance.
TASKS = {
    "near": ("object", 1, [0.50, 0.70, 0.80, 0.90]),
    "mid": ("finegrained", 2, [0.55, 0.70, 0.75, 0.60]),
    "far": ("attribute", 3, [0.60, 0.65, 0.50, 0.40]),
    "farthest": ("structured", 4, [0.70, 0.60, 0.50, 0.45]),
}


def write(path, result):
    path.mkdir(parents=True)
    (path / "result.json").write_text(json.dumps(result))


@pytest.fixture
def sweep(tmp_path):
    job = 0
    for target, (group, rank, scores) in TASKS.items():
        for layer, score in zip(LAYERS, scores):
            write(tmp_path / str(job), {
                "status": "ok",
                "factors": {"arch": "alexnet", "layer": layer, "target": target, "group": group, "distance_rank": rank},
                "metrics": {"target_score": score, "target_metric": "accuracy",
                            "transferability": {"logme": score * 2 - 1, "nce": -score}},
                "timings_s": {"total": 1.0}, "cache": {"source_hit": True, "features_hit": True},
                "keys": {"source": "s", "features": f"f-{target}"},
            })
            job += 1
    write(tmp_path / str(job), {"status": "failed", "factors": {"layer": "conv9", "target": "near"},
                                "error": {"type": "ConfigError", "message": "layer='conv9' does not exist"}})
    return tmp_path


def test_report_files_tables_and_numbers(sweep, tmp_path):
    out = build_report([sweep], tmp_path / "out", baseline={"layer": "fc7"})
    df = pd.read_csv(out / "results.csv")
    assert len(df) == 17 and (df["status"] == "failed").sum() == 1
    analysis = json.loads((out / "analysis.json").read_text())
    per_task = {r["target"]: r for r in analysis["per_task"]}
    # far: best conv5 0.65 vs baseline fc7 0.40 -> errors 0.35 vs 0.60 -> (0.60 - 0.35) / 0.60.
    assert per_task["far"]["layer"] == "conv5" and per_task["far"]["baseline_score"] == pytest.approx(0.40)
    assert per_task["far"]["rel_error_reduction"] == pytest.approx((0.60 - 0.35) / 0.60)
    assert per_task["near"]["rel_error_reduction"] == 0.0
    # Each task's optimal layer, described (these jobs recorded no val scores: chosen on the test score).
    fd = analysis["optimal_settings"]["layer"]
    assert fd["optimal"] == {"near": "fc7", "mid": "fc6", "far": "conv5", "farthest": "conv3"}
    assert "rho" not in fd  # whether the optimum moves is a finding, with its own inference
    # One source seed: the layer questions get an estimate and no verdict.
    gap = analysis["findings"]["layer_gap_shrinks"]
    assert gap["estimate"] < 0 and gap["verdict"].startswith("no verdict: 1 source seed")
    shift = analysis["findings"]["layer_optimum_shift"]
    assert shift["estimate"] > 0 and shift["verdict"].startswith("no verdict: 1 source seed")
    assert any("no val scores for far, farthest, mid, near" in n
               for n in analysis["findings_details"]["layer_optimum_shift"]["notes"])
    # Estimators that order jobs exactly like the score (logme) or exactly reversed (nce).
    ea = {r["estimator"]: r for r in analysis["estimator_agreement"]}
    assert ea["logme"]["kendall_tau_all"] == pytest.approx(1.0) and ea["nce"]["kendall_tau_all"] == pytest.approx(-1.0)
    md = (out / "report.md").read_text()
    assert "## Failed jobs" in md and "layer='conv9' does not exist" in md
    assert "| structured | layer | conv3 |" in md  # best practice per group
    for name in ("score_vs_layer.png", "heatmap_layer.png", "optimal_layer_vs_distance.png"):
        assert (out / name).stat().st_size > 1000


def test_relative_error_reduction_arithmetic():
    assert A.relative_error_reduction(0.8, 0.9) == pytest.approx(0.5)
    assert A.relative_error_reduction(1.0, 1.0) == 0.0
    assert math.isnan(A.relative_error_reduction(math.nan, 0.9))


def test_report_cli_default_out_dir(sweep):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "src.report", str(sweep), "--baseline", "layer=fc6"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (sweep / "report" / "report.md").exists()
    r = subprocess.run([sys.executable, "-m", "src.report", str(sweep), "--baseline", "colour=red"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "must be factor=value with a factor in" in r.stderr
