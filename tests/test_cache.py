import json
import os
import threading
import time

import pytest

from src.cache import Store, make_key, verify
from src.keys import features_payload, source_payload
from src.check import validate


def keys(cfg):
    plan = validate(cfg)
    sk = make_key(source_payload(cfg, plan))
    return sk, make_key(features_payload(cfg, plan, sk))


def test_key_is_order_independent():
    assert make_key({"a": 1, "b": {"c": 2, "d": 3}}) == make_key({"b": {"d": 3, "c": 2}, "a": 1})
    assert make_key({"a": 1}) != make_key({"a": 2})


def test_source_key_hashes_exactly_the_source_determining_config(make_cfg):
    base_src, base_feat = keys(make_cfg())
    # Extraction/probe factors and how-to-run settings leave both the source and feature keys alone.
    for o in ["layer=fc7", "dimred=pca dimred.n_components=8", "pooling=spp", "norm=power",
              "classifier=logistic", "trainer.num_threads=2", "trainer.progress_bar=false"]:
        assert keys(make_cfg(*o.split())) == (base_src, base_feat), o
    # Snapshot and target data change the features, not the source net.
    for o in ["source.snapshot=1", "target=synth_count", "target.data.seed=9"]:
        src_key, feat_key = keys(make_cfg(o))
        assert src_key == base_src and feat_key != base_feat, o
    # Anything that changes the trained weights changes the source key.
    for o in ["width=small", "arch=vgg", "source.num_classes=5", "source.epochs=3", "trainer.optim.lr=0.01", "seed=1"]:
        assert keys(make_cfg(o))[0] != base_src, o


def test_keys_hash_what_changes_the_weights_and_not_what_does_not(make_cfg):
    from src.keys import stage_keys

    def tuned(*o):
        cfg = make_cfg("finetune=last", *o)
        return stage_keys(cfg, validate(cfg))["finetune"]

    base_src, base_feat = keys(make_cfg())
    # Precision changes the trained weights (and a fine-tuning's); 32 and 32-true are one, and float32 is keyed as
    # before precision entered the key.
    assert keys(make_cfg("trainer.precision=32"))[0] == base_src
    assert keys(make_cfg("trainer.precision=bf16-mixed"))[0] != base_src
    assert tuned("trainer.precision=bf16-mixed") != tuned()
    # Another optimiser's option is inert: AdamW reads no momentum, SGD does.
    assert keys(make_cfg("trainer.optim.name=adamw", "trainer.optim.momentum=0.5"))[0] == \
        keys(make_cfg("trainer.optim.name=adamw"))[0]
    assert keys(make_cfg("trainer.optim.momentum=0.5"))[0] != base_src
    assert tuned("finetune.optimizer=adamw", "finetune.momentum=0.5") == tuned("finetune.optimizer=adamw")
    assert tuned("finetune.momentum=0.5") != tuned()


def test_each_stage_key_follows_every_field_its_artifact_depends_on(make_cfg):
    """Fields the tests above leave alone because another key moves with them: each stage's own payload must
    hold them, or a sweep reuses an artifact built from other settings."""
    from src.keys import cost_class, distance_payload, finetune_payload, stage_keys

    def staged(*o, tiny=True):
        cfg = make_cfg(*o, tiny=tiny)
        return stage_keys(cfg, validate(cfg))

    # vgg's depth 13 is another net than its default depth 11
    assert keys(make_cfg("arch=vgg", "depth=13"))[0] != keys(make_cfg("arch=vgg"))[0]
    # the source task's val features are those of the snapshot used
    assert staged("source.snapshot=1")["source_val_features"] != staged()["source_val_features"]

    # A fine-tuning of one source key (a pretrained net's key has no seed): another snapshot or seed is another net.
    def tuned(*o):
        cfg = make_cfg("finetune=last", *o)
        return make_key(finetune_payload(cfg, validate(cfg), "source-key"))

    assert len({tuned(), tuned("seed=1"), tuned("source.snapshot=1")}) == 3
    # features of a fine-tuned net are not the frozen net's features
    retrieval = ("target=synth_retrieval", "target.data.num_instances=8")
    frozen, finetuned = staged(*retrieval, tiny="source"), staged("finetune=last", *retrieval, tiny="source")
    assert finetuned["features"] is not None and finetuned["features"] != frozen["features"]
    # a measured distance is per layer
    assert len({make_key(distance_payload("val-entry", "features-key", layer, ["pad"]))
                for layer in ("conv1", "conv2")}) == 2

    # The probe's cost class (what --plan estimates a probe from) is per layer, not per seed.
    def probe_class(*o):
        cfg = make_cfg(*o)
        return cost_class("probe", cfg, validate(cfg))

    assert probe_class("layer=fc6") != probe_class("layer=fc7") and probe_class("seed=3") == probe_class()


