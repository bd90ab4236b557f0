"""LogME, H-score, LEEP and NCE in numpy (see the package docstring for references)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


def logme(features: np.ndarray, labels: np.ndarray, max_iter: int = 100, tol: float = 1e-3) -> float:
    """LogME: average over classes (one-vs-rest targets) of the maximised log evidence per example.

    For targets y (n,) and features F (n, d), the evidence of y = F w + noise with w ~ N(0, 1/alpha),
    noise ~ N(0, 1/beta) is maximised over (alpha, beta) by the fixed-point updates of You et al., computed
    in the SVD basis of F so that each iteration is O(min(n, d)).
    """
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    n, d = f.shape
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    sigma = s**2  # non-zero part of F^T F's spectrum (the other d - r eigenvalues are 0)
    r = len(sigma)
    evidences = []
    for k in np.unique(y):
        yk = (y == k).astype(np.float64)
        x2 = (u.T @ yk) ** 2
        res_x2 = max(float(yk @ yk - x2.sum()), 0.0)  # the part of y outside F's column space
        alpha, beta = 1.0, 1.0
        for _ in range(max_iter):
            t = alpha / beta
            gamma = float((sigma / (sigma + t)).sum())
            m2 = float((sigma * x2 / (t + sigma) ** 2).sum())
            res2 = float((x2 / (1 + sigma / t) ** 2).sum()) + res_x2
            alpha = gamma / (m2 + 1e-10)
            beta = max(n - gamma, 1e-10) / (res2 + 1e-10)
            if abs(alpha / beta - t) / t <= tol:
                break
        t = alpha / beta
        m2 = float((sigma * x2 / (t + sigma) ** 2).sum())
        res2 = float((x2 / (1 + sigma / t) ** 2).sum()) + res_x2
        log_det = float(np.log(alpha + beta * sigma).sum()) + (d - r) * np.log(alpha)
        evidence = (
            d / 2 * np.log(alpha) + n / 2 * np.log(beta) - 0.5 * log_det
            - beta / 2 * res2 - alpha / 2 * m2 - n / 2 * np.log(2 * np.pi)
        )
        evidences.append(evidence / n)
    return float(np.mean(evidences))


def hscore(features: np.ndarray, labels: np.ndarray) -> float:
    """H-score: how much of the features' covariance is explained by the class means (pseudo-inverse for rank)."""
    f = np.asarray(features, dtype=np.float64)
    f = f - f.mean(0)
    y = np.asarray(labels)
    cov_f = f.T @ f / len(f)
    class_means = np.zeros_like(f)
    for k in np.unique(y):
        class_means[y == k] = f[y == k].mean(0)
    cov_g = class_means.T @ class_means / len(f)
    return float(np.trace(np.linalg.pinv(cov_f, rcond=1e-10, hermitian=True) @ cov_g))


def _joint(source_probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Empirical P(y, z) (C, Z) and P(y | z), with P(y | z) = 0 for source classes z that never occur."""
    theta = np.asarray(source_probs, dtype=np.float64)
    y = np.unique(np.asarray(labels), return_inverse=True)[1]
    joint = np.zeros((y.max() + 1, theta.shape[1]))
    np.add.at(joint, y, theta)
    joint /= len(y)
    p_z = joint.sum(0, keepdims=True)
    cond = np.divide(joint, p_z, out=np.zeros_like(joint), where=p_z > 0)
    return joint, cond


def leep(source_probs: np.ndarray, labels: np.ndarray) -> float:
    """LEEP: mean log-likelihood of the target labels under the 'dummy' classifier P(y|z) o theta(x)."""
    theta = np.asarray(source_probs, dtype=np.float64)
    y = np.unique(np.asarray(labels), return_inverse=True)[1]
    _, cond = _joint(theta, labels)
    eep = (theta * cond[y]).sum(1)  # sum_z P(y_i | z) theta_i(z)
    return float(np.mean(np.log(np.maximum(eep, 1e-300))))


def nce(source_probs: np.ndarray, labels: np.ndarray) -> float:
    """NCE: -H(Y | Z) with Z = the source head's argmax prediction."""
    theta = np.asarray(source_probs)
    hard = np.zeros_like(theta, dtype=np.float64)
    hard[np.arange(len(theta)), theta.argmax(1)] = 1.0
    joint, cond = _joint(hard, labels)
    mask = joint > 0
    return float((joint[mask] * np.log(cond[mask])).sum())


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


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


@dataclass(frozen=True)
class Estimator:
    """A registered estimator: `fn(inputs, labels) -> float`, higher = expected to transfer better."""

    name: str
    fn: Callable[[np.ndarray, np.ndarray], float]
    input: str  # "features" of the chosen layer, or "probs": the source head's class probabilities
    cost: str = "cheap"  # cheap: every probe run records it; expensive: only when asked for (estimator=...)
    multilabel: bool = False  # defined for (N, K) 0/1 labels (scored per label column and averaged)


ESTIMATORS: dict[str, Estimator] = {}


def register_estimator(name: str, fn, input: str, cost: str = "cheap", multilabel: bool = False) -> None:
    assert input in ("features", "probs") and cost in ("cheap", "expensive"), (input, cost)
    ESTIMATORS[name] = Estimator(name, fn, input, cost, multilabel)


register_estimator("logme", logme, "features", multilabel=True)
register_estimator("hscore", hscore, "features")
register_estimator("leep", leep, "probs")
register_estimator("nce", nce, "probs")
