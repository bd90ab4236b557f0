"""One experiment's stages: source net -> [fine-tuned net] -> features -> estimates and probe, each cached by its
own key (`src.keys`: what each key hashes).

Each stage is a function returning a small `Stage` artifact (cache entry, hit, key, seconds); how a target is
scored is looked up in `EVALUATORS` by the target task's registered evaluator. `run_experiment` is what
`src.main` calls after the config check; it imports torch, so nothing that only composes or validates a config
imports this module.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from omegaconf import DictConfig
from threadpoolctl import ThreadpoolController

from src import lazy_dynamo
from src.cache import Store, file_digest, make_key
from src.keys import cost_class, features_payload, finetune_payload, source_payload, source_val_payload
from src.check import Plan
from src.record import METRICS, width_label
from src.data.tasks import load_source, load_target
from src.device import job_device
from src.features.extract import extract_splits, load_features
from src.features.source_distance import distance_defined, measure_distance
from src.models.registry import get_arch
from src.probe.registry import CLASSIFIERS
from src.tracking import training_loggers
from src.train import snapshot_file
from src.transferability import spectra
from src.transferability.estimators import ESTIMATORS, softmax

# Before any stage imports torchvision (or timm, or Lightning's metrics, which do): without torch._dynamo, which
# only torchvision's import would load in a job that extracts or probes (src/lazy_dynamo.py).
lazy_dynamo.install()
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stage:
    """What a stage leaves behind: its cache entry (None: nothing cached), whether it was a hit, its key, time."""

    entry: Path | None = None
    hit: bool | None = None
    key: str | None = None
    seconds: float = 0.0


def device_of(cfg: DictConfig) -> str:
    """The torch device of this job's own computations: where Lightning trains (trainer.accelerator)."""
    return job_device(str(cfg.trainer.accelerator))


def _cached(store: Store, stage: str, payload: dict, build: Callable[[Path], None],
            cost: Callable[[], str] | None = None) -> Stage:
    t0 = time.perf_counter()
    entry, hit = store.get_or_build(stage, payload, build, cost=cost)
    return Stage(entry, hit, make_key(payload), time.perf_counter() - t0)


def source_stage(cfg: DictConfig, plan: Plan, store: Store) -> Stage:
    """The source net, trained once per source key with every epoch snapshotted (pretrained nets: nothing)."""
    if plan.spec.extra:  # a model library's net: keyed by model, library version and the weights' content
        from src.models.external import weights_file

        path = weights_file(plan.spec)
        digest = file_digest(path, store.root) if path is not None else None
        return Stage(None, True, make_key(source_payload(cfg, plan, digest)))
    payload = source_payload(cfg, plan)

    def build(tmp: Path) -> None:
        from src.train.source import train_source

        splits = load_source(cfg.source, seed=int(cfg.seed))
        loggers = training_loggers(cfg, "source", make_key(payload), f"{cfg.arch.name}/{width_label(cfg.width)}")
        # An interrupted training (kill, preemption, time limit) resumes from its last epoch in the resume dir.
        train_source(tmp, plan.spec, splits, cfg.source, cfg.trainer, seed=int(cfg.seed), loggers=loggers,
                     resume_dir=store.resume_dir("source", make_key(payload)))

    return _cached(store, "source", payload, build, lambda: cost_class("source", cfg, plan))


