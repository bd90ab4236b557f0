"""`synth_shift`: a target family whose distance from the synthetic source is one number, `shift` in [0, 1].

At shift=0 a task is `num_classes` new prototypes drawn from exactly the distributions the source's prototypes
and instances come from (`synthetic.make_prototypes`, the default `Nuisance`). As shift grows, every one of those
distributions moves linearly toward a different visual world (shift=1):

  what moves                      source world (shift=0)            far world (shift=1)
  outline harmonic spectrum       a_k ~ U(0, .45) / sqrt(k)         a_k ~ U(0, .45) * k / 5 (spiky, high-k)
  texture frequency (cycles/r)    U(0.6, 2.2)                       U(2.2, 3.6) (fine, still above 2 px/cycle)
  plain (untextured) fill         20% of prototypes                 none
  crossed gratings (checker)      40% of prototypes                 90%
  fill colours                    U(.05, .95) per channel           hue rotated by 180 degrees about the grey axis
                                                                    (rotation angle = shift x 180: saturation kept)
  colour jitter (per instance)    0.08                              0.12
  object radius (frac. of half)   U(0.45, 0.80)                     U(0.38, 0.68) (smaller objects)
  background distractor ellipses  2                                 3 (rounded: 2, 2, 2, 3, 3, 3 along the way)
  pixel noise (std)               0.04                              0.06

Nothing else changes with shift: class count, split sizes, image size, the label (prototype identity), and the
random draws themselves. Every move keeps the classes apart (a rotation of hue, not a loss of saturation; textures
and objects stay resolvable at 32 px), so a far task is not an unlearnable one: a linear probe on raw pixels (10
classes, 40 train images each, 3 seeds) scores 0.30 at shift 0, 0.28 at 0.6 and 0.24 at 1 (tests/test_distance.py
checks it stays well above chance), and what falls with shift is what the source's features bring. (An earlier far
world - desaturated, darkened, tiny, noisy objects - was at chance even for raw pixels: it measured difficulty, not
distance.) Every parameter is a shift-dependent map of uniforms drawn from the task seed alone (common random
numbers), so two shifts of one seed differ only through shift, and `target.data.seed` is a replicate: new classes
and new images from the same distributions.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from src.data import synthetic as syn

SHIFT_RANGE = (0.0, 1.0)


def _lerp(a: float, b: float, s: float) -> float:
    return (1.0 - s) * a + s * b


def shift_nuisance(s: float) -> syn.Nuisance:
    """Instance nuisances at shift `s` (0 = the source's default `Nuisance`)."""
    base = syn.Nuisance()
    return syn.Nuisance(
        scale=(_lerp(base.scale[0], 0.38, s), _lerp(base.scale[1], 0.68, s)),
        max_shift=base.max_shift,
        colour_jitter=_lerp(base.colour_jitter, 0.12, s),
        brightness=base.brightness,
        distractors=int(round(_lerp(base.distractors, 3, s))),
        noise=_lerp(base.noise, 0.06, s),
    )


def _hue_rotation(angle: float) -> np.ndarray:
    """3 x 3 rotation of RGB about the grey axis (1, 1, 1)/sqrt(3) (Rodrigues): hue turns, grey and saturation
    stay."""
    u = np.full(3, 1 / np.sqrt(3))
    k = np.array([[0, -u[2], u[1]], [u[2], 0, -u[0]], [-u[1], u[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


def shift_prototypes(num_classes: int, s: float, seed: int) -> syn.Prototypes:
    """`num_classes` prototypes at shift `s`; at s=0 distributed exactly as `synthetic.make_prototypes`."""
    rng = np.random.default_rng([seed, 6007])
    k = np.arange(1, syn.N_HARMONICS + 1)
    u_amp = rng.uniform(0.0, 0.45, (num_classes, syn.N_HARMONICS))
    phase = rng.uniform(0, 2 * np.pi, (num_classes, syn.N_HARMONICS))
    u_plain, u_freq, angle, u_check = rng.random((4, num_classes))
    angle = angle * np.pi
    u_colour = rng.uniform(0.05, 0.95, (num_classes, 2, 3))

    amp = u_amp * ((1 - s) / np.sqrt(k) + s * k / syn.N_HARMONICS)
    lo, hi = _lerp(0.6, 2.2, s), _lerp(2.2, 3.6, s)
    freq = np.where(u_plain < 0.2 * (1 - s), 0.0, lo + (hi - lo) * u_freq)
    checker = (u_check < _lerp(0.4, 0.9, s)).astype(np.float64)
    colour = np.clip(_hue_rotation(np.pi * s) @ u_colour[..., None], 0.0, 1.0)[..., 0]
    return syn.Prototypes(amp, phase, freq, angle, checker, colour)


def check_shift(value: Any) -> float:
    """`target.data.shift` as a float in SHIFT_RANGE, or a one-line ValueError naming the bad value."""
    lo, hi = SHIFT_RANGE
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise ValueError(f"target.data.shift={value!r} must be a number in [{lo}, {hi}] (0 = the source's world)")
    return float(value)


def build_shift_task(d: Mapping[str, Any], size: int) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) over all splits of the synth_shift task described by `d` (see the module docstring)."""
    s = check_shift(d["shift"])
    n_cls = int(d["num_classes"])
    total = int(d["train_per_class"]) + int(d["val_per_class"]) + int(d["test_per_class"])
    protos = shift_prototypes(n_cls, s, seed=int(d["seed"]))
    labels = syn.balanced_labels(n_cls, total, int(d["seed"]))
    return syn.render_single(protos, labels, size, seed=int(d["seed"]), nuis=shift_nuisance(s)), labels
