"""The registry machinery for target tasks and source kinds (the entries themselves live in `src.data.tasks`).

A target task is registered once, with everything the rest of the code asks about it:
  builder    (data cfg, image size) -> (images, labels) over all splits, or a dict of ready splits
  validate   (composed cfg) -> the number of training images when known without reading data, else None;
             raises ConfigError (one line, naming the bad value and the valid choices)
  evaluator  how the experiment scores it: a name in `src.experiment.EVALUATORS`
  metrics    the `target.metric` values that make sense for it
  describe   (data cfg) -> one line for `python -m src.data` (the task table)
  fields     the task's own `target.data.<key>` options with their types and ranges (`src.fields`), beyond the
             ones every task shares (`src.schema`): the config check knows them without an edit of the schema
  identity   (data cfg) -> what the cache keys hash for it (`src.keys`), when that is not the config as written:
             where the images are stored is not which images they are (a dataset by name), and a folder's
             images are what it holds now (a listing), not its path
A source kind likewise: loader (source cfg, seed) -> train/val splits (None: pretrained weights, nothing to
train on), validate (cfg) -> its number of classes, identity as above. A name is registered once
(`src.registry.Registry`).
Torch-free: the config check imports this.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from src.registry import Registry

CLASSIFICATION_METRICS = ("accuracy", "mean_per_class_accuracy")


@dataclass(frozen=True)
class Task:
    name: str
    builder: Callable[..., Any]
    validate: Callable[[Any], int | None]
    describe: Callable[[Any], str]
    evaluator: str = "classification"
    metrics: tuple[str, ...] = CLASSIFICATION_METRICS
    fields: dict[str, Any] = field(default_factory=dict)  # key under target.data -> src.fields.Field
    identity: Callable[[dict[str, Any]], dict[str, Any]] | None = None  # None: the config as written


@dataclass(frozen=True)
class SourceKind:
    name: str
    loader: Callable[..., Any] | None  # None: nothing to train on (pretrained weights)
    validate: Callable[[Any], int]
    identity: Callable[[dict[str, Any]], dict[str, Any]] | None = None  # None: the config as written


TASKS = Registry("target.data.task", "tasks")
SOURCES = Registry("source.kind", "kinds")


def register_task(name: str, *, validate, describe, evaluator: str = "classification",
                  metrics: tuple[str, ...] = CLASSIFICATION_METRICS, fields: dict[str, Any] | None = None,
                  identity: Callable[[dict[str, Any]], dict[str, Any]] | None = None):
    """Decorator: register a task builder under `name` (`target.data.task`)."""

    def deco(builder):
        TASKS.register(name, Task(name, builder, validate, describe, evaluator, metrics, dict(fields or {}),
                                  identity))
        return builder

    return deco


def register_source(name: str, *, validate, identity: Callable[[dict[str, Any]], dict[str, Any]] | None = None):
    """Decorator: register a source loader under `name` (`source.kind`)."""

    def deco(loader):
        SOURCES.register(name, SourceKind(name, loader, validate, identity))
        return loader

    return deco


def data_identity(data: dict[str, Any], registry: Registry, kind_key: str) -> dict[str, Any]:
    """What a cache key hashes for a target's data (`TASKS`, "task") or a source (`SOURCES`, "kind") config: its
    entry's identity, or the config as written (an unknown name: the config check refuses it before any key)."""
    entry = registry.get(data.get(kind_key))
    return entry.identity(data) if entry is not None and entry.identity is not None else data


def register_pretrained_source(name: str, *, validate) -> None:
    """Register a source kind whose nets come with their weights (`source.kind`; nothing is trained)."""
    SOURCES.register(name, SourceKind(name, None, validate))
