"""Non-parametric estimators on the chosen layer's features: leave-one-out k-NN accuracy and N-LEEP."""

from __future__ import annotations

import numpy as np


def knn_loo(features, labels: np.ndarray, k: int = 5, chunk: int = 1024) -> float:
    """Leave-one-out k-nearest-neighbour accuracy (Euclidean): the plain baseline that several studies find hard
    to beat (e.g. Agostinelli et al., "How stable are transferability metrics evaluations?", ECCV 2022).

    Inputs: features (n, d) (numpy, or a torch tensor: its device computes the distances). Cost: O(n^2 d), in
    row chunks of the n x n distance matrix (float32). Each image is classified by a majority vote of its k
    nearest other images; a tied vote goes to the tied class that has the nearest neighbour. Invariant to label
    permutation, row order and uniform feature scaling.
    """
    import torch

    y = np.unique(np.asarray(labels), return_inverse=True)[1].reshape(-1)
    n = len(y)
    if not 1 <= k < n:
        raise ValueError(f"k={k}: need 1 <= k < n={n}")
    f = features if isinstance(features, torch.Tensor) else torch.from_numpy(np.asarray(features, dtype=np.float32))
    f = f.to(torch.float32)
    sq = (f * f).sum(1)
    yt = torch.as_tensor(y, device=f.device)
    # Vote weights: 1 per neighbour plus a rank bonus 2^-(rank+2): the bonuses sum to < 1/2, so they never outweigh
    # a vote, and distinct sets of ranks have distinct sums, so a tied vote goes to the class with the nearest
    # neighbour among them, whatever the classes are called.
    weight = 1.0 + 2.0 ** -(torch.arange(k, device=f.device, dtype=torch.float64) + 2)
    correct = 0
    for start in range(0, n, chunk):
        block = f[start:start + chunk]
        dist = sq[start:start + chunk, None] + sq[None, :] - 2.0 * (block @ f.T)
        rows = torch.arange(len(block), device=f.device)
        dist[rows, rows + start] = float("inf")  # leave the image itself out
        nearest = dist.topk(k, dim=1, largest=False).indices  # sorted, nearest first
        votes = torch.zeros(len(block), int(y.max()) + 1, dtype=torch.float64, device=f.device)
        votes.scatter_add_(1, yt[nearest], weight.expand(len(block), k).contiguous())
        correct += int((votes.argmax(1) == yt[start:start + chunk]).sum())
    return correct / n


def nleep(features: np.ndarray, labels: np.ndarray, component_ratio: int = 5, variance: float = 0.8,
          seed: int = 0) -> float:
    """N-LEEP (Li et al., "Ranking Neural Checkpoints", CVPR 2021): LEEP with the source head replaced by a
    Gaussian mixture fitted on the PCA-reduced target features, following the code that produced the numbers in
    SFDA's comparison (TencentARC/SFDA, metrics.py `NLEEP`): PCA keeping 80% of the variance, a full-covariance
    GaussianMixture with component_ratio x C components, its posteriors p(z | x) in LEEP's dummy classifier, and the
    mean of p(y_x | x) without LEEP's log (that code drops it; the paper keeps it).

    Inputs: features (n, d). Cost: EM of a (5C)-component full-covariance mixture, O(iterations n C d_pca^2): the
    expensive estimator here (minutes for C = 100), so it is only computed when asked for. Seeded (the mixture's
    k-means initialisation), so repeatable.
    """
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture

    y = np.unique(np.asarray(labels), return_inverse=True)[1].reshape(-1)
    n, c = len(y), int(y.max()) + 1
    reduced = PCA(n_components=variance, random_state=seed).fit_transform(np.asarray(features, dtype=np.float64))
    gmm = GaussianMixture(n_components=min(component_ratio * c, n), random_state=seed).fit(reduced)
    prob = gmm.predict_proba(reduced)  # p(z | x)
    joint = np.zeros((c, prob.shape[1]))
    np.add.at(joint, y, prob / n)
    p_z = joint.sum(0, keepdims=True)
    cond = np.divide(joint, p_z, out=np.zeros_like(joint), where=p_z > 0)  # p(y | z)
    return float((prob * cond[y]).sum(1).mean())