def source_group_stage(cfgs: list[DictConfig], plans: list[Plan], store: Store) -> list[Stage | None]:
    """Replicate source nets (configs that differ only in seeds) trained as one batched group
    (`src.train.group`), each saved as the ordinary entry of its own key, as `source_stage` would save it. Members
    already cached are not retrained; one another process is building is left to it (None). A lone missing member
    trains on its own, as `source_stage` trains it."""
    from src.train.group import GROUP_CHECKPOINT, train_group
    from src.train.source import train_source

    payloads = [source_payload(c, p) for c, p in zip(cfgs, plans)]
    keys = [make_key(p) for p in payloads]

    def build(todo: list[int], tmps: list[Path], publish: Callable[[int], None]) -> None:
        resume = [store.resume_dir("source", keys[i]) for i in todo]
        if len(todo) == 1 and not (resume[0] / GROUP_CHECKPOINT).is_file():  # (a group's checkpoint: resumed below)
            i = todo[0]
            splits = load_source(cfgs[i].source, seed=int(cfgs[i].seed))
            train_source(tmps[0], plans[i].spec, splits, cfgs[i].source, cfgs[i].trainer, seed=int(cfgs[i].seed),
                                      resume_dir=resume[0])
            publish(0)
            return
        lead = cfgs[todo[0]]
        log.info("training %d replicate source nets as one group (%s)", len(todo),
                 ", ".join(f"seed {cfgs[i].seed}" for i in todo))
        train_group(tmps, plans[todo[0]].spec, [load_source(cfgs[i].source, seed=int(cfgs[i].seed)) for i in todo],
                    lead.source, lead.trainer, [int(cfgs[i].seed) for i in todo], device=device_of(lead),
                    resume_dirs=resume, on_member_done=publish)

    t0 = time.perf_counter()
    built = store.build_many("source", payloads, build, cost_class("source", cfgs[0], plans[0]))
    seconds = time.perf_counter() - t0
    return [None if b is None else Stage(b[0], b[1], keys[i], seconds) for i, b in enumerate(built)]


def build_source_group(cfgs: list[DictConfig]) -> list[dict[str, Any]]:
    """A sweep's replicate group (`src.sweep_plan`): its source nets trained together, then each member's source
    val features (`build_source`, which finds its net in the cache); what the group's builder runs first."""
    from src.check import validate

    plans = [validate(c) for c in cfgs]
    _limit_threads(cfgs[0])
    source_group_stage(cfgs, plans, Store(cfgs[0].paths.cache_dir))
    return [build_source(c, p) for c, p in zip(cfgs, plans)]


def source_net(cfg: DictConfig, plan: Plan, source: Stage):
    """(model in eval mode, tap -> graph node, uint8 batch -> input) of the configured source, via the arch registry."""
    impl = get_arch(plan.spec.family).torch()
    weights = snapshot_file(source.entry, plan.snapshot) if source.entry is not None else None
    nodes = impl.tap_nodes(plan.spec, (plan.tap,)) if plan.spec.extra else impl.tap_nodes(plan.spec)
    return impl.load(plan.spec, cfg.source, weights), nodes, impl.preprocess(plan.spec, cfg.source)


def _extractor_args(plan: Plan) -> dict[str, Any]:
    """How a model library's net is traced (its own FX helpers) and how many prefix tokens its sequences carry."""
    if not plan.spec.extra:
        return {}
    from src.models.external import feature_extractor

    return {"extractor": lambda model, nodes: feature_extractor(model, nodes, plan.spec),
            "prefix_tokens": int(plan.spec.extra["prefix_tokens"])}


_NUM_PARAMS: dict[str, int] = {}  # source key -> parameter count (a sweep's jobs share a few sources)


def source_num_params(cfg: DictConfig, plan: Plan, source: Stage) -> int:
    """The source net's parameter count: a static baseline the estimators must beat (rank nets by size). Counted
    once per source and process (it meant building the net and loading its weights in every job)."""
    if source.key not in _NUM_PARAMS:
        model, _, _ = source_net(cfg, plan, source)
        _NUM_PARAMS[source.key] = int(sum(p.numel() for p in model.parameters()))
    return _NUM_PARAMS[source.key]


