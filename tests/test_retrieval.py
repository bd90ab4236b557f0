import numpy as np
import pytest

from src.main import execute
from src.probe.retrieval import average_precision, mean_average_precision
from src.transferability.estimators import ESTIMATORS


def test_map_matches_a_hand_computed_example():
    db = np.array([[0.0], [1.0], [2.0], [3.0]])
    db_y = np.array([0, 1, 0, 1])
    # Query A (label 0) at 0.1: ranking 0(rel), 1, 2(rel), 3 -> precisions at hits 1/1, 2/3 -> AP = (1 + 2/3) / 2.
    # Query B (label 1) at 2.9: ranking 3(rel), 2, 1(rel), 0 -> AP = (1 + 2/3) / 2 as well.
    # Query C (label 1) at 0.4: ranking 0, 1(rel), 2, 3(rel) -> precisions 1/2, 2/4 -> AP = 0.5.
    q = np.array([[0.1], [2.9], [0.4]])
    q_y = np.array([0, 1, 1])
    expected = ((1 + 2 / 3) / 2 + (1 + 2 / 3) / 2 + 0.5) / 3
    assert mean_average_precision(q, q_y, db, db_y) == pytest.approx(expected)


@pytest.mark.parametrize("ties", [False, True])
def test_average_precision_equals_scikit_learns(ties):
    """Our per-query AP (no per-call validation: speed) against scikit-learn's, on random rankings, with tied
    scores (grouped as one threshold by both) and with a single relevant item."""
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(1)
    for _ in range(200):
        n = int(rng.integers(2, 60))
        scores = rng.integers(0, 6, n).astype(float) if ties else rng.normal(size=n)
        relevant = rng.random(n) < rng.uniform(0.05, 0.6)
        if not relevant.any():
            relevant[rng.integers(n)] = True
        assert average_precision(relevant, scores) == pytest.approx(average_precision_score(relevant, scores),
                                                                    abs=1e-12)


def test_perfect_and_shuffled_features():
    rng = np.random.default_rng(0)
    db_y, q_y = np.repeat(np.arange(10), 3), np.arange(10)
    centres = rng.normal(size=(10, 8)) * 10
    db, q = centres[db_y] + rng.normal(size=(30, 8)) * 0.1, centres[q_y]
    assert mean_average_precision(q, q_y, db, db_y) == pytest.approx(1.0)
    assert mean_average_precision(q, q_y, rng.normal(size=(30, 8)), db_y) < 0.5


def job_features(cfg, cache_dir, result, split):
    """(features, labels) of one split at the job's layer, from the job's cache entry."""
    from src.check import validate
    from src.features.extract import load_features

    plan = validate(cfg)
    return load_features(cache_dir / "features" / result["keys"]["features"], split, plan.spec, plan.tap, cfg.pooling)


def test_retrieval_target_end_to_end(make_cfg, cache_dir, tmp_path):
    """The recorded mAP agrees with one computed here with scikit-learn from the job's cached features: L2-normalised,
    whitened PCA fit on the database, normalised again, the database ranked by L2 distance to each query."""
    from sklearn.decomposition import PCA
    from sklearn.metrics import average_precision_score, pairwise_distances
    from sklearn.preprocessing import normalize

    cfg = make_cfg("target=synth_retrieval", "target.data.num_instances=6", "target.data.database_per_instance=3",
                   "target.data.queries_per_instance=2", "dimred=pca", "dimred.n_components=8", "dimred.whiten=true",
                   tiny="source")
    r = execute(cfg, tmp_path)
    assert r["metrics"]["target_metric"] == "map"
    (db, db_y), (q, q_y) = job_features(cfg, cache_dir, r, "database"), job_features(cfg, cache_dir, r, "query")
    assert (len(db), len(q)) == (18, 12)
    pca = PCA(8, whiten=True, random_state=cfg.seed).fit(normalize(db))
    db, q = (normalize(pca.transform(normalize(x))) for x in (db, q))
    dist = pairwise_distances(q, db)
    reference = np.mean([average_precision_score(db_y == label, -d) for label, d in zip(q_y, dist)])
    assert r["metrics"]["target_score"] == pytest.approx(reference)
    cheap = {e.name for e in ESTIMATORS.values() if e.cost == "cheap"}
    assert set(r["metrics"]["transferability"]) == cheap and {"logme", "hscore", "leep", "nce"} <= cheap


