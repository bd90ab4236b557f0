"""LogME, H-score, LEEP and NCE in numpy (see the package docstring for references)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from src.registry import Registry
from src.transferability.coding_rate import transrate
from src.transferability.discriminant import etran_energy, etran_lda, gbc, sfda
from src.transferability.neighbours import knn_loo, nleep
from src.transferability.spectra import centred_gram_eigh


def logme(features, labels: np.ndarray, max_iter: int = 100, tol: float = 1e-3) -> float:
    """LogME (You et al., ICML 2021): mean over classes (one-vs-rest 0/1 targets) of the maximised log evidence
    per example of a Bayesian linear model on the features.

    Inputs: features (n, d) of the chosen layer (numpy, or a torch tensor: its device does the heavy part).
    For targets y (n,) and features F (n, d), the evidence of y = F w + noise with w ~ N(0, 1/alpha),
    noise ~ N(0, 1/beta) is maximised over (alpha, beta) by the paper's fixed-point updates, in F's singular
    basis. Cost: one Gram matrix (d x d, or n x n when n < d) and its eigendecomposition, O(n min(n,d)^2 +
    min(n,d)^3), instead of the SVD of the n x d matrix; then O(C min(n,d)) per iteration for all C classes at once.

    With more features than images (d > n) the prior's log-determinant has d - r terms log(alpha) beyond the r
    non-zero singular values. The paper's evidence counts them (so does this function); the authors' reference
    code sums over the min(n, d) singular values only, so for d > n the two differ: on a d > n sweep this value
    tracked the class separation while the reference's agreed with it only at rank correlation 0.83 (a review
    against the reference code on the same inputs). For d <= n both are the same to numerical precision.
    """
    y = np.unique(np.asarray(labels), return_inverse=True)[1].reshape(-1)
    n, d = features.shape
    sigma, x2 = _spectrum_and_projections(features, np.eye(y.max() + 1)[y])  # (r,), (r, C)
    counts = np.bincount(y).astype(np.float64)
    res_x2 = np.maximum(counts - x2.sum(0), 0.0)  # the part of each y_k outside F's column space (y_k.y_k = n_k)
    s = sigma[:, None]
    alpha, beta = np.ones(len(counts)), np.ones(len(counts))
    active = np.ones(len(counts), dtype=bool)  # classes still iterating (each stops at its own tolerance)
    for _ in range(max_iter):
        t = alpha / beta
        gamma = (s / (s + t)).sum(0)
        m2 = (s * x2 / (t + s) ** 2).sum(0)
        res2 = (x2 / (1 + s / t) ** 2).sum(0) + res_x2
        new_alpha = gamma / (m2 + 1e-10)
        new_beta = np.maximum(n - gamma, 1e-10) / (res2 + 1e-10)
        alpha, beta = np.where(active, new_alpha, alpha), np.where(active, new_beta, beta)
        active &= np.abs(new_alpha / new_beta - t) / t > tol
        if not active.any():
            break
    t = alpha / beta
    m2 = (s * x2 / (t + s) ** 2).sum(0)
    res2 = (x2 / (1 + s / t) ** 2).sum(0) + res_x2
    log_det = np.log(alpha + beta * s).sum(0) + (d - len(sigma)) * np.log(alpha)
    evidence = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - 0.5 * log_det
                - beta / 2 * res2 - alpha / 2 * m2 - n / 2 * np.log(2 * np.pi))
    return float(np.mean(evidence / n))


def _spectrum_and_projections(features, targets: np.ndarray, eig=None) -> tuple[np.ndarray, np.ndarray]:
    """The non-zero squared singular values sigma (r,) of F and (U^T Y)^2 (r, C) for targets Y (n, C), from the
    eigendecomposition of the smaller Gram matrix (F^T F when n >= d, else F F^T): U^T Y = V^T F^T Y / s.
    `eig`: that decomposition (eigenvalues, eigenvectors) of the numpy F, if already computed."""
    if _is_torch(features):
        import torch

        f = features.to(torch.float64)
        yt = torch.as_tensor(targets, dtype=torch.float64, device=f.device)
        gram = f.T @ f if f.shape[0] >= f.shape[1] else f @ f.T
        sigma, vecs = torch.linalg.eigh(gram)
        keep = sigma > sigma.max() * max(f.shape) * torch.finfo(torch.float64).eps
        sigma, vecs = sigma[keep], vecs[:, keep]
        proj = (vecs.T @ (f.T @ yt)) / sigma.sqrt()[:, None] if f.shape[0] >= f.shape[1] else vecs.T @ yt
        return sigma.cpu().numpy(), (proj**2).cpu().numpy()
    f = np.asarray(features, dtype=np.float64)
    sigma, vecs = eig if eig is not None else np.linalg.eigh(f.T @ f if f.shape[0] >= f.shape[1] else f @ f.T)
    keep = sigma > sigma.max() * max(f.shape) * np.finfo(np.float64).eps  # numerically zero: outside the span
    sigma, vecs = sigma[keep], vecs[:, keep]
    if f.shape[0] >= f.shape[1]:
        proj = (vecs.T @ (f.T @ targets)) / np.sqrt(sigma)[:, None]
    else:
        proj = vecs.T @ targets
    return sigma, proj**2


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def hscore(features: np.ndarray, labels: np.ndarray) -> float:
    """H-score: how much of the features' covariance is explained by the class means (pseudo-inverse for rank).

    tr(pinv(cov_f) cov_g), cov_g = sum_k n_k mu_k mu_k^T / n, on centred features F = U S V^T equals
    sum_k |U^T y_k|^2 / n_k (y_k: class k's 0/1 column; U over the non-zero singular values): the eigenvectors of
    the smaller Gram matrix suffice (for an fc layer on a small target, n x n instead of d x d; the decomposition is
    shared with GBC and TransRate within a job: `spectra`)."""
    _, y, counts = np.unique(np.asarray(labels), return_inverse=True, return_counts=True)
    xc, vals, vecs = centred_gram_eigh(features)
    _, x2 = _spectrum_and_projections(xc, np.eye(len(counts))[y.reshape(-1)], eig=(vals, vecs))
    return float((x2 / counts).sum())


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


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


# Where an estimator stops saying anything about the labels, by its own definition (`Estimator.outside`). With
# d features, n labelled images and C classes: SFDA's regularised Fisher posteriors separate any labelling once d
# nears n - C (its score is a mean posterior, bounded by 1: on Gaussian class clusters the real labels reach 0.99 by
# d/(n-C) = 0.5, and random labels score about 0.9 at 0.6 and 0.999 from 0.8); H-score is tr(cov_f^+ cov_g), which equals C - 1 for any labels once
# the class-mean directions lie in the features' span (d >= n - 1 exactly, nearly so from d >= n - C).
# tests/test_transferability.py measures both against random labels.
SFDA_SATURATED = 0.6  # d / (n - C) from which SFDA is saturated
HSCORE_DEGENERATE = 1.0  # d / (n - C) from which H-score is C - 1 whatever the labels


def _sfda_regime(n: int, classes: int, dim: int) -> str | None:
    ratio = dim / max(n - classes, 1)
    return f"saturated: d/(n-C) = {ratio:.2f} >= {SFDA_SATURATED}" if ratio >= SFDA_SATURATED else None


def _hscore_regime(n: int, classes: int, dim: int) -> str | None:
    ratio = dim / max(n - classes, 1)
    return f"degenerate: d/(n-C) = {ratio:.2f} >= {HSCORE_DEGENERATE} (C - 1 for any labels)" \
        if ratio >= HSCORE_DEGENERATE else None


@dataclass(frozen=True)
class Estimator:
    """A registered estimator: `fn(inputs, labels) -> float`, higher = expected to transfer better. `regime`, if
    given, says for (n labelled images, C classes, d features) why the estimator is outside the regime where its
    value depends on the labels (None: inside); the estimator zoo marks and counts such cells."""

    name: str
    fn: Callable[[np.ndarray, np.ndarray], float]
    input: str  # "features" of the chosen layer, or "probs": the source head's class probabilities
    cost: str = "cheap"  # cheap: every probe run records it; expensive: only when asked for (estimator=...)
    multilabel: bool = False  # defined for (N, K) 0/1 labels (scored per label column and averaged)
    torch: bool = False  # also takes a torch tensor and computes on its device (given a GPU one when there is one)
    regime: Callable[[int, int, int], str | None] | None = None

    def outside(self, n: int, classes: int, dim: int) -> str | None:
        """Why this estimator's value says nothing about these inputs' labels (None: it may)."""
        return self.regime(n, classes, dim) if self.regime is not None else None


ESTIMATORS = Registry("estimator", "estimators")


def register_estimator(name: str, fn, input: str, cost: str = "cheap", multilabel: bool = False,
                       torch: bool = False, regime=None) -> None:
    if input not in ("features", "probs") or cost not in ("cheap", "expensive"):
        raise ValueError(f"estimator {name!r}: input must be features/probs and cost cheap/expensive")
    ESTIMATORS.register(name, Estimator(name, fn, input, cost, multilabel, torch, regime))


register_estimator("logme", logme, "features", multilabel=True, torch=True)
register_estimator("hscore", hscore, "features", regime=_hscore_regime)
register_estimator("leep", leep, "probs")
register_estimator("nce", nce, "probs")
register_estimator("sfda", sfda, "features", regime=_sfda_regime)
register_estimator("transrate", transrate, "features")
register_estimator("gbc", gbc, "features")
register_estimator("etran_lda", etran_lda, "features")
register_estimator("etran_energy", etran_energy, "features", multilabel=True)  # label-free
register_estimator("knn", knn_loo, "features", torch=True)
register_estimator("nleep", nleep, "features", cost="expensive")  # a 5C-component GMM: minutes for C = 100
