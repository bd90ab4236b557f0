import numpy as np
import pytest

from src.transferability import hscore, leep, logme, nce
from src.transferability.estimators import softmax

rng = np.random.default_rng(0)
C, N = 5, 500
y = np.repeat(np.arange(C), N // C)


def test_leep_and_nce_are_zero_for_a_perfect_source():
    perfect = np.eye(C)[y]  # the source head predicts the target class with certainty
    assert leep(perfect, y) == pytest.approx(0.0, abs=1e-9)
    assert nce(perfect, y) == pytest.approx(0.0, abs=1e-9)
    permuted = np.eye(C)[(y + 2) % C]  # a relabelling is just as good
    assert leep(permuted, y) == pytest.approx(0.0, abs=1e-9)


def test_leep_and_nce_are_log_one_over_c_for_an_uninformative_source():
    uniform = np.full((N, 7), 1 / 7)
    assert leep(uniform, y) == pytest.approx(np.log(1 / C), abs=1e-9)
    constant = np.eye(7)[np.zeros(N, dtype=int)]
    assert nce(constant, y) == pytest.approx(np.log(1 / C), abs=1e-9)
    random_probs = softmax(rng.normal(size=(N, 7)))
    assert leep(random_probs, y) == pytest.approx(np.log(1 / C), abs=0.05)


def test_no_nan_when_a_source_class_is_never_predicted():
    probs = np.eye(6)[rng.integers(0, 3, N)]  # source classes 3..5 never occur
    for value in (leep(probs, y), nce(probs, y)):
        assert np.isfinite(value)


def test_every_estimator_is_invariant_to_row_order():
    feats = rng.normal(size=(N, 20)) + np.eye(C, 20)[y] * 2
    probs = softmax(rng.normal(size=(N, 8)) + np.eye(C, 8)[y])
    perm = rng.permutation(N)
    assert logme(feats, y) == pytest.approx(logme(feats[perm], y[perm]), rel=1e-9)
    assert hscore(feats, y) == pytest.approx(hscore(feats[perm], y[perm]), rel=1e-9)
    assert leep(probs, y) == pytest.approx(leep(probs[perm], y[perm]), rel=1e-9)
    assert nce(probs, y) == pytest.approx(nce(probs[perm], y[perm]), rel=1e-9)


def test_logme_and_hscore_prefer_informative_features():
    informative = rng.normal(size=(N, 32)) + np.eye(C, 32)[y] * 3
    shuffled = rng.permutation(y)
    assert logme(informative, y) > logme(informative, shuffled) + 0.1
    assert hscore(informative, y) > hscore(informative, shuffled) * 5
    # Also when there are more dimensions than examples (LogME's d > n branch).
    wide = rng.normal(size=(60, 200)) + np.eye(3, 200)[np.arange(60) % 3] * 3
    assert logme(wide, np.arange(60) % 3) > logme(wide, rng.permutation(np.arange(60) % 3))


def test_frechet_distance_properties():
    from src.transferability.distance import frechet_distance

    a = rng.normal(size=(400, 6))
    b = rng.normal(size=(400, 6))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    shift = np.array([3.0, 0, 0, 0, 0, 0])
    assert frechet_distance(a, a + shift) == pytest.approx(9.0, rel=1e-4)  # same covariance: ||shift||^2
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-6)
    assert frechet_distance(a, 3 * b) > frechet_distance(a, b)
    wide = rng.normal(size=(50, 80))  # fewer rows than dims: still finite
    assert np.isfinite(frechet_distance(wide, wide + 1))


@pytest.mark.parametrize("n, d", [(300, 40), (60, 200)])
def test_hscore_equals_its_definition_with_the_pseudo_inverse(n, d):
    """tr(pinv(cov_f) cov_g) computed literally (d x d), against ours (the smaller Gram matrix's eigenvectors),
    with more rows than features and fewer (an fc layer on a small target: cov_f is singular)."""
    labels = rng.integers(0, 4, n)
    f = np.maximum(rng.normal(size=(n, d)) + rng.normal(size=(4, d))[labels], 0)
    fc = f - f.mean(0)
    cov_f = fc.T @ fc / n
    means = np.stack([fc[labels == k].mean(0) for k in range(4)])
    cov_g = sum((labels == k).sum() * np.outer(means[k], means[k]) for k in range(4)) / n
    literal = np.trace(np.linalg.pinv(cov_f, rcond=1e-10, hermitian=True) @ cov_g)
    assert hscore(f, labels) == pytest.approx(literal, rel=1e-8)


@pytest.mark.parametrize("preset, expected", [(None, "20"), ("28", "28")])
def test_openblas_workers_stop_spinning_unless_the_user_says_otherwise(preset, expected):
    """`import src` shortens OpenBLAS's idle spin before numpy loads (the estimators ran ~2x slower against spinning
    workers of another BLAS pool); a value already in the environment is kept."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    if preset is not None:
        env["OPENBLAS_THREAD_TIMEOUT"] = preset
    code = "import src, sys, os; assert 'numpy' not in sys.modules; print(os.environ['OPENBLAS_THREAD_TIMEOUT'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected


def test_the_regime_limits_of_sfda_and_hscore_hold_against_random_labels():
    """Past its declared limit an estimator scores random labels as highly as real ones (its value says nothing of
    the labels); well inside, it tells them apart. Gaussian class clusters, n = 400 images, C = 20 classes."""
    from src.transferability.estimators import ESTIMATORS, HSCORE_DEGENERATE, SFDA_SATURATED, hscore
    from src.transferability.discriminant import sfda

    rng = np.random.default_rng(0)
    n, c = 400, 20
    y = np.repeat(np.arange(c), n // c)

    def pair(d):
        x = rng.normal(0, 1, (n, d)) + 0.3 * rng.normal(0, 1, (c, d))[y]
        return x, rng.normal(0, 1, (n, d)), rng.permutation(y)

    x, xr, yr = pair(int(SFDA_SATURATED * (n - c)))
    assert sfda(x, y) > 0.99 and sfda(xr, yr) > 0.8  # real labels at the ceiling, random ones close to it
    assert ESTIMATORS["sfda"].outside(n, c, x.shape[1]) is not None
    x, xr, yr = pair(int(0.25 * (n - c)))
    assert sfda(x, y) - sfda(xr, yr) > 0.2 and ESTIMATORS["sfda"].outside(n, c, x.shape[1]) is None
    x, xr, yr = pair(int(HSCORE_DEGENERATE * (n - c)))
    assert hscore(xr, yr) > 0.9 * (c - 1) and ESTIMATORS["hscore"].outside(n, c, x.shape[1]) is not None
    x, xr, yr = pair(int(0.25 * (n - c)))
    assert hscore(x, y) > 1.5 * hscore(xr, yr) and ESTIMATORS["hscore"].outside(n, c, x.shape[1]) is None
