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
