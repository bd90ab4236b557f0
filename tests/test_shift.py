"""synth_shift: a target family at a controlled distance (target.data.shift) from the synthetic source."""

import numpy as np
import pytest

from src.check import ConfigError, validate
from src.data import synthetic as syn
from src.data.shift import shift_nuisance, shift_prototypes
from src.data.tasks import load_target

SMALL = dict(task="shift", num_classes=5, train_per_class=6, val_per_class=3, test_per_class=4, seed=1)


def test_shift_zero_draws_from_the_source_family_distributions():
    """At shift=0 the prototypes follow make_prototypes' distributions and the nuisances are the source's."""
    p, ref = shift_prototypes(4000, 0.0, seed=0), syn.make_prototypes(4000, family_seed=0)
    assert shift_nuisance(0.0) == syn.Nuisance()
    assert np.mean(p.freq == 0) == pytest.approx(np.mean(ref.freq == 0), abs=0.03)
    textured = p.freq[p.freq > 0]
    assert textured.min() >= 0.6 and textured.max() <= 2.2
    assert np.allclose(p.amp.mean(0), ref.amp.mean(0), rtol=0.1)
    assert p.colour.min() >= 0.05 and p.colour.max() <= 0.95 and p.checker.mean() == pytest.approx(0.4, abs=0.03)


def test_everything_listed_moves_monotonically_with_shift():
    shifts = np.linspace(0, 1, 6)
    protos = [shift_prototypes(2000, s, seed=0) for s in shifts]
    nuis = [shift_nuisance(s) for s in shifts]
    high_k = [p.amp[:, 3:].mean() / p.amp[:, :2].mean() for p in protos]  # outline spectrum toward high harmonics
    freq = [p.freq.mean() for p in protos]
    chroma = [p.colour - p.colour.mean(-1, keepdims=True) for p in protos]
    cos = [(c * chroma[0]).sum(-1) / np.maximum(np.linalg.norm(c, axis=-1) * np.linalg.norm(chroma[0], axis=-1), 1e-9)
           for c in chroma]
    hue_turn = [np.degrees(np.arccos(np.clip(c, -1, 1))).mean() for c in cos]  # vs the same draw at shift 0
    for series in (high_k, freq, hue_turn, [n.distractors for n in nuis], [n.noise for n in nuis]):
        assert np.all(np.diff(series) >= 0) and series[-1] > series[0]
    assert np.all(np.diff([n.scale[1] for n in nuis]) < 0)
    assert hue_turn[-1] > 150  # about 180 degrees: the complementary hue
    # The hue turns, the saturation stays (bar clipping to [0, 1]): colour still tells classes apart at shift 1.
    sat = [np.ptp(p.colour, axis=-1).mean() for p in protos]
    assert sat[-1] >= 0.8 * sat[0]


def test_only_the_distance_changes_between_shifts():
    """Class count and split sizes are fixed; labels are the same draws; the images differ."""
    a = load_target({**SMALL, "shift": 0.0}, image_size=32)
    b = load_target({**SMALL, "shift": 0.8}, image_size=32)
    again = load_target({**SMALL, "shift": 0.8}, image_size=32)
    for split in ("train", "val", "test"):
        assert np.array_equal(a[split][1], b[split][1])
        assert a[split][0].shape == b[split][0].shape
        assert not np.array_equal(a[split][0], b[split][0])
        assert np.array_equal(b[split][0], again[split][0])
    assert np.bincount(a["test"][1]).tolist() == [4] * 5
    # A replicate (target.data.seed) is a new sample of classes and images from the same distributions.
    other = load_target({**SMALL, "shift": 0.8, "seed": 2}, image_size=32)
    assert not np.array_equal(other["train"][0], b["train"][0])


@pytest.mark.parametrize("bad", [1.5, -0.1, "far"])
def test_bad_shift_is_one_line_naming_the_value_and_range(make_cfg, bad):
    cfg = make_cfg("target=synth_shift", f"target.data.shift={bad}")
    with pytest.raises(ConfigError, match=r"target\.data\.shift=\S+ (is out of range|must be a number); valid: 0\.0\.\.1\.0$") as e:
        validate(cfg)
    assert "\n" not in str(e.value)
