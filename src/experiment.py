"""One experiment's stages: source net -> [fine-tuned net] -> features -> probe, each cached by its own key.

`run_experiment` is what `src.main` calls after the config check; it imports torch, so nothing that only
composes or validates a config imports this module.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from threadpoolctl import threadpool_limits

from src.cache import Store, features_payload, finetune_payload, make_key, source_payload
from src.check import Plan
from src.data.tasks import load_source, load_target
from src.features.extract import extract_splits, load_features
from src.probe.linear import METRICS, build_pipeline, fit_and_score
from src.probe.retrieval import retrieval_score
from src.transferability.estimators import ESTIMATORS, logme, softmax
from src.train.finetune import finetune, load_finetuned, predict
from src.train.source import load_snapshot, to_input, train_source


def estimate_transferability(feat_entry: Path, plan: Plan, splits, names: list[str]) -> dict[str, float]:
    """Every estimator on the labelled target images of `names`: LogME/H-score on the chosen layer's features,
    LEEP/NCE on the source head's class probabilities (its last tap, stored in the same feature entry)."""
    x = np.concatenate([splits[s][0] for s in names])
    y = np.concatenate([splits[s][1] for s in names])
    if y.ndim == 2:  # multi-label: LogME per label column; the others are defined for single labels only
        return {"logme": float(np.mean([logme(x, col) for col in y.T]))}
    head = plan.spec.taps()[-1]  # fc8 / logits
    logits = np.concatenate([load_features(feat_entry, s, plan.spec, head, "avg")[0] for s in names])
    inputs = {"features": x, "probs": softmax(logits)}
    return {name: fn(inputs[kind], y) for name, (kind, fn) in ESTIMATORS.items()}


def source_model(cfg: DictConfig, plan: Plan, src_entry: Path | None):
    """(model in eval mode, tap -> graph node, uint8 batch -> input) for the configured source."""
    if plan.spec.pretrained:
        from src.models import pretrained

        arch = plan.spec.family
        return (
            pretrained.load_pretrained(arch, cfg.source),
            pretrained.tap_nodes(arch),
            pretrained.preprocess_for(arch, cfg.source),
        )
    model = load_snapshot(src_entry, plan.spec, plan.snapshot)
    return model, model.tap_nodes(), to_input


