"""The classifier registry: every `classifier=` option and where its regularisation parameter C sits.

The estimator itself is built from the config group's `estimator` node (a scikit-learn-contract `_target_`,
`src.probe.linear.build_pipeline`); this registry says what the probe needs beyond it. Torch- and sklearn-free,
so the config check can import it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from src.errors import ConfigError, one_of
from src.registry import Registry


@dataclass(frozen=True)
class Classifier:
    name: str
    c_param: str  # C's path inside the estimator (GridSearchCV's parameter name after `clf__`)
    about: str


CLASSIFIERS = Registry("classifier", "classifiers")


def register_classifier(name: str, c_param: str = "C", about: str = "") -> None:
    CLASSIFIERS.register(name, Classifier(name, c_param, about))


register_classifier("linear_svm", about="one-vs-rest squared hinge (LinearSVC's objective), whole C path in torch")
register_classifier("linear_svm_ovr", about="the same as linear_svm (which is one-vs-rest), by its explicit name")
register_classifier("linear_svm_liblinear", about="scikit-learn's LinearSVC (liblinear): the reference")
register_classifier("linear_svm_ovo", "estimator__C", "one-vs-one LinearSVCs, majority vote")
register_classifier("logistic", about="multinomial logistic regression, whole C path in torch")
register_classifier("logistic_lbfgs", about="scikit-learn's LogisticRegression (lbfgs): the reference")


def validate_classifier(cfg) -> Classifier:
    """`cfg.classifier`: a registered name, a non-empty grid of positive C values, patience a positive int or null."""
    one_of("classifier", cfg.classifier.name, CLASSIFIERS)
    grid = cfg.classifier.C_grid
    if not isinstance(grid, Sequence) or isinstance(grid, str) or len(grid) == 0:  # e.g. C_grid=1
        raise ConfigError(f"classifier.C_grid={grid!r} must be a non-empty list of positive numbers, e.g. [0.1,1,10]")
    for c in grid:
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0 < c < math.inf:
            raise ConfigError(f"classifier.C_grid has {c!r}; every C must be a positive finite number")
    patience = cfg.classifier.get("patience")
    if patience is not None and (isinstance(patience, bool) or not isinstance(patience, int) or patience < 1):
        raise ConfigError(f"classifier.patience={patience!r} must be a positive integer or null")
    return CLASSIFIERS[cfg.classifier.name]
