"""Training stages: the source net (`source`), replicate groups (`group`), fine-tuning (`finetune`).

The submodules import Lightning; what only reads a trained net's cache entry is here, so that a job whose nets
are all cached does not pay Lightning's import.
"""

from __future__ import annotations

from pathlib import Path


def snapshot_file(entry: Path, snapshot: int) -> Path:
    """The weights a source entry keeps after epoch `snapshot` (the trainings write them under this name)."""
    return entry / f"snapshot_{snapshot}.pt"
