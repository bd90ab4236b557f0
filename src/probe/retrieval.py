"""Retrieval evaluator: rank the database for each query by L2 distance, score mean average precision.

Features are L2-normalised (the `norm` group), optionally PCA-projected/whitened with the projection fitted on
the database (the `dimred` group), and L2-normalised again; AP per query is scikit-learn's definition
(`average_precision`).
"""

from __future__ import annotations

import time
from typing import Any, Mapping

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig
from sklearn.metrics import pairwise_distances
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import Normalizer

from src.probe.registry import allowed_targets


def mean_average_precision(query: np.ndarray, query_labels: np.ndarray, db: np.ndarray, db_labels: np.ndarray,
                           device: str = "cpu") -> float:
    """mAP of ranking `db` by L2 distance to each query; relevant = same label. Queries without any relevant
    database item are skipped (AP is undefined for them). On a GPU the (queries x database) distances are
    computed there (torch.cdist); on the CPU with scikit-learn, as before."""
    if device == "cpu":
        dist = pairwise_distances(query, db, metric="euclidean")
    else:
        import torch

        dist = torch.cdist(torch.as_tensor(query, device=device), torch.as_tensor(db, device=device)).cpu().numpy()
    aps = []
    for i, label in enumerate(query_labels):
        relevant = db_labels == label
        if relevant.any():
            aps.append(average_precision(relevant, -dist[i]))
    return float(np.mean(aps))


def average_precision(relevant: np.ndarray, scores: np.ndarray) -> float:
    """scikit-learn's `average_precision_score(relevant, scores)` for one query (tied scores form one threshold
    there too: sum over distinct thresholds, highest first, of the recall gained times the precision), without
    its input validation, which costs more than the computation itself for one query's ranking and runs once per
    query (tests/test_retrieval.py checks equality)."""
    order = np.argsort(-scores, kind="stable")
    ranked, hits = scores[order], relevant[order].astype(np.float64)
    ends = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]  # the last rank of each distinct score
    tp = np.cumsum(hits)[ends]
    recall, precision = tp / tp[-1], tp / (ends + 1)
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def retrieval_score(cfg: DictConfig, splits: Mapping[str, tuple[np.ndarray, np.ndarray]],
                    device: str = "cpu") -> dict[str, Any]:
    steps = []
    allowed = allowed_targets(cfg.get("extensions"))
    if cfg.norm.estimator is not None:
        steps.append(("norm", instantiate(cfg.norm.estimator, _execution_whitelist_=allowed)))
    if cfg.dimred.estimator is not None:
        steps += [("dimred", instantiate(cfg.dimred.estimator, _execution_whitelist_=allowed)),
                  ("renorm", Normalizer())]
    (db, db_y), (q, q_y) = splits["database"], splits["query"]
    t0 = time.perf_counter()
    if steps:
        pipe = Pipeline(steps).fit(db)
        db, q = pipe.transform(db), pipe.transform(q)
    return {"target_score": mean_average_precision(q, q_y, db, db_y, device), "fit_s": time.perf_counter() - t0}