def finetune_stage(cfg: DictConfig, plan: Plan, store: Store, source: Stage) -> Stage:
    """A copy of the source net fine-tuned on the target (finetune=last|full), cached under its own key."""
    if cfg.finetune.name == "none":
        return Stage()

    def build(tmp: Path) -> None:
        from src.train.finetune import finetune

        model, _, prep = source_net(cfg, plan, source)
        splits = load_target(cfg.target.data, image_size=int(cfg.source.image_size))
        if cfg.target.evaluator == "retrieval":  # learn the database's instances
            splits = {"train": splits["database"], "val": splits["database"]}
        loggers = training_loggers(cfg, "finetune", make_key(payload), f"{cfg.finetune.name} {cfg.target.name}")
        finetune(tmp, model, plan.spec, splits, cfg.finetune, cfg.trainer, prep, seed=int(cfg.seed),
                 loggers=loggers)

    payload = finetune_payload(cfg, plan, source.key)
    return _cached(store, "finetune", payload, build, lambda: cost_class("finetune", cfg, plan))


def tuned_net(cfg: DictConfig, plan: Plan, source: Stage, tuned: Stage):
    """The source net as the later stages use it: fine-tuned if asked for."""
    model, nodes, prep = source_net(cfg, plan, source)
    if tuned.entry is not None:
        from src.train.finetune import load_finetuned

        n_classes = json.loads((tuned.entry / "metrics.json").read_text())["num_classes"]
        model = load_finetuned(tuned.entry, model, plan.spec, n_classes)
    return model, nodes, prep


def features_stage(cfg: DictConfig, plan: Plan, store: Store, source: Stage, tuned: Stage) -> Stage:
    """Every tap (and every pooling) of the target's images, from one forward pass."""

    def build(tmp: Path) -> None:
        model, nodes, prep = tuned_net(cfg, plan, source, tuned)
        splits = load_target(cfg.target.data, image_size=int(cfg.source.image_size))
        extract_splits(model, nodes, splits, tmp, batch_size=int(cfg.trainer.extract_batch_size), preprocess=prep,
                       device=device_of(cfg), **_extractor_args(plan))

    return _cached(store, "features", features_payload(cfg, plan, source.key, tuned.key), build,
                   lambda: cost_class("features", cfg, plan))


def source_val_stage(cfg: DictConfig, plan: Plan, store: Store, source: Stage, always: bool = False) -> Stage:
    """Every tap of the source task's own val images (split `val`), once per source net and snapshot: what the
    measured distance compares the target's features with. With `source_val_features=true` or `always`."""
    if not (cfg.get("source_val_features") or always) or plan.spec.pretrained:
        return Stage()

    def build(tmp: Path) -> None:
        model, nodes, prep = source_net(cfg, plan, source)
        val = load_source(cfg.source, seed=int(cfg.seed))["val"]
        extract_splits(model, nodes, {"val": val}, tmp, batch_size=int(cfg.trainer.extract_batch_size), preprocess=prep,
                       device=device_of(cfg))

    return _cached(store, "features", source_val_payload(cfg, plan, source.key), build,
                   lambda: cost_class("source_val", cfg, plan))


def estimate_transferability(cfg: DictConfig, plan: Plan, feat_entry: Path, splits, names: list[str],
                             seconds: dict[str, float] | None = None) -> dict[str, float]:
    """The registered estimators (cheap ones always; an expensive one when `estimator=`, `estimator.extra=[...]` or
    `objective=` names it; all with `estimator.extra=[all]`) on the labelled target images of `names`: 'features'
    ones on the chosen layer, 'probs' ones on the source head's class probabilities (its last tap, stored in the
    same feature entry). One that cannot score these inputs is recorded as NaN with a warning; the probe still runs.
    `seconds`, if given, gets each estimator's own time."""
    extra = set(cfg.estimator.get("extra") or [])
    objective = cfg.get("objective")
    extra |= {objective} if isinstance(objective, str) else set(objective or [])  # objective=<an estimator>
    chosen = [e for e in ESTIMATORS.values()
              if e.cost == "cheap" or e.name == cfg.estimator.name or e.name in extra or "all" in extra]
    x = np.concatenate([splits[s][0] for s in names])
    y = np.concatenate([splits[s][1] for s in names])
    with spectra.shared():  # H-score, GBC and TransRate factor the same centred Gram matrix of x: once
        return _estimate_all(cfg, plan, feat_entry, names, chosen, x, y, {} if seconds is None else seconds)


