"""`report --distance`: two distances of each target from each source net, computed from the features the sweep's
jobs cached (the report reads them; it recomputes no stage): 1 - normalised LogME of the target's labels, and the
Frechet distance between the source task's val features and the target's, at the penultimate layer."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from src.report import analysis as A


def _source_val_features(cache_dir: Path, jobs: pd.DataFrame, tap: str) -> np.ndarray | None:
    """The source task's val images through `tap`, as the pipeline cached them (`source_val_features=true`, key
    `keys.source_val_features` in result.json); None when none of the jobs asked for them."""
    keys = jobs["source_val_features_key"].dropna() if "source_val_features_key" in jobs else []
    for key in keys:
        path = cache_dir / "features" / key / "val" / f"{tap}.npy"
        if path.is_file():
            return np.load(path)
    return None


def measured_distance(df: pd.DataFrame, cache_dir: Path) -> pd.DataFrame:
    """Per source net and target, from the cached features of the sweep's jobs at the penultimate layer (fc7, or
    pool for resnets): 1 - min-max normalised LogME of the target's labels, and the Frechet distance between the
    source task's val features and the target's features (how far the target's images sit from the source's;
    NaN unless the jobs ran with `source_val_features=true`). Reads cached files only."""
    from src.transferability import logme
    from src.transferability.distance import frechet_distance

    ok = A.ok_rows(df).dropna(subset=["features_key"])
    rows, source_feats = [], {}
    for (source_key, target), jobs in ok.groupby(["source_key", "target"]):
        features = cache_dir / "features" / jobs["features_key"].iloc[0]
        entry = features / "train" if (features / "train").is_dir() else features / "database"  # retrieval
        tap = next((entry / f"{t}.npy" for t in ("fc7", "pool") if (entry / f"{t}.npy").exists()), None)
        if tap is None:
            continue
        x, y = np.load(tap), np.load(entry / "labels.npy")
        if source_key not in source_feats:
            source_feats[source_key] = _source_val_features(cache_dir, ok[ok["source_key"] == source_key], tap.stem)
        src_x = source_feats[source_key]
        rows.append({"source_key": source_key, "source": f"{jobs['arch'].iloc[0]}/{jobs['width'].iloc[0]}",
                     "target": target, "distance_rank": jobs["distance_rank"].iloc[0], "layer": tap.stem,
                     "logme": logme(x, y) if y.ndim == 1 else math.nan,
                     "frechet": frechet_distance(src_x, x) if src_x is not None else math.nan})
    out = pd.DataFrame(rows)
    if not len(out):  # none of the jobs' features is in this cache (another cache dir, or cleared)
        return out
    lo = out.groupby("source_key")["logme"].transform("min")
    hi = out.groupby("source_key")["logme"].transform("max")
    out["logme_distance"] = 1 - (out["logme"] - lo) / (hi - lo).replace(0, np.nan)
    return out.sort_values(["source_key", "distance_rank"]).reset_index(drop=True)
