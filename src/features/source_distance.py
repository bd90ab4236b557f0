"""The measured distance stage: how far a target's images are from the source task's, in the source net's space.

`distance/<key>` holds {"layer", "primary", "pad", "frechet", ...} for one (source, target) pair at a fixed layer;
key = the source-val features key (the source task's own val images through every tap: `source_val_stage` in
src.experiment) + the target's features key + layer + version. The layer is fixed per source architecture
(the registered family's `distance_layer`), never the probed layer, so every job of a sweep reports the same distance for the same pair,
and the number looks at images only, never at the probe or the labels. Pretrained sources have no source images
here (ImageNet is not read), so they get no measured distance; nor do fine-tuned runs (the report takes the pair's
distance from the sweep's probe jobs).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from src.cache import Store, make_key
from src.keys import distance_payload
from src.features.extract import load_features
from src.models.registry import get_arch
from src.record import PRIMARY_DISTANCE
from src.transferability.distance import DISTANCES, domain_distances

# The layer is the family's `distance_layer` (src.models.registry): an early conv layer, global-average pooled.
# Early layers see what the shift family moves (colour, texture frequency, outline, clutter) and are shared by
# every class, so a target's distance does not depend on whether its classes happen to resemble the source's
# (docs/statistics.md: why the proxy A-distance at conv2).


def distance_defined(cfg, plan) -> bool:
    """Whether this run's (source, target) pair gets a measured distance (every target; trained source nets)."""
    return not plan.spec.pretrained


def measure_distance(store: Store, plan, source_val: Path, features: Path,
                     features_key: str) -> tuple[dict[str, Any], Path, bool, str]:
    """(value, entry, hit, key): the (source, target) distances at the family's fixed layer, cached."""
    layer = get_arch(plan.spec.family).distance_layer
    payload = distance_payload(source_val.name, features_key, layer, list(DISTANCES))

    def build(tmp: Path) -> None:
        source_x, _ = load_features(source_val, "val", plan.spec, layer, "avg")
        # Every target image of every split (train/val/test, or database/query), labels unused.
        splits = sorted(p.name for p in features.iterdir() if p.is_dir())
        target_x = np.concatenate([load_features(features, s, plan.spec, layer, "avg")[0] for s in splits])
        values = domain_distances(source_x, target_x, seed=0)
        (tmp / "distance.json").write_text(json.dumps({"layer": layer, "primary": PRIMARY_DISTANCE, **values,
                                                       "n_source": len(source_x), "n_target": len(target_x)}))

    entry, hit = store.get_or_build("distance", payload, build)
    return json.loads((entry / "distance.json").read_text()), entry, hit, make_key(payload)
