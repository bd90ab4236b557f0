"""The C-path solver (src/probe/path.py) against converged scikit-learn references, and the C search protocol."""

import json

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.svm import LinearSVC

from src.probe.linear import search_C
from src.probe.path import LinearPathClassifier


def blobs(n=300, d=16, k=4, seed=0):
    """Overlapping classes with a non-zero mean (so the intercept matters)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    x = rng.normal(size=(n, d)) + 0.8 * rng.normal(size=(k, d))[y] + 1.0
    return x, y


@pytest.fixture(params=["newton-primal", "lbfgs"])
def solver(request, monkeypatch):
    """Both direction methods of the path solver on the same problems: Newton (small problems: the default here,
    d = 16) and L-BFGS (large ones, e.g. P4's 10,000 x 4,096 x 100)."""
    monkeypatch.setattr("src.probe.path.NEWTON_FLOPS", float("inf") if request.param != "lbfgs" else 0.0)
    return request.param


def svm_objective(coef, intercept, x, y, C, classes, intercept_scaling=None):
    """LinearSVC's primal (one-vs-rest squared hinge); intercept_scaling set: liblinear's regularised intercept."""
    if len(classes) > 2:
        s = np.where(y[:, None] == classes[None, :], 1.0, -1.0)
    else:
        s = np.where(y == classes[1], 1.0, -1.0)[:, None]
    margin = np.maximum(0, 1 - s * (x @ coef.T + intercept))
    reg = (coef**2).sum() + (0 if intercept_scaling is None else ((intercept / intercept_scaling) ** 2).sum())
    return 0.5 * reg + C * (margin**2).sum()


@pytest.mark.parametrize("C", [0.01, 1.0, 10.0])
def test_squared_hinge_matches_linearsvc_with_its_regularised_intercept(C, solver):
    x, y = blobs()
    ref = LinearSVC(C=C, tol=1e-10, max_iter=100000, dual=True).fit(x, y)
    ours = LinearPathClassifier(C=C, intercept_scaling=1.0, tol=1e-7, device="cpu").fit(x, y)
    assert ours.converged_ and ours.path_[0]["method"] == solver
    f_ours = svm_objective(ours.coef_, ours.intercept_, x, y, C, ours.classes_, 1.0)
    f_ref = svm_objective(ref.coef_, ref.intercept_, x, y, C, ref.classes_, 1.0)
    assert f_ours <= f_ref * (1 + 1e-6)
    scale = np.abs(ref.decision_function(x)).max()
    assert np.abs(ours.decision_function(x) - ref.decision_function(x)).max() <= 1e-3 * scale
    assert np.abs(ours.coef_ - ref.coef_).max() <= 1e-3 * np.abs(ref.coef_).max()
    assert (ours.predict(x) == ref.predict(x)).mean() >= 0.99


@pytest.mark.parametrize("C", [0.01, 1.0])
def test_squared_hinge_with_free_intercept_is_optimal(C, solver):
    """Default: intercept not regularised. Its objective is at most LinearSVC's solution's (which is feasible for
    it), and the gradient of the exact float64 objective vanishes at our solution."""
    x, y = blobs(seed=1)
    ours = LinearPathClassifier(C=C, tol=1e-7, device="cpu").fit(x, y)
    ref = LinearSVC(C=C, tol=1e-10, max_iter=100000, dual=True).fit(x, y)
    assert svm_objective(ours.coef_, ours.intercept_, x, y, C, ours.classes_) <= \
        svm_objective(ref.coef_, ref.intercept_, x, y, C, ref.classes_) + 1e-9
    s = np.where(y[:, None] == ours.classes_[None, :], 1.0, -1.0)
    gz = -2 * C * s * np.maximum(0, 1 - s * (x @ ours.coef_.T + ours.intercept_))
    grad_w, grad_b = ours.coef_ + gz.T @ x, gz.sum(0)
    assert np.abs(grad_w).max() <= 1e-4 * C * len(x) and np.abs(grad_b).max() <= 1e-4 * C * len(x)
    assert (ours.predict(x) == ref.predict(x)).mean() >= 0.97


@pytest.mark.parametrize("scaling", [None, 1.0])
@pytest.mark.parametrize("loss", ["squared_hinge", "log"])
def test_kernel_newton_on_wide_features_matches_lbfgs(loss, scaling, monkeypatch):
    """More features than rows (an fc layer on a small target): Newton through the n x n kernel reaches the same
    optimum as L-BFGS, in a few iterations; with liblinear's regularised intercept, LinearSVC's."""
    x, y = blobs(n=60, d=150, k=3, seed=7)
    fit = dict(loss=loss, C=10.0, intercept_scaling=scaling, tol=1e-8, device="cpu")
    y2 = np.stack([y == 0, y == 1], 1).astype(int) if loss == "log" else y  # log: per-label sigmoids (separable)
    ours = LinearPathClassifier(**fit).fit(x, y2)
    assert ours.converged_ and ours.path_[0]["method"] == "newton-kernel" and ours.n_iter_ <= 20
    monkeypatch.setattr("src.probe.path.NEWTON_FLOPS", 0.0)
    ref = LinearPathClassifier(**fit).fit(x, y2)
    assert ref.path_[0]["method"] == "lbfgs" and ours.path_[0]["objective"] <= ref.path_[0]["objective"] * (1 + 1e-6)
    dec = ref.decision_function(x)
    assert np.abs(ours.decision_function(x) - dec).max() <= 1e-4 * np.abs(dec).max()
    if loss == "squared_hinge" and scaling is None:  # the free intercept (Schur complement): exact optimality
        s = np.where(y[:, None] == ours.classes_[None, :], 1.0, -1.0)
        gz = -2 * 10.0 * s * np.maximum(0, 1 - s * (x @ ours.coef_.T + ours.intercept_))
        bound = 1e-6 * 10.0 * len(x)  # scikit-learn's tol convention: gradient / (C n)
        assert np.abs(ours.coef_ + gz.T @ x).max() <= bound and np.abs(gz.sum(0)).max() <= bound
    if loss == "squared_hinge" and scaling is not None:
        svc = LinearSVC(C=10.0, tol=1e-10, max_iter=100000, dual=True).fit(x, y)
        assert svm_objective(ours.coef_, ours.intercept_, x, y, 10.0, ours.classes_, 1.0) <= \
            svm_objective(svc.coef_, svc.intercept_, x, y, 10.0, svc.classes_, 1.0) * (1 + 1e-6)


def test_active_set_newton_along_a_path_matches_lbfgs(monkeypatch):
    """Squared hinge where a full kernel Newton step costs too much ("active" mode): L-BFGS while many rows are
    inside the margin (small C), kernel Newton on just those rows once few are; every C reaches L-BFGS's optimum."""
    x, y = blobs(n=60, d=150, k=3, seed=7)
    Cs = [1e-2, 1e-1, 10.0, 1e3]
    # 3 x 60^3 (a full kernel step) > 3e5 >= 4 n (d + 1) k: Newton steps only with <= 39 rows inside the margin
    monkeypatch.setattr("src.probe.path.NEWTON_FLOPS", 3e5)
    ours = LinearPathClassifier(tol=1e-8, device="cpu")
    path = ours.fit_path(x, y, Cs)
    methods = [p["method"] for p in path]
    assert methods[0].startswith("lbfgs") and methods[-1] == "newton-kernel", methods
    monkeypatch.setattr("src.probe.path.NEWTON_FLOPS", 0.0)
    ref = LinearPathClassifier(tol=1e-8, device="cpu")
    ref_path = ref.fit_path(x, y, Cs)
    assert all(p["method"] == "lbfgs" for p in ref_path)
    for p, r in zip(path, ref_path):
        assert p["converged"] and p["objective"] <= r["objective"] * (1 + 1e-6) + 1e-12
    s = np.where(y[:, None] == ours.classes_[None, :], 1.0, -1.0)  # exact optimality at the last C
    gz = -2 * Cs[-1] * s * np.maximum(0, 1 - s * (x @ ours.coef_.T + ours.intercept_))
    bound = 1e-6 * Cs[-1] * len(x)
    assert np.abs(ours.coef_ + gz.T @ x).max() <= bound and np.abs(gz.sum(0)).max() <= bound


def test_primal_newton_over_the_margin_rows_matches_the_full_product_along_a_path(monkeypatch):
    """The primal Newton Hessian summed over each column's rows inside the margin only (once at most 2/3 of them
    are) equals the product over all rows, and a path using it reaches the same optimum at every C as one that
    sums over all rows; a tight tol (float32 stalls short of it) ends in a few float64 steps, not hundreds."""
    import torch

    from src.probe.path import PathSolver

    x, y = blobs(n=240, d=12, k=4, seed=3)
    Cs = [1e-3, 1e-1, 10.0, 1e3]
    gathered = []

    def product_over_all_rows(self, w):
        return (self._xq[None] * w.T[:, None, :]) @ self._xq.T

    def spy(self, w, margin_rows=PathSolver._curvature_gram):
        gathered.append(int((w > 0).sum(0).max()) <= 2 * self.n // 3)
        out = margin_rows(self, w)
        assert torch.allclose(out, product_over_all_rows(self, w), rtol=1e-10, atol=1e-12)
        return out

    monkeypatch.setattr(PathSolver, "_curvature_gram", spy)
    ours = LinearPathClassifier(tol=1e-8, device="cpu")
    path = ours.fit_path(x, y, Cs)
    assert all(p["method"] == "newton-primal" for p in path) and any(gathered) and not all(gathered)
    assert all(p["converged"] and p["n_iter"] <= 20 for p in path), [p["n_iter"] for p in path]
    monkeypatch.setattr(PathSolver, "_curvature_gram", product_over_all_rows)
    ref_path = LinearPathClassifier(tol=1e-8, device="cpu").fit_path(x, y, Cs)
    for p, r in zip(path, ref_path):
        assert r["converged"] and abs(p["objective"] - r["objective"]) <= 1e-7 * abs(r["objective"])
    s = np.where(y[:, None] == ours.classes_[None, :], 1.0, -1.0)  # exact optimality at the last C
    gz = -2 * Cs[-1] * s * np.maximum(0, 1 - s * (x @ ours.coef_.T + ours.intercept_))
    bound = 1e-6 * Cs[-1] * len(x)
    assert np.abs(ours.coef_ + gz.T @ x).max() <= bound and np.abs(gz.sum(0)).max() <= bound


@pytest.mark.parametrize("C", [0.01, 1.0, 100.0])
def test_log_loss_matches_logisticregression(C):
    x, y = blobs(seed=2)
    ref = LogisticRegression(C=C, tol=1e-10, max_iter=10000).fit(x, y)
    ours = LinearPathClassifier(loss="log", C=C, tol=1e-8, device="cpu").fit(x, y)
    assert ours.converged_
    assert np.abs(ours.coef_ - ref.coef_).max() <= 1e-4 * max(1.0, np.abs(ref.coef_).max())
    assert np.abs(ours.predict_proba(x) - ref.predict_proba(x)).max() <= 1e-5
    assert (ours.predict(x) == ref.predict(x)).all()


def test_binary_targets_are_one_problem_like_scikit_learn(solver):
    x, y = blobs(k=2, seed=3)
    y = np.where(y == 1, "yes", "no")
    svm = LinearPathClassifier(C=1.0, intercept_scaling=1.0, tol=1e-8, device="cpu").fit(x, y)
    ref = LinearSVC(C=1.0, tol=1e-10, max_iter=100000, dual=True).fit(x, y)
    assert svm.coef_.shape == ref.coef_.shape == (1, x.shape[1])
    ref_dec = ref.decision_function(x)
    assert np.abs(svm.decision_function(x) - ref_dec).max() <= 1e-3 * np.abs(ref_dec).max()
    log = LinearPathClassifier(loss="log", C=1.0, tol=1e-8, device="cpu").fit(x, y)
    ref = LogisticRegression(C=1.0, tol=1e-10, max_iter=10000).fit(x, y)
    assert np.abs(log.predict_proba(x) - ref.predict_proba(x)).max() <= 1e-5
    assert set(log.predict(x)) <= {"yes", "no"}


def test_multilabel_is_one_binary_problem_per_label(solver):
    x, _ = blobs(seed=4)
    rng = np.random.default_rng(4)
    y = (x[:, :3] + 0.5 * rng.normal(size=(len(x), 3)) > 1.0).astype(int)
    ours = LinearPathClassifier(loss="log", C=0.5, tol=1e-8, device="cpu").fit(x, y)
    ref = OneVsRestClassifier(LogisticRegression(C=0.5, tol=1e-10, max_iter=10000)).fit(x, y)
    assert np.abs(ours.decision_function(x) - ref.decision_function(x)).max() <= 1e-4
    assert ours.predict(x).shape == y.shape


def test_the_path_reaches_the_same_solutions_as_cold_fits(solver):
    x, y = blobs(seed=5)
    Cs = [0.001, 0.01, 0.1, 1.0, 10.0]
    path = LinearPathClassifier(tol=1e-7, device="cpu")
    infos = path.fit_path(x, y, Cs, X_val=x[:50])
    assert [i["C"] for i in infos] == Cs and all(i["converged"] for i in infos)
    for C, info in zip(Cs, infos):
        cold = LinearPathClassifier(C=C, tol=1e-7, device="cpu").fit(x, y)
        ref = cold.decision_function(x[:50])
        assert np.abs(info["val_decision"] - ref).max() <= 1e-3 * np.abs(ref).max()
        assert info["objective"] == pytest.approx(cold.path_[0]["objective"], rel=1e-6)
    # Warm starts: the whole path costs fewer iterations than cold fits at each C.
    cold_iters = sum(LinearPathClassifier(C=C, tol=1e-7, device="cpu").fit(x, y).n_iter_ for C in Cs)
    assert sum(i["n_iter"] for i in infos) < cold_iters


def test_warm_start_refit_starts_from_the_given_solution(solver):
    x, y = blobs(seed=6)
    m = LinearPathClassifier(C=1.0, tol=1e-6, device="cpu").fit(x, y)
    cold = m.n_iter_
    m.set_params(warm_start=True).fit(x, y)
    assert m.n_iter_ <= 1 < cold


def test_bad_parameters_are_one_clear_error_before_any_work():
    """scikit-learn's parameter validation (`_parameter_constraints`): one line naming the parameter, the valid
    values and the bad one, from fit and from start_path."""
    from sklearn.utils._param_validation import InvalidParameterError

    with pytest.raises(InvalidParameterError, match=r"'loss' parameter of LinearPathClassifier must be a str among "
                                                    r"\{.*'squared_hinge'.*\}\. Got 'hinge' instead"):
        LinearPathClassifier(loss="hinge").fit(*blobs())
    with pytest.raises(InvalidParameterError,
                       match=r"'C' parameter .* must be a float in the range \(0\.0, inf\)\. Got 0\.0 instead"):
        LinearPathClassifier(C=0.0).start_path(*blobs())


def peaked(at: float):
    """A val score peaked at log10(C) = at, recording the order Cs were asked for."""
    asked = []

    def val_score(c):
        asked.append(c)
        return -abs(np.log10(c) - at)

    return val_score, asked


def test_search_extends_the_grid_past_a_best_edge_until_it_is_interior():
    val_score, asked = peaked(2.2)
    scores = search_C(val_score, [0.01, 0.1, 1.0])
    assert np.allclose(list(scores), [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0])
    assert max(scores, key=scores.get) == pytest.approx(100.0)
    val_score, _ = peaked(-4.3)
    scores = search_C(val_score, [0.01, 0.1, 1.0], bounds=(1e-6, 1e6))
    assert min(scores) == pytest.approx(1e-5) and max(scores, key=scores.get) == pytest.approx(1e-4)
    flat_then_peaked = lambda c: max(-abs(np.log10(c) - 1.1), -2.0)  # noqa: E731 - flat below C = 0.1
    scores = search_C(flat_then_peaked, [1e-4, 1e-3])
    assert max(scores, key=scores.get) == pytest.approx(10.0) and max(scores) == pytest.approx(100.0)
    val_score, _ = peaked(9.0)  # bounded: stops at the bound even though the edge is still the best
    assert max(search_C(val_score, [1.0, 10.0], bounds=(1e-6, 1e6))) == pytest.approx(1e6)


def test_the_grid_is_extended_only_while_its_edge_is_the_best_by_its_own_step_and_within_patience():
    """Downwards only while the bottom C is the unique best (a tie keeps the first best, the strongest
    regularisation, and asks for no smaller C); upwards by the top edge's own step (a grid need not be evenly
    spaced); and an upward extension along a flat top stops after `patience` ties, as the walk does."""
    top_ties = lambda c: 1.0 if c <= 0.1 else 0.5  # noqa: E731  (the two smallest Cs tie at the best)
    assert list(search_C(top_ties, [0.01, 0.1, 1.0])) == [0.01, 0.1, 1.0]
    val_score, _ = peaked(4.0)
    scores = search_C(val_score, [0.01, 0.1, 10.0])  # the top step is x100
    assert np.allclose(list(scores), [0.01, 0.1, 10.0, 1e3, 1e5])
    risen_flat = lambda c: 0.1 if c < 1e-2 else 0.9  # noqa: E731
    scores = search_C(risen_flat, [1e-3, 1e-2, 0.1], patience=2)
    assert np.allclose(list(scores), [1e-3, 1e-2, 0.1, 1.0, 10.0])  # two ties past the grid's top, then it stops


def test_search_stops_after_patience_cs_without_improvement():
    val_score, asked = peaked(-1.0)
    grid = [10.0**e for e in range(-4, 5)]
    scores = search_C(val_score, grid, patience=2)
    assert np.allclose(asked, [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0])
    assert list(scores) == asked
    flat_then_peaked = lambda c: max(-abs(np.log10(c) - 1.0), -3.0)  # noqa: E731 - ties do not use up patience
    assert max(search_C(flat_then_peaked, grid, patience=2)) == pytest.approx(1e3)


def test_result_records_an_edge_extended_grid(make_cfg, tmp_path):
    """Acceptance (issue 15 item 4): the val-best C at the edge of a short grid extends the grid, and
    result.json records every C searched, its val score and the solver's convergence."""
    from src.main import execute

    cfg = make_cfg("classifier.C_grid=[1e-6,3e-6]", "classifier.patience=null")
    execute(cfg, tmp_path)
    m = json.loads((tmp_path / "result.json").read_text())["metrics"]
    assert m["C_grid"][:2] == pytest.approx([1e-6, 3e-6]) and len(m["C_grid"]) > 2
    assert m["C_grid_extended"] == pytest.approx(m["C_grid"][2:])
    assert m["best_C"] in m["C_grid"] and len(m["val_scores"]) == len(m["C_grid"])
    top = m["C_grid"][-1]  # the extension ended because the top C was no longer the best (or at the bound)
    assert m["val_scores"][str(top)] < max(m["val_scores"].values()) or top >= 1e6 / 3
    assert [p["C"] for p in m["probe_path"]] == pytest.approx(m["C_grid"])
    assert all({"n_iter", "grad_max", "converged", "val_score"} <= set(p) for p in m["probe_path"])


def test_a_noisy_plateau_at_small_c_does_not_stop_the_walk():
    """The digits case: val 0.64 at the plateau's best, wiggles within noise below it, then the rise at large C."""
    plateau = {1e-6: 0.613, 1e-5: 0.64, 1e-4: 0.613, 1e-3: 0.613, 1e-2: 0.62}
    curve = lambda c: plateau.get(c, min(0.97, 0.62 + 0.1 * np.log10(c / 1e-2)))  # noqa: E731
    grid = [10.0**e for e in range(-6, 6)]
    scores = search_C(curve, grid, patience=3, n_val=300)  # SE at 0.64 with 300 val images: 0.028
    assert max(scores, key=scores.get) >= 100.0 and max(scores.values()) == pytest.approx(0.97)
    # Without the noise allowance the same walk stops on the plateau (the old behaviour).
    assert max(search_C(curve, grid, patience=3), key=search_C(curve, grid, patience=3).get) == pytest.approx(1e-5)


def test_a_wiggle_of_the_plateau_is_not_a_rise():
    """The digits case with a first score one val image lower (0.61): 0.64 is within two SEs of it, so the walk
    still goes on to the rise at large C (with a one-SE threshold it stopped at C = 1e-2, best 0.64)."""
    plateau = {1e-6: 0.61, 1e-5: 0.64, 1e-4: 0.613, 1e-3: 0.613, 1e-2: 0.62}
    curve = lambda c: plateau.get(c, min(0.97, 0.62 + 0.1 * np.log10(c / 1e-2)))  # noqa: E731
    scores = search_C(curve, [10.0**e for e in range(-6, 6)], patience=3, n_val=300)
    assert max(scores.values()) == pytest.approx(0.97)


def test_a_flat_top_after_the_rise_stops_the_walk():
    """Once the val curve has risen above its small-C level, Cs that only tie the best count against patience: a
    saturated curve (1.0 from C=1 on) is not walked to the grid's end, where each C costs the most iterations."""
    curve = lambda c: 0.1 if c < 1e-2 else min(1.0, 0.5 + 0.25 * np.log10(c / 1e-2))  # noqa: E731
    grid = [10.0**e for e in range(-6, 6)]
    asked = []
    scores = search_C(lambda c: asked.append(c) or curve(c), grid, patience=3, n_val=200)
    assert max(scores, key=lambda c: (scores[c], -c)) == pytest.approx(1.0)
    assert max(asked) == pytest.approx(1e3)  # 1.0 at C=1, then three ties
    # A plateau at small C (ties at its level) is still walked through: the rise comes later.
    late = lambda c: 0.1 if c < 10 else 0.8  # noqa: E731
    assert max(search_C(late, grid, patience=3, n_val=200).items(), key=lambda kv: (kv[1], -kv[0]))[0] == 10.0


def test_a_clear_fall_past_the_peak_ends_the_walk_at_once():
    """P4's curve (2,000 val images, SE 0.0097 at 0.25): after the peak at C=0.316 the next C falls 4.3 SEs, more
    than FALL = 3: the walk ends there instead of spending patience on two more (costly, large) Cs. A fall within
    3 SEs only counts against patience as before."""
    curve = {1e-2: 0.19, 0.0316: 0.234, 0.1: 0.2475, 0.316: 0.25, 1.0: 0.208, 3.16: 0.2265, 10.0: 0.223,
             31.6: 0.26}
    grid = sorted(curve)
    asked = []
    scores = search_C(lambda c: asked.append(c) or curve[c], grid, patience=3, n_val=2000)
    assert asked[-1] == 1.0 and max(scores, key=scores.get) == 0.316
    gentle = {**curve, 1.0: 0.235}  # 1.5 SEs below the best: the walk goes on (patience 3: up to C=10)
    asked = []
    search_C(lambda c: asked.append(c) or gentle[c], grid, patience=3, n_val=2000)
    assert asked[-1] == 10.0
    walked = search_C(lambda c: curve.get(c, 0.2), grid, patience=None, n_val=2000)  # patience=None: walk it all
    assert set(grid) <= set(walked)


@pytest.mark.parametrize("metric", ["accuracy", "mean_per_class_accuracy"])
def test_val_scores_on_the_path_equal_scikit_learns_metrics(metric):
    """score_decisions computes the single-label val metrics directly (speed); they equal scikit-learn's, with
    string labels, unbalanced classes and a class the classifier never predicts."""
    from src.probe.linear import SCORERS, score_decisions

    rng = np.random.default_rng(3)
    names = np.array(["cat", "dog", "emu", "fox"])
    y = names[rng.choice(4, 300, p=[0.5, 0.3, 0.15, 0.05])]
    clf = LinearPathClassifier(tol=1e-6, device="cpu").fit(rng.normal(size=(300, 5)), y)
    scores = rng.normal(size=(300, 4)) * [1, 1, 1, 0.01] + [0, 0, 0, -5]  # "fox" never predicted
    assert score_decisions(metric, clf, scores, y) == pytest.approx(SCORERS[metric](y, clf.labels(scores)), abs=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_skinny_products_take_the_faster_orientation_with_the_same_values(dtype):
    """`_mm` (the solver's feature GEMMs) computes b^T a^T for few columns / float64 (MKL's cliff below 12 columns):
    the same product either way, for X @ D and X^T G through the stored transpose."""
    import torch

    from src.probe.path import _mm

    g = torch.Generator().manual_seed(0)
    xt = torch.randn(96, 300, generator=g, dtype=getattr(torch, dtype))  # d x n, as the solver stores X
    for cols in (1, 10, 11, 12, 40):
        d = torch.randn(96, cols, generator=g, dtype=xt.dtype)
        gz = torch.randn(300, cols, generator=g, dtype=xt.dtype)
        tol = dict(rtol=1e-5, atol=1e-5) if dtype == "float32" else dict(rtol=1e-12, atol=1e-12)
        assert torch.allclose(_mm(xt.T, d), xt.T @ d, **tol) and _mm(xt.T, d).shape == (300, cols)
        assert torch.allclose(_mm(xt, gz), xt @ gz, **tol) and _mm(xt, gz).shape == (96, cols)


def test_lbfgs_directions_on_shrinking_active_columns_match_a_fresh_pick():
    """The L-BFGS memory re-picks its pairs from the columns it already picked when columns only converged: the
    directions equal those of a memory that picks every pair afresh."""
    import torch

    from src.probe.path import _Memory

    gen = torch.Generator().manual_seed(0)
    d, k = 7, 6

    def memory():
        m = _Memory(size=4, red=lambda v: v.sum(0))
        for _ in range(5):
            s = torch.randn(d, k, generator=gen, dtype=torch.float64)
            m.push(s, s * 2.0 + 0.1 * torch.randn(d, k, generator=gen, dtype=torch.float64))
        return m

    g = torch.randn(d, k, dtype=torch.float64, generator=gen)
    state = gen.get_state()
    walked = memory()
    gen.set_state(state)
    fresh = memory()
    for cols in ([0, 1, 2, 4, 5], [0, 2, 5], [2, 5], [1, 2, 5]):  # shrinking, then a column back
        cols = torch.tensor(cols)
        fresh.cols = None  # forces a pick from every pair
        assert torch.allclose(walked.direction(g, cols), fresh.direction(g, cols), rtol=0, atol=0)


def _count_blocked_products(monkeypatch) -> list:
    """Counts the CPU-blocked X^T G products (torch.mm with out=, used only by PathSolver._xt_mm's blocks)."""
    import torch

    calls, mm = [], torch.mm
    monkeypatch.setattr(torch, "mm", lambda *a, **kw: (calls.append(1) if "out" in kw else None) or mm(*a, **kw))
    return calls


# Each speed switch of the solver: a problem on which both of its sides are taken, settings common to both, the two
# sides, and the tol (STALLED_NEWTON matters only where float32 rounding stalls Newton: a tol near its precision).
SWITCHES = {
    # Newton steps (here primal: d = 12) vs L-BFGS
    "NEWTON_FLOPS": (dict(n=240, d=12, k=4, seed=3), {}, {"NEWTON_FLOPS": float("inf")}, {"NEWTON_FLOPS": 0.0}, 1e-6),
    # "active" kernel Newton on the margin rows vs L-BFGS only (NEWTON_FLOPS as in the active-set test above)
    "KERNEL_ROWS": (dict(n=60, d=150, k=3, seed=7), {"NEWTON_FLOPS": 3e5}, {}, {"KERNEL_ROWS": 0}, 1e-8),
    # b^T a^T vs a @ b in every product of the solver (float64 too), and the float32 cut-off by itself
    "transposed product": (dict(n=60, d=150, k=3, seed=7), {}, {"_transposed_is_faster": lambda a, b: True},
                           {"_transposed_is_faster": lambda a, b: False}, 1e-6),
    "SKINNY_COLUMNS": (dict(n=60, d=150, k=3, seed=7), {}, {"SKINNY_COLUMNS": 10**6}, {"SKINNY_COLUMNS": 0}, 1e-6),
    # X^T G in blocks of 32 feature rows vs one GEMM (12 columns: the float32 products are not transposed)
    "XT_BLOCK": (dict(n=60, d=150, k=12, seed=9), {}, {"XT_BLOCK": 32}, {"XT_BLOCK": 10**6}, 1e-6),
    # the float32 phase ended by 1 Newton step that does not halve the gradient vs by 8 of them
    "STALLED_NEWTON": (dict(n=240, d=12, k=4, seed=3), {}, {"STALLED_NEWTON": 1}, {"STALLED_NEWTON": 8}, 1e-8),
}


@pytest.mark.parametrize("switch", list(SWITCHES))
def test_speed_constants_change_the_speed_not_the_solution(switch, monkeypatch):
    """The solver's hardware-tuned constants (NEWTON_FLOPS, KERNEL_ROWS, SKINNY_COLUMNS and the float64 rule of
    _transposed_is_faster, XT_BLOCK, STALLED_NEWTON) choose how a step or product is computed: with either side of
    each, every C of a path converges to the same solution (within tol)."""
    import src.probe.path as solver_module

    data, common, one, other, tol = SWITCHES[switch]
    x, y = blobs(**data)
    fits, blocked = [], _count_blocked_products(monkeypatch)
    for side in (one, other):
        for name, value in {**common, **side}.items():
            monkeypatch.setattr(solver_module, name, value)
        before = len(blocked)
        path = LinearPathClassifier(tol=tol, device="cpu").fit_path(x, y, [1e-2, 1.0, 100.0], X_val=x)
        fits.append((path, len(blocked) - before))
    (a, blocks_a), (b, blocks_b) = fits
    if switch == "XT_BLOCK":  # the two sides really ran differently
        assert blocks_a > 0 == blocks_b
    elif switch in ("NEWTON_FLOPS", "KERNEL_ROWS"):
        assert [p["method"] for p in a] != [p["method"] for p in b]
    elif switch == "STALLED_NEWTON":
        assert [p["float64_iter"] for p in a] != [p["float64_iter"] for p in b]
    for p, r in zip(a, b):  # both converged (max |gradient| / (C n) <= tol): the same optimum, to that accuracy
        assert p["converged"] and r["converged"]
        assert p["objective"] == pytest.approx(r["objective"], rel=1e-6)
        scale = np.abs(r["val_decision"]).max()
        assert np.abs(p["val_decision"] - r["val_decision"]).max() <= 1e-3 * scale, switch


def test_a_spike_while_the_fit_is_still_the_zero_model_does_not_stop_the_walk():
    """The digits/fc7 case of a 6-seed layer study: at C <= 3e-3 the weights are all but zero (the objective within
    1% of the smallest C's) and the val score is noise around 0.35, with a spike of 0.41 at 1e-5; the rise comes
    from C = 1e-2 to 0.95 at C = 1e3. Walked with the fit's progress, the spike is no peak."""
    null = {1e-6: 0.347, 3.16e-6: 0.24, 1e-5: 0.413, 3.16e-5: 0.353, 1e-4: 0.347, 3.16e-4: 0.35, 1e-3: 0.35,
            3.16e-3: 0.357}
    grid = sorted(null) + [10.0**e for e in range(-2, 5)]
    curve = lambda c: null.get(c, min(0.947, 0.387 + 0.14 * np.log10(c / 1e-2)))  # noqa: E731
    learned = lambda c: c >= 1e-2  # noqa: E731  (what _learned reads off the objectives)
    scores = search_C(curve, grid, patience=3, n_val=300, learned=learned)
    assert max(scores, key=lambda c: (scores[c], -c)) >= 100.0
    # Without it the walk stops three Cs after the spike (the chosen C was 1e-5: test accuracy 0.418, not 0.96).
    old = search_C(curve, grid, patience=3, n_val=300)
    assert max(old, key=lambda c: (old[c], -c)) == pytest.approx(1e-5)


def test_the_objective_tells_when_the_fit_has_left_the_zero_model():
    from src.probe.linear import _learned

    path = {1e-6: {"objective": 3.6}, 1e-3: {"objective": 3.5941}, 1e-2: {"objective": 3.5483}, 1.0: {}}
    learned = _learned(path)
    assert [learned(c) for c in (1e-6, 1e-3, 1e-2, 1.0)] == [False, False, True, True]


def test_a_curve_at_its_top_from_the_first_c_that_learned_still_stops_on_a_flat_top():
    """The plateau the rise is measured from is the smallest C's level (the zero model's), not the first learned
    C's: a curve already at its top there has risen, and its ties count against patience."""
    grid = [10.0**e for e in range(-6, 6)]
    curve = lambda c: 0.1 if c < 1e-2 else 0.6  # noqa: E731
    asked = []
    search_C(lambda c: asked.append(c) or curve(c), grid, patience=3, n_val=300, learned=lambda c: c >= 1e-2)
    assert max(asked) == pytest.approx(10.0)  # 1e-2 best, then three ties
