"""Config validation before any expensive work (no torch import: it runs in a fraction of a second).

`validate(cfg)` first checks every key against the schema (`src.schema`: known keys, types, ranges, choices), then
asks each registry entry the config names to check what spans its fields (source kind and target task:
`src.data.tasks`; arch: `src.models.registry`), then checks what spans several of them, and returns a `Plan`
with what the stages need. Every problem raises `ConfigError` with one line naming the bad value and what is valid.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from src.data.tasks import SOURCES, TASKS
from src.errors import ConfigError
from src.models.registry import ARCHS, get_arch
from src.models.spec import ArchSpec
from src.registry import import_extensions
from src.schema import check_config


@dataclass(frozen=True)
class Plan:
    spec: ArchSpec
    tap: str  # canonical tap name (aliases such as conv_last resolved)
    snapshot: int  # epoch whose weights are used (0: pretrained weights)
    feature_dim: int  # dimension of the chosen layer after pooling (before PCA)
    # False for a model library's net under a source that would train one: that source config describes nothing
    # about the net (a pretrained source, e.g. imagenet_torchvision, names where its weights come from)
    source_describes_net: bool = True


def _source(cfg: DictConfig) -> int:
    """The source kind (and its fit with the arch); returns the source task's number of classes."""
    arch = get_arch(cfg.arch.name)
    pretrained_kind = SOURCES[cfg.source.kind].loader is None
    if arch.pretrained:  # a model library's net: nothing is trained, the source only says the images' size
        return SOURCES[cfg.source.kind].validate(cfg) if pretrained_kind else 1000
    if pretrained_kind:
        valid = ", ".join(a.name for a in ARCHS.values() if a.pretrained)
        raise ConfigError(f"source={cfg.source.name} trains nothing and needs a pretrained arch; valid: {valid} "
                          f"(or a tv_* preset; got arch={arch.name})")
    return SOURCES[cfg.source.kind].validate(cfg)


def _snapshot(cfg: DictConfig, spec: ArchSpec) -> int:
    if spec.pretrained:
        return 0  # the pretrained weights themselves
    src = cfg.source
    snapshot = src.epochs if src.snapshot is None else src.snapshot
    if snapshot > src.epochs:
        raise ConfigError(f"source.snapshot={snapshot} is past source.epochs={src.epochs}; valid: 1..{src.epochs}")
    return int(snapshot)


def _target(cfg: DictConfig) -> int | None:
    """The target task's own check; returns its number of training images when known without reading it."""
    tgt = cfg.target
    task = TASKS[tgt.data.task]
    if tgt.evaluator != task.evaluator:
        raise ConfigError(f"target.evaluator={tgt.evaluator} does not fit target.data.task={task.name}; "
                          f"valid: {task.evaluator}")
    if tgt.metric not in task.metrics:
        raise ConfigError(f"target.metric={tgt.metric} does not fit target.data.task={task.name}; "
                          f"valid: {', '.join(task.metrics)}")
    return task.validate(cfg)


def _finetune(cfg: DictConfig) -> None:
    ft = cfg.finetune
    if ft.name != "none" and cfg.estimator.name != "none":
        raise ConfigError(f"estimator={cfg.estimator.name} scores features without training; it cannot be combined "
                          f"with finetune={ft.name}")


def _dimred(cfg: DictConfig, feature_dim: int, n_train: int | None) -> None:
    if cfg.dimred.name != "pca":
        return
    n = cfg.dimred.n_components
    if n is None:
        raise ConfigError("dimred.n_components=null with dimred=pca; set the number of components, e.g. 64")
    limit = min(feature_dim, n_train or feature_dim)
    if n > limit:
        why = f"feature dim {feature_dim}" + (f", {n_train} target training images" if n_train else "")
        raise ConfigError(f"dimred.n_components={n} exceeds what layer {cfg.layer} allows here: valid 1..{limit} ({why})")


def _has_marker(value: Any) -> bool:
    if isinstance(value, str):
        return "???" in value  # a missing value, or an interpolation that may resolve to one
    if isinstance(value, dict):
        return any(_has_marker(v) for v in value.values())
    return isinstance(value, list) and any(_has_marker(v) for v in value)


def missing_keys(cfg: DictConfig, plain: dict | None = None) -> list[str]:
    """OmegaConf.missing_keys, sorted; walked only when the config's plain copy has a ??? anywhere (the walk resolves
    every node, several times the cost of the plain copy, on every job of a sweep)."""
    if plain is None:
        plain = OmegaConf.to_container(cfg, resolve=False)
    return sorted(OmegaConf.missing_keys(cfg)) if _has_marker(plain) else []


