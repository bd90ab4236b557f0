"""TransRate (Huang et al., "Frustratingly Easy Transferability Estimation", ICML 2022)."""

from __future__ import annotations

import numpy as np

from src.transferability.spectra import centred_gram_eigh


def coding_rate(z: np.ndarray, eps: float = 1e-4, eig: np.ndarray | None = None) -> float:
    """R(Z, eps) = 1/2 logdet(I_d + Z^T Z / (n eps)) for Z (n, d); by Sylvester's identity the same as
    1/2 logdet(I_n + Z Z^T / (n eps)), so we factor whichever Gram matrix is smaller (`eig`: its eigenvalues, if
    already computed)."""
    n, d = z.shape
    if eig is None:
        eig = np.linalg.eigvalsh(z.T @ z if n >= d else z @ z.T)
    return float(0.5 * np.log1p(np.maximum(eig, 0.0) / (n * eps)).sum())


def transrate(features: np.ndarray, labels: np.ndarray, eps: float = 1e-4) -> float:
    """TransRate = R(Z) - R(Z | Y): the coding rate of the centred features minus the mean coding rate of each
    class's rows (still centred by the overall mean), following the code published with the paper.

    Inputs: features (n, d). Cost: one min(n,d)^2 Gram + eigenvalues, and one per class (n_k x n_k when n_k < d).
    The code averages the class terms with weight 1/K (K = number of classes), not n_k / n; we follow the code
    (the two agree for balanced classes). Label-permutation invariant; not scale-invariant (eps is absolute).
    """
    z, eig, _ = centred_gram_eigh(features, vectors=False)  # (shared with H-score and GBC within a job)
    y = np.unique(np.asarray(labels), return_inverse=True)[1].reshape(-1)
    classes = np.unique(y)
    return coding_rate(z, eps, eig) - sum(coding_rate(z[y == k], eps) for k in classes) / len(classes)
