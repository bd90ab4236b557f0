import numpy as np
import pytest

from src.data import synthetic as syn
from src.data.tasks import load_source, load_target, stratified_split

TASKS = {
    "objects_new": dict(task="objects_new", num_classes=5, train_per_class=6, val_per_class=3, test_per_class=4, seed=1),
    "finegrained": dict(task="finegrained", num_classes=5, train_per_class=6, val_per_class=3, test_per_class=4, seed=2),
    "attributes": dict(task="attributes", num_classes=5, train_per_class=6, val_per_class=3, test_per_class=4, seed=3),
    "count": dict(task="count", num_classes=4, train_per_class=6, val_per_class=3, test_per_class=4, seed=4),
    "digits": dict(task="digits", num_classes=10, train_per_class=6, val_per_class=3, test_per_class=None, seed=5),
}


def test_render_is_deterministic_and_seed_dependent():
    protos = syn.make_prototypes(6, family_seed=0)
    labels = syn.balanced_labels(6, 10, seed=0)
    a = syn.render_single(protos, labels, 32, seed=3)
    b = syn.render_single(protos, labels, 32, seed=3)
    c = syn.render_single(protos, labels, 32, seed=4)
    assert a.shape == (60, 3, 32, 32) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    # Chunking is an implementation detail: it must not change the images' distribution of labels.
    assert np.bincount(labels).tolist() == [10] * 6


def test_prototypes_differ_between_families():
    a, b = syn.make_prototypes(4, 0), syn.make_prototypes(4, 1)
    assert not np.allclose(a.amp, b.amp)
    assert np.allclose(a.amp, syn.make_prototypes(4, 0).amp)


def test_images_use_the_dynamic_range_and_vary_within_class():
    protos = syn.make_prototypes(3, family_seed=0)
    x = syn.render_single(protos, np.zeros(20, dtype=int), 32, seed=0).astype(float)
    assert x.min() < 40 and x.max() > 215
    # Same class, different instances: position/scale/rotation/clutter make them far apart in pixel space.
    assert np.abs(x[0] - x[1]).mean() > 20


def test_source_splits_are_balanced():
    cfg = dict(kind="synthetic", num_classes=5, images_per_class=8, val_per_class=3, image_size=32)
    s = load_source(cfg, seed=0)
    assert s["train"][0].shape == (40, 3, 32, 32) and s["val"][0].shape == (15, 3, 32, 32)
    assert np.bincount(s["train"][1]).tolist() == [8] * 5
    assert np.bincount(s["val"][1]).tolist() == [3] * 5


@pytest.mark.parametrize("name", list(TASKS))
def test_target_tasks_shapes_balance_determinism(name):
    d = TASKS[name]
    a = load_target(d, image_size=32)
    b = load_target(d, image_size=32)
    n_cls = d["num_classes"]
    for split in ("train", "val", "test"):
        x, y = a[split]
        assert x.shape[1:] == (3, 32, 32) and x.dtype == np.uint8 and len(x) == len(y)
        assert np.array_equal(x, b[split][0]) and np.array_equal(y, b[split][1])
        assert set(np.unique(y)) == set(range(n_cls))
    assert np.bincount(a["train"][1]).tolist() == [d["train_per_class"]] * n_cls
    assert np.bincount(a["val"][1]).tolist() == [d["val_per_class"]] * n_cls
    if d["test_per_class"] is not None:
        assert np.bincount(a["test"][1]).tolist() == [d["test_per_class"]] * n_cls


def test_stratified_split_is_disjoint_and_rejects_oversized_requests():
    labels = np.repeat(np.arange(3), 10)
    parts = stratified_split(labels, {"train": 4, "val": 2, "test": None}, seed=0)
    all_idx = np.concatenate(list(parts.values()))
    assert len(all_idx) == 30 and len(np.unique(all_idx)) == 30
    with pytest.raises(ValueError, match="fewer than"):
        stratified_split(labels, {"train": 8, "val": 4}, seed=0)


def test_scenes_and_retrieval_tasks():
    d = dict(task="scenes", num_objects=4, num_classes=6, train_per_class=3, val_per_class=2, test_per_class=2, seed=0)
    s = load_target(d, image_size=32)
    assert np.bincount(s["train"][1]).tolist() == [3] * 6 and s["test"][0].shape == (12, 3, 32, 32)
    r = load_target(dict(task="retrieval", num_instances=5, database_per_instance=3, queries_per_instance=2, seed=1), 32)
    assert set(r) == {"database", "query"}
    assert r["database"][0].shape == (15, 3, 32, 32) and np.bincount(r["query"][1]).tolist() == [2] * 5
    again = load_target(dict(task="retrieval", num_instances=5, database_per_instance=3, queries_per_instance=2, seed=1), 32)
    assert np.array_equal(r["query"][0], again["query"][0])
    assert not np.array_equal(r["query"][0][:3], r["database"][0][:3])  # new views, not copies
