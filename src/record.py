"""The result record: what one run writes to `result.json` (`src.main`) and what the report reads (`src.report`).

This is the one place that knows the schema: the factor table (which config value each factor column holds),
the documented metric keys, the flat-table column names, and `RESULT`. A leaf module: no torch, no Hydra.

To add a metric, add its key to `METRICS` (with a one-line meaning) and set it in the stage that computes it
(`src.experiment`); scalar metrics become a column of the report's table by the same name, dict-valued ones a
column per entry with the prefix given in `METRIC_PREFIX` (default `<key>_`).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

RESULT = "result.json"


@dataclass(frozen=True)
class Factor:
    name: str
    read: Callable[[Any, Any], Any]  # (cfg, plan or None) -> value
    analysed: bool = True  # a factor axis the report searches for the best setting (False: describes the task)


def _get(cfg, path: str):
    node = cfg
    for part in path.split("."):
        node = node.get(part) if node is not None else None
    return node


def _options(plan) -> str | None:
    """A trained family's own options as `variant=a` (Arch.options holds only the set ones)."""
    return ",".join(f"{k}={v}" for k, v in plan.spec.options.items()) or None if plan is not None else None


NOT_TRAINED_HERE = "not trained here"


@functools.cache
def width_presets() -> dict[str, float]:
    """conf/width's options: name -> multiplier (read once per process)."""
    from omegaconf import OmegaConf

    import src

    return {str(w.name): float(w.multiplier) for w in map(OmegaConf.load, (src.REPO_ROOT / "conf" / "width")
                                                          .glob("*.yaml"))}


def width_label(width) -> str:
    """The width factor's value: the option's name while its multiplier is the option's own, else the multiplier
    (`width.multiplier=0.1` as `x0.1`): a sweep over width.multiplier had every job's width read `small`, so the
    report saw no width sweep."""
    name, multiplier = width.get("name"), width.get("multiplier")
    preset = width_presets().get(str(name))
    if multiplier is None or (preset is not None and float(multiplier) == preset):
        return name
    return f"x{float(multiplier):g}"


def _library_net(cfg, plan) -> bool:
    """A model library's net (timm, torchvision, a module, a checkpoint) under a source that would train a net: the
    source config then describes nothing about it (the config check's `Plan.source_describes_net`, which reads the
    arch and source registries; only a job whose config fails that check has no plan, and records its config as
    given)."""
    return plan is not None and not plan.source_describes_net


def _model_ref(cfg):
    arch = cfg.get("arch") or {}
    if arch.get("name") in ("timm", "torchvision", "module"):
        return f"{arch['name']}:{arch.get('builder') or arch.get('model')}" + (
            f"@{arch['weights']}" if arch.get("weights") else "")
    return arch.get("model") if arch.get("name") == "backbone" else None


# Factor columns, in the order reports list them.
FACTOR_TABLE: tuple[Factor, ...] = (
    # A library net is not trained on the configured source: it records none (the model column names the net and
    # its weights), and the report's a priori distance ranks, which describe the synthetic source, do not apply.
    Factor("source", lambda c, p: NOT_TRAINED_HERE if _library_net(c, p) else c.source.name),
    Factor("source_num_classes", lambda c, p: None if _library_net(c, p) else
           p.spec.num_classes if p else _get(c, "source.num_classes")),
    # A library's net is not trained here: the source config's training sizes say nothing about it.
    Factor("source_images_per_class", lambda c, p: None if p and p.spec.pretrained else
           _get(c, "source.images_per_class")),
    Factor("source_epochs", lambda c, p: None if p and p.spec.pretrained else _get(c, "source.epochs")),
    Factor("snapshot", lambda c, p: p.snapshot if p else _get(c, "source.snapshot")),
    Factor("arch", lambda c, p: c.arch.name),
    # A model library's net (arch=timm|torchvision|module|backbone): library:model[@weights]; a trained family's own
    # options (variant=a); None for the others.
    Factor("model", lambda c, p: p.spec.extra.get("label") if p and p.spec.extra else _options(p) or _model_ref(c),
           analysed=False),
    Factor("width", lambda c, p: None if p is not None and p.spec.extra else width_label(c.width)),  # ours only
    Factor("depth", lambda c, p: p.spec.depth if p else c.depth),
    Factor("layer", lambda c, p: c.layer),
    Factor("pooling", lambda c, p: c.pooling),
    Factor("norm", lambda c, p: c.norm.name),
    Factor("dimred", lambda c, p: c.dimred.name),
    Factor("n_components", lambda c, p: c.dimred.n_components if c.dimred.name != "none" else None),
    Factor("classifier", lambda c, p: c.classifier.name),
    Factor("estimator", lambda c, p: c.estimator.name, analysed=False),
    Factor("finetune", lambda c, p: c.finetune.name),
    Factor("target", lambda c, p: c.target.name, analysed=False),
    Factor("group", lambda c, p: c.target.group, analysed=False),
    Factor("distance_rank", lambda c, p: c.target.distance_rank, analysed=False),
    # synth_shift's numeric distance from the source (None for other targets): the report's x-axis when present.
    Factor("shift", lambda c, p: _get(c, "target.data.shift"), analysed=False),
    Factor("seed", lambda c, p: c.seed, analysed=False),  # a replicate (source net), averaged over by the report
    Factor("target_seed", lambda c, p: _get(c, "target.data.seed"), analysed=False),  # a replicate (target sample)
)
FACTORS = [f.name for f in FACTOR_TABLE if f.analysed]  # what the report analyses