def _timed(seconds: dict[str, float], name: str, fn: Callable[[], float]) -> float:
    t0 = time.perf_counter()
    value = fn()
    seconds[name] = time.perf_counter() - t0
    return value


def _estimate_all(cfg: DictConfig, plan: Plan, feat_entry: Path, names: list[str], chosen, x, y,
                  seconds: dict[str, float]) -> dict[str, float]:
    if y.ndim == 2:  # multi-label: per label column, for the estimators defined that way
        return {e.name: _timed(seconds, e.name, lambda e=e: float(np.mean([_estimate(e, x, col) for col in y.T])))
                for e in chosen if e.multilabel and e.input == "features"}
    inputs = {"features": x}
    if any(e.input == "probs" for e in chosen):
        head = plan.spec.taps()[-1]  # fc8 / logits
        logits = np.concatenate([load_features(feat_entry, s, plan.spec, head, "avg")[0] for s in names])
        inputs["probs"] = softmax(logits)
    device = device_of(cfg)
    if device != "cpu" and any(e.torch for e in chosen):  # the heavy linear algebra on the job's GPU
        inputs["features_gpu"] = torch.from_numpy(np.ascontiguousarray(x)).to(device)
    return {e.name: _timed(seconds, e.name, lambda e=e: _estimate(
        e, inputs["features_gpu" if e.torch and "features_gpu" in inputs else e.input], y)) for e in chosen}


def _estimate(e, inputs, labels) -> float:
    try:
        return float(e.fn(inputs, labels))
    except (ValueError, np.linalg.LinAlgError) as err:  # e.g. one class in the labelled split
        log.warning("estimator %s could not score this target (%s); recorded as NaN", e.name, err)
        return float("nan")


# --- evaluators: how a target is scored (the task registry names one per task) --------------------------------


@dataclass
class Evaluation:
    """What scoring a target gives: its metrics (documented keys of `src.record.METRICS`), the seconds the
    transferability estimates took (timed apart from the probe) and the per-test-image correctness, which
    `src.main` writes next to result.json (classification targets)."""

    metrics: dict[str, Any]
    estimate_s: float = 0.0
    test_correct: np.ndarray | None = None


def _documented(out: dict[str, Any]) -> dict[str, Any]:
    """The result-record metrics among what a scorer returned (its timings and per-image arrays are not)."""
    return {k: v for k, v in out.items() if k in METRICS}


def _probe(cfg: DictConfig, plan: Plan, feat_entry: Path, names: tuple[str, ...], fit: Callable) -> Evaluation:
    """Shared by the feature-based evaluators: load the chosen layer, estimate, then fit (unless an estimator
    replaces the probe: `estimator=logme` etc. scores without training anything)."""
    log.info("probe: %s on %s of %s", cfg.classifier.name if cfg.estimator.name == "none" else cfg.estimator.name,
             plan.tap, cfg.target.name)
    splits = {s: load_features(feat_entry, s, plan.spec, plan.tap, cfg.pooling) for s in names}
    # Estimators look at the labelled images a probe would be fit on.
    labelled = [n for n in names if n in ("train", "val", "database")]
    t0 = time.perf_counter()
    seconds: dict[str, float] = {}
    transfer = estimate_transferability(cfg, plan, feat_entry, splits, labelled, seconds)
    y = np.concatenate([splits[s][1] for s in labelled])
    inputs = {"n": len(y), "classes": y.shape[1] if y.ndim == 2 else len(np.unique(y)),
              "dim": splits[labelled[0]][0].shape[1]}
    done = Evaluation({"transferability": transfer, "estimator": cfg.estimator.name,
                       "estimator_score": transfer.get(cfg.estimator.name), "estimate_seconds": seconds,
                       "estimate_inputs": {k: int(v) for k, v in inputs.items()}}, time.perf_counter() - t0)
    if cfg.estimator.name == "none":
        out = fit(splits)
        done.metrics.update(_documented(out))
        done.test_correct = out.get("test_correct")
    return done


