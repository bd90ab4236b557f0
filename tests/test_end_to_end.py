import json

import numpy as np
import pytest

from src.check import validate
from src.main import execute
from tests.conftest import NO_REPORT, TINY, results, run_cli


@pytest.mark.empty_cache  # it trains the source net itself
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
                                         "probe", "lock_wait", "total"}
    assert on_disk["timings_s"]["lock_wait"] == 0  # no other process held a lock
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
@pytest.mark.empty_cache
def test_two_by_two_multirun_trains_each_source_once_and_resumes(cache_dir, tmp_path):
    """A 2x2 grid trains each source net once. Run again in the same sweep dir with one axis changed (fc7 ->
    conv_last), the jobs whose config is unchanged are skipped and the changed ones run again with their new config,
    reusing the trained nets and their features (every tap is extracted at once): nothing is trained or extracted."""
    sweep = tmp_path / "sweep"
    r = run_cli("-m", "arch=alexnet,vgg", "layer=fc6,fc7", f"hydra.sweep.dir={sweep}", NO_REPORT, *TINY)
    assert r.returncode == 0, r.stderr[-3000:]
    first = results(sweep)
    assert sorted(first) == ["0", "1", "2", "3"] and all(x["status"] == "ok" for x in first.values())
    assert sorted(x["cache"]["source_hit"] for x in first.values()) == [False, False, True, True]
    assert len(list((cache_dir / "source").glob("*/manifest.json"))) == 2
    mtimes = {job: (sweep / job / "result.json").stat().st_mtime_ns for job in first}
    r = run_cli("-m", "arch=alexnet,vgg", "layer=fc6,conv_last", f"hydra.sweep.dir={sweep}", NO_REPORT, *TINY)
    assert r.returncode == 0, r.stderr[-3000:]
    again = results(sweep)
    for job in ("0", "2"):  # (alexnet, fc6), (vgg, fc6): done with this very config, skipped
        assert again[job] == first[job] and (sweep / job / "result.json").stat().st_mtime_ns == mtimes[job]
    for job in ("1", "3"):  # fc7 -> conv_last: run again
        x = again[job]
        assert x["status"] == "ok" and x["factors"]["layer"] == "conv_last" and x["factors"] != first[job]["factors"]
        assert (sweep / job / "result.json").stat().st_mtime_ns != mtimes[job]
        assert (x["cache"]["source_hit"], x["cache"]["features_hit"]) == (True, True)
        assert x["keys"]["source"] == first[job]["keys"]["source"]
    assert "already done" in r.stderr + r.stdout


@pytest.mark.slow
def test_convnet_features_beat_raw_pixels(make_cfg, tmp_path, capsys):
    """The synthetic task needs learned features: a linear probe on raw pixels does clearly worse (the tiny width's
    fc6 0.49-0.56 for seeds 0-3 against 0.35 for raw pixels; the test asks for 0.10 more). The tiny width: the
    question is whether learned features beat pixels at all, and it trains in a third of the small width's time."""
    from src.data.tasks import load_target
    from src.probe.linear import build_pipeline, fit_and_score

    # Threads set explicitly: results are bitwise reproducible per thread count. One thread: beside the other
    # pytest-xdist worker on 2 cores, more would only contend for them.
    overrides = ["source.num_classes=20", "source.images_per_class=100", "source.epochs=6", "width=tiny",
                 "trainer.optim.batch_size=64", "classifier=logistic", "trainer.num_threads=1"]
    cfg = make_cfg(*overrides, tiny=False)
    convnet = execute(cfg, tmp_path)["metrics"]["target_score"]
    splits = load_target(cfg.target.data, image_size=32)
    pixels = {k: (x.reshape(len(x), -1).astype(np.float32) / 255, y) for k, (x, y) in splits.items()}
    raw = fit_and_score(build_pipeline(cfg), pixels, list(cfg.classifier.C_grid), "accuracy")["target_score"]
    with capsys.disabled():
        print(f"\n[synth_objects_new] raw pixels: {raw:.3f}  ConvNet fc6: {convnet:.3f}")
    assert convnet > raw + 0.10


@pytest.mark.empty_cache  # nothing may be cached, not even the session's source
def test_diverging_training_stops_with_a_clear_error(make_cfg, tmp_path, cache_dir):
    cfg = make_cfg("trainer.optim.lr=10")  # the largest valid lr (src/check_run.py); larger is refused up front
    with pytest.raises(FloatingPointError, match="source training loss is (nan|inf).*lower trainer.optim.lr"):
        execute(cfg, tmp_path)
    assert json.loads((tmp_path / "result.json").read_text())["error"]["type"] == "FloatingPointError"
    assert not list((cache_dir / "source").glob("*/manifest.json"))  # nothing half-trained was cached


