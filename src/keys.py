"""What each stage's cache key hashes: exactly the config that determines the artifact, nothing else.

A stage's key is `src.cache.make_key` of its payload here. Keep a payload minimal and complete: a field that does
not change the artifact makes a sweep recompute what it has (a layer sweep would re-extract), and a field that
changes it but is missing makes a sweep reuse a wrong artifact. Bump a stage's version when its code changes what
it produces, so old entries are not reused. No torch: the config check can compute keys too.
"""

from __future__ import annotations

from typing import Any

SOURCE_VERSION = 1
FEATURES_VERSION = 2  # 2: max pooling read from spp, no <tap>.max.npy
FINETUNE_VERSION = 1
DISTANCE_VERSION = 1


def source_payload(cfg, plan, weights_sha256: str | None = None) -> dict[str, Any]:
    """Source net: its data, architecture (resolved family/depth/width), optimisation and seed.

    Not the snapshot (every epoch is kept), not the layer/pooling/dimred/classifier/target, and not how it is
    run (accelerator, threads, progress bar). Pretrained nets: the weights file's content hash (`file_digest`).
    """
    from omegaconf import OmegaConf

    source = OmegaConf.to_container(cfg.source, resolve=True)
    source.pop("snapshot", None)
    if plan.spec.pretrained:  # nothing is trained: the weights' content identifies the source
        return {"stage": "source", "version": SOURCE_VERSION, "arch": plan.spec.family, "weights": source["weights"],
                "weights_sha256": weights_sha256, "image_size": source["image_size"]}
    return {
        "stage": "source",
        "version": SOURCE_VERSION,
        "source": source,
        "arch": plan.spec.family,
        "depth": plan.spec.depth,
        "width": float(cfg.width.multiplier),
        "optim": OmegaConf.to_container(cfg.trainer.optim, resolve=True),
        "seed": int(cfg.seed),
    }


def finetune_payload(cfg, plan, source_key: str) -> dict[str, Any]:
    """Fine-tuned net: the source weights (key + snapshot), the target data it is tuned on, how, and the seed."""
    from omegaconf import OmegaConf

    return {
        "stage": "finetune",
        "version": FINETUNE_VERSION,
        "source": source_key,
        "snapshot": plan.snapshot,
        "target_data": OmegaConf.to_container(cfg.target.data, resolve=True),
        "finetune": OmegaConf.to_container(cfg.finetune, resolve=True),
        "seed": int(cfg.seed),
    }


def features_payload(cfg, plan, source_key: str, finetune_key: str | None = None) -> dict[str, Any]:
    """Features: which weights (source key + snapshot, or a fine-tuned net) applied to which target images.

    Not the layer or pooling: an entry holds every tap and every pooling from one forward pass.
    """
    from omegaconf import OmegaConf

    payload = {
        "stage": "features",
        "version": FEATURES_VERSION,
        "source": source_key,
        "snapshot": plan.snapshot,
        "target_data": OmegaConf.to_container(cfg.target.data, resolve=True),
    }
    if finetune_key is not None:
        payload["finetune"] = finetune_key
    return payload


def source_val_payload(cfg, plan, source_key: str) -> dict[str, Any]:
    """The source task's own val images through its net (`source_val_features=true`): which weights, nothing else
    (the source key already hashes the source data)."""
    return {"stage": "features", "version": FEATURES_VERSION, "source": source_key, "snapshot": plan.snapshot,
            "images": "source_val"}


def distance_payload(source_val_entry: str, features_key: str, layer: str, measures: list[str]) -> dict[str, Any]:
    """A measured (source, target) distance: the source's val features entry, the target's features, the layer
    and the measures (src.features.source_distance)."""
    return {"stage": "distance", "version": DISTANCE_VERSION, "source_val_features": source_val_entry,
            "features": features_key, "layer": layer, "measures": list(measures)}


def stage_keys(cfg, plan) -> dict[str, str]:
    """The cache keys of the shared stages a job's (validated) config runs, as src.experiment computes them: the
    source net (not for a pretrained one: nothing is trained), the fine-tuned net (finetune != none) and the
    target's features (not when a fine-tuned classifier is evaluated directly). A pretrained source's features key
    hashes its weights file, which only the job reads: here it stands in without that hash, a key no cache entry
    has (a sweep's plan counts such an extraction as still to do until its job has run)."""
    from src.cache import make_key

    source = make_key(source_payload(cfg, plan))
    keys = {} if plan.spec.pretrained else {"source": source}
    tuned = None
    if cfg.finetune.name != "none":
        tuned = keys["finetune"] = make_key(finetune_payload(cfg, plan, source))
    if tuned is None or cfg.target.evaluator != "classification":
        keys["features"] = make_key(features_payload(cfg, plan, source, tuned))
    return keys
