"""Self-healing cache: every kind of damage is quarantined under the key's lock and rebuilt, never stuck."""

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from src.cache import QUARANTINE, Store, file_digest, key_lock, make_key, verify

PAYLOAD = {"x": 1}
KEY = make_key(PAYLOAD)


def build(d: Path) -> None:
    (d / "w.bin").write_bytes(b"x" * 1000)
    (d / "sub").mkdir()
    (d / "sub" / "f.npy").write_bytes(b"y" * 10)


def fresh(tmp_path) -> tuple[Store, Path]:
    store = Store(tmp_path / "cache")
    entry, hit = store.get_or_build("s", PAYLOAD, build)
    assert not hit and verify(entry, KEY) is None
    return store, entry


def set_manifest(entry: Path, value) -> None:
    (entry / "manifest.json").write_text(value if isinstance(value, str) else json.dumps(value))


def good_manifest(entry: Path) -> dict:
    return json.loads((entry / "manifest.json").read_text())


DAMAGE = {
    "manifest []": lambda e: set_manifest(e, []),
    'manifest {"f": 5}': lambda e: set_manifest(e, {"f": 5}),
    "manifest {}": lambda e: set_manifest(e, {}),
    "manifest lacks sha256": lambda e: set_manifest(e, {k: {"size": v["size"]} for k, v in good_manifest(e).items()}),
    "manifest size is a string": lambda e: set_manifest(e, {k: {**v, "size": "1000"} for k, v in good_manifest(e).items()}),
    "manifest not JSON": lambda e: set_manifest(e, "{not json"),
    "manifest empty file": lambda e: set_manifest(e, ""),
    "manifest missing": lambda e: (e / "manifest.json").unlink(),
    "manifest is a directory": lambda e: ((e / "manifest.json").unlink(), (e / "manifest.json").mkdir()),
    "truncated file": lambda e: os.truncate(e / "w.bin", 10),
    "same-size edit": lambda e: (e / "w.bin").write_bytes(b"z" * 1000),
    "missing file": lambda e: (e / "sub" / "f.npy").unlink(),
    "unlisted file": lambda e: (e / "stray.tmp").write_bytes(b"half"),
    "name outside the entry": lambda e: set_manifest(e, {**good_manifest(e), "../../outside.txt": {"size": 1, "sha256": "0" * 64}}),
    "absolute name": lambda e: set_manifest(e, {**good_manifest(e), "/etc/hostname": {"size": 1, "sha256": "0" * 64}}),
    "symlink to outside": lambda e: ((e / "w.bin").unlink(), (e / "w.bin").symlink_to(e.parent.parent / "elsewhere.bin")),
    "key.json of another key": lambda e: ((e / "key.json").write_text('{"x": 2}'), _rehash(e)),
    "entry is a file": lambda e: (shutil.rmtree(e), e.write_text("junk")),
}


def _rehash(entry: Path) -> None:
    from src.cache import _write_manifest

    _write_manifest(entry)


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_entry_is_quarantined_and_rebuilt(tmp_path, damage):
    store, entry = fresh(tmp_path)
    (tmp_path / "cache" / "elsewhere.bin").write_bytes(b"x" * 1000)  # same bytes as w.bin, but outside
    DAMAGE[damage](entry)
    assert verify(entry, KEY) is not None, damage
    assert store.lookup("s", KEY) is None  # a reader never gets it
    with pytest.warns(RuntimeWarning, match="damaged"):
        entry2, hit = store.get_or_build("s", PAYLOAD, build)
    assert not hit and entry2 == entry and verify(entry, KEY) is None
    assert (entry / "w.bin").read_bytes() == b"x" * 1000
    assert store.get_or_build("s", PAYLOAD, build) == (entry, True)  # healed for good
    left = sorted(p.name for p in (tmp_path / "cache").rglob("*"))
    assert QUARANTINE not in left and not any(n.endswith(".lock") or ".tmp-" in n for n in left), left


