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


def test_retrieval_target_end_to_end(make_cfg, tmp_path):
    cfg = make_cfg("target=synth_retrieval", "target.data.num_instances=6", "target.data.database_per_instance=3",
                   "target.data.queries_per_instance=2", "dimred=pca", "dimred.n_components=8", "dimred.whiten=true",
                   tiny="source")
    r = execute(cfg, tmp_path)
    assert r["metrics"]["target_metric"] == "map" and 0 < r["metrics"]["target_score"] <= 1
    cheap = {e.name for e in ESTIMATORS.values() if e.cost == "cheap"}
    assert set(r["metrics"]["transferability"]) == cheap and {"logme", "hscore", "leep", "nce"} <= cheap


def test_multilabel_target_scored_by_map(make_cfg, tmp_path):
    from src.data.tasks import load_target

    d = dict(task="multilabel", num_classes=5, train_images=30, val_images=10, test_images=20, seed=0)
    s = load_target(d, 32)
    y = s["train"][1]
    assert y.shape == (30, 5) and set(np.unique(y)) <= {0, 1} and (1 <= y.sum(1)).all() and (y.sum(1) <= 3).all()
    cfg = make_cfg("target=synth_multilabel", "target.data.train_images=60", "target.data.val_images=30",
                   "target.data.test_images=40", tiny="source")
    r = execute(cfg, tmp_path)
    assert r["metrics"]["target_metric"] == "map" and 0 < r["metrics"]["target_score"] <= 1
    per_label = {e.name for e in ESTIMATORS.values() if e.cost == "cheap" and e.multilabel and e.input == "features"}
    assert set(r["metrics"]["transferability"]) == per_label and "logme" in per_label
