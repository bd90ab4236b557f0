"""The linear probe: a scikit-learn Pipeline (normalise -> optional PCA -> classifier) built from config.

Protocol: C is chosen on the target's val split from `classifier.C_grid` (every C's val score is kept for
the log), then the pipeline is refit on train+val with that C and scored once on test.
"""

from __future__ import annotations

import warnings
from typing import Any, Mapping

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, average_precision_score, balanced_accuracy_score
from sklearn.model_selection import GridSearchCV, PredefinedSplit
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline

METRICS = {"accuracy": accuracy_score, "mean_per_class_accuracy": balanced_accuracy_score}
SCORERS = {"accuracy": "accuracy", "mean_per_class_accuracy": "balanced_accuracy", "map": "average_precision"}


# Config-controlled `_target_`s may only name scikit-learn or our own estimators.
ALLOWED_TARGETS = ["sklearn.*", "src.probe.*"]


def build_pipeline(cfg: DictConfig, multilabel: bool = False) -> Pipeline:
    """norm -> dimred -> classifier; for multi-label targets the classifier is fit per label (one-vs-rest)."""

    def step(node: Any) -> Any:
        return "passthrough" if node is None else instantiate(node, _execution_whitelist_=ALLOWED_TARGETS)

    clf = step(cfg.classifier.estimator)
    return Pipeline(
        [
            ("norm", step(cfg.norm.estimator)),
            ("dimred", step(cfg.dimred.estimator)),
            ("clf", OneVsRestClassifier(clf) if multilabel else clf),
        ]
    )


def fit_and_score(
    pipe: Pipeline,
    splits: Mapping[str, tuple[np.ndarray, np.ndarray]],
    c_grid: list[float],
    metric: str,
    c_param: str = "C",
) -> dict[str, Any]:
    """Choose C on val, refit on train+val, score on test. `c_param` is C's path inside the classifier
    (e.g. `estimator__C` when the SVM is wrapped in a OneVsOneClassifier). `metric="map"` is for multi-label
    targets (labels an (N, K) 0/1 matrix, the classifier wrapped in OneVsRestClassifier by `build_pipeline`)."""
    if metric == "map":
        c_param = f"estimator__{c_param}"
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = splits["train"], splits["val"], splits["test"]
    x = np.concatenate([x_tr, x_va])
    y = np.concatenate([y_tr, y_va])
    fold = PredefinedSplit(np.r_[np.full(len(y_tr), -1), np.zeros(len(y_va))])
    search = GridSearchCV(pipe, {f"clf__{c_param}": list(c_grid)}, cv=fold, scoring=SCORERS[metric], refit=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        search.fit(x, y)
    if metric == "map":
        test_score = float(average_precision_score(y_te, search.decision_function(x_te), average="macro"))
    else:
        test_score = float(METRICS[metric](y_te, search.predict(x_te)))
    return {
        "target_score": test_score,
        "best_C": float(search.best_params_[f"clf__{c_param}"]),
        "val_scores": {str(c): float(s) for c, s in zip(c_grid, search.cv_results_["mean_test_score"])},
        "convergence_warnings": sum(issubclass(w.category, ConvergenceWarning) for w in caught),
    }