def run_experiment(cfg: DictConfig, plan: Plan) -> dict[str, Any]:
    """Run (or reuse) every stage; returns the `metrics`, `timings_s`, `cache` and `keys` parts of result.json."""
    t_start = time.perf_counter()
    if cfg.trainer.num_threads:
        # Both torch's and the BLAS/OpenMP pools scikit-learn uses, so parallel jobs do not oversubscribe the cores.
        torch.set_num_threads(int(cfg.trainer.num_threads))
        threadpool_limits(int(cfg.trainer.num_threads))
    store = Store(cfg.paths.cache_dir)

    # Stage 1: the source net (trained once per source key, every epoch snapshotted; pretrained nets: no training).
    src_payload = source_payload(cfg, plan)
    src_key = make_key(src_payload)
    t0 = time.perf_counter()
    if plan.spec.pretrained:
        src_entry, src_hit, source_val_acc = None, True, None
    else:

        def build_source(tmp: Path) -> None:
            splits = load_source(cfg.source, seed=int(cfg.seed))
            train_source(tmp, plan.spec, splits, cfg.source, cfg.trainer, seed=int(cfg.seed))

        src_entry, src_hit = store.get_or_build("source", src_payload, build_source)
        source_val_acc = json.loads((src_entry / "metrics.json").read_text())["val_acc"][str(plan.snapshot)]
    t_source = time.perf_counter() - t0

    # Stage 2 (optional): fine-tune a copy of the source net on the target, cached under its own key.
    ft_entry, ft_hit, ft_key, t_finetune = None, None, None, 0.0
    if cfg.finetune.name != "none":
        ft_payload = finetune_payload(cfg, plan, src_key)
        ft_key = make_key(ft_payload)

        def build_finetune(tmp: Path) -> None:
            model, _, prep = source_model(cfg, plan, src_entry)
            splits = load_target(cfg.target.data, image_size=int(cfg.source.image_size))
            if cfg.target.evaluator == "retrieval":  # learn the database's instances
                splits = {"train": splits["database"], "val": splits["database"]}
            finetune(tmp, model, plan.spec, splits, cfg.finetune, cfg.trainer, prep, seed=int(cfg.seed))

        t0 = time.perf_counter()
        ft_entry, ft_hit = store.get_or_build("finetune", ft_payload, build_finetune)
        t_finetune = time.perf_counter() - t0

    def tuned_model():
        """The source net as the later stages use it: fine-tuned if asked for."""
        model, nodes, prep = source_model(cfg, plan, src_entry)
        if ft_entry is not None:
            n_classes = json.loads((ft_entry / "metrics.json").read_text())["num_classes"]
            model = load_finetuned(ft_entry, model, plan.spec, n_classes)
        return model, nodes, prep

    if ft_entry is not None and cfg.target.evaluator == "classification":
        # A fine-tuned classifier is scored by its own predictions: no features, no probe.
        t0 = time.perf_counter()
        model, _, prep = tuned_model()
        test_x, test_y = load_target(cfg.target.data, image_size=int(cfg.source.image_size))["test"]
        pred = predict(model, test_x, prep, batch_size=int(cfg.trainer.extract_batch_size))
        score = float(METRICS[cfg.target.metric](test_y, pred))
        ft_metrics = json.loads((ft_entry / "metrics.json").read_text())
        return {
            "metrics": {"target_score": score, "target_metric": cfg.target.metric, "source_val_acc": source_val_acc,
                        "finetune_val_acc": ft_metrics["val_acc"][str(ft_metrics["epochs"])], "feature_dim": None,
                        "best_C": None, "val_scores": None, "estimator": "none", "estimator_score": None,
                        "transferability": {}},
            "timings_s": {"source": t_source, "finetune": t_finetune, "extract": 0.0,
                          "probe": time.perf_counter() - t0, "total": time.perf_counter() - t_start},
            "cache": {"source_hit": src_hit, "finetune_hit": ft_hit, "features_hit": None},
            "keys": {"source": src_key, "finetune": ft_key, "features": None},
        }

    # Stage 3: features of the target images at every tap of that snapshot (one forward pass).
    feat_payload = features_payload(cfg, plan, src_key, ft_key)

    def build_features(tmp: Path) -> None:
        model, nodes, prep = tuned_model()
        splits = load_target(cfg.target.data, image_size=int(cfg.source.image_size))
        extract_splits(model, nodes, splits, tmp, batch_size=int(cfg.trainer.extract_batch_size), preprocess=prep)

    t0 = time.perf_counter()
    feat_entry, feat_hit = store.get_or_build("features", feat_payload, build_features)
    t_extract = time.perf_counter() - t0

    # Stage 4: transferability estimates (cheap, from the features alone) and the probe (unless an estimator
    # replaces it: `estimator=logme` etc. scores without training anything).
    t0 = time.perf_counter()
    retrieval = cfg.target.evaluator == "retrieval"
    names = ("database", "query") if retrieval else ("train", "val", "test")
    splits = {s: load_features(feat_entry, s, plan.spec, plan.tap, cfg.pooling.name) for s in names}
    # Estimators look at the labelled images a probe would be fit on.
    transfer = estimate_transferability(feat_entry, plan, splits, ["database"] if retrieval else ["train", "val"])
    estimator = cfg.estimator.name
    if estimator != "none":
        probe = {"target_score": None, "best_C": None, "val_scores": None}
    elif retrieval:
        probe = {**retrieval_score(cfg, splits), "best_C": None, "val_scores": None}
    else:
        multilabel = splits["train"][1].ndim == 2
        probe = fit_and_score(
            build_pipeline(cfg, multilabel), splits, list(cfg.classifier.C_grid), cfg.target.metric, cfg.classifier.C_param
        )
    t_probe = time.perf_counter() - t0

    return {
        "metrics": {
            "target_score": probe["target_score"],
            "target_metric": cfg.target.metric,
            "source_val_acc": source_val_acc,
            "feature_dim": int(splits[names[0]][0].shape[1]),
            "best_C": probe["best_C"],
            "val_scores": probe["val_scores"],
            "estimator": estimator,
            "estimator_score": transfer.get(estimator),
            "transferability": transfer,
        },
        "timings_s": {
            "source": t_source,
            "finetune": t_finetune,
            "extract": t_extract,
            "probe": t_probe,
            "total": time.perf_counter() - t_start,
        },
        "cache": {"source_hit": src_hit, "finetune_hit": ft_hit, "features_hit": feat_hit},
        "keys": {"source": src_key, "finetune": ft_key, "features": make_key(feat_payload)},
    }
