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

    Not the snapshot (every epoch is kept), not the layer/pooling/dimred/classifier/target, not another
    optimiser's options, and not how it is run (accelerator, threads, progress bar; the precision is what it
    computes in). The data as its registry entry identifies it (`data_identity`: an ImageFolder tree's path and
    listing, a torchvision dataset's name). Pretrained nets: the weights file's content hash (`file_digest`), not
    its path. (`source.name` is hashed too, though a label: entries keep the keys they were built under.)
    """
    from omegaconf import OmegaConf

    from src.data.registry import data_identity
    from src.data.tasks import SOURCES  # (the module that registers the built-in kinds)
    from src.train.registry import read_options

    source = OmegaConf.to_container(cfg.source, resolve=True)
    source.pop("snapshot", None)
    if plan.spec.extra:  # a model library's net: which model (library, its version, constructor), which weights
        x = plan.spec.extra
        # A weights file is its content (the digest), wherever it lies; "pretrained" is the library's own file.
        weights = "file" if weights_sha256 is not None and x["weights"] not in (None, "pretrained") else x["weights"]
        return {"stage": "source", "version": SOURCE_VERSION, "arch": x["identity"], "weights": weights,
                "weights_sha256": weights_sha256, "seed": x["seed"] if x["weights"] is None else None,
                "input": x["input"], "image_size": source["image_size"]}
    optim = OmegaConf.to_container(cfg.trainer.optim, resolve=True)
    return {
        "stage": "source",
        "version": SOURCE_VERSION,
        "source": data_identity(source, SOURCES, "kind"),
        "arch": plan.spec.family,
        "depth": plan.spec.depth,
        **({"options": plan.spec.options} if plan.spec.options else {}),  # a family's own options (Arch.fields)
        "width": float(cfg.width.multiplier),
        "optim": read_options(optim.get("name"), optim),
        **_precision(cfg),
        "seed": int(cfg.seed),
    }


def _precision(cfg) -> dict[str, str]:
    """Lightning's training precision, which changes the trained weights: omitted at float32 (`32` and `32-true`
    are one), so that entries trained before precision entered the key keep theirs."""
    from src.train.registry import is_float32

    p = cfg.trainer.get("precision") or "32-true"
    return {} if is_float32(p) else {"precision": str(p)}


def _target_data(cfg) -> dict[str, Any]:
    from omegaconf import OmegaConf

    from src.data.registry import data_identity
    from src.data.tasks import TASKS  # (the module that registers the built-in tasks)

    return data_identity(OmegaConf.to_container(cfg.target.data, resolve=True), TASKS, "task")


def finetune_payload(cfg, plan, source_key: str) -> dict[str, Any]:
    """Fine-tuned net: the source weights (key + snapshot), the target data it is tuned on, how, and the seed."""
    from omegaconf import OmegaConf

    from src.train.registry import read_options

    finetune = OmegaConf.to_container(cfg.finetune, resolve=True)
    return {
        "stage": "finetune",
        "version": FINETUNE_VERSION,
        "source": source_key,
        "snapshot": plan.snapshot,
        "target_data": _target_data(cfg),
        "finetune": read_options(finetune.get("optimizer"), finetune),
        **_precision(cfg),
        "seed": int(cfg.seed),
    }


def features_payload(cfg, plan, source_key: str, finetune_key: str | None = None) -> dict[str, Any]:
    """Features: which weights (source key + snapshot, or a fine-tuned net) applied to which target images.

    Not the layer or pooling: an entry holds every tap and every pooling from one forward pass.
    """
    payload = {
        "stage": "features",
        "version": FEATURES_VERSION,
        "source": source_key,
        "snapshot": plan.snapshot,
        "target_data": _target_data(cfg),
    }
    if finetune_key is not None:
        payload["finetune"] = finetune_key
    if plan.spec.extra:  # a model library's net: the blocks, pre_logits, logits and the chosen layer are written
        payload["taps"] = sorted(extracted_taps(plan))
    return payload


def extracted_taps(plan) -> list[str]:
    """The taps one extraction of a model library's net writes (`src.models.external.tap_nodes`): its blocks,
    pre_logits, logits and the chosen layer, so a `depth:` sweep shares one entry and another node gets its own."""
    return list(dict.fromkeys([*plan.spec.always_tapped(), plan.tap]))


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


def source_val_needed(cfg, plan) -> bool:
    """Whether a job extracts its source task's own val images: asked for (`source_val_features=true`), or for the
    measured distance, which every untuned job of a trained source gets (`src.features.source_distance`)."""
    if plan.spec.pretrained:
        return False
    return bool(cfg.get("source_val_features")) or cfg.finetune.name == "none"


def extracts_features(cfg) -> bool:
    """Whether a job extracts target features (a fine-tuned classifier is scored by its own predictions)."""
    return not (cfg.finetune.name != "none" and cfg.target.evaluator == "classification")


def stage_keys(cfg, plan, weights_sha256: str | None = None) -> dict[str, str | None]:
    """The cache key of every shared stage a job uses, as `src.experiment.run_experiment` will (its result.json's
    `keys`): source, source_val_features, finetune, features (None: the job has no such stage). Pretrained
    sources need the weights file's digest. What a sweep's plan schedules by (`src.sweep_plan`)."""
    from src.cache import make_key

    source = make_key(source_payload(cfg, plan, weights_sha256))
    tuned = make_key(finetune_payload(cfg, plan, source)) if cfg.finetune.name != "none" else None
    return {
        "source": source,
        "source_val_features": make_key(source_val_payload(cfg, plan, source)) if source_val_needed(cfg, plan)
        else None,
        "finetune": tuned,
        "features": make_key(features_payload(cfg, plan, source, tuned)) if extracts_features(cfg) else None,
    }


def cost_class(stage: str, cfg, plan) -> str:
    """What a stage's duration depends on, as a short key: its payload without the seeds (replicates of one
    setting take the same time) and with the source's config in place of its key. `.timings/` records a build's
    seconds under it, and a sweep's plan estimates a stage from the builds of the same class."""
    return cost_classes(cfg, plan, (stage,))[stage]


def cost_classes(cfg, plan, stages) -> dict[str, str]:
    """`cost_class` of several stages of one job, their shared parts (the source's payload, the target's data)
    built once: a sweep's plan asks for three per job."""
    from omegaconf import OmegaConf

    from src.cache import make_key

    def unseeded(d):  # (a family's own options stay whole: an option named seed builds another net)
        return {k: v if k == "options" else unseeded(v) for k, v in d.items() if k != "seed"} \
            if isinstance(d, dict) else d

    source = unseeded(source_payload(cfg, plan, "weights"))
    target = unseeded(OmegaConf.to_container(cfg.target.data, resolve=True))
    tuned = cfg.finetune.name != "none"
    finetune = OmegaConf.to_container(cfg.finetune, resolve=True) if tuned else None
    out = {}
    for stage in stages:
        what: dict[str, Any] = {"stage": stage, "source": source}
        if stage in ("features", "finetune", "probe"):
            what["target"] = target
        if stage in ("finetune", "features", "probe") and tuned:
            what["finetune"] = finetune
        if stage == "probe":
            what["probe"] = {k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k])
                             else cfg[k] for k in ("layer", "pooling", "classifier", "estimator", "dimred")}
        out[stage] = make_key(what)
    return out