# Documented metric keys (all optional: a stage sets what it computes).
METRICS: dict[str, str] = {
    "target_score": "the target's test score in `target_metric` (None when an estimator replaces the probe)",
    "target_metric": "accuracy / mean_per_class_accuracy / map",
    "source_val_acc": "the source net's val accuracy at the snapshot used (None: pretrained)",
    "source_val_images": "how many source val images source_val_acc is measured on (None: not recorded)",
    "source_num_params": "the source net's parameter count (None: pretrained); a static baseline for the estimators",
    "finetune_val_acc": "the fine-tuned net's val accuracy after its last epoch (finetune=last|full)",
    "feature_dim": "dimension of the chosen layer after pooling, before PCA",
    "best_C": "the C chosen on val",
    "val_scores": "every C searched -> its val score",
    "C_grid": "the Cs searched, ascending (the grid walked until patience ran out, plus any edge extension)",
    "C_grid_extended": "the Cs added past the grid's edge because the edge was the val-best",
    "probe_path": "path solver: per C searched, iterations, max |gradient|, converged, seconds, val score",
    "convergence_warnings": "how many of the probe's fits stopped at max_iter (or short of tol)",
    "estimator": "the estimator that replaced the probe, or none",
    "estimator_score": "that estimator's value",
    "transferability": "every computed estimator's value (src.transferability.estimators.ESTIMATORS)",
    "estimate_seconds": "each estimator's own seconds (H-score, GBC and TransRate share one Gram matrix: the first "
                        "of them to run pays for it)",
    "estimate_inputs": "what the estimators saw: n labelled images, classes, feature dim (the zoo marks the cells "
                       "where an estimator is outside its regime by these)",
    "distance": "the measured (source, target) distance: pad, frechet at a fixed early layer (src.features."
                "source_distance); None for pretrained sources and fine-tuned runs",
}
METRIC_PREFIX = {"transferability": "tr_", "estimate_seconds": "time_estimate_"}
# The measured distance the report orders and correlates tasks by (src.features.source_distance computes it; the
# report reads its flat column, `distance_<PRIMARY_DISTANCE>`). Here, not there, so the report stays torch-free.
PRIMARY_DISTANCE = "pad"
PRIMARY_DISTANCE_COLUMN = f"distance_{PRIMARY_DISTANCE}"
PRIMARY_DISTANCE_MAX = 2.0  # the proxy A-distance's ceiling (a domain classifier with no error): farther is not seen
# Dict-valued metrics that stay out of the flat table (kept whole in result.json only).
NOT_FLAT = {"val_scores", "C_grid", "C_grid_extended", "probe_path"}
# Columns the flat table derives from the record (so result.json files written before them still have them).
DERIVED: dict[str, str] = {
    "val_score": "the val score of the chosen C (val_scores[best_C]): what the report selects settings on, so that "
                 "a test score is never both the selector and the estimate",
}
# Stage timings a run records in `timings_s` (seconds; the ones its stages ran).
# `lock_wait`: the part of the stages' time spent waiting for a cache lock another process held (what a sweep's
# stage-aware plan avoids; `src.sweep_plan`).
TIMINGS = ("source", "finetune", "extract", "source_val_extract", "distance", "estimate", "probe", "lock_wait",
           "total")