def required(cfg: DictConfig, missing: list[str]) -> str:
    """The line for missing values: the key that is ??? itself (target.root), not one that only reads it
    (target.data.root: ${..root}), and what it should be (its schema entry)."""
    from src.schema import declared

    def literal(key: str) -> bool:  # ??? itself, not an interpolation to it
        parent, _, leaf = key.rpartition(".")
        try:
            return OmegaConf.is_missing(OmegaConf.select(cfg, parent) if parent else cfg, leaf)
        except Exception:  # a list item (d[1]) and the like: taken as it is
            return True

    key = next((k for k in missing if literal(k)), missing[0])
    readers = [k for k in missing if k != key and not literal(k)]
    read = f"; {', '.join(readers)} read{'s' if len(readers) == 1 else ''} it" if readers else ""
    field = declared().get(key)
    what = f" ({field.doc})" if field is not None and field.doc else ""
    return f"{key} is required (it is ??? in the config{read}); set it, e.g. {key}=...{what}"


def check_writable_dir(key: str, value: Any, env: str | None = None) -> None:
    """A directory we will write into: not a file, creatable and writable. Leaves nothing behind: where it does not
    exist yet, a probe directory is made in its deepest existing parent and removed at once (os.access cannot tell
    that /proc/x cannot be created, nor that a root user's read-only mount cannot be written). `env`: the variable
    the config's default reads (TRANSFER_CACHE_DIR), named when the value came from it."""
    import tempfile

    path = Path(os.path.expanduser(str(value)))
    named = f"{key}={path}" + (f" (set by {env})" if env and os.environ.get(env) == str(value) else "")
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is None:
        raise ConfigError(f"{named}: none of its parents exists")
    if not existing.is_dir():
        what = "is a file" if existing == path else f"has a file in its path ({existing})"
        raise ConfigError(f"{named} {what}; point it at a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{named} is not writable ({existing} is read-only for this user)")
    if existing != path:
        try:
            os.rmdir(tempfile.mkdtemp(prefix=f".{path.name}.check-", dir=existing))
        except OSError as e:
            raise ConfigError(f"{named} cannot be created ({existing} refuses a new directory: "
                              f"{e.strerror or type(e).__name__}); point it at a writable directory") from None


def check_targets(cfg: DictConfig) -> None:
    """Every `_target_` the probe's pipeline instantiates is one it may (src.probe.registry.allowed_targets): said
    here, in one line, not when the job reaches its probe."""
    from src.probe.registry import allowed_targets, target_allowed

    allowed = allowed_targets(OmegaConf.select(cfg, "extensions", default=None))
    for group in ("classifier", "norm", "dimred"):
        node = OmegaConf.select(cfg, f"{group}.estimator", default=None)
        while OmegaConf.is_dict(node):  # (a meta-estimator's inner one: classifier.estimator.estimator)
            target = node.get("_target_")
            if target is not None and not target_allowed(str(target), allowed):
                raise ConfigError(f"{group}.estimator._target_={target!r} is not allowed; valid: a class under "
                                  f"{', '.join(allowed)} (add your module to extensions=[...])")
            node = node.get("estimator")


def _distance_layer(arch, spec) -> None:
    """A trained family's `distance_layer` (where every probe job measures the distance) is one of its layers at
    this depth: a family registered with another name would otherwise fail once its source net is trained."""
    if not arch.pretrained and arch.distance_layer not in spec.vocab:
        depth = f" depth={spec.depth}" if spec.depth is not None else ""
        raise ConfigError(f"arch={arch.name}{depth} is registered with distance_layer={arch.distance_layer!r}, not "
                          f"one of its layers; valid: {', '.join(spec.vocab)} (its register_arch call)")


def validate(cfg: DictConfig, plain: dict | None = None) -> Plan:
    """The `Plan` of a composed config, or a one-line ConfigError. `plain`: the config's resolved plain copy, if the
    caller has it (a missing value stays `???` in it)."""
    import_extensions(OmegaConf.select(cfg, "extensions", default=None))
    missing = missing_keys(cfg, plain)
    if missing:
        raise ConfigError(required(cfg, missing))
    check_config(cfg if plain is None else plain)  # every key known, every value of its type, range or choices
    check_targets(cfg)
    check_writable_dir("paths.cache_dir", cfg.paths.cache_dir, env="TRANSFER_CACHE_DIR")
    n_classes = _source(cfg)
    spec = get_arch(cfg.arch.name).spec(cfg.depth, cfg.width.multiplier, n_classes, cfg.arch, cfg.paths.cache_dir)
    _distance_layer(get_arch(cfg.arch.name), spec)
    try:
        tap = spec.resolve(cfg.layer)
        spec.check_pooling(tap, cfg.pooling)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if cfg.source.image_size < spec.min_input:
        raise ConfigError(f"source.image_size={cfg.source.image_size} is too small for arch={spec.family} "
                          f"depth={spec.depth}; it needs at least {spec.min_input}")
    snapshot = _snapshot(cfg, spec)
    n_train = _target(cfg)
    _finetune(cfg)
    feature_dim = spec.tap_dim(tap, cfg.pooling)
    _dimred(cfg, feature_dim, n_train)
    describes = not get_arch(cfg.arch.name).pretrained or SOURCES[cfg.source.kind].loader is None
    return Plan(spec=spec, tap=tap, snapshot=snapshot, feature_dim=feature_dim, source_describes_net=describes)
