"""SFDA, ETran (LDA, energy), GBC, TransRate, k-NN, N-LEEP and the fast LogME: hand-derived values on tiny inputs,
and the invariances each paper claims (or that follow from its formula)."""

import numpy as np
import pytest
import torch

from benchmarks.p7_estimators import logme_svd
from src.transferability import hscore, logme
from src.transferability.coding_rate import coding_rate, transrate
from src.transferability.discriminant import etran_energy, etran_lda, gbc, sfda
from src.transferability.neighbours import knn_loo, nleep

rng = np.random.default_rng(0)


def _separable(n=300, d=16, c=4, margin=3.0, seed=0):
    r = np.random.default_rng(seed)
    y = np.repeat(np.arange(c), n // c)
    return r.normal(size=(n, d)) + margin * np.eye(c, d)[y], y


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


# --- hand-derived values ---------------------------------------------------------------------------------------

def test_etran_lda_two_points():
    # mu_a = 0, mu_b = 2, priors 1/2: logits x*mu - mu^2/2, so each point's own class has p = sigmoid(2).
    assert etran_lda(np.array([[0.0], [2.0]]), np.array([0, 1])) == pytest.approx(sigmoid(2.0), abs=1e-12)


def test_etran_energy_is_the_mean_of_the_lowest_logsumexp():
    f = np.log(np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 5.0]]))  # logsumexp = log 2, log 4, log 8
    assert etran_energy(f) == pytest.approx(np.log(2.0))  # n < 200: the one lowest
    big = np.log(np.arange(1, 401, dtype=float))[:, None] * np.ones((1, 1))  # logsumexp of one column = itself
    assert etran_energy(big) == pytest.approx(np.log([1.0, 2.0]).mean())  # 5 * 400 // 1000 = 2 lowest


def test_gbc_two_spherical_classes():
    # 1-D classes {-1, 1} and {3, 5}: means 0 and 4, variance 1 each: D_B = 16 / 8 = 2 (log terms cancel), and
    # both ordered pairs count: GBC = -2 exp(-2).
    f = np.array([[-1.0], [1.0], [3.0], [5.0]])
    assert gbc(f, np.array([0, 0, 1, 1])) == pytest.approx(-2 * np.exp(-2.0), abs=1e-12)
    # Unequal variances, diagonal: {-1, 1} (var 1) vs {2, 6} (mean 4, var 4): avg 2.5,
    # D_B = 16 / (8 * 2.5) + 0.5 * (log 2.5 - 0.5 log 1 - 0.5 log 4).
    f2 = np.array([[-1.0], [1.0], [2.0], [6.0]])
    db = 16 / 20 + 0.5 * (np.log(2.5) - 0.5 * np.log(4.0))
    assert gbc(f2, np.array([0, 0, 1, 1]), gaussian="diagonal") == pytest.approx(-2 * np.exp(-db), abs=1e-12)


def test_transrate_one_dimension():
    # Centred z: class a = {0, 0}, class b = {-2, 2}; eps = 1. R(Z) = 1/2 log(1 + 8/4), R(Z_a) = 0,
    # R(Z_b) = 1/2 log(1 + 8/2); TransRate = R(Z) - (R(Z_a) + R(Z_b)) / 2.
    z = np.array([[0.0], [0.0], [-2.0], [2.0]])
    expected = 0.5 * np.log(3.0) - 0.25 * np.log(5.0)
    assert transrate(z + 7.0, np.array([0, 0, 1, 1]), eps=1.0) == pytest.approx(expected, abs=1e-12)


def test_coding_rate_uses_the_smaller_gram_matrix_correctly():
    for n, d in [(30, 8), (8, 30)]:
        z = rng.normal(size=(n, d))
        direct = 0.5 * np.linalg.slogdet(np.eye(d) + z.T @ z / (n * 1e-2))[1]  # the formula as written
        assert coding_rate(z, eps=1e-2) == pytest.approx(direct, rel=1e-10)


