"""The registry machinery for target tasks and source kinds (the entries themselves live in `src.data.tasks`).

A target task is registered once, with everything the rest of the code asks about it:
  builder    (data cfg, image size) -> (images, labels) over all splits, or a dict of ready splits
  validate   (composed cfg) -> the number of training images when known without reading data, else None;
             raises ConfigError (one line, naming the bad value and the valid choices)
  evaluator  how the experiment scores it: one of EVALUATORS
  metrics    the `target.metric` values that make sense for it
  describe   (data cfg) -> one line for `python -m src.data` (the task table)
A source kind likewise: loader (source cfg, seed) -> train/val splits, validate (cfg) -> its number of classes.
Torch-free: the config check imports this.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

EVALUATORS = ("classification", "retrieval")  # src.experiment.EVALUATORS implements each
CLASSIFICATION_METRICS = ("accuracy", "mean_per_class_accuracy")


@dataclass(frozen=True)
class Task:
    name: str
    builder: Callable[..., Any]
    validate: Callable[[Any], int | None]
    describe: Callable[[Any], str]
    evaluator: str = "classification"
    metrics: tuple[str, ...] = CLASSIFICATION_METRICS


@dataclass(frozen=True)
class SourceKind:
    name: str
    loader: Callable[..., Any] | None  # None: nothing to train on (pretrained weights)
    validate: Callable[[Any], int]


TASKS: dict[str, Task] = {}
SOURCES: dict[str, SourceKind] = {}


def register_task(name: str, *, validate, describe, evaluator: str = "classification",
                  metrics: tuple[str, ...] = CLASSIFICATION_METRICS):
    """Decorator: register a task builder under `name` (`target.data.task`)."""
    assert evaluator in EVALUATORS, evaluator

    def deco(builder):
        TASKS[name] = Task(name, builder, validate, describe, evaluator, metrics)
        return builder

    return deco


def register_source(name: str, *, validate):
    """Decorator: register a source loader under `name` (`source.kind`)."""

    def deco(loader):
        SOURCES[name] = SourceKind(name, loader, validate)
        return loader

    return deco