def test_a_torchvision_dataset_is_keyed_by_name_not_by_where_it_is_stored(make_cfg, tmp_path):
    # (its config check opens the dataset's files: the plan comes from the default target, which the key does not
    # read beyond the snapshot)
    plan = validate(make_cfg())

    def feat(*o):
        return make_key(features_payload(make_cfg("target=cifar10", *o, tiny="source"), plan, "source-key"))

    base = feat()
    assert feat(f"paths.data_dir={tmp_path}") == base and feat("target.data.download=true") == base
    assert feat("target.data.max_per_class=7") != base


def _image_tree(root):
    import numpy as np
    from PIL import Image

    for c, shade in (("a", 40), ("b", 200)):
        (root / c).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(np.full((8, 8, 3), shade + i, np.uint8)).save(root / c / f"{i}.png")
    return root


def test_an_image_folder_is_keyed_by_its_path_and_its_images(make_cfg, tmp_path):
    import shutil

    from src.data import imagefolder
    from src.keys import stage_keys

    def feat(root, *o):
        imagefolder._TREES.clear()  # as a new process lists it
        cfg = make_cfg("target=imagefolder", f"target.root={root}", *o, tiny="source")
        return stage_keys(cfg, validate(cfg))["features"]

    first = feat(_image_tree(tmp_path / "one"))
    assert feat(tmp_path / "one") == first and feat(f"{tmp_path}/./one") == first
    # Another tree, even of the same names, sizes and times (normalised by an archive), is not this one.
    shutil.copytree(tmp_path / "one", tmp_path / "two")  # (copy2: times kept)
    assert feat(tmp_path / "two") != first
    (tmp_path / "one" / "README.txt").write_text("not an image")  # the loader reads only images
    assert feat(tmp_path / "one") == first
    only_a = feat(tmp_path / "one", "target.data.classes=[a,b]")
    (tmp_path / "one" / "b" / "3.png").unlink()  # an image removed
    assert feat(tmp_path / "one") != first and feat(tmp_path / "one", "target.data.classes=[a,b]") != only_a
    shutil.copy(tmp_path / "one" / "a" / "0.png", tmp_path / "one" / "b" / "3.png")  # another image in its place
    changed = feat(tmp_path / "one")
    assert changed != first
    # A class the chosen ones leave out is not read: its images do not enter their entries' keys.
    (tmp_path / "one" / "c").mkdir()
    shutil.copy(tmp_path / "one" / "a" / "0.png", tmp_path / "one" / "c" / "0.png")
    chosen = feat(tmp_path / "one", "target.data.classes=[a,b]")
    assert chosen != changed  # (the config differs)
    shutil.copy(tmp_path / "one" / "a" / "1.png", tmp_path / "one" / "c" / "1.png")
    assert feat(tmp_path / "one", "target.data.classes=[a,b]") == chosen


def test_a_weights_file_is_keyed_by_its_content_not_its_path():
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"source": {"image_size": 32}})

    def key(weights, digest):
        extra = {"identity": "timm:resnet18@1.0", "weights": weights, "seed": 0, "input": {}}
        return make_key(source_payload(cfg, SimpleNamespace(spec=SimpleNamespace(extra=extra)), digest))

    assert key("/a/w.pth", "ab" * 32) == key("/b/copy.pth", "ab" * 32) != key("/a/w.pth", "cd" * 32)
    assert key("pretrained", "ab" * 32) != key("/a/w.pth", "ab" * 32)  # the library's own file: said as such
    # A library net at random init is its seed's net; a weights file's net is the file's, whatever the seed.
    def net(weights, seed):
        extra = {"identity": "timm:resnet18@1.0", "weights": weights, "seed": seed, "input": {}}
        return make_key(source_payload(cfg, SimpleNamespace(spec=SimpleNamespace(extra=extra)),
                                       None if weights is None else "ab" * 32))

    assert net(None, 0) != net(None, 1) and net("/a/w.pth", 0) == net("/a/w.pth", 1)


def test_default_depth_and_explicit_depth_share_a_source(make_cfg):
    assert keys(make_cfg("arch=vgg"))[0] == keys(make_cfg("arch=vgg", "depth=11"))[0]


def test_entry_is_atomic_and_reused(tmp_path):
    store = Store(tmp_path)
    calls = []

    def build(d):
        calls.append(1)
        (d / "a.txt").write_text("hello")

    entry, hit = store.get_or_build("s", {"x": 1}, build)
    assert not hit and (entry / "a.txt").read_text() == "hello" and verify(entry) is None
    assert json.loads((entry / "key.json").read_text()) == {"x": 1}
    assert store.get_or_build("s", {"x": 1}, build) == (entry, True)
    assert len(calls) == 1


