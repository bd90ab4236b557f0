"""Content-addressed artifact store: keys, per-key locks, atomic complete-or-absent, self-healing entries.

An entry is a directory `<root>/<stage>/<key>/` holding the stage's files plus two files of ours:
  key.json       the exact config payload the key hashes (provenance: what determined this artifact)
  manifest.json  name, size and sha256 of every other file; written last, so its presence means "complete"
An entry is built in a staging sibling `.<key>.tmp-*` and renamed into place, so a crash leaves at most a
staging dir, never a half-written entry. Everything that changes an entry happens under its per-key lock
(`<key>.lock`, a `filelock` flock): a second process that wants the same entry waits and then reuses it.

Self-healing: an entry that fails `verify` (missing, empty or malformed manifest, wrong sizes or hashes, a file
not listed or outside the entry, a key.json of another key) is renamed into `<root>/.quarantine/` under its lock
and rebuilt; quarantined copies are deleted best-effort then and on later builds, so an old copy that cannot be
deleted never blocks the rebuild. Staging dirs whose builder is gone (its lock is free) are removed. The lock
file itself is unlinked just before release (filelock re-opens a lock file that was unlinked under it), so a
failed or killed run leaves no empty `.lock` files behind once the key is built again.

A build that can resume (source training) keeps its progress in `.<key>.resume/` next to the staging dirs
(`Store.resume_dir`): unlike a staging dir it survives a killed builder, and it is removed once the entry is built.
Waiting for another process's lock is logged when it starts and summed per stage in `Store.waits` (a job records
it as `timings_s.lock_wait`). Every build appends its duration to `.timings/<stage>.jsonl` (what `--plan`
estimates stage times from).

No torch import here: keys are computed by the config check too.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import socket
import tempfile
import time
import uuid
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

from filelock import FileLock, Timeout

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"
KEY_FILE = "key.json"
QUARANTINE = ".quarantine"
STAGING = ".tmp-"  # staging dirs are `.<key>.tmp-<random>`
RESUME = ".resume"  # a resumable build's progress: `.<key>.resume/`
Cost = Optional[Union[str, Callable[[], str]]]  # a cost class, or how to work it out (only a build needs it)
TIMINGS = ".timings"  # `<root>/.timings/<stage>.jsonl`: one line per build (seconds, cost class, host)


def canonical_json(payload: Any) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)


def make_key(payload: dict[str, Any]) -> str:
    """Stable short hash of a JSON-able payload (key order and formatting do not matter)."""
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:20]


def atomic_write_text(path: Path, text: str, durable: bool = True) -> None:
    """Write a file so that readers see either the old content or the whole new content. `durable=False` skips the
    fsync: for a file whose loss in a machine crash costs only a rerun (a job's result.json: a job whose result is
    missing or unreadable runs again), not for what the cache's integrity rests on."""
    with atomic_open(path, "w", durable) as f:
        f.write(text)


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "w", durable: bool = True) -> Iterator[Any]:
    """A file object for writing `path` (mode "w" or "wb") as atomic_write_text does: a temp file in the same
    dir, renamed over `path` when the block ends, removed if it raises (for writers that take a file object: a
    table's to_csv, a figure's savefig)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:12]}")
    # Created as open() would (0o666 less the umask: a report's pages stay readable to whom its dir is), not with
    # mkstemp's 0o600; O_EXCL: a name another writer holds is never shared.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _listed_files(entry: Path) -> list[Path]:
    """Every file (and symlink) in the entry but the manifest itself."""
    files = (p for p in entry.rglob("*") if p.is_file() or p.is_symlink())
    return sorted(p for p in files if p.relative_to(entry) != Path(MANIFEST))


def _write_manifest(entry: Path) -> None:
    files = _listed_files(entry)
    manifest = {str(p.relative_to(entry)): {"size": p.stat().st_size, "sha256": _sha256(p)} for p in files}
    atomic_write_text(entry / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))


def _bad_name(entry: Path, name: Any) -> bool:
    """A manifest name that is not a plain relative path inside the entry (absolute, `..`, or via a symlink)."""
    if not isinstance(name, str) or not name or Path(name).is_absolute() or ".." in Path(name).parts:
        return True
    p = entry / name
    return p.is_symlink() or not p.resolve().is_relative_to(entry.resolve())


# Entries this process hashed and found intact -> the stat signature of their files then. A sweep's jobs look up
# the same source and feature entries again and again (a layer sweep re-reads one features entry per job), so
# hashing every file each time would cost a sweep more than its probes; an entry whose files all keep their size, mtime, ctime and inode is not re-hashed. Any write, truncation,
# replacement or rename changes ctime or the inode (neither can be set back), and a new process hashes afresh.
_intact: dict[tuple[str, str | None], tuple] = {}


def _signature(entry: Path) -> tuple | None:
    try:
        files = sorted(p for p in entry.rglob("*") if p.is_file() or p.is_symlink())
        return tuple((str(p.relative_to(entry)), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
                     for p in files for st in (p.lstat(),))
    except OSError:
        return None


def verify(entry: Path, key: str | None = None) -> str | None:
    """None if the entry is complete and intact (and, given `key`, holds that key's payload), else a reason.
    The files' hashes are checked once per process while their stat signature stays the same (see `_intact`)."""
    memo, signature = (str(entry), key), _signature(entry)
    if signature is not None and _intact.get(memo) == signature:
        return None
    problem = _check(entry, key)
    if problem is None and signature is not None and _signature(entry) == signature:
        _intact[memo] = signature
    else:
        _intact.pop(memo, None)
    return problem


def _check(entry: Path, key: str | None) -> str | None:
    try:
        manifest = json.loads((entry / MANIFEST).read_text())
    except FileNotFoundError:
        return "no manifest (incomplete entry)"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return "unreadable manifest"
    if not isinstance(manifest, dict) or KEY_FILE not in manifest:
        return f"malformed manifest (a {type(manifest).__name__} without {KEY_FILE})"
    try:
        for name, meta in manifest.items():
            if _bad_name(entry, name):
                return f"manifest names {name!r}, which is not a file inside the entry"
            if not isinstance(meta, dict) or not isinstance(meta.get("size"), int) \
                    or not isinstance(meta.get("sha256"), str):
                return f"malformed manifest record for {name}"
            p = entry / name
            if not p.is_file():
                return f"missing file {name}"
            if p.stat().st_size != meta["size"]:
                return f"{name} has {p.stat().st_size} bytes, manifest says {meta['size']}"
            if _sha256(p) != meta["sha256"]:
                return f"{name} content hash differs from the manifest"
        extra = [str(p.relative_to(entry)) for p in _listed_files(entry) if str(p.relative_to(entry)) not in manifest]
        if extra:
            return f"files not in the manifest: {', '.join(extra[:3])}"
        if key is not None and make_key(json.loads((entry / KEY_FILE).read_text())) != key:
            return f"{KEY_FILE} holds another key's config"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:  # e.g. renamed away by a concurrent repair
        return f"unreadable ({type(e).__name__}: {e})"
    return None


@contextlib.contextmanager
def key_lock(lock_path: Path, timeout: float = -1, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold the per-key lock; unlink the lock file just before releasing it.

    Safe because filelock (>= 3.13) discards a flock it won on an inode that was unlinked meanwhile and
    re-opens the path, so two holders can never coexist; what it buys is no empty `.lock` debris.
    Raises filelock.Timeout if not acquired within `timeout` seconds (-1 waits forever). `on_wait` is called once
    when the lock is not free at the first try (someone else holds it), before waiting for it.
    """
    lock = FileLock(str(lock_path), timeout=timeout)
    if on_wait is None:
        lock.acquire()
    else:
        try:
            lock.acquire(timeout=0)
        except Timeout:
            on_wait()
            lock.acquire()
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock_path)
        lock.release()


class Store:
    """The artifact cache rooted at `root` (config `paths.cache_dir`)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.waits: dict[str, float] = {}  # stage -> seconds this Store waited for locks other processes held

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def lookup(self, stage: str, key: str) -> Path | None:
        """The entry if it is complete and intact, else None (read-only: repairs happen in `get_or_build`)."""
        entry = self.path(stage, key)
        return entry if entry.is_dir() and verify(entry, key) is None else None

    def complete(self, stage: str, key: str) -> bool:
        """Whether the entry is there and complete (its manifest is written last), without hashing its files: what
        a sweep's plan asks of thousands of keys. A damaged entry passes this and is rebuilt by the job that uses
        it (`get_or_build` verifies)."""
        return (self.path(stage, key) / MANIFEST).is_file()

    def resume_dir(self, stage: str, key: str) -> Path:
        """Where a resumable build of this key keeps its progress (not created here): it survives a killed builder,
        the next builder of the key picks it up under the key's lock, and it is removed once the entry is built."""
        return self.root / stage / f".{key}{RESUME}"

    def get_or_build(
        self, stage: str, payload: dict[str, Any], build: Callable[[Path], None], cost: Cost = None
    ) -> tuple[Path, bool]:
        """(entry, hit): the entry for `payload`, built by `build(tmp_dir)` if absent. Safe across processes.

        `cost`: the build's cost class (`src.keys.cost_class`), recorded with its duration in `.timings/`; a
        callable is asked only when the entry is built (a hit, the usual case in a sweep, needs no cost class)."""
        key = make_key(payload)
        entry = self.lookup(stage, key)
        if entry is not None:
            return entry, True
        entry = self.path(stage, key)
        entry.parent.mkdir(parents=True, exist_ok=True)
        t_ask = time.monotonic()
        waited = []

        def on_wait() -> None:
            waited.append(True)
            log.warning("cache: waiting for %s/%s: another process is building it (this job holds its "
                        "allocation meanwhile)", stage, key)

        with key_lock(entry.parent / f"{key}.lock", on_wait=on_wait):
            if waited:
                seconds = time.monotonic() - t_ask
                self.waits[stage] = self.waits.get(stage, 0.0) + seconds
                log.warning("cache: waited %.1f s for the lock of %s/%s", seconds, stage, key)
            self._remove_staging(entry.parent, key)  # we hold the lock, so their builders are gone
            if entry.exists() or entry.is_symlink():
                problem = verify(entry, key)
                if problem is None:  # another process built it while we waited for the lock
                    return entry, True
                warnings.warn(f"cache entry {stage}/{key} is damaged ({problem}); rebuilding it", RuntimeWarning)
                self._quarantine(entry, f"{stage}-{key}")
            # Logged before the staging dir exists: a kill between the two then leaves a log line without a dir,
            # never a dir without its line (the crash-safety soak counts the starts by both).
            log.info("cache: building %s/%s", stage, key)
            tmp = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{key}{STAGING}"))
            t0 = time.time()
            try:
                (tmp / KEY_FILE).write_text(json.dumps(payload, indent=1, sort_keys=True, default=str))
                build(tmp)
                _write_manifest(tmp)
                os.rename(tmp, entry)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            shutil.rmtree(self.resume_dir(stage, key), ignore_errors=True)  # the entry holds everything now
        log.info("cache: built %s/%s", stage, key)
        self.record_timing(stage, key, t0, time.time(), cost)
        self.tidy(stage)
        return entry, False

    def build_many(
        self, stage: str, payloads: list[dict[str, Any]],
        build: Callable[[list[int], list[Path], Callable[[int], None]], None], cost: Cost = None,
    ) -> list[tuple[Path, bool] | None]:
        """Entries built together by one builder (a replicate group of source nets): per payload (entry, hit), or
        None for one another process is building (its lock is taken: it is left to that process, never waited for).

        The missing entries' locks are all held while `build(indices, staging_dirs, publish)` runs; it calls
        `publish(j)` once the j-th of `indices` has its files in `staging_dirs[j]`, which renames that entry into
        place at once: a kill after some members are published leaves those complete, the rest absent (their
        staging dirs are removed by the next builder). Each entry's key.json and manifest are as `get_or_build`
        writes them, so an entry does not tell how it was built."""
        keys = [make_key(p) for p in payloads]
        out: list[tuple[Path, bool] | None] = [None] * len(keys)
        with contextlib.ExitStack() as locks:
            todo = []
            for i in sorted(range(len(keys)), key=lambda i: keys[i]):
                if self.lookup(stage, keys[i]) is not None:
                    out[i] = (self.path(stage, keys[i]), True)
                    continue
                entry = self.path(stage, keys[i])
                entry.parent.mkdir(parents=True, exist_ok=True)
                try:
                    locks.enter_context(key_lock(entry.parent / f"{keys[i]}.lock", timeout=0))
                except Timeout:
                    log.info("cache: %s/%s is being built by another process; not in this group", stage, keys[i])
                    continue
                self._remove_staging(entry.parent, keys[i])
                if entry.exists() or entry.is_symlink():
                    problem = verify(entry, keys[i])
                    if problem is None:
                        out[i] = (entry, True)
                        continue
                    warnings.warn(f"cache entry {stage}/{keys[i]} is damaged ({problem}); rebuilding it",
                                  RuntimeWarning)
                    self._quarantine(entry, f"{stage}-{keys[i]}")
                todo.append(i)
            todo.sort()
            if not todo:
                return out
            log.info("cache: building %d %s entries together: %s", len(todo), stage, ", ".join(keys[i] for i in todo))
            tmps = [Path(tempfile.mkdtemp(dir=self.path(stage, keys[i]).parent, prefix=f".{keys[i]}{STAGING}"))
                    for i in todo]
            published: set[int] = set()
            t0 = time.time()

            def publish(j: int) -> None:
                i, tmp = todo[j], tmps[j]
                _write_manifest(tmp)
                os.rename(tmp, self.path(stage, keys[i]))
                published.add(j)
                shutil.rmtree(self.resume_dir(stage, keys[i]), ignore_errors=True)
                out[i] = (self.path(stage, keys[i]), False)
                self.record_timing(stage, keys[i], t0, t0 + (time.time() - t0) / len(todo), cost)

            try:
                for i, tmp in zip(todo, tmps):
                    (tmp / KEY_FILE).write_text(json.dumps(payloads[i], indent=1, sort_keys=True, default=str))
                build(todo, tmps, publish)
                missing = [keys[todo[j]] for j in range(len(todo)) if j not in published]
                if missing:
                    raise RuntimeError(f"the group build did not publish {stage} entries {', '.join(missing)}")
            finally:
                for j, tmp in enumerate(tmps):
                    if j not in published:
                        shutil.rmtree(tmp, ignore_errors=True)
        self.tidy(stage)
        return out

    def record_timing(self, stage: str, key: str, start: float, end: float, cost: Cost) -> None:
        """Append one build's (or job's) duration to `.timings/<stage>.jsonl`; best-effort (a read-only or full
        filesystem never fails a build over it)."""
        cost = cost() if callable(cost) else cost
        line = json.dumps({"key": key, "cost": cost, "seconds": round(end - start, 3), "start": round(start, 3),
                           "end": round(end, 3), "host": socket.gethostname()})
        path = self.root / TIMINGS / f"{stage}.jsonl"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # One write of one short line to a file opened O_APPEND: lines of concurrent writers do not interleave on
            # a local filesystem, and no lock file is left behind (on NFS a rare torn line is skipped by `timings`).
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)
        except OSError as e:
            log.info("cache: timing of %s/%s not recorded (%s)", stage, key, e)

    def timings(self, stage: str) -> list[dict[str, Any]]:
        """The recorded durations of a stage (`record_timing`), oldest first; unreadable lines are skipped."""
        path = self.root / TIMINGS / f"{stage}.jsonl"
        out = []
        with contextlib.suppress(OSError):
            for line in path.read_text().splitlines():
                with contextlib.suppress(json.JSONDecodeError):
                    out.append(json.loads(line))
        return out

    def _quarantine(self, entry: Path, name: str) -> None:
        """Move a damaged entry out of the way (a rename never fails on what it holds), then try to delete it."""
        qdir = self.root / QUARANTINE
        qdir.mkdir(exist_ok=True)
        os.rename(entry, qdir / f"{name}-{uuid.uuid4().hex[:8]}")
        self.purge_quarantine()

    def purge_quarantine(self) -> list[Path]:
        """Delete quarantined entries (nobody uses them); returns those that could not be deleted yet."""
        qdir = self.root / QUARANTINE
        if not qdir.is_dir():
            return []
        for item in qdir.iterdir():
            if item.is_dir() and not item.is_symlink():
                shutil.rmtree(item, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    item.unlink()
        left = list(qdir.iterdir())
        if not left:
            with contextlib.suppress(OSError):
                qdir.rmdir()
        return left

    @staticmethod
    def _remove_staging(stage_dir: Path, key: str) -> None:
        for tmp in stage_dir.glob(f".{key}{STAGING}*"):
            log.info("cache: removing the staging dir of an interrupted build: %s", tmp)
            shutil.rmtree(tmp, ignore_errors=True)

    def tidy(self, stage: str) -> None:
        """Remove staging dirs of any key whose lock is free (their builder died) and the quarantine."""
        stage_dir = self.root / stage
        for key in sorted({p.name[1:].split(STAGING)[0] for p in stage_dir.glob(f".*{STAGING}*")}):
            with contextlib.suppress(Timeout), key_lock(stage_dir / f"{key}.lock", timeout=0):
                self._remove_staging(stage_dir, key)
        self.purge_quarantine()


def file_digest(path: Path, memo_root: Path) -> str:
    """sha256 of a file's content, memoised under `memo_root/.digests/` by (path, mtime, size).

    Pretrained weights are keyed by what the file holds, not by its name, so replacing the file at the same path
    gives a new key; the memo saves re-hashing hundreds of MB on every run.
    """
    st = path.stat()
    identity = {"path": str(path.resolve()), "mtime_ns": st.st_mtime_ns, "size": st.st_size}
    memo = memo_root / ".digests" / make_key(identity)
    with contextlib.suppress(OSError):
        digest = memo.read_text().strip()
        if len(digest) == 64:
            return digest
    digest = _sha256(path)
    atomic_write_text(memo, digest)
    return digest