def test_sfda_one_dimension_by_hand():
    # Classes {-1.5, -0.5} and {0.5, 1.5}: means -1, 1, Sw = 0.25; in 1-D the shrinkage leaves Sw unchanged.
    x = np.array([[-1.5], [-0.5], [0.5], [1.5]])
    y = np.array([0, 0, 1, 1])

    def own_posterior(x, mu_a, mu_b, sw):  # LDA with equal priors, p(own class) for each point
        diff = (x * (mu_b - mu_a) - (mu_b**2 - mu_a**2) / 2) / sw  # logit of b over a
        return np.where(y == 1, sigmoid(diff), sigmoid(-diff))

    p = own_posterior(x[:, 0], -1.0, 1.0, 0.25)
    p = sigmoid(2 * p - 1)  # the code's second softmax over (p, 1 - p)
    other_mean = np.where(y == 1, -1.0, 1.0)
    mixed = p * x[:, 0] + (1 - p) * other_mean
    mu_a, mu_b = mixed[y == 0].mean(), mixed[y == 1].mean()
    sw = np.mean((mixed - np.where(y == 1, mu_b, mu_a)) ** 2)
    expected = own_posterior(mixed, mu_a, mu_b, sw).mean()
    assert sfda(x, y) == pytest.approx(expected, abs=1e-10)


def test_knn_loo_on_a_line():
    f = np.array([[0.0], [1.0], [10.0], [11.0]])
    assert knn_loo(f, np.array([0, 0, 1, 1]), k=1) == 1.0
    assert knn_loo(f, np.array([0, 1, 0, 1]), k=1) == 0.0  # every nearest neighbour has the other label
    # k = 2 at x = 0: neighbours 1 (label 1) and 2 (label 0) tie 1-1; the nearer (label 1) wins.
    g = np.array([[0.0], [1.0], [3.0], [20.0], [21.0]])
    labels = np.array([0, 1, 0, 2, 2])
    assert knn_loo(g, labels, k=2) == pytest.approx(2 / 5)  # only the two label-2 points are right
    with pytest.raises(ValueError, match="k=9"):
        knn_loo(g, labels, k=9)


def test_nleep_and_sfda_are_near_one_for_tight_clusters_and_near_chance_for_random_labels():
    f, y = _separable(n=400, d=6, c=4, margin=20.0)
    small, small_y = _separable(n=120, d=4, c=3, margin=20.0)  # N-LEEP's mixture is the slow part: keep it small
    # One component per cluster: p(y | z) is 1 for its class, so the score is 1.
    assert nleep(small, small_y, component_ratio=1) == pytest.approx(1.0, abs=1e-3)
    assert sfda(f, y) > 0.95
    shuffled = np.random.default_rng(1).permutation(y)
    assert sfda(f, shuffled) < 0.4
    assert etran_lda(f, y) > etran_lda(f, shuffled) + 0.3


@pytest.mark.parametrize("n,d", [(300, 100), (80, 150)])  # more rows than features, and a wide fc-like layer
def test_gbc_pca_is_scikit_learns_exact_pca(n, d):
    """GBC's 64-component PCA (the smaller Gram's eigenvectors) gives scikit-learn's exact PCA scores up to each
    component's sign, so GBC equals GBC on those scores (both Gaussians: signs do not change either)."""
    from sklearn.decomposition import PCA

    from src.transferability.discriminant import _pca

    y = rng.integers(0, 5, n)
    f = rng.normal(size=(n, d)) * np.linspace(3, 0.1, d) + 2 * np.eye(5, d)[y] + 1.0
    ref = PCA(n_components=64, svd_solver="full").fit_transform(f)
    ours = _pca(f, 64)
    signs = np.sign((ours * ref).sum(0))
    assert np.abs(ours * signs - ref).max() <= 1e-8 * np.abs(ref).max()
    for gaussian in ("spherical", "diagonal"):
        assert gbc(f, y, gaussian=gaussian) == pytest.approx(gbc(ref, y, gaussian=gaussian), rel=1e-9)


