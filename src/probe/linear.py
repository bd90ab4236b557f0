"""The linear probe: a scikit-learn Pipeline (normalise -> optional PCA -> classifier) built from config.

Protocol: the normalisation and PCA are fit on the target's train split; C is chosen on its val split by walking
`classifier.C_grid` upwards (every C's val score is kept); the walk stops early once `classifier.patience` Cs in a
row did not improve on the best, and is extended past the grid's edge (same log step, within `C_BOUNDS`) while the
val-best C is the grid's edge. The pipeline is then refit on train+val at that C and scored once on test.
`LinearPathClassifier` (src/probe/path.py) walks the grid as one C path (`start_path`: each C warm-started from the
nearest C solved) and starts the refit from its train-split solution (`coef_init`); any other scikit-learn
classifier is refit from scratch at each C.
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Any, Callable, Mapping

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, average_precision_score, balanced_accuracy_score
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline

from src.probe.path import LinearPathClassifier
from src.probe.registry import allowed_targets

# target.metric -> scikit-learn's score of (y_true, y_pred), for the single-label metrics ("map" is scored from decision
# values). Not to be confused with src/record.METRICS, the documented keys of a result's metrics.
SCORERS = {"accuracy": accuracy_score, "mean_per_class_accuracy": balanced_accuracy_score}
C_BOUNDS = (1e-6, 1e6)  # how far an edge-extended C search may go
FALL = 3.0  # val standard errors below the best that end a C walk at once (search_C)


def build_pipeline(cfg: DictConfig, multilabel: bool = False) -> Pipeline:
    """norm -> dimred -> classifier; for multi-label targets the classifier is fit per label (one-vs-rest)."""
    allowed = allowed_targets(cfg.get("extensions"))  # config-named `_target_`s: scikit-learn, ours, the user's

    def step(node: Any) -> Any:
        return "passthrough" if node is None else instantiate(node, _execution_whitelist_=allowed)

    clf = step(cfg.classifier.estimator)
    native = isinstance(clf, LinearPathClassifier)  # fits every label of a multi-label target in one problem
    return Pipeline(
        [
            ("norm", step(cfg.norm.estimator)),
            ("dimred", step(cfg.dimred.estimator)),
            ("clf", OneVsRestClassifier(clf) if multilabel and not native else clf),
        ]
    )


def score(metric: str, clf, x: np.ndarray, y: np.ndarray) -> float:
    if metric == "map":
        return float(average_precision_score(y, clf.decision_function(x), average="macro"))
    return float(SCORERS[metric](y, clf.predict(x)))


def score_decisions(metric: str, clf: LinearPathClassifier, scores: np.ndarray, y: np.ndarray) -> float:
    """score() from the classifier's decision values, for the val split at every C of a path. The two
    single-label metrics are computed directly (equal to scikit-learn's, tests/test_probe_path.py): scikit-learn's
    metrics validate their input on every call, a fixed cost per C that is a visible share of a small probe, whose
    every C takes only a few Newton steps."""
    if metric == "map":
        return float(average_precision_score(y, scores, average="macro"))
    pred = clf.labels(scores)
    if metric == "accuracy":
        return float(np.mean(pred == y))
    if metric == "mean_per_class_accuracy":  # the mean recall over the classes present in y (balanced accuracy)
        classes, idx = np.unique(y, return_inverse=True)
        hits = np.bincount(idx.reshape(-1), weights=(pred == y), minlength=len(classes))
        return float(np.mean(hits / np.bincount(idx.reshape(-1), minlength=len(classes))))
    return float(SCORERS[metric](y, pred))


def search_C(val_score: Callable[[float], float], grid: list[float], patience: int | None = None,
             bounds: tuple[float, float] = C_BOUNDS, max_extra: int = 24, n_val: int | None = None,
             learned: Callable[[float], bool] | None = None) -> dict[float, float]:
    """{C: val score}, ordered by C. The grid is walked upwards and the walk stops once `patience` Cs since the last
    improvement did not improve on the best. While the curve is still at its small-C level (the best is not above
    the smallest C's score by more than two of the val score's standard errors, sqrt(b (1 - b) / n_val) at the best
    b with `n_val` val examples; by anything if n_val is None), only Cs that score clearly below the best (by more
    than one error) count: at small C the val curve is a plateau whose wiggles (a few val images) would otherwise stop
    the walk before the rise that large C brings (a small target's curve can sit flat for several decades of C and
    then rise far above it; tests/test_probe_path.py has such a case). After the rise every C that does not improve
    counts (ties too: a flat top would otherwise be walked to the grid's end, at the Cs that cost the most
    iterations), and a C that falls more than `FALL` errors below the best ends the walk at once: the curve has
    clearly passed its peak, and patience would only spend the largest, costliest Cs confirming it (to re-check on
    a study: run it with `classifier.patience=null`, which walks every C, and see in result.json's `val_scores`
    whether any C after such a fall beats the best). If it was
    walked to the end, it is extended one grid step at a time (at most `max_extra` steps, within `bounds`): upwards
    while the top C scores the best (ties too: a flat val curve at small C means C is too small to matter yet; again
    stopped by `patience`), downwards while the bottom C is the unique best. The chosen C is the first best (the
    strongest regularisation on ties).

    `learned(C)` (after C's val score is asked): whether the fit at C has left the zero model. The Cs before the
    first that has are left out of the stopping rules (their scores are kept and may still be chosen): there the
    weights are all but zero and the val score is noise around the intercepts' guess, and a spike of it (digits:
    0.41 at C = 1e-5 amid 0.35s, the rise only from C = 1e-2 to 0.95) would otherwise stand as a peak."""
    grid = sorted(float(c) for c in grid)
    scores: dict[float, float] = {}
    best, stale = -np.inf, 0
    walked: dict[float, float] = {}  # the Cs whose scores the stopping rules count (from the first that learned)

    def noise(b: float) -> float:
        return math.sqrt(max(b * (1 - b), 0.0) / n_val) if n_val else 0.0

    def ask(c: float) -> None:
        nonlocal best, stale
        scores[c] = val_score(c)
        if learned is not None and not walked and not learned(c):
            return  # still the zero model: no evidence about where the val curve peaks
        walked[c] = scores[c]
        if scores[c] > best:
            best, stale = scores[c], 0
            return
        # Until the curve has risen clearly above its level at the smallest C, ties and drops within noise do not
        # count against patience (a plateau at small C is not a peak); once it has, every C that does not improve
        # on the best counts (a flat top: larger C, the costliest to fit, cannot change the choice of the first best).
        # (the plateau's level: the smallest C's score, the zero model's when the grid starts there)
        risen = best > scores[min(scores)] + 2 * noise(best)  # two SEs: a wiggle of the plateau is not a rise
        stale += risen or scores[c] < best - noise(best)
        if risen and n_val and scores[c] < best - FALL * noise(best):  # clearly past the peak
            stale = max(stale, patience or 0)

    for c in grid:
        ask(c)
        if patience and stale >= patience:
            return dict(sorted(scores.items()))
    up = grid[-1] / grid[-2] if len(grid) > 1 else 10.0
    down = grid[1] / grid[0] if len(grid) > 1 else 10.0
    stale = 0
    for _ in range(max_extra):
        lo, hi = min(scores), max(scores)
        if scores[hi] >= best and hi * up <= bounds[1] * (1 + 1e-9) and not (patience and stale >= patience):
            ask(hi * up)
        elif len(scores) > 1 and scores[lo] > max(v for c, v in scores.items() if c != lo) \
                and lo / down >= bounds[0] * (1 - 1e-9):
            ask(lo / down)
        else:
            break
    return dict(sorted(scores.items()))


def fit_and_score(
    pipe: Pipeline,
    splits: Mapping[str, tuple[np.ndarray, np.ndarray]],
    c_grid: list[float],
    metric: str,
    c_param: str = "C",
    patience: int | None = None,
) -> dict[str, Any]:
    """Choose C on val (see the module doc), refit on train+val, score on test. `c_param` is C's path inside the
    classifier (e.g. `estimator__C` when the SVM is wrapped in a OneVsOneClassifier). `metric="map"` is for
    multi-label targets (labels an (N, K) 0/1 matrix)."""
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = splits["train"], splits["val"], splits["test"]
    clf = pipe.steps[-1][1]
    if isinstance(clf, OneVsRestClassifier):  # multi-label with a classifier that fits one label at a time
        c_param = f"estimator__{c_param}"
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        pre = Pipeline(pipe.steps[:-1]) if len(pipe.steps) > 1 else None
        f_tr = pre.fit_transform(x_tr, y_tr) if pre is not None else x_tr
        f_va = pre.transform(x_va) if pre is not None else x_va
        path: dict[float, dict] = {}
        if isinstance(clf, LinearPathClassifier):
            val_score = _path_scorer(clf, f_tr, y_tr, f_va, y_va, metric, path)
        else:
            def val_score(c: float) -> float:
                return score(metric, clone(clf).set_params(**{c_param: c}).fit(f_tr, y_tr), f_va, y_va)
        val_scores = search_C(val_score, c_grid, patience, n_val=len(y_va),
                              learned=_learned(path) if isinstance(clf, LinearPathClassifier) else None)
        best_c = max(val_scores, key=lambda c: (val_scores[c], -c))
        pipe.set_params(**{f"clf__{c_param}": best_c})
        # the refit on train+val starts from the train split's solution at that C
        init = {"clf__coef_init": path[best_c].pop("coef"), "clf__intercept_init": path[best_c].pop("intercept")} \
            if path else {}
        pipe.fit(np.concatenate([x_tr, x_va]), np.concatenate([y_tr, y_va]), **init)
    fit_s = time.perf_counter() - t0
    grid = [float(c) for c in c_grid]
    pred = None if metric == "map" else pipe.predict(x_te)  # once: the score and the per-image record
    return {
        "target_score": score(metric, pipe, x_te, y_te) if pred is None else float(SCORERS[metric](y_te, pred)),
        # per test image (single-label): the report's bootstrap over images
        "test_correct": None if pred is None else (pred == y_te).astype(np.uint8),
        "best_C": float(best_c),
        "val_scores": {str(c): float(s) for c, s in val_scores.items()},
        "C_grid": list(val_scores),
        "C_grid_extended": [c for c, on in zip(val_scores, np.isclose(list(val_scores), np.c_[grid]).any(0)) if not on],
        "probe_path": [{k: v for k, v in path[c].items() if k not in ("coef", "intercept")}
                       for c in sorted(path)] or None,
        "fit_s": fit_s,
        "convergence_warnings": sum(issubclass(w.category, ConvergenceWarning) for w in caught)
        + sum(not info["converged"] for info in path.values()),
    }


NULL_DROP = 0.01  # a fit "has learned" once its objective is this fraction below the smallest C's (search_C)


def _learned(path: dict) -> Callable[[float], bool]:
    """`search_C`'s `learned`: the training objective at C at least NULL_DROP below that at the smallest C walked,
    which sits at the zero model's when the grid starts in the regularised limit (the default grid's 1e-6). An
    objective not recorded counts as learned (the stopping rules as without the test)."""
    def learned(c: float) -> bool:
        first, here = path[min(path)].get("objective"), path[c].get("objective")
        return first is None or here is None or here < (1 - NULL_DROP) * first

    return learned


def _path_scorer(clf: LinearPathClassifier, x, y, x_val, y_val, metric: str, path: dict) -> Callable[[float], float]:
    """val_score(C) along a C path of the classifier (`LinearPathClassifier.start_path`) on the train split: each C
    is warm-started from the solution at the nearest C already solved. Records every C's diagnostics and solution
    in `path`."""
    model = clone(clf)
    walk = model.start_path(x, y, X_val=x_val)

    def val_score(c: float) -> float:
        info = walk.solve(c)
        info["val_score"] = score_decisions(metric, model, info.pop("val_decision"), y_val)
        path[c] = {**info, "coef": model.coef_, "intercept": model.intercept_}
        return info["val_score"]

    return val_score
