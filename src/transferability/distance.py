"""How far a target's images sit from the source task's, measured in the source net's own feature space.

These look at images only (no target labels, no probe), so a distance never borrows from the score it is meant
to explain. A distance belongs to a (source, target) pair: the source side is the source task's own val images.

  pad      proxy A-distance (Ben-David et al., 2007/2010): 2 (1 - 2 err) of a linear domain classifier that tells
           source from target features (err on held-out folds, classes balanced by subsampling). 0 = the two
           are indistinguishable, 2 = perfectly separable. Bounded, so it saturates once domains separate.
  frechet  Frechet distance of Gaussians fitted to both feature sets (as FID). Unbounded, does not saturate.

Features are L2-normalised per row first, so the scale of a layer's activations does not decide the number.
"""

from __future__ import annotations

import numpy as np


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (rows = examples), as in FID:
    ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))."""
    from scipy import linalg

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    mu = a.mean(0) - b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # With fewer examples than dims the covariances are singular; a tiny ridge keeps the square root defined.
    ridge = 1e-6 * max(np.trace(s_a), np.trace(s_b), 1e-12) / len(mu) * np.eye(len(mu))
    root = linalg.sqrtm((s_a + ridge) @ (s_b + ridge))
    root = root.real if np.iscomplexobj(root) else root
    return float(max(mu @ mu + np.trace(s_a + s_b - 2 * root), 0.0))


DISTANCES = ("pad", "frechet")
MAX_PER_SIDE = 1000  # subsample each side to this many rows: the measures' cost, not their meaning, grows with n


def _l2(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _balanced(a: np.ndarray, b: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Both sides subsampled (seeded) to the same number of rows, at most MAX_PER_SIDE."""
    n = min(len(a), len(b), MAX_PER_SIDE)
    rng = np.random.default_rng([seed, 271])
    return a[rng.choice(len(a), n, replace=False)], b[rng.choice(len(b), n, replace=False)]


def proxy_a_distance(a: np.ndarray, b: np.ndarray, seed: int = 0, folds: int = 3) -> float:
    """2 (1 - 2 err), err = cross-validated error of an L2-regularised logistic regression separating a from b."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    a, b = _balanced(_l2(a), _l2(b), seed)
    x = np.concatenate([a, b])
    y = np.r_[np.zeros(len(a)), np.ones(len(b))]
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    err = 1.0 - float(np.mean(cross_val_score(clf, x, y, cv=cv)))
    return float(2.0 * (1.0 - 2.0 * min(err, 0.5)))


def domain_distances(source: np.ndarray, target: np.ndarray, seed: int = 0) -> dict[str, float]:
    """Every measure in DISTANCES between source-task features and target features of one layer."""
    a, b = _balanced(_l2(source), _l2(target), seed)
    return {"pad": proxy_a_distance(a, b, seed), "frechet": frechet_distance(a, b)}