def evaluate_classification(cfg: DictConfig, plan: Plan, feat_entry: Path) -> Evaluation:
    """Linear probe: C chosen on val, refit on train+val, scored on test."""
    from src.probe.linear import build_pipeline, fit_and_score  # scikit-learn: not in a job that only trains

    def fit(splits):
        multilabel = splits["train"][1].ndim == 2
        pipe = build_pipeline(cfg, multilabel)
        for est in pipe.get_params().values():  # torch estimators (the C-path solver) run on the job's device
            if hasattr(est, "device") and hasattr(est, "set_params"):
                est.set_params(device=device_of(cfg))
        return fit_and_score(pipe, splits, list(cfg.classifier.C_grid), cfg.target.metric,
                             CLASSIFIERS[cfg.classifier.name].c_param, cfg.classifier.get("patience"))

    return _probe(cfg, plan, feat_entry, ("train", "val", "test"), fit)


def evaluate_retrieval(cfg: DictConfig, plan: Plan, feat_entry: Path) -> Evaluation:
    """Queries ranked against the database by L2 distance of normalised features; mAP."""
    from src.probe.retrieval import retrieval_score

    return _probe(cfg, plan, feat_entry, ("database", "query"), lambda splits: retrieval_score(cfg, splits, device_of(cfg)))


EVALUATORS: dict[str, Callable[[DictConfig, Plan, Path], Evaluation]] = {
    "classification": evaluate_classification,
    "retrieval": evaluate_retrieval,
}


def evaluate_finetuned_classifier(cfg: DictConfig, plan: Plan, source: Stage, tuned: Stage) -> Evaluation:
    """A fine-tuned classifier is scored by its own predictions on the test split: no features, no probe."""
    from src.probe.linear import SCORERS
    from src.train.finetune import predict

    model, _, prep = tuned_net(cfg, plan, source, tuned)
    test_x, test_y = load_target(cfg.target.data, image_size=int(cfg.source.image_size))["test"]
    pred = predict(model, test_x, prep, batch_size=int(cfg.trainer.extract_batch_size), device=device_of(cfg))
    ft = json.loads((tuned.entry / "metrics.json").read_text())
    return Evaluation({"target_score": float(SCORERS[cfg.target.metric](test_y, pred)),
                       "finetune_val_acc": ft["val_acc"][str(ft["epochs"])], "feature_dim": None},
                      test_correct=(np.asarray(pred) == test_y).astype(np.uint8))


def distance_stage(plan: Plan, store: Store, source_val: Stage, features: Stage) -> tuple[Stage, dict | None]:
    """(stage, value): the measured (source, target) distance at a fixed early layer, cached per pair
    (`src.features.source_distance`); images only, so it never looks at the probe or the labels."""
    if source_val.entry is None or features.entry is None:
        return Stage(), None
    t0 = time.perf_counter()
    value, entry, hit, key = measure_distance(store, plan, source_val.entry, features.entry, features.key)
    return Stage(entry, hit, key, time.perf_counter() - t0), value


_POOLS: list = []  # [(len(sys.modules) when scanned, ThreadpoolController)]


def _limit_threads(cfg: DictConfig) -> None:
    if cfg.trainer.num_threads:
        # Both torch's and the BLAS/OpenMP pools scikit-learn uses, so parallel jobs do not oversubscribe the cores.
        torch.set_num_threads(int(cfg.trainer.num_threads))
        # Finding the loaded pools scans every shared library of the process (~50 ms, in every job of a sweep);
        # they change only when new modules are imported, so one scan serves the jobs of a process until then.
        if not _POOLS or _POOLS[0][0] != len(sys.modules):
            _POOLS[:] = [(len(sys.modules), ThreadpoolController())]
        _POOLS[0][1].limit(limits=int(cfg.trainer.num_threads))