def test_single_class_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 2 target classes"):
        sfda(np.ones((5, 2)), np.zeros(5))


# --- invariances -----------------------------------------------------------------------------------------------

LABELLED = {"sfda": sfda, "etran_lda": etran_lda, "gbc": gbc, "transrate": transrate, "knn": knn_loo,
            "nleep": nleep, "logme": logme}


@pytest.mark.parametrize("name", sorted(LABELLED))
def test_label_permutation_invariance(name):
    f, y = _separable(n=120 if name == "nleep" else 240, d=12, c=4, margin=1.5)
    renamed = np.array([7, 3, 11, 5])[y]  # the same partition under other label names
    assert LABELLED[name](f, renamed) == pytest.approx(LABELLED[name](f, y), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("name", ["knn", "gbc", "logme"])
def test_feature_scaling_invariance(name):
    # k-NN: distances scale uniformly; GBC: D_B is a ratio of variances (above the 1e-4 floor); LogME: the
    # evidence at the optimum is unchanged when (alpha, beta) absorb the scale (up to the fixed point's tolerance).
    f, y = _separable(n=240, d=12, c=4, margin=1.5)
    assert LABELLED[name](f * 37.0, y) == pytest.approx(LABELLED[name](f, y), rel=1e-4)


def test_row_order_invariance():
    f, y = _separable(n=240, d=12, c=4, margin=1.5)
    perm = np.random.default_rng(3).permutation(len(y))
    for fn in (sfda, etran_lda, gbc, transrate, knn_loo, etran_energy):
        assert fn(f[perm], y[perm]) == pytest.approx(fn(f, y), rel=1e-9)


# --- LogME's eigendecomposition matches the SVD formula ----------------------------------------------------------

@pytest.mark.parametrize("n,d", [(400, 30), (50, 120), (200, 200)])
def test_logme_eigh_matches_the_svd_formula(n, d):
    y = rng.integers(0, 5, n)
    f = rng.normal(size=(n, d)) + 2 * np.eye(5, d)[y]
    assert logme(f, y) == pytest.approx(logme_svd(f, y), abs=1e-9)
    assert logme(torch.from_numpy(f), y) == pytest.approx(logme(f, y), abs=1e-9)  # the torch path


def test_logme_rank_deficient_features():
    f = rng.normal(size=(300, 6)) @ rng.normal(size=(6, 40))  # rank 6 in 40 dimensions
    y = rng.integers(0, 3, 300)
    assert logme(f, y) == pytest.approx(logme_svd(f, y), abs=1e-9)


def test_knn_torch_path_matches_numpy():
    f, y = _separable(n=120, d=8, c=3, margin=1.0)
    assert knn_loo(torch.from_numpy(f), y, chunk=50) == knn_loo(f, y)


@pytest.mark.parametrize("n, d", [(300, 40), (60, 200)])
def test_one_jobs_estimators_share_the_centred_gram_decomposition(n, d, monkeypatch):
    """Inside `spectra.shared()` (a job's estimates) H-score, GBC and TransRate factor the centred features' Gram
    matrix once between them, and score exactly what each computes alone; outside, nothing is kept."""
    from src.transferability import spectra

    rng = np.random.default_rng(3)
    y = np.arange(n) % 6
    f = rng.normal(size=(n, d)).astype(np.float32) + y[:, None] * 0.3
    alone = [est(f, y) for est in (hscore, lambda a, b: gbc(a, b, pca_dims=16), transrate)]
    calls = []
    eigh = np.linalg.eigh
    monkeypatch.setattr(np.linalg, "eigh", lambda m: calls.append(m.shape) or eigh(m))
    with spectra.shared():
        together = [est(f, y) for est in (hscore, lambda a, b: gbc(a, b, pca_dims=16), transrate)]
    assert calls == [(min(n, d), min(n, d))], "one decomposition of the smaller Gram matrix for the three"
    assert together == pytest.approx(alone, rel=1e-9)
    hscore(f, y)
    assert len(calls) == 2 and spectra._kept is None