# What `objective=` may name (src.main.objective): a scalar metric or a timing (or an estimator's name).
# `val_score` (the chosen C's val score: a search that selects on it never selects on the test score it reports) and
# `probe_dim` (the dimension the classifier sees: PCA's n_components, else feature_dim) are derived in src.main.
OBJECTIVES = ("val_score", "target_score", "estimator_score", "source_val_acc", "source_num_params",
              "finetune_val_acc", "feature_dim", "probe_dim", "best_C", *TIMINGS)
PER_IMAGE = "test_correct.npy"  # next to result.json: 1/0 per test image (classification), for the report's bootstrap
# Columns `python -m src.report.summary` prints, when present.
SUMMARY_COLUMNS = ["status", "arch", "model", "width", "depth", "layer", "pooling", "dimred", "n_components", "target",
                   "target_score", "source_hit", "features_hit", "time_total_s", "error_type"]


def chosen_val_score(metrics: dict[str, Any]) -> float | None:
    """The val score of the C the probe chose (None without a probe, e.g. an estimator-only run)."""
    scores, best = metrics.get("val_scores"), metrics.get("best_C")
    if not isinstance(scores, dict) or not scores:
        return None
    if best is not None:
        for c, v in scores.items():  # keys are str(C); compare as numbers (1.0 vs "1")
            try:
                if float(c) == float(best):
                    return float(v)
            except (TypeError, ValueError):
                continue
    return float(max(scores.values()))  # the probe picks the val-best C


# The report's questions (src.report.findings): stable ids, used as keys in analysis.json and by a study's
# `report.primary` (conf/experiment/*.yaml).
FINDING_IDS = ("layer_gap_shrinks", "layer_optimum_shift", "width_helps", "depth_helps", "classes_over_images",
               "finetune_far_gain", "training_longer_helps")


def factors(cfg, plan=None) -> dict[str, Any]:
    """The factor values of a run (`plan`: the validated plan, None when validation failed)."""
    return {f.name: f.read(cfg, plan) for f in FACTOR_TABLE}


@dataclass
class Result:
    """One run: `status` ok/failed, its factors and metrics, stage timings, cache hits and keys."""

    status: str
    config_hash: str
    factors: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    cache: dict[str, bool | None] = field(default_factory=dict)  # <stage>_hit
    keys: dict[str, str | None] = field(default_factory=dict)  # stage -> cache key
    device: str | None = None  # the torch device the job's stages ran on: cpu / cuda (src/device.py)
    error: dict[str, str] | None = None  # type, message, traceback
    clock: dict[str, Any] | None = None  # when and where the job ran: start and end (unix seconds), host

    def to_json(self) -> str:
        # The fields as they are (asdict would deep-copy the metrics first, for nothing: json.dumps only reads them).
        return json.dumps({f: v for f in self.__dataclass_fields__ if (v := getattr(self, f)) is not None
                           or f == "error"}, indent=1, default=str)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Result":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d and d[k] is not None}
        return cls(**{"status": "unknown", "config_hash": "", **known})

    @classmethod
    def read(cls, path: Path) -> "Result":
        return cls.from_dict(json.loads(Path(path).read_text()))

    def row(self, job_dir: str | Path) -> dict[str, Any]:
        """One flat row of the report's table (`job_dir`, status, factors, metrics, time_*_s, hits, *_key)."""
        row: dict[str, Any] = {"job_dir": str(job_dir), "status": self.status, **self.factors}
        for k, v in self.metrics.items():
            if k in NOT_FLAT and not isinstance(v, dict):
                continue
            if isinstance(v, dict):
                if k not in NOT_FLAT:
                    row.update({f"{METRIC_PREFIX.get(k, k + '_')}{name}": x for name, x in v.items()})
            else:
                row[k] = v
        row["val_score"] = chosen_val_score(self.metrics)
        row.update({f"time_{k}_s": v for k, v in self.timings_s.items()})
        row.update(self.cache)
        row.update({f"{k}_key": v for k, v in self.keys.items()})
        err = self.error or {}
        row["error_type"], row["error_message"] = err.get("type"), err.get("message")
        return row