def build_source(cfg: DictConfig, plan: Plan) -> dict[str, Any]:
    """The source stage alone, and the source task's val features when the job needs them: what a sweep's source
    job runs before the jobs that share its net (`src.sweep_plan`); those then find both in the cache."""
    from src.keys import source_val_needed

    _limit_threads(cfg)
    store = Store(cfg.paths.cache_dir)
    source = source_stage(cfg, plan, store)
    source_val = source_val_stage(cfg, plan, store, source, always=source_val_needed(cfg, plan))
    return {"source": {"key": source.key, "hit": source.hit, "seconds": source.seconds},
            "source_val_features": {"key": source_val.key, "hit": source_val.hit, "seconds": source_val.seconds},
            "lock_wait": sum(store.waits.values())}


def run_experiment(cfg: DictConfig, plan: Plan) -> dict[str, Any]:
    """Run (or reuse) every stage; returns the `metrics`, `timings_s`, `cache` and `keys` parts of the Result."""
    t_start = time.perf_counter()
    _limit_threads(cfg)
    store = Store(cfg.paths.cache_dir)
    device = device_of(cfg)  # checked before any stage runs

    source = source_stage(cfg, plan, store)
    tuned = finetune_stage(cfg, plan, store, source)
    # The measured distance needs the source task's val features; it is defined for the untuned net's features.
    want_distance = distance_defined(cfg, plan) and tuned.entry is None
    source_val = source_val_stage(cfg, plan, store, source, always=want_distance)
    metrics: dict[str, Any] = {
        "target_score": None, "target_metric": cfg.target.metric, "source_val_acc": None,
        "feature_dim": plan.feature_dim, "best_C": None, "val_scores": None, "estimator": cfg.estimator.name,
        "estimator_score": None, "transferability": {},
    }
    if source.entry is not None:
        trained = json.loads((source.entry / "metrics.json").read_text())
        metrics["source_val_acc"] = trained["val_acc"][str(plan.snapshot)]
        metrics["source_val_images"] = trained.get("val_images")  # (None: an entry cached before it was recorded)
        metrics["source_num_params"] = source_num_params(cfg, plan, source)
    elif plan.spec.extra:  # a model library's net: its size is the static baseline a model selection must beat
        metrics["source_num_params"] = source_num_params(cfg, plan, source)

    t0 = time.perf_counter()
    distance = Stage()
    if tuned.entry is not None and cfg.target.evaluator == "classification":
        features = Stage()
        scored = evaluate_finetuned_classifier(cfg, plan, source, tuned)
    else:
        features = features_stage(cfg, plan, store, source, tuned)
        if want_distance:
            distance, metrics["distance"] = distance_stage(plan, store, source_val, features)
        t0 = time.perf_counter()
        scored = EVALUATORS[cfg.target.evaluator](cfg, plan, features.entry)
    metrics.update(scored.metrics)
    t_probe = time.perf_counter() - t0 - scored.estimate_s

    stages = {"source": source, "finetune": tuned, "features": features}
    timings = {"source": source.seconds, "finetune": tuned.seconds, "extract": features.seconds,
               "estimate": scored.estimate_s, "probe": t_probe}
    if source_val.key is not None:  # for the measured distance, or asked for with source_val_features=true
        stages["source_val_features"] = source_val
        timings["source_val_extract"] = source_val.seconds
    if metrics.get("distance") is not None:
        stages["distance"] = distance
        timings["distance"] = distance.seconds
    # Seconds spent waiting for another process's cache lock (0 when the sweep's plan ordered the stages).
    timings["lock_wait"] = sum(store.waits.values())
    end = time.time()
    store.record_timing("probe", "", end - t_probe - scored.estimate_s, end, cost_class("probe", cfg, plan))
    return {
        "metrics": metrics,
        "timings_s": {**timings, "total": time.perf_counter() - t_start},
        "cache": {f"{name}_hit": s.hit for name, s in stages.items()},
        "keys": {name: s.key for name, s in stages.items()},
        "device": device,
        "per_image": {"test_correct": scored.test_correct},
    }
