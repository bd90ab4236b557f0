"""Content-addressed artifact store: keys, per-key locks, atomic complete-or-absent entries.

An entry is a directory `<root>/<stage>/<key>/` holding the stage's files plus two files of ours:
  key.json       the exact config payload the key hashes (provenance: what determined this artifact)
  manifest.json  name, size and sha256 of every other file; written last, so its presence means "complete"
An entry is built in a temporary sibling directory and renamed into place, so a crash leaves at most a
stray `.tmp-*` directory, never a half-written entry. A per-key `filelock` lock makes a second process that
wants the same entry wait for the first and then reuse it. A reader that finds an entry whose files do not
match the manifest (truncated, edited) warns, deletes it and rebuilds it.

No torch import here: keys are computed by the config check too.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

from filelock import FileLock

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"
KEY_FILE = "key.json"


def canonical_json(payload: Any) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)


def make_key(payload: dict[str, Any]) -> str:
    """Stable short hash of a JSON-able payload (key order and formatting do not matter)."""
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:20]


def atomic_write_text(path: Path, text: str) -> None:
    """Write a file so that readers see either the old content or the whole new content."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _write_manifest(entry: Path) -> None:
    files = sorted(p for p in entry.rglob("*") if p.is_file() and p.name != MANIFEST)
    manifest = {str(p.relative_to(entry)): {"size": p.stat().st_size, "sha256": _sha256(p)} for p in files}
    atomic_write_text(entry / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))


def verify(entry: Path) -> str | None:
    """None if the entry is complete and intact, else a short reason."""
    mf = entry / MANIFEST
    if not mf.is_file():
        return "no manifest (incomplete entry)"
    try:
        manifest = json.loads(mf.read_text())
    except json.JSONDecodeError:
        return "unreadable manifest"
    for name, meta in manifest.items():
        p = entry / name
        if not p.is_file():
            return f"missing file {name}"
        if p.stat().st_size != meta["size"]:
            return f"{name} has {p.stat().st_size} bytes, manifest says {meta['size']}"
        if _sha256(p) != meta["sha256"]:
            return f"{name} content hash differs from the manifest"
    return None


class Store:
    """The artifact cache rooted at `root` (config `paths.cache_dir`)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def lookup(self, stage: str, key: str) -> Path | None:
        """The entry if it is complete and intact; a damaged entry is removed with a warning."""
        entry = self.path(stage, key)
        if not entry.exists():
            return None
        problem = verify(entry)
        if problem is None:
            return entry
        warnings.warn(f"cache entry {stage}/{key} is damaged ({problem}); rebuilding it", RuntimeWarning)
        shutil.rmtree(entry, ignore_errors=True)
        return None

    def get_or_build(
        self, stage: str, payload: dict[str, Any], build: Callable[[Path], None]
    ) -> tuple[Path, bool]:
        """(entry, hit): the entry for `payload`, built by `build(tmp_dir)` if absent. Safe across processes."""
        key = make_key(payload)
        entry = self.lookup(stage, key)
        if entry is not None:
            return entry, True
        entry = self.path(stage, key)
        entry.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(entry) + ".lock"):
            # Another process may have built it while we waited for the lock.
            if self.lookup(stage, key) is not None:
                return entry, True
            tmp = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{key}.tmp-"))
            try:
                (tmp / KEY_FILE).write_text(json.dumps(payload, indent=1, sort_keys=True, default=str))
                build(tmp)
                _write_manifest(tmp)
                os.rename(tmp, entry)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        log.info("cache: built %s/%s", stage, key)
        return entry, False


# --- What each stage's key hashes: exactly the config that determines the artifact ---------------------
# Bump a stage's version when its code changes what it produces, so old entries are not reused.
SOURCE_VERSION = 1
FEATURES_VERSION = 2  # 2: max pooling read from spp, no <tap>.max.npy
FINETUNE_VERSION = 1


def source_payload(cfg, plan) -> dict[str, Any]:
    """Source net: its data, architecture (resolved family/depth/width), optimisation and seed.

    Not the snapshot (every epoch is kept), not the layer/pooling/dimred/classifier/target, and not how it is
    run (accelerator, threads, progress bar).
    """
    from omegaconf import OmegaConf

    source = OmegaConf.to_container(cfg.source, resolve=True)
    source.pop("snapshot", None)
    if plan.spec.pretrained:  # nothing is trained: the weights identify the source
        return {"stage": "source", "version": SOURCE_VERSION, "arch": plan.spec.family, "weights": source["weights"],
                "weights_path": source.get("weights_path"), "image_size": source["image_size"]}
    return {
        "stage": "source",
        "version": SOURCE_VERSION,
        "source": source,
        "arch": plan.spec.family,
        "depth": plan.spec.depth,
        "width": float(cfg.width.multiplier),
        "optim": OmegaConf.to_container(cfg.trainer.optim, resolve=True),
        "seed": int(cfg.seed),
    }


def finetune_payload(cfg, plan, source_key: str) -> dict[str, Any]:
    """Fine-tuned net: the source weights (key + snapshot), the target data it is tuned on, how, and the seed."""
    from omegaconf import OmegaConf

    return {
        "stage": "finetune",
        "version": FINETUNE_VERSION,
        "source": source_key,
        "snapshot": plan.snapshot,
        "target_data": OmegaConf.to_container(cfg.target.data, resolve=True),
        "finetune": OmegaConf.to_container(cfg.finetune, resolve=True),
        "seed": int(cfg.seed),
    }


def features_payload(cfg, plan, source_key: str, finetune_key: str | None = None) -> dict[str, Any]:
    """Features: which weights (source key + snapshot, or a fine-tuned net) applied to which target images.

    Not the layer or pooling: an entry holds every tap and every pooling from one forward pass.
    """
    from omegaconf import OmegaConf

    payload = {
        "stage": "features",
        "version": FEATURES_VERSION,
        "source": source_key,
        "snapshot": plan.snapshot,
        "target_data": OmegaConf.to_container(cfg.target.data, resolve=True),
    }
    if finetune_key is not None:
        payload["finetune"] = finetune_key
    return payload


def source_val_payload(cfg, plan, source_key: str) -> dict[str, Any]:
    """The source task's own val images through its net (`source_val_features=true`): which weights, nothing else
    (the source key already hashes the source data)."""
    return {"stage": "features", "version": FEATURES_VERSION, "source": source_key, "snapshot": plan.snapshot,
            "images": "source_val"}
