"""Adding an architecture family is one registered record plus one config entry: a toy family, registered here,
trains, is tapped at every layer, probed, fine-tuned and gets the measured distance, with no other edit."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from hydra.core.config_store import ConfigStore
from torch import nn

from src.errors import ConfigError
from src.main import execute
from src.models.registry import ARCHS, Arch, register_arch
from src.models.spec import ArchSpec, scaled


def toy_spec(depth: int, width: float, num_classes: int) -> ArchSpec:
    """Two conv blocks and a linear head; `depth` 3 or 4 adds a third conv block."""
    channels = [scaled(32, width) * (i + 1) for i in range(depth - 1)]
    vocab = {f"block{i + 1}": (f"block{i + 1}", c, True) for i, c in enumerate(channels)}
    vocab["embed"] = ("embed", channels[-1], False)
    vocab["head"] = ("head", num_classes, False)
    return ArchSpec("toy", depth, num_classes, vocab, nodes={t: t for t in vocab}, head="head", min_input=8)


class Toy(nn.Module):
    def __init__(self, spec: ArchSpec):
        super().__init__()
        c_in, blocks = 3, OrderedDict()
        for name, (_, c, spatial) in spec.vocab.items():
            if spatial:
                blocks[name] = nn.Sequential(nn.Conv2d(c_in, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
                                             nn.MaxPool2d(2))
                c_in = c
        for name, block in blocks.items():
            self.add_module(name, block)
        self.names = list(blocks)
        self.embed = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(c_in, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.names:
            x = getattr(self, name)(x)
        return self.head(self.embed(x))


@pytest.fixture
def toy_family():
    register_arch(Arch("toy", "a test family", toy_spec, "tests.test_arch_family:Toy", depths=(3, 4),
                       default_depth=3, distance_layer="block1"))
    ConfigStore.instance().store(group="arch", name="toy", node={"name": "toy"})  # conf/arch/toy.yaml's content
    try:
        yield
    finally:
        ARCHS.unregister("toy")


def test_a_registered_family_runs_end_to_end(toy_family, make_cfg, cache_dir, tmp_path):
    r = execute(make_cfg("arch=toy", "layer=block2"), tmp_path / "probe")
    m = r["metrics"]
    assert r["status"] == "ok" and r["cache"]["source_hit"] is False and r["factors"]["depth"] == 3
    assert m["feature_dim"] == 8 and m["distance"]["layer"] == "block1" and 0 <= m["distance"]["pad"] <= 2
    assert m["target_score"] > 0.25 + 0.1  # 4 target classes: chance is 0.25
    # Every tap from the one extraction; the deeper variant is a new source net.
    for layer in ("block1", "embed", "head"):
        assert execute(make_cfg("arch=toy", f"layer={layer}"), tmp_path / layer)["cache"]["features_hit"] is True
    deeper = execute(make_cfg("arch=toy", "depth=4", "layer=block3"), tmp_path / "deeper")
    assert deeper["cache"]["source_hit"] is False and deeper["metrics"]["feature_dim"] == 12
    # Fine-tuning finds the head through the record's spec.
    tuned = execute(make_cfg("arch=toy", "layer=embed", "finetune=last", "finetune.epochs=1"), tmp_path / "tuned")
    assert tuned["cache"]["finetune_hit"] is False and tuned["metrics"]["target_score"] is not None
    # Its vocabulary and depths are checked like any family's.
    with pytest.raises(ConfigError, match="valid layers: block1, block2, embed, head"):
        execute(make_cfg("arch=toy", "layer=fc7"), tmp_path / "bad")
    with pytest.raises(ConfigError, match="valid depths: 3, 4"):
        execute(make_cfg("arch=toy", "depth=5"), tmp_path / "bad2")


def test_a_name_is_registered_once(toy_family):
    with pytest.raises(ValueError, match="arch='toy' is already registered"):
        register_arch(Arch("toy", "again", toy_spec, "tests.test_arch_family:Toy", depths=(3,), default_depth=3,
                           distance_layer="block1"))
    with pytest.raises(ValueError, match="needs a builder and a distance_layer"):
        Arch("half", "no distance layer", toy_spec, "tests.test_arch_family:Toy")
