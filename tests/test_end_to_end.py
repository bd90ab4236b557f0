import json
from pathlib import Path

import numpy as np
import pytest

from src.main import execute
from tests.conftest import TINY, run_cli


def test_tiny_experiment_writes_result_and_reuses_the_cache(make_cfg, cache_dir, tmp_path):
    cfg = make_cfg("layer=conv_last", "dimred=pca", "dimred.n_components=8")
    r = execute(cfg, tmp_path / "run1")
    on_disk = json.loads((tmp_path / "run1" / "result.json").read_text())
    assert on_disk["status"] == "ok" and on_disk["metrics"] == r["metrics"]
    m = on_disk["metrics"]
    assert 0.0 <= m["target_score"] <= 1.0 and m["target_metric"] == "accuracy"
    assert 0.0 <= m["source_val_acc"] <= 1.0 and m["feature_dim"] == 32
    # The measured (source, target) distance adds the source task's val features and the distance itself.
    assert set(on_disk["timings_s"]) == {"source", "finetune", "extract", "source_val_extract", "distance", "estimate",
                                         "probe", "total"}
    assert on_disk["cache"] == {"source_hit": False, "finetune_hit": None, "features_hit": False,
                                "source_val_features_hit": False, "distance_hit": False}
    assert 0.0 <= m["distance"]["pad"] <= 2.0 and m["distance"]["layer"] == "conv2"
    f = on_disk["factors"]
    assert (f["arch"], f["width"], f["depth"], f["layer"], f["dimred"], f["n_components"]) == (
        "alexnet", "tiny", 8, "conv_last", "pca", 8)
    assert (f["source"], f["target"], f["classifier"], f["seed"]) == ("synthetic", "synth_objects_new", "linear_svm", 0)
    # The trained source keeps every epoch and its training log.
    src_entry = cache_dir / "source" / on_disk["keys"]["source"]
    assert {p.name for p in src_entry.glob("snapshot_*.pt")} == {"snapshot_1.pt", "snapshot_2.pt"}
    assert (src_entry / "logs" / "metrics.csv").exists()

    # Another layer and dimred on the same source and target: nothing is retrained or re-extracted.
    r2 = execute(make_cfg("layer=fc7"), tmp_path / "run2")
    assert (r2["cache"]["source_hit"], r2["cache"]["features_hit"]) == (True, True)
    assert r2["keys"] == r["keys"]
    # An earlier snapshot re-extracts features but reuses the trained source.
    r3 = execute(make_cfg("source.snapshot=1"), tmp_path / "run3")
    assert (r3["cache"]["source_hit"], r3["cache"]["features_hit"]) == (True, False)


def test_failed_run_records_the_error(make_cfg, tmp_path):
    cfg = make_cfg("layer=conv9")
    with pytest.raises(Exception):
        execute(cfg, tmp_path)
    res = json.loads((tmp_path / "result.json").read_text())
    assert res["status"] == "failed" and res["error"]["type"] == "ConfigError"
    assert "valid layers" in res["error"]["message"]


