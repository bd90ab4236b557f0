"""Class-separability estimators on the chosen layer's features: SFDA, ETran's LDA and energy parts, GBC.

Each takes features (n, d) and labels (n,) (any hashable labels; they are re-indexed, so a permutation of the
label names gives the same score) and returns a float, higher = expected to transfer better. scipy is imported
where used: the config check imports the estimator registry and stays light.
"""

from __future__ import annotations

import numpy as np

from src.transferability.spectra import centred_gram_eigh


def _indexed(labels: np.ndarray, n_min: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(labels as 0..C-1, counts); a one-class target has no separability to measure."""
    y = np.unique(np.asarray(labels), return_inverse=True)[1].reshape(-1)
    counts = np.bincount(y)
    if len(counts) < n_min:
        raise ValueError(f"need at least {n_min} target classes, got {len(counts)}")
    return y, counts


def _class_means(x: np.ndarray, y: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(C, d) per-class means, as one GEMM with the one-hot labels (one BLAS call, not np.add.at's row-by-row
    scatter)."""
    return (np.eye(len(counts))[y].T @ x) / counts[:, None]


def _pca(x: np.ndarray, k: int) -> np.ndarray:
    """x's scores on its top-k principal components (exact PCA: what scikit-learn's PCA(k).fit_transform computes,
    up to each component's sign), from the eigendecomposition of the smaller Gram matrix of the centred rows
    (d x d, or n x n on a wide fc layer; shared with H-score and TransRate within a job) instead of a randomised
    SVD (a second factorisation of x where the shared Gram matrix's is at hand, and approximate)."""
    xc, vals, vecs = centred_gram_eigh(x)
    if xc.shape[0] >= xc.shape[1]:
        return xc @ vecs[:, ::-1][:, :k]  # top-k right singular vectors
    return vecs[:, ::-1][:, :k] * np.sqrt(np.maximum(vals[::-1][:k], 0.0))  # U S = X V


def _largest_eigenvalue(a: np.ndarray, iterations: int = 3) -> float:
    """SFDA's code's estimate of the largest eigenvalue of a (a few power iterations from the row sums). SFDA's
    shrinkage is exp(-5 * this), so we keep the same approximation rather than an exact eigenvalue."""
    x = a.sum(1)
    for _ in range(iterations):
        y = a @ x
        y /= np.linalg.norm(y)
        x = a @ y
        x /= np.linalg.norm(x)
    return float(x @ a @ y)


def _shrunk_within_cov(x: np.ndarray, y: np.ndarray, counts: np.ndarray, shrinkage: float | None):
    """(means, (1 - s) Sw + s tr(Sw)/d I, s) with Sw = sum_k p_k cov_k = the pooled within-class covariance."""
    means = _class_means(x, y, counts)
    centred = x - means[y]
    sw = centred.T @ centred / len(x)
    if shrinkage is None:
        shrinkage = max(np.exp(-5 * _largest_eigenvalue(sw)), 1e-10)
    d = sw.shape[0]
    shrunk = (1.0 - shrinkage) * sw
    shrunk.flat[:: d + 1] += shrinkage * np.trace(sw) / d
    return means, shrunk, shrinkage


def _lda_posteriors(x, y, counts, shrinkage):
    """p(y | x) of linear discriminant analysis with the shrunk pooled covariance, and the shrinkage used.

    SFDA's code takes the generalised eigenvectors V of (Sb, Sw_shrunk) (normalised so V^T Sw_shrunk V = I) and
    forms coef = M V V^T; with all d eigenvectors V V^T = Sw_shrunk^-1, so coef = M Sw_shrunk^-1 exactly and Sb
    drops out: a Cholesky solve gives the same posteriors for a fraction of the cost of the eigenproblem."""
    from scipy import linalg
    from scipy.special import softmax

    means, cov, shrinkage = _shrunk_within_cov(x, y, counts, shrinkage)
    try:
        coef = linalg.cho_solve(linalg.cho_factor(cov), means.T)  # (d, C) = Sw^-1 M^T
    except linalg.LinAlgError:  # numerically singular at the 1e-10 floor (d > n): the pseudo-inverse's solution
        coef = linalg.pinvh(cov) @ means.T
    intercept = -0.5 * np.einsum("kd,dk->k", means, coef) + np.log(counts / counts.sum())
    return softmax(x @ coef + intercept, axis=1), shrinkage


def sfda(features: np.ndarray, labels: np.ndarray) -> float:
    """SFDA (Shao et al., "Not All Models Are Equal: Predicting Model Transferability in a Self-challenging Fisher
    Space", ECCV 2022), following the authors' code (TencentARC/SFDA, metrics.py `SFDA_Score`).

    Inputs: features (n, d). Cost: two pooled within-class covariances (O(n d^2)) and two Cholesky solves (O(d^3)).
    1. Regularised Fisher (LDA) posteriors p(y|x), shrinkage s = max(exp(-5 lambda_max(Sw)), 1e-10);
    2. the code softens them with a second softmax (softmax of the probabilities);
    3. ConfMix: x <- p(y_x|x) x + (1 - p(y_x|x)) mean of the other classes' means ("self-challenging");
    4. LDA again on the mixed features with the same s; the score is the mean p(y_x | x).
    Where the code and the paper differ we follow the code (its numbers are the published ones): the score has no
    log (the code's comment: "the log function is ignored in case of instability"), and the softmax in step 2.
    Not scale-invariant (the shrinkage depends on the covariance's scale, as in the code).
    """
    from scipy.special import softmax

    x = np.array(features, dtype=np.float64)  # a copy: ConfMix rewrites it (the reference mutates its input)
    y, counts = _indexed(labels)
    n, c = len(y), len(counts)
    prob, shrinkage = _lda_posteriors(x, y, counts, None)
    prob = softmax(prob, axis=1)
    means = _class_means(x, y, counts)
    others = (means.sum(0) - means) / (c - 1)  # mean of the other classes' means, per class
    own = prob[np.arange(n), y][:, None]
    x = own * x + (1 - own) * others[y]
    prob, _ = _lda_posteriors(x, y, counts, shrinkage)
    return float(prob[np.arange(n), y].mean())


def etran_lda(features: np.ndarray, labels: np.ndarray) -> float:
    """ETran's classification part S_LDA (Gholami et al., "ETran: Energy-Based Transferability Estimation",
    ICCV 2023), following the authors' code (mgholamikn/ETran, metrics.py `LDA_Score`): the mean posterior of the
    true class under an LDA classifier fitted on the target features.

    Inputs: features (n, d). Cost: O(n d C). The code builds coef = M V V^T from the eigenvectors V of
    `np.linalg.eigh(inv(Sw) @ Sb)`; eigh returns an orthonormal basis of all d directions, so V V^T = I and the
    classifier it uses is logits_k = x . mu_k - |mu_k|^2 / 2 + log p_k (the covariance drops out). We compute
    that directly: the paper describes a Fisher projection, but the published numbers come from this code.
    Not scale-invariant (the logits grow with the features' scale, as in the code).
    """
    from scipy.special import softmax

    x = np.asarray(features, dtype=np.float64)
    y, counts = _indexed(labels)
    means = _class_means(x, y, counts)
    logits = x @ means.T - 0.5 * (means**2).sum(1) + np.log(counts / counts.sum())
    prob = softmax(logits, axis=1)
    return float(prob[np.arange(len(y)), y].mean())


def etran_energy(features: np.ndarray, labels: np.ndarray | None = None, percent: float = 0.5) -> float:
    """ETran's energy part S_en (Gholami et al., ICCV 2023), following the authors' code (`Energy_Score(X, 0.5,
    'bot')` on the penultimate features): -energy = logsumexp over the feature vector of each image, averaged over
    the `percent`% of target images with the lowest value. Label-free (`labels` is ignored).

    Inputs: features (n, d). Cost: O(n d). The code keeps int(percent * 10) * n // 1000 images, which is 0 (a NaN
    score) for n < 200; we keep at least one image there.
    """
    from scipy.special import logsumexp

    energy = logsumexp(np.asarray(features, dtype=np.float64), axis=1)
    keep = max(int(percent * 10) * len(energy) // 1000, 1)
    return float(np.sort(energy)[:keep].mean())


def gbc(features: np.ndarray, labels: np.ndarray, pca_dims: int = 64, gaussian: str = "spherical") -> float:
    """GBC, Gaussian Bhattacharyya Coefficient (Pándy et al., "Transferability Estimation using Bhattacharyya
    Class Separability", CVPR 2022), following the authors' code (google-research stable_transfer,
    transferability/gbc.py, with its config: PCA to 64 dimensions, spherical Gaussians).

    Inputs: features (n, d). Cost: a 64-component PCA (exact, `_pca`), then O(C^2 * 64).
    GBC = -sum over ordered class pairs (i != j) of exp(-D_B(i, j)), with each class a Gaussian with its mean and
    per-dimension variance (population variance, floored at 1e-4); `spherical` averages the variances to one.
    D_B = 1/8 sum (mu_i - mu_j)^2 / s + 1/2 (sum log s - 1/2 sum log s_i - 1/2 sum log s_j), s = (s_i + s_j)/2.
    In the spherical case the code's log terms are of the one averaged variance, not multiplied by the dimension
    (the paper's formula for sigma^2 I would be); we follow the code. Invariant to scaling the features (up to
    the 1e-4 floor) and to label permutation; in [-C(C-1), 0].
    """
    if gaussian not in ("spherical", "diagonal"):
        raise ValueError(f"gaussian={gaussian!r}: choose spherical or diagonal")
    y, counts = _indexed(labels)
    k = min(pca_dims, *np.shape(features))
    x = _pca(features, k) if k < np.shape(features)[1] else np.asarray(features, dtype=np.float64)
    means = _class_means(x, y, counts)
    var = np.maximum(_class_means((x - means[y]) ** 2, y, counts), 1e-4)  # (C, k) population variances
    if gaussian == "spherical":
        var = var.mean(1, keepdims=True)
    avg = (var[:, None, :] + var[None, :, :]) / 2  # (C, C, k or 1)
    first = (((means[:, None, :] - means[None, :, :]) ** 2) / avg).sum(-1) / 8
    log_var = np.log(var).sum(-1)
    second = np.log(avg).sum(-1) - 0.5 * log_var[:, None] - 0.5 * log_var[None, :]
    coeff = np.exp(-(first + 0.5 * second))
    np.fill_diagonal(coeff, 0.0)
    return float(-coeff.sum())