def test_failed_build_leaves_nothing(tmp_path):
    store = Store(tmp_path)

    def build(d):
        (d / "half.bin").write_bytes(b"\0" * 100)
        raise KeyboardInterrupt  # an interrupt mid-write

    with pytest.raises(KeyboardInterrupt):
        store.get_or_build("s", {"x": 1}, build)
    assert list((tmp_path / "s").iterdir()) == []  # no staging dir, no .lock file
    assert store.lookup("s", make_key({"x": 1})) is None


def test_truncated_entry_is_detected_and_rebuilt(tmp_path):
    store = Store(tmp_path)
    build = lambda d: (d / "w.bin").write_bytes(b"x" * 1000)  # noqa: E731
    entry, _ = store.get_or_build("s", {"x": 1}, build)
    with open(entry / "w.bin", "r+b") as f:
        f.truncate(10)
    assert "bytes" in verify(entry)
    with pytest.warns(RuntimeWarning, match="damaged"):
        entry2, hit = store.get_or_build("s", {"x": 1}, build)
    assert not hit and (entry2 / "w.bin").stat().st_size == 1000


def test_concurrent_builders_build_once(tmp_path):
    calls = []

    def build(d):
        calls.append(1)
        time.sleep(0.5)
        (d / "a").write_text("1")

    results = []
    threads = [
        threading.Thread(target=lambda: results.append(Store(tmp_path).get_or_build("s", {"k": 1}, build)))
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert sorted(hit for _, hit in results) == [False, True, True]


def test_a_verified_entry_is_rehashed_after_any_write_even_with_its_mtime_set_back(tmp_path):
    """verify() skips re-hashing an entry this process found intact while its files' stat signature is unchanged
    (a sweep looks the same entries up once per job); a same-size overwrite whose mtime is put back still
    changes ctime, so the damage is found."""
    store = Store(tmp_path)
    entry, _ = store.get_or_build("s", {"x": 1}, lambda d: (d / "w.bin").write_bytes(b"x" * 1000))
    key = make_key({"x": 1})
    assert verify(entry, key) is None and verify(entry, key) is None  # the second from the memo
    before = (entry / "w.bin").stat()
    (entry / "w.bin").write_bytes(b"y" * 1000)
    os.utime(entry / "w.bin", ns=(before.st_atime_ns, before.st_mtime_ns))
    assert "hash" in verify(entry, key)
    assert store.lookup("s", key) is None


def test_a_build_records_its_duration_and_removes_its_resume_dir(tmp_path):
    """`.timings/` holds each build's seconds under its cost class (what --plan estimates from), and a resumable
    build's progress dir goes once the entry is built."""
    store = Store(tmp_path)
    key = make_key({"x": 1})

    def build(d):
        resume = store.resume_dir("s", key)
        resume.mkdir(parents=True)
        (resume / "last.ckpt").write_bytes(b"c")  # (a resumable build moves its artifact out, leaving the dir)
        time.sleep(0.2)
        (d / "a").write_text("1")

    store.get_or_build("s", {"x": 1}, build, cost=lambda: "class-a")
    (rec,) = store.timings("s")
    assert rec["key"] == key and rec["cost"] == "class-a" and 0.2 <= rec["seconds"] < 60
    assert rec["end"] - rec["start"] == pytest.approx(rec["seconds"], abs=0.01)
    assert not store.resume_dir("s", key).exists()


def test_a_group_build_rebuilds_a_damaged_member_and_must_publish_every_member(tmp_path):
    """build_many: a member whose entry is damaged is rebuilt with the group, never handed out as a hit; a builder
    that returns without publishing a member fails, and leaves that member absent (no staging dir either)."""
    store = Store(tmp_path)
    payloads = [{"m": 0}, {"m": 1}]

    def build(indices, dirs, publish):
        for j, d in enumerate(dirs):
            (d / "w.bin").write_bytes(b"x" * 100)
            publish(j)

    assert [hit for _, hit in store.build_many("s", payloads, build)] == [False, False]
    damaged = store.path("s", make_key(payloads[1]))
    os.truncate(damaged / "w.bin", 10)
    with pytest.warns(RuntimeWarning, match="damaged"):
        again = store.build_many("s", payloads, build)
    assert [hit for _, hit in again] == [True, False] and verify(damaged, make_key(payloads[1])) is None

    def lazy(indices, dirs, publish):  # the second member is never published
        (dirs[0] / "w.bin").write_bytes(b"x")
        publish(0)

    with pytest.raises(RuntimeError, match="did not publish"):
        store.build_many("s", [{"m": 2}, {"m": 3}], lazy)
    assert store.lookup("s", make_key({"m": 2})) is not None and store.lookup("s", make_key({"m": 3})) is None
    assert not list((tmp_path / "s").glob(".*.tmp-*"))