@pytest.mark.slow
def test_two_by_two_multirun_trains_each_source_once(cache_dir, tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", "arch=alexnet,vgg", "layer=fc6,fc7", f"hydra.sweep.dir={sweep}", *TINY]
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr[-3000:]
    results = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/result.json"))]
    assert len(results) == 4 and all(x["status"] == "ok" for x in results)
    assert sorted(x["cache"]["source_hit"] for x in results) == [False, False, True, True]
    assert len(list((cache_dir / "source").glob("*/manifest.json"))) == 2
    # Rerunning the same sweep trains and extracts nothing.
    r = run_cli(*args[:-len(TINY)], f"hydra.sweep.dir={tmp_path / 'again'}", *TINY)
    assert r.returncode == 0, r.stderr[-3000:]
    again = [json.loads(p.read_text()) for p in sorted((tmp_path / "again").glob("*/result.json"))]
    assert len(again) == 4
    assert all((x["cache"]["source_hit"], x["cache"]["features_hit"]) == (True, True) for x in again)
    assert [x["metrics"]["target_score"] for x in again] == [x["metrics"]["target_score"] for x in results]


@pytest.mark.slow
def test_convnet_features_beat_raw_pixels(make_cfg, tmp_path, capsys):
    """The synthetic task needs learned features: a linear probe on raw pixels does clearly worse."""
    from src.data.tasks import load_target
    from src.probe.linear import build_pipeline, fit_and_score

    # Threads set explicitly: results are bitwise reproducible per thread count, and an earlier in-process test may
    # have left torch at 1 thread (TINY sets trainer.num_threads=1).
    overrides = ["source.num_classes=20", "source.images_per_class=100", "source.epochs=6", "width=small",
                 "trainer.optim.batch_size=64", "classifier=logistic", "trainer.num_threads=2"]
    cfg = make_cfg(*overrides, tiny=False)
    convnet = execute(cfg, tmp_path)["metrics"]["target_score"]
    splits = load_target(cfg.target.data, image_size=32)
    pixels = {k: (x.reshape(len(x), -1).astype(np.float32) / 255, y) for k, (x, y) in splits.items()}
    raw = fit_and_score(build_pipeline(cfg), pixels, list(cfg.classifier.C_grid), "accuracy")["target_score"]
    with capsys.disabled():
        print(f"\n[synth_objects_new] raw pixels: {raw:.3f}  ConvNet fc6: {convnet:.3f}")
    assert convnet > raw + 0.10


def test_diverging_training_stops_with_a_clear_error(make_cfg, tmp_path, cache_dir):
    cfg = make_cfg("trainer.optim.lr=10")  # the largest valid lr (src/check_run.py); larger is refused up front
    with pytest.raises(FloatingPointError, match="source training loss is (nan|inf).*lower trainer.optim.lr"):
        execute(cfg, tmp_path)
    assert json.loads((tmp_path / "result.json").read_text())["error"]["type"] == "FloatingPointError"
    assert not list((cache_dir / "source").glob("*/manifest.json"))  # nothing half-trained was cached


@pytest.mark.parametrize("classifier", ["linear_svm_liblinear", "linear_svm_ovo", "logistic", "logistic_lbfgs"])
def test_every_classifier_and_the_metrics(make_cfg, tmp_path, classifier):
    cfg = make_cfg(f"classifier={classifier}", "target.metric=mean_per_class_accuracy", "target.data.train_examples=30")
    r = execute(cfg, tmp_path)
    m = r["metrics"]
    assert 0 <= m["target_score"] <= 1 and m["target_metric"] == "mean_per_class_accuracy"
    assert m["best_C"] in m["C_grid"] and len(m["val_scores"]) == len(m["C_grid"])
    assert set(cfg.classifier.C_grid) >= set(m["C_grid"]) - set(m["C_grid_extended"])


@pytest.mark.parametrize("mode", ["last", "full"])
def test_tiny_finetuning_is_cached_and_scored(make_cfg, tmp_path, mode):
    cfg = make_cfg(f"finetune={mode}", "finetune.epochs=2", "finetune.batch_size=16")
    r = execute(cfg, tmp_path / "a")
    m = r["metrics"]
    assert 0 <= m["target_score"] <= 1 and 0 <= m["finetune_val_acc"] <= 1
    assert r["cache"]["finetune_hit"] is False and r["keys"]["finetune"]
    again = execute(cfg, tmp_path / "b")
    assert again["cache"]["finetune_hit"] is True and again["metrics"]["target_score"] == m["target_score"]
    # The probe on the untouched source shares the source net but not the fine-tuned one.
    plain = execute(make_cfg(), tmp_path / "c")
    assert plain["keys"]["source"] == r["keys"]["source"] and plain["cache"]["finetune_hit"] is None


def test_finetune_last_keeps_the_backbone(make_cfg, tmp_path, cache_dir):
    import torch

    cfg = make_cfg("finetune=last", "finetune.epochs=1")
    r = execute(cfg, tmp_path)
    src = torch.load(cache_dir / "source" / r["keys"]["source"] / "snapshot_2.pt", weights_only=True)
    tuned = torch.load(cache_dir / "finetune" / r["keys"]["finetune"] / "finetuned.pt", weights_only=True)
    assert torch.equal(src["features.conv1.conv.weight"], tuned["features.conv1.conv.weight"])
    assert torch.equal(src["fc7.linear.weight"], tuned["fc7.linear.weight"])
    assert torch.equal(src["features.conv1.bn.running_mean"], tuned["features.conv1.bn.running_mean"])
    assert tuned["fc8.weight"].shape[0] == 4  # the new head has the target's classes


def test_finetuned_retrieval_is_retapped(make_cfg, tmp_path):
    cfg = make_cfg("target=synth_retrieval", "target.data.num_instances=5", "target.data.database_per_instance=3",
                   "target.data.queries_per_instance=2", "finetune=full", "finetune.epochs=1", tiny="source")
    r = execute(cfg, tmp_path)
    assert r["metrics"]["target_metric"] == "map" and r["cache"]["features_hit"] is False
    assert r["keys"]["finetune"] and r["keys"]["features"]