def squared_hinge_decisions(x, s, x_test, C):
    """Decision values on `x_test` of the squared-hinge SVM (labels `s` in -1/1, intercept not regularised, as
    ours) at C, its objective minimised with scipy's L-BFGS (at most 1,000 iterations: at the largest Cs the
    problem is badly conditioned and this reference is only close, like ours)."""
    from scipy.optimize import minimize

    def loss(theta):
        w, b = theta[:-1], theta[-1]
        slack = np.maximum(0, 1 - s * (x @ w + b))
        grad = -2 * C * (slack * s)
        return 0.5 * w @ w + C * slack @ slack, np.r_[w + x.T @ grad, grad.sum()]

    theta = minimize(loss, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B",
                     options={"gtol": 1e-8, "ftol": 1e-15, "maxiter": 1000}).x
    return x_test @ theta[:-1] + theta[-1]


def test_multilabel_target_scored_by_map(make_cfg, cache_dir, tmp_path):
    """Multi-label targets: one binary problem per label, scored by macro mAP on test. The recorded scores agree
    with references computed here on the job's normalised features at the job's chosen C: scikit-learn's
    one-vs-rest LinearSVC for classifier=linear_svm_liblinear (the same computation: equal), and for the default
    path solver each label's squared-hinge objective minimised with scipy (equal at moderate Cs; at the largest the
    solvers' tolerances, relative to C, leave the mAP within a couple of points: 0.02 at C=1e5 here)."""
    from sklearn.metrics import average_precision_score
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.preprocessing import normalize
    from sklearn.svm import LinearSVC

    from src.data.tasks import load_target

    d = dict(task="multilabel", num_classes=5, train_images=30, val_images=10, test_images=20, seed=0)
    y = load_target(d, 32)["train"][1]
    assert y.shape == (30, 5) and set(np.unique(y)) <= {0, 1} and (1 <= y.sum(1)).all() and (y.sum(1) <= 3).all()
    sizes = ["target=synth_multilabel", "target.data.train_images=60", "target.data.val_images=30",
             "target.data.test_images=40"]
    cfg = make_cfg(*sizes, tiny="source")
    path = execute(cfg, tmp_path / "path")
    liblinear = execute(make_cfg(*sizes, "classifier=linear_svm_liblinear", tiny="source"), tmp_path / "liblinear")
    assert path["metrics"]["target_metric"] == liblinear["metrics"]["target_metric"] == "map"
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = (job_features(cfg, cache_dir, path, s) for s in ("train", "val", "test"))
    x, y, x_te = normalize(np.r_[x_tr, x_va]), np.r_[y_tr, y_va], normalize(x_te)
    assert y.shape[1] == y_te.shape[1] == cfg.target.data.num_classes

    C = liblinear["metrics"]["best_C"]
    ref = OneVsRestClassifier(LinearSVC(C=C, dual="auto", max_iter=5000, random_state=cfg.seed)).fit(x, y)
    reference = average_precision_score(y_te, ref.decision_function(x_te), average="macro")
    assert liblinear["metrics"]["target_score"] == pytest.approx(reference)

    C = path["metrics"]["best_C"]
    decisions = np.stack([squared_hinge_decisions(x, 2.0 * y[:, k] - 1, x_te, C) for k in range(y.shape[1])], 1)
    assert path["metrics"]["target_score"] == pytest.approx(average_precision_score(y_te, decisions), abs=0.05)
    per_label = {e.name for e in ESTIMATORS.values() if e.cost == "cheap" and e.multilabel and e.input == "features"}
    assert set(path["metrics"]["transferability"]) == per_label and "logme" in per_label