@pytest.fixture
def immutable(tmp_path):
    """A file even root cannot delete (chattr +i); undone at teardown."""
    made = []

    def _make(path: Path) -> Path:
        if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
            pytest.fail("chattr +i is needed to make an undeletable file here")  # the tmpfs/ext4 here supports it
        made.append(path)
        return path

    yield _make
    for p in made:
        subprocess.run(["chattr", "-i", str(p)], check=False)


def test_rebuild_is_not_blocked_by_an_undeletable_old_copy(tmp_path, immutable):
    store, entry = fresh(tmp_path)
    os.truncate(entry / "w.bin", 10)
    immutable(entry / "sub" / "f.npy")
    with pytest.warns(RuntimeWarning, match="damaged"):
        entry2, hit = store.get_or_build("s", PAYLOAD, build)
    assert not hit and verify(entry2, KEY) is None
    (stuck,) = store.purge_quarantine()  # kept aside, retried later
    subprocess.run(["chattr", "-i", str(stuck / "sub" / "f.npy")], check=True)
    assert store.purge_quarantine() == [] and not (tmp_path / "cache" / QUARANTINE).exists()


def test_stale_staging_dirs_are_removed_once_their_builder_is_gone(tmp_path):
    store = Store(tmp_path / "cache")
    stage = tmp_path / "cache" / "s"
    stage.mkdir(parents=True)
    dead = stage / f".{KEY}.tmp-dead1"  # a builder of this key killed mid-build
    (dead / "half.bin").parent.mkdir()
    (dead / "half.bin").write_bytes(b"\0" * 10)
    other_dead = stage / ".otherkey0000000000.tmp-dead2"  # another key's killed builder
    other_dead.mkdir()
    live = stage / ".livekey00000000000.tmp-busy"  # another key, its builder still holds the lock
    live.mkdir()
    holding, release = threading.Event(), threading.Event()

    def holder():
        with key_lock(stage / "livekey00000000000.lock"):
            holding.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    assert holding.wait(10)
    try:
        store.get_or_build("s", PAYLOAD, build)
        assert not dead.exists() and not other_dead.exists()
        assert live.exists()  # its builder is alive
    finally:
        release.set()
        t.join()
    store.tidy("s")
    assert not live.exists()
    assert sorted(p.name for p in stage.iterdir()) == [KEY]  # no staging dir, no .lock file


def test_no_lock_file_is_left_after_success_or_failure(tmp_path):
    store = Store(tmp_path / "cache")
    store.get_or_build("s", PAYLOAD, build)

    def failing(d):
        (d / "half").write_bytes(b"1")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        store.get_or_build("s", {"y": 2}, failing)
    assert sorted(p.name for p in (tmp_path / "cache" / "s").iterdir()) == [KEY]


def test_lock_survives_its_file_being_unlinked_by_the_releaser(tmp_path):
    """Three threads hammer one key's lock (which unlinks its file on release): never two holders at once."""
    lock_path = tmp_path / "k.lock"
    inside, overlaps = [0], []

    def worker():
        for _ in range(30):
            with key_lock(lock_path):
                inside[0] += 1
                overlaps.append(inside[0])
                time.sleep(0.001)
                inside[0] -= 1

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert max(overlaps) == 1 and len(overlaps) == 90 and not lock_path.exists()


def test_file_digest_follows_content_not_name(tmp_path):
    f = tmp_path / "weights.pth"
    f.write_bytes(b"a" * 100)
    d1 = file_digest(f, tmp_path / "cache")
    assert len(d1) == 64 and file_digest(f, tmp_path / "cache") == d1  # memoised
    f.write_bytes(b"b" * 100)
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 1_000_000))  # a replaced file has a new mtime
    assert file_digest(f, tmp_path / "cache") != d1


def test_config_hash_does_not_depend_on_where_the_cache_lives(make_cfg, monkeypatch, tmp_path):
    from src.main import config_hash

    h1 = config_hash(make_cfg())
    monkeypatch.setenv("TRANSFER_CACHE_DIR", str(tmp_path / "mounted-elsewhere"))
    assert config_hash(make_cfg()) == h1
    assert config_hash(make_cfg("seed=1")) != h1
