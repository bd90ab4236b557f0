"""What every figure of a report says about a task, in one place: its colour and marker (the same in every figure),
its label, the metric its score is in, and that metric's chance level where the records determine it.

Chance levels (the score of a prediction that ignores the image):
  accuracy, mean per-class accuracy  1/k for k classes: a uniform random guess's expected score whatever the
                                     test set's balance (k is `metrics.estimate_inputs.classes`, the classes of
                                     the labelled images the probe is fit on);
  mAP of a retrieval target          a random ranking's expected average precision with R relevant items among
                                     the N of the database, the same for every query (each instance seen R times:
                                     the target's config in the job's .hydra/config.yaml says so). It is above the
                                     class prior R/N when R is small (0.044, not 0.02, for 4 of 200);
  anything else (a multi-label mAP)  not drawn: its level is each label's prevalence, which the records do not hold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from src.report import analysis as A
from src.report.layout import MARKERS

METRIC_NAMES = {"accuracy": "accuracy", "mean_per_class_accuracy": "mean per-class accuracy", "map": "mAP"}
ONE_IN_K = {"accuracy", "mean_per_class_accuracy"}


def metric_name(metric: str | None) -> str:
    """A metric as an axis names it ('score' when unknown or mixed within a task)."""
    return METRIC_NAMES.get(metric, metric) if metric else "score"


def colours() -> list:
    """The task colours, most distinct first: tab10's without its grey (grey marks what is no task here: the
    source seeds' points), then tab20's light shades of the same hues, then tab20's greys."""
    from src.report.layout import plt

    tab20 = plt().get_cmap("tab20").colors
    dark, light = [i for i in range(0, 20, 2) if i != 14], [i for i in range(1, 20, 2) if i != 15]
    return [tab20[i] for i in dark + light + [14, 15]]


def task_styles(tasks: list[str]) -> dict[str, tuple[Any, str]]:
    """(colour, marker) per task in the order given (the report's distance order): 20 distinct colours, and past
    them a marker still tells the tasks apart (the colours and MARKERS cycle at different lengths)."""
    palette = colours()
    return {t: (palette[i % len(palette)], MARKERS[i % len(MARKERS)]) for i, t in enumerate(tasks)}


@dataclass(frozen=True)
class TaskKey:
    colour: Any
    marker: str
    distance: str  # as the legends print it
    metric: str | None = None  # the record's target_metric; None: unknown, or not one metric for the task
    chance: float | None = None
    chance_how: str = ""  # how `chance` was derived ("1/10", "random ranking, 4 of 200")
    on_test: bool = False  # its settings were chosen on test scores (no val score: a retrieval target)

    @property
    def metric_label(self) -> str:
        return metric_name(self.metric)

    def label(self, task: str, chance: bool = False, metric: bool = False) -> str:
        """`task (distance)`, with `; chance x` and `; metric` when asked (and known)."""
        extra = f"; chance {self.chance:.2g}" if chance and self.chance is not None else ""
        extra += f"; {self.metric_label}" if metric else ""
        return f"{task} ({self.distance}{extra})"


