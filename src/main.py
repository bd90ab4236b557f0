"""Hydra entry point: compose -> check -> run stages -> result.json; returns the target score.

    python -m src.main                                   # one experiment with the defaults
    python -m src.main -m arch=alexnet,vgg layer=fc6,fc7 # a grid; shared stages are computed once

Torch is imported only once the config has passed the check, so `--help`, `--cfg job` and bad input are fast.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

import src  # noqa: F401  (registers the ${repo_root:} resolver)
from src.cache import atomic_write_text, make_key
from src.check import ConfigError, Plan, validate

log = logging.getLogger("src.main")
RESULT = "result.json"


def factors(cfg: DictConfig, plan: Plan | None) -> dict[str, Any]:
    """The factor values of this run, as the report reads them."""
    return {
        "source": cfg.source.name,
        "source_num_classes": cfg.source.num_classes,
        "source_images_per_class": cfg.source.images_per_class,
        "source_epochs": cfg.source.epochs,
        "snapshot": plan.snapshot if plan else cfg.source.snapshot,
        "arch": cfg.arch.name,
        "width": cfg.width.name,
        "depth": plan.spec.depth if plan else cfg.depth,
        "layer": cfg.layer.name,
        "pooling": cfg.pooling.name,
        "norm": cfg.norm.name,
        "dimred": cfg.dimred.name,
        "n_components": cfg.dimred.n_components,
        "classifier": cfg.classifier.name,
        "target": cfg.target.name,
        "group": cfg.target.group,
        "distance_rank": cfg.target.distance_rank,
        "seed": cfg.seed,
    }


def execute(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """Check and run one experiment, writing `out_dir/result.json` whether it succeeds or fails."""
    t0 = time.perf_counter()
    result: dict[str, Any] = {"config_hash": make_key(OmegaConf.to_container(cfg, resolve=True))}
    plan = None
    try:
        plan = validate(cfg)
        from src.experiment import run_experiment  # heavy imports (torch, lightning) only past the check

        result.update(status="ok", factors=factors(cfg, plan), **run_experiment(cfg, plan))
    except Exception as e:
        result.update(
            status="failed",
            factors=factors(cfg, plan),
            error={"type": type(e).__name__, "message": str(e), "traceback": traceback.format_exc()},
            timings_s={"total": time.perf_counter() - t0},
        )
        atomic_write_text(out_dir / RESULT, json.dumps(result, indent=1, default=str))
        raise
    atomic_write_text(out_dir / RESULT, json.dumps(result, indent=1, default=str))
    return result


@hydra.main(config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    hc = HydraConfig.get()
    out_dir = Path(hc.runtime.output_dir)
    try:
        result = execute(cfg, out_dir)
    except ConfigError as e:
        if hc.mode == RunMode.MULTIRUN:
            log.error("job %s: config error: %s", hc.job.num, e)
            return math.nan
        sys.exit(f"error: {e}")
    except Exception as e:
        if hc.mode == RunMode.MULTIRUN:
            # One failed job must not end a sweep; result.json records it and the sweeper sees a NaN.
            log.error("job %s failed (%s: %s); recorded in %s", hc.job.num, type(e).__name__, e, out_dir / RESULT)
            return math.nan
        raise
    score = result["metrics"]["target_score"]
    c = result["cache"]
    print(
        f"target {cfg.target.name} ({cfg.target.metric}): {score:.4f} | layer {cfg.layer.name} of "
        f"{cfg.arch.name}/{cfg.width.name}, source val acc {result['metrics']['source_val_acc']:.3f} | "
        f"cache source {'hit' if c['source_hit'] else 'miss'}, features {'hit' if c['features_hit'] else 'miss'} | "
        f"{result['timings_s']['total']:.1f}s | {out_dir / RESULT}"
    )
    return score


if __name__ == "__main__":
    main()
