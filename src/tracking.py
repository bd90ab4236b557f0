"""Experiment tracking (`logger=csv|tensorboard|mlflow`): Lightning's loggers for training curves, and one run
per job with its factors as params and its result metrics.

A source net is trained once and shared by many jobs, so its curves are logged by the job that trains it, as a
run of its own (stage `source`, named by its cache key); every job then logs one run with its params and
metrics. `csv` keeps Lightning's CSV logs in the cache entries only (they are always written).

`check` needs no torch and runs before any work; the rest imports Lightning, so only the stages call it.
"""

from __future__ import annotations

import importlib.util
import logging
import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

# logger name -> the package its Lightning logger needs (installed by the `tracking` extra).
LOGGERS = {"csv": None, "tensorboard": "tensorboard", "mlflow": "mlflow"}


def check(cfg: DictConfig) -> None:
    """One-line ConfigError for an unknown logger, a tracker whose package is missing or a tracking server that
    does not answer."""
    from src.errors import ConfigError

    name = OmegaConf.select(cfg, "logger.name", default="csv")
    if name not in LOGGERS:
        raise ConfigError(f"logger={name!r} is unknown; valid loggers: {', '.join(LOGGERS)}")
    package = LOGGERS[name]
    if package and importlib.util.find_spec(package) is None:
        raise ConfigError(f"logger={name} needs the {package} package: pip install -e '.[tracking]'")
    uri = OmegaConf.select(cfg, "logger.tracking_uri", default=None)
    if name == "mlflow" and isinstance(uri, str):
        check_scheme(uri)
    if name == "mlflow" and isinstance(uri, str) and uri.startswith(("http://", "https://")):
        from src.services import check_http  # a server that does not answer: one line now, not retries for minutes

        check_http("logger.tracking_uri", uri, "start the server (mlflow server --host 127.0.0.1 --port 5000) or "
                   "leave logger.tracking_uri=null for a local store in the sweep dir")


def check_scheme(uri: str) -> None:
    """A tracking URI whose scheme MLflow has no store for (`ftp://`) fails here, naming the key, not in the first
    job's logging as MLflow's `UnsupportedModelRegistryStoreURIException`."""
    from urllib.parse import urlparse

    from src.errors import ConfigError

    scheme = urlparse(uri).scheme.partition("+")[0]  # postgresql+psycopg: the database, then its driver
    schemes = _mlflow_schemes() if scheme and len(scheme) > 1 else None  # (C:\dir: a Windows path, no scheme)
    if schemes is not None and scheme not in schemes:
        raise ConfigError(f"logger.tracking_uri={uri}: MLflow has no tracking store for {scheme}://; valid schemes: "
                          f"{', '.join(schemes)}, or a local path (or null: a local store in the sweep dir)")


def _mlflow_schemes() -> list[str] | None:
    """The URI schemes the installed MLflow (and its plugins) open a tracking store for; None where its private
    store registry has moved (MLflow then reports a bad scheme itself)."""
    try:
        from mlflow.tracking._tracking_service.utils import _tracking_store_registry

        return sorted(s for s in _tracking_store_registry._registry if s)
    except (ImportError, AttributeError):
        return None


def _name(cfg: DictConfig) -> str:
    return OmegaConf.select(cfg, "logger.name", default="csv")


def tracking_uri(cfg: DictConfig) -> str:
    """MLflow's store: logger.tracking_uri, else a SQLite file in the sweep (or run) dir."""
    uri = cfg.logger.get("tracking_uri")
    return uri or f"sqlite:///{Path(cfg.logger.save_dir).resolve() / 'mlflow.db'}"


def _mlflow_store_ready(uri: str) -> None:
    """Create a SQLite store once under a file lock: parallel jobs creating its tables at once would collide."""
    if not uri.startswith("sqlite:///"):
        return
    from filelock import FileLock
    from mlflow import MlflowClient

    db = Path(uri[len("sqlite:///"):])
    db.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(db) + ".lock"):
        MlflowClient(uri).search_experiments(max_results=1)


def training_loggers(cfg: DictConfig, stage: str, key: str, run_name: str) -> list:
    """Extra Lightning loggers for one training run (stage `source` or `finetune`, cache `key`): none for csv."""
    name = _name(cfg)
    if name == "tensorboard":
        from pytorch_lightning.loggers import TensorBoardLogger

        return [TensorBoardLogger(str(Path(cfg.logger.save_dir) / "tensorboard"), name=stage, version=key[:12],
                                  default_hp_metric=False)]
    if name == "mlflow":
        from pytorch_lightning.loggers import MLFlowLogger

        uri = tracking_uri(cfg)
        _mlflow_store_ready(uri)
        return [MLFlowLogger(experiment_name=cfg.logger.experiment_name, run_name=f"{stage} {run_name}",
                             tracking_uri=uri, tags={"stage": stage, "cache_key": key})]
    return []


def job_params(result: dict[str, Any]) -> dict[str, Any]:
    """A job's factors and status as tracker params (strings for None, so every run has every column)."""
    params = {k: ("none" if v is None else v) for k, v in (result.get("factors") or {}).items()}
    return {**params, "status": result.get("status", "unknown")}


def job_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The numeric result metrics of a job: scores, transferability estimates (tr_*), timings (time_*_s)."""
    metrics = result.get("metrics") or {}
    flat = {k: v for k, v in metrics.items() if not isinstance(v, (dict, list, str))}
    flat.update({f"tr_{k}": v for k, v in (metrics.get("transferability") or {}).items()})
    flat.update({f"time_{k}_s": v for k, v in (result.get("timings_s") or {}).items()})
    return {k: float(v) for k, v in flat.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def log_job(cfg: DictConfig, result: dict[str, Any], run_name: str, version: str) -> None:
    """One tracker run for a finished job (ok or failed); a tracker problem is a warning, not a lost job."""
    name = _name(cfg)
    if name == "csv":
        return
    try:
        params, metrics = job_params(result), job_metrics(result)
        status = "success" if result.get("status") == "ok" else "failed"
        if name == "tensorboard":
            from pytorch_lightning.loggers import TensorBoardLogger

            tb = TensorBoardLogger(str(Path(cfg.logger.save_dir) / "tensorboard"), name="jobs", version=version,
                                   default_hp_metric=False)
            tb.log_hyperparams(params, metrics)  # the HParams view: one row per job
            tb.finalize(status)
        elif name == "mlflow":
            from pytorch_lightning.loggers import MLFlowLogger

            uri = tracking_uri(cfg)
            _mlflow_store_ready(uri)
            err = (result.get("error") or {}).get("message")
            tags = {"stage": "job", **({"error": err[:5000]} if err else {})}
            ml = MLFlowLogger(experiment_name=cfg.logger.experiment_name, run_name=run_name, tracking_uri=uri,
                              tags=tags)
            ml.log_hyperparams(params)
            if metrics:
                ml.log_metrics(metrics)
            ml.finalize(status)
    except Exception as e:  # the result is in result.json either way
        log.warning("logger=%s could not record job %s (%s: %s)", name, run_name, type(e).__name__, e)
