"""LinearPathClassifier as a scikit-learn estimator: scikit-learn's own estimator checks, and the public C-path API
(start_path -> CPath.solve, coef_init) that the probe's C search (src/probe/linear.fit_and_score) goes through."""

import numpy as np
import pytest
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import Normalizer
from sklearn.utils.estimator_checks import check_estimator

from src.probe.linear import fit_and_score
from src.probe.path import CPath, LinearPathClassifier

# Checks of scikit-learn's suite that this estimator is expected to fail, with the reason: none.
EXPECTED_FAILED_CHECKS: dict[str, str] = {}


def blobs(n=200, d=10, k=4, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    return rng.normal(size=(n, d)) + 1.5 * rng.normal(size=(k, d))[y] + 1.0, y


@pytest.mark.parametrize("loss", ["squared_hinge", "log"])  # log: predict_proba and its checks too
def test_scikit_learns_estimator_checks_pass(loss):
    check_estimator(LinearPathClassifier(loss=loss, device="cpu"), expected_failed_checks=EXPECTED_FAILED_CHECKS)


def test_a_path_solves_cs_in_any_order_to_the_cold_fits_and_leaves_the_estimator_fitted_there():
    x, y = blobs()
    x_val = x[:40]
    clf = LinearPathClassifier(tol=1e-7, device="cpu")
    path = clf.start_path(x, y, X_val=x_val)
    assert isinstance(path, CPath) and path.device == "cpu"
    for C in [0.01, 0.1, 1.0, 0.001]:  # upwards, then below the first (a search extending its grid downwards)
        info = path.solve(C)
        assert info["C"] == C and info["converged"] and clf.C == C and clf.path_[-1] is info
        assert np.allclose(info["val_decision"], clf.decision_function(x_val), rtol=1e-5, atol=1e-5)
        cold = LinearPathClassifier(C=C, tol=1e-7, device="cpu").fit(x, y)
        ref = cold.decision_function(x_val)
        assert np.abs(clf.decision_function(x_val) - ref).max() <= 1e-3 * np.abs(ref).max()
        assert info["objective"] == pytest.approx(cold.path_[0]["objective"], rel=1e-6)
    assert path.Cs == [0.01, 0.1, 1.0, 0.001] and len(clf.path_) == 4
    assert path.solve(0.1, warm_from=0.1)["n_iter"] <= 1  # from its own solution: nothing left to do
    with pytest.raises(ValueError, match=r"warm_from=5\.0 has not been solved; solved: \[0\.01, 0\.1, 1\.0, 0\.001\]"):
        path.solve(10.0, warm_from=5.0)


def test_fit_path_is_the_same_walk_warm_started_from_the_previous_c():
    x, y = blobs(seed=1)
    Cs = [0.01, 0.1, 1.0]
    infos = LinearPathClassifier(tol=1e-7, device="cpu").fit_path(x, y, Cs, X_val=x)
    path = LinearPathClassifier(tol=1e-7, device="cpu").start_path(x, y, X_val=x)
    walked = [path.solve(Cs[0], warm_from=None)] + [path.solve(c, warm_from=p) for p, c in zip(Cs, Cs[1:])]
    for a, b in zip(infos, walked):
        assert a["n_iter"] == b["n_iter"] and a["objective"] == b["objective"]
        assert np.array_equal(a["val_decision"], b["val_decision"])


def test_coef_init_starts_the_fit_from_given_parameters():
    x, y = blobs(seed=2)
    first = LinearPathClassifier(C=1.0, tol=1e-6, device="cpu").fit(x, y)
    again = LinearPathClassifier(C=1.0, tol=1e-6, device="cpu").fit(x, y, coef_init=first.coef_,
                                                                    intercept_init=first.intercept_)
    assert again.n_iter_ <= 1 < first.n_iter_
    warm = LinearPathClassifier(C=1.0, tol=1e-6, device="cpu", warm_start=True)
    warm.coef_, warm.intercept_ = first.coef_, first.intercept_
    warm.fit(x, y)  # warm_start: the same start, the same result
    assert np.array_equal(warm.coef_, again.coef_) and np.array_equal(warm.intercept_, again.intercept_)
    with pytest.raises(ValueError, match=r"coef_init has shape \(4, 3\); expected \(4, 10\)"):
        LinearPathClassifier(device="cpu").fit(x, y, coef_init=np.zeros((4, 3)))


def test_the_probes_c_search_walks_one_public_c_path(monkeypatch):
    """fit_and_score solves every C it searched through CPath.solve on the train split (one path, warm starts),
    and the val scores it records are those of the path's val decisions."""
    solved, paths, solve = {}, [], CPath.solve

    def spy(self, C, warm_from="nearest"):
        info = solve(self, C, warm_from)
        solved[C] = self.estimator.labels(info["val_decision"])
        paths.append(self)
        return info

    monkeypatch.setattr(CPath, "solve", spy)
    x, y = blobs(n=300, d=20, k=5, seed=3)
    splits = {"train": (x[:200], y[:200]), "val": (x[200:250], y[200:250]), "test": (x[250:], y[250:])}
    pipe = Pipeline([("norm", Normalizer()), ("clf", LinearPathClassifier(device="cpu"))])
    out = fit_and_score(pipe, splits, [1e-3, 1e-2, 1e-1, 1.0, 10.0], "accuracy", patience=2)
    assert sorted(solved) == out["C_grid"] and len(set(map(id, paths))) == 1
    assert [p["C"] for p in out["probe_path"]] == out["C_grid"]
    assert all("val_decision" not in p and "coef" not in p for p in out["probe_path"])
    for c, pred in solved.items():
        assert out["val_scores"][str(c)] == pytest.approx(np.mean(pred == splits["val"][1]), abs=1e-12)


def test_the_probe_chooses_on_val_with_the_train_splits_preprocessing_and_refits_on_train_and_val():
    """The scaler is fit on the train split only (val is shifted here, so one fit on val would score other val
    decisions); the chosen C is the first best (the smallest of tied ones); the final pipeline is the fit at that C
    on train + val."""
    from sklearn.preprocessing import StandardScaler

    x, y = blobs(n=400, d=10, k=3, seed=4)
    x_va = x[200:300] + 2.0
    splits = {"train": (x[:200], y[:200]), "val": (x_va, y[200:300]), "test": (x[300:], y[300:])}
    grid = [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0]

    def pipe(C=1.0):
        return Pipeline([("norm", StandardScaler()), ("clf", LinearPathClassifier(C=C, tol=1e-8, device="cpu"))])

    out = fit_and_score(p := pipe(), splits, grid, "accuracy")
    scores = {float(c): s for c, s in out["val_scores"].items()}
    for c, s in scores.items():
        assert s == pytest.approx(pipe(c).fit(*splits["train"]).score(*splits["val"]), abs=1 / 100 + 1e-9), c
    assert out["best_C"] == min(c for c, s in scores.items() if s == max(scores.values()))
    refit = pipe(out["best_C"]).fit(np.concatenate([x[:200], x_va]), y[:300])
    ref = refit.decision_function(splits["test"][0])
    assert np.abs(p.decision_function(splits["test"][0]) - ref).max() <= 1e-3 * np.abs(ref).max()
    assert out["target_score"] == refit.score(*splits["test"])
    # classes far apart: every C ties on val, and the strongest regularisation is the one chosen
    xs, ys = blobs(n=300, d=10, k=3, seed=4)
    xs = 3 * xs
    apart = {"train": (xs[:150], ys[:150]), "val": (xs[150:220], ys[150:220]), "test": (xs[220:], ys[220:])}
    tied = fit_and_score(Pipeline([("clf", LinearPathClassifier(device="cpu"))]), apart, grid, "accuracy")
    assert len(set(tied["val_scores"].values())) == 1 and tied["best_C"] == min(tied["C_grid"]) == grid[0]


def test_the_probes_walk_is_search_c_with_the_val_noise_and_the_zero_model_guard():
    """fit_and_score stops its walk as search_C does given the val split's size (its noise rules) and `learned`
    read off the path's objectives. The data (a breast-cancer sample, raw features) are a case where both decide:
    the zero model's val score at C = 1e-6 beats every learned C, and without the guard (or the noise allowance) the
    walk would end 3 Cs later."""
    from sklearn.datasets import load_breast_cancer

    from src.probe.linear import NULL_DROP, search_C

    x, y = load_breast_cancer(return_X_y=True)
    rng = np.random.default_rng(8)
    tr = np.concatenate([rng.choice(np.flatnonzero(y == k), 8 + (k == 0), replace=False) for k in (0, 1)])
    rest = np.setdiff1d(np.arange(len(y)), tr)
    va = rng.choice(rest, 300, replace=False)
    te = np.setdiff1d(rest, va)
    splits = {"train": (x[tr], y[tr]), "val": (x[va], y[va]), "test": (x[te], y[te])}
    grid = [10.0**e for e in np.arange(-6, 1.01, 0.5)]

    def run(patience):
        return fit_and_score(Pipeline([("clf", LinearPathClassifier(device="cpu"))]), splits, grid, "accuracy",
                             patience=patience)

    full = run(None)  # every C of the grid: the val scores and objectives a stopping walk sees (the same path)
    scores = {float(c): s for c, s in full["val_scores"].items()}
    objective = {p["C"]: p["objective"] for p in full["probe_path"]}
    learned = lambda c: objective[c] < (1 - NULL_DROP) * objective[min(objective)]  # noqa: E731

    def replay(**kw):
        return list(search_C(scores.__getitem__, grid, 3, **kw))

    walked = run(3)["C_grid"]
    assert walked == replay(n_val=len(va), learned=learned)
    assert len(replay(n_val=len(va))) < len(walked) and len(replay(learned=learned)) < len(walked)


def test_a_fit_short_of_tol_says_so_and_the_probe_counts_it():
    x, y = blobs(seed=5)
    short = LinearPathClassifier(C=10.0, tol=1e-12, max_iter=1, device="cpu").fit(x, y)
    assert short.converged_ is False and short.path_[0]["converged"] is False
    splits = {"train": (x[:120], y[:120]), "val": (x[120:160], y[120:160]), "test": (x[160:], y[160:])}
    pipe = Pipeline([("clf", LinearPathClassifier(tol=1e-12, max_iter=1, device="cpu"))])
    assert fit_and_score(pipe, splits, [0.1, 1.0], "accuracy")["convergence_warnings"] >= 2


def test_a_decision_of_exactly_zero_is_the_first_class_and_a_bad_intercept_init_is_refused():
    """predict() as scikit-learn's linear classifiers: a binary decision value > 0 is the second class, exactly 0
    the first; an intercept_init of the wrong shape is one clear error (it would broadcast into another start)."""
    x, y = blobs(seed=6)
    binary = LinearPathClassifier(device="cpu").fit(x, y % 2)
    assert binary.labels(np.array([0.0, 1e-12, -1e-12])).tolist() == [0, 1, 0]
    first = LinearPathClassifier(device="cpu").fit(x, y)
    with pytest.raises(ValueError, match=r"intercept_init has shape \(1,\); expected \(4,\)"):
        LinearPathClassifier(device="cpu").fit(x, y, coef_init=first.coef_, intercept_init=np.zeros(1))