def distance_text(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def task_keys(df: pd.DataFrame) -> dict[str, TaskKey]:
    """Per task of the report (`target` after findings.with_task_axes), in distance order, its TaskKey."""
    tasks = A.task_table(df)
    if tasks.empty:
        return {}
    dist = tasks.set_index("target")[A.distance_column(tasks)]
    ok = A.ok_rows(df)
    _, on_test = A.selection_score(ok)
    styles = task_styles(list(dist.index))
    out = {}
    for t, d in dist.items():
        jobs = ok[ok["target"] == t]
        metric = _one(jobs, "target_metric")
        chance, how = chance_level(jobs, metric)
        c, m = styles[t]
        out[t] = TaskKey(c, m, distance_text(d), metric, chance, how, str(t) in on_test)
    return out


def keys_for(tasks: list[str], distance: dict[str, float]) -> dict[str, TaskKey]:
    """TaskKeys from a findings question's own tasks when the report's are not given: colours and markers in
    distance order; metric and chance unknown."""
    ordered = sorted(tasks, key=lambda t: (distance.get(t, math.inf), t))
    styles = task_styles(ordered)
    return {t: TaskKey(*styles[t], distance_text(float(distance.get(t, math.nan)))) for t in ordered}


def _one(jobs: pd.DataFrame, column: str) -> Any:
    """The column's one value over the jobs; None when missing or not one."""
    if column not in jobs:
        return None
    values = jobs[column].dropna().unique()
    return values[0] if len(values) == 1 else None


def chance_level(jobs: pd.DataFrame, metric: str | None) -> tuple[float | None, str]:
    """(chance, how) of one task's jobs (module docstring); (None, "") where the records do not determine it."""
    k = _one(jobs, "estimate_inputs_classes")
    if metric is None or k is None or not math.isfinite(float(k)) or int(k) < 2:
        return None, ""
    k = int(k)
    if metric in ONE_IN_K:
        return 1.0 / k, f"1/{k}"
    n = _one(jobs, "estimate_inputs_n")
    if metric == "map" and n is not None and "job_dir" in jobs:
        per = _retrieval_copies(jobs["job_dir"].iloc[0], int(n), k)
        if per is not None:
            return random_ranking_ap(per, int(n)), f"random ranking, {per} of {int(n)}"
    return None, ""


def _retrieval_copies(job_dir: str, n: int, k: int) -> int | None:
    """R, each instance's copies in the database, when the job's config is a retrieval target whose database is
    `num_instances` x `database_per_instance` = the n images of k instances the record counts; else None."""
    import yaml

    try:
        target = yaml.safe_load((Path(job_dir) / ".hydra" / "config.yaml").read_text())["target"]
        data = target["data"]
        per, instances = int(data["database_per_instance"]), int(data["num_instances"])
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
        return None
    if target.get("evaluator") != "retrieval" or instances != k or per * instances != n:
        return None
    return per


def random_ranking_ap(relevant: int, n: int) -> float:
    """The expected average precision of a uniformly random ranking of `n` items of which `relevant` are relevant:
    (H_n + (R - 1) / (n - 1) * (n - H_n)) / n, H_n the n-th harmonic number (tests check it by simulation)."""
    if n <= 1:
        return 1.0
    h = sum(1.0 / i for i in range(1, n + 1))
    return (h + (relevant - 1) / (n - 1) * (n - h)) / n


def by_metric(tasks: list[str], keys: dict[str, TaskKey]) -> list[tuple[str | None, list[str]]]:
    """The tasks grouped by metric, the metric of most tasks first: one panel each, so that an accuracy and an mAP
    never share a score axis."""
    groups: dict[str | None, list[str]] = {}
    for t in tasks:
        groups.setdefault(keys[t].metric, []).append(t)
    return sorted(groups.items(), key=lambda g: -len(g[1]))


def chance_lines(ax, tasks: list[str], keys: dict[str, TaskKey]) -> bool:
    """Each task's chance level as a dotted line: in the task's colour when it is that task's alone, grey when
    several tasks share it. Returns whether any was drawn."""
    levels: dict[float, list[str]] = {}
    for t in tasks:
        if keys[t].chance is not None:
            levels.setdefault(round(keys[t].chance, 12), []).append(t)
    for level, who in levels.items():
        colour = keys[who[0]].colour if len(who) == 1 else "0.35"
        ax.axhline(level, color=colour, ls=":", lw=1.3, zorder=1)
    return bool(levels)


def chance_note(tasks: list[str], keys: dict[str, TaskKey]) -> str:
    """What the dotted lines are, and which tasks have none (their chance level is not in the records)."""
    drawn = [t for t in tasks if keys[t].chance is not None]
    missing = [t for t in tasks if keys[t].chance is None]
    how = sorted({"1/k" if keys[t].chance_how.startswith("1/") else "a random ranking's mAP" for t in drawn})
    text = f"dotted: chance ({', '.join(how)})" if drawn else ""
    if missing:
        text += ("; " if text else "") + ("no chance level in the records for " + (
            ", ".join(missing) if len(missing) <= 3 else f"{len(missing)} tasks"))
    return text


def ceiling_line(ax, axis: str, xs) -> Any:
    """On a measured proxy A-distance axis that reaches the measure's maximum, a dashed vertical line there (a task
    on it may be farther than the axis shows); returns the line (for a legend), or None."""
    from src.record import PRIMARY_DISTANCE_MAX

    values = [float(x) for x in xs if math.isfinite(float(x))]
    if "proxy A-distance" not in axis or not values or max(values) < PRIMARY_DISTANCE_MAX - 1e-9:
        return None
    return ax.axvline(PRIMARY_DISTANCE_MAX, color="0.4", ls="--", lw=0.9, zorder=1,
                      label=f"the measure's maximum ({PRIMARY_DISTANCE_MAX:g}): a task here may be farther")


def main_metric(tasks: list[str], keys: dict[str, TaskKey]) -> str | None:
    """The metric most of the tasks are scored in (the first task's on a tie)."""
    metrics = [keys[t].metric for t in tasks]
    return max(dict.fromkeys(metrics), key=metrics.count) if metrics else None


def metrics_text(tasks: list[str], keys: dict[str, TaskKey]) -> str:
    """The tasks' metric for an axis label: 'accuracy', or 'accuracy; mAP: synth_retrieval' when they differ."""
    common = main_metric(tasks, keys)
    others: dict[str, list[str]] = {}
    for t in tasks:
        if keys[t].metric != common:
            others.setdefault(keys[t].metric_label, []).append(t)
    return "; ".join([metric_name(common)] + [f"{m}: {', '.join(ts)}" for m, ts in others.items()])