def reference_classifier(name: str, C: float, seed: int):
    """The classifier a config names, built here from scikit-learn itself (the path solvers: scikit-learn's classifier
    with their objective, solved tightly)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsOneClassifier
    from sklearn.svm import LinearSVC

    return {
        "linear_svm_liblinear": lambda: LinearSVC(C=C, dual="auto", max_iter=5000, random_state=seed),
        "linear_svm_ovo": lambda: OneVsOneClassifier(LinearSVC(C=C, dual="auto", max_iter=5000, random_state=seed)),
        "logistic_lbfgs": lambda: LogisticRegression(C=C, max_iter=1000, random_state=seed),
        "logistic": lambda: LogisticRegression(C=C, tol=1e-10, max_iter=100_000),
    }[name]()


@pytest.mark.parametrize("classifier", ["linear_svm_liblinear", "linear_svm_ovo", "logistic", "logistic_lbfgs"])
def test_every_classifier_and_the_metrics(make_cfg, cache_dir, tmp_path, classifier):
    """The recorded score and per-image results agree with a reference computed here: the job's cached features,
    L2-normalised, and scikit-learn's classifier at the job's chosen C, fit on train+val and scored on test."""
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.preprocessing import normalize

    from src.features.extract import load_features

    cfg = make_cfg(f"classifier={classifier}", "target.metric=mean_per_class_accuracy", "target.data.train_examples=30")
    r = execute(cfg, tmp_path)
    m = r["metrics"]
    assert m["target_metric"] == "mean_per_class_accuracy" and m["best_C"] in m["C_grid"]
    assert len(m["val_scores"]) == len(m["C_grid"])
    assert set(cfg.classifier.C_grid) >= set(m["C_grid"]) - set(m["C_grid_extended"])
    plan = validate(cfg)
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = (
        load_features(cache_dir / "features" / r["keys"]["features"], split, plan.spec, plan.tap, cfg.pooling)
        for split in ("train", "val", "test"))
    assert len(y_tr) == 30  # target.data.train_examples
    ref = reference_classifier(classifier, m["best_C"], cfg.seed).fit(normalize(np.r_[x_tr, x_va]), np.r_[y_tr, y_va])
    ref_correct = ref.predict(normalize(x_te)) == y_te
    correct = np.load(tmp_path / "test_correct.npy").astype(bool)
    assert m["target_score"] == pytest.approx(balanced_accuracy_score(y_te, np.where(correct, y_te, -1)))
    if classifier == "logistic":  # our solver stops at its tolerance: the same predictions but at near-ties
        assert (correct == ref_correct).mean() >= 0.95
        assert m["target_score"] == pytest.approx(balanced_accuracy_score(y_te, ref.predict(normalize(x_te))), abs=0.05)
    else:
        assert (correct == ref_correct).all()
        assert m["target_score"] == pytest.approx(balanced_accuracy_score(y_te, ref.predict(normalize(x_te))))


def tuned_predictions(cfg, entry, images):
    """The fine-tuned net's class predictions, computed here from its saved weights."""
    import torch

    from src.models.registry import get_arch
    from src.train.finetune import replace_head

    plan = validate(cfg)
    impl = get_arch(plan.spec.family).torch()
    model = impl.load(plan.spec, cfg.source)
    replace_head(model, plan.spec, int(cfg.target.data.num_classes))
    model.load_state_dict(torch.load(entry / "finetuned.pt", weights_only=True))
    with torch.inference_mode():
        return model.eval()(impl.preprocess(plan.spec, cfg.source)(torch.from_numpy(images))).argmax(1).numpy()


@pytest.mark.parametrize("mode", ["last", "full"])
def test_tiny_finetuning_is_cached_and_scored(make_cfg, cache_dir, tmp_path, mode):
    """A fine-tuned classifier is scored by its own predictions: the per-image results and the val accuracy agree
    with the cached fine-tuned weights' predictions, computed here."""
    from src.data.tasks import load_target

    cfg = make_cfg(f"finetune={mode}", "finetune.epochs=2", "finetune.batch_size=16")
    r = execute(cfg, tmp_path / "a")
    m = r["metrics"]
    assert r["cache"]["finetune_hit"] is False and r["keys"]["finetune"]
    splits = load_target(cfg.target.data, image_size=int(cfg.source.image_size))
    entry = cache_dir / "finetune" / r["keys"]["finetune"]
    (x_va, y_va), (x_te, y_te) = splits["val"], splits["test"]
    correct = np.load(tmp_path / "a" / "test_correct.npy").astype(bool)
    assert (correct == (tuned_predictions(cfg, entry, x_te) == y_te)).all()
    assert m["target_score"] == pytest.approx(correct.mean())
    assert m["finetune_val_acc"] == pytest.approx((tuned_predictions(cfg, entry, x_va) == y_va).mean())
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


def test_finetuned_retrieval_is_retapped(make_cfg, cache_dir, tmp_path):
    """A fine-tuned net on a retrieval target is re-tapped: other features than the untuned net's (another key,
    other values) and so another score."""
    from src.features.extract import load_features

    retrieval = ["target=synth_retrieval", "target.data.num_instances=5", "target.data.database_per_instance=3",
                 "target.data.queries_per_instance=2"]
    tuned = execute(make_cfg(*retrieval, "finetune=full", "finetune.epochs=1", tiny="source"), tmp_path / "tuned")
    plain = execute(make_cfg(*retrieval, tiny="source"), tmp_path / "plain")
    assert tuned["metrics"]["target_metric"] == "map" and tuned["cache"]["features_hit"] is False
    assert tuned["keys"]["finetune"] and tuned["keys"]["source"] == plain["keys"]["source"]
    assert tuned["keys"]["features"] != plain["keys"]["features"]
    plan = validate(make_cfg(*retrieval, tiny="source"))
    tuned_db, plain_db = (load_features(cache_dir / "features" / r["keys"]["features"], "database", plan.spec,
                                        plan.tap, "avg")[0] for r in (tuned, plain))
    assert tuned_db.shape == plain_db.shape and not np.allclose(tuned_db, plain_db)
    assert tuned["metrics"]["target_score"] != plain["metrics"]["target_score"]
