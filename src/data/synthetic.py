"""Procedural object images: the embedded source task and the synthetic targets.

A *prototype* (one class) is three independent parts, so target tasks can relabel the same images by a
different part (shape, texture or colour) and sit at a controlled distance from the source task:
  shape    radial harmonics r(theta) = 1 + sum_k a_k cos(k theta + phi_k)
  texture  a grating (frequency, orientation) optionally crossed with a second one (checker), or plain
  colour   two RGB colours the texture mixes between
An *instance* varies position, scale, rotation, colour jitter and brightness, and sits on a cluttered
background (a colour gradient, distractor ellipses and pixel noise), so that a linear classifier on raw
pixels does poorly and a ConvNet has to learn shape/texture features.

Everything is vectorised over images (one numpy expression per object slot) and deterministic given a seed.
Images come out as uint8 arrays of shape (N, 3, H, W).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_HARMONICS = 5


@dataclass(frozen=True)
class Prototypes:
    """Per-class parameters; every array has the class count as its first axis."""

    amp: np.ndarray  # (C, K) harmonic amplitudes of the outline
    phase: np.ndarray  # (C, K) harmonic phases
    freq: np.ndarray  # (C,) grating frequency in cycles per object radius (0 = plain fill)
    angle: np.ndarray  # (C,) grating orientation
    checker: np.ndarray  # (C,) 1.0 = crossed gratings, 0.0 = stripes
    colour: np.ndarray  # (C, 2, 3) the two fill colours in [0, 1]

    def __len__(self) -> int:
        return len(self.freq)

    def take(self, idx: np.ndarray) -> "Prototypes":
        return Prototypes(*(getattr(self, f)[idx] for f in self.__dataclass_fields__))


def make_prototypes(num_classes: int, family_seed: int) -> Prototypes:
    """`num_classes` distinct random prototypes from the family drawn with `family_seed`."""
    rng = np.random.default_rng([family_seed, 7919])
    k = np.arange(1, N_HARMONICS + 1)
    amp = rng.uniform(0.0, 0.45, (num_classes, N_HARMONICS)) / np.sqrt(k)
    phase = rng.uniform(0, 2 * np.pi, (num_classes, N_HARMONICS))
    plain = rng.random(num_classes) < 0.2
    freq = np.where(plain, 0.0, rng.uniform(0.6, 2.2, num_classes))
    angle = rng.uniform(0, np.pi, num_classes)
    checker = (rng.random(num_classes) < 0.4).astype(np.float64)
    colour = rng.uniform(0.05, 0.95, (num_classes, 2, 3))
    return Prototypes(amp, phase, freq, angle, checker, colour)


def perturb_prototype(base: Prototypes, num_variants: int, strength: float, seed: int) -> Prototypes:
    """Fine-grained variants of the single prototype `base`: small changes of outline, texture and colour."""
    rng = np.random.default_rng([seed, 104729])
    rep = base.take(np.zeros(num_variants, dtype=int))
    return Prototypes(
        amp=np.clip(rep.amp + rng.normal(0, strength * 0.25, rep.amp.shape), 0, None),
        phase=rep.phase + rng.normal(0, strength * 1.5, rep.phase.shape),
        freq=np.clip(rep.freq + rng.normal(0, strength * 1.5, num_variants), 0, None),
        angle=rep.angle + rng.normal(0, strength * 1.0, num_variants),
        checker=rep.checker,
        colour=np.clip(rep.colour + rng.normal(0, strength * 0.25, rep.colour.shape), 0, 1),
    )


@dataclass(frozen=True)
class Nuisance:
    """How much instances of one prototype vary (the within-class variation of a task)."""

    scale: tuple[float, float] = (0.45, 0.8)  # object radius as a fraction of the half image size
    max_shift: float = 0.35  # centre offset, fraction of the half image size
    colour_jitter: float = 0.08
    brightness: tuple[float, float] = (0.75, 1.25)
    distractors: int = 2  # background ellipses
    noise: float = 0.04


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    c = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
    return np.meshgrid(c, c, indexing="xy")


def _render_background(rng: np.random.Generator, n: int, size: int, nuis: Nuisance) -> np.ndarray:
    X, Y = _grid(size)
    base = rng.uniform(0.1, 0.9, (n, 3, 1, 1)).astype(np.float32)
    slope = rng.normal(0, 0.25, (n, 2, 3, 1, 1)).astype(np.float32)
    img = base + slope[:, 0] * X + slope[:, 1] * Y
    for _ in range(nuis.distractors):
        cx, cy = (rng.uniform(-1, 1, (2, n, 1, 1))).astype(np.float32)
        ax, ay = rng.uniform(0.1, 0.45, (2, n, 1, 1)).astype(np.float32)
        rot = rng.uniform(0, np.pi, (n, 1, 1)).astype(np.float32)
        dx, dy = X - cx, Y - cy
        u = (dx * np.cos(rot) + dy * np.sin(rot)) / ax
        v = (-dx * np.sin(rot) + dy * np.cos(rot)) / ay
        m = (u * u + v * v < 1.0).astype(np.float32)[:, None]
        col = rng.uniform(0, 1, (n, 3, 1, 1)).astype(np.float32)
        img = img * (1 - m) + col * m
    return img


def _composite_objects(
    img: np.ndarray,
    protos: Prototypes,
    rng: np.random.Generator,
    nuis: Nuisance,
    centre: np.ndarray,
    scale: np.ndarray,
    present: np.ndarray | None = None,
) -> np.ndarray:
    """Paint one object per image (prototype i on image i) over `img` (N, 3, H, W), in place-free style."""
    n, _, size, _ = img.shape
    X, Y = _grid(size)
    f32 = np.float32
    rot = rng.uniform(0, 2 * np.pi, (n, 1, 1)).astype(f32)
    dx = X - centre[:, 0, None, None].astype(f32)
    dy = Y - centre[:, 1, None, None].astype(f32)
    s = scale[:, None, None].astype(f32)
    u = (dx * np.cos(rot) + dy * np.sin(rot)) / s
    v = (-dx * np.sin(rot) + dy * np.cos(rot)) / s
    rho = np.sqrt(u * u + v * v)
    # cos(k*theta + phi) via the powers of e^{i theta} = (u + iv) / rho: no arctan2 and no per-harmonic cos.
    c1 = u / np.maximum(rho, 1e-6)
    s1 = v / np.maximum(rho, 1e-6)
    ck, sk = c1, s1
    radius = np.ones_like(rho)
    for k in range(N_HARMONICS):
        a = protos.amp[:, k, None, None].astype(f32)
        p = protos.phase[:, k, None, None]
        radius += a * (ck * np.cos(p).astype(f32) - sk * np.sin(p).astype(f32))
        ck, sk = ck * c1 - sk * s1, sk * c1 + ck * s1
    radius = np.maximum(radius, 0.3) / (1 + protos.amp.sum(1)[:, None, None].astype(f32))
    # Soft edge about one pixel wide in object coordinates.
    sharp = (size / 2) * s
    mask = np.clip((radius - rho) * sharp + 0.5, 0, 1)
    if present is not None:
        mask = mask * present[:, None, None].astype(f32)
    ang = protos.angle[:, None, None].astype(f32)
    fr = (protos.freq[:, None, None] * 2 * np.pi).astype(f32)
    ph = rng.uniform(0, 2 * np.pi, (n, 1, 1)).astype(f32)
    g1 = np.sin(fr * (u * np.cos(ang) + v * np.sin(ang)) + ph)
    g2 = np.sin(fr * (-u * np.sin(ang) + v * np.cos(ang)))
    chk = protos.checker[:, None, None].astype(f32)
    tex = 0.5 + 0.5 * np.sign(g1 * (chk * g2 + (1 - chk))) * (protos.freq[:, None, None] > 0)
    tex = tex.astype(f32)
    col = protos.colour + rng.normal(0, nuis.colour_jitter, protos.colour.shape)
    col = (col * rng.uniform(*nuis.brightness, (n, 1, 1))).astype(f32)
    fg = col[:, 0, :, None, None] * tex[:, None] + col[:, 1, :, None, None] * (1 - tex[:, None])
    m = mask[:, None]
    return img * (1 - m) + fg * m


def _finish(img: np.ndarray, rng: np.random.Generator, nuis: Nuisance) -> np.ndarray:
    # Luminance noise shared by the channels: a third of the random draws, which dominate the cost here.
    n, _, h, w = img.shape
    img = img + np.float32(nuis.noise) * rng.standard_normal((n, 1, h, w), dtype=np.float32)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def render_single(
    protos: Prototypes, labels: np.ndarray, size: int, seed: int, nuis: Nuisance = Nuisance(), chunk: int = 256
) -> np.ndarray:
    """One object of prototype `labels[i]` per image; returns uint8 (N, 3, size, size)."""
    out = np.empty((len(labels), 3, size, size), dtype=np.uint8)
    for start in range(0, len(labels), chunk):
        rng = np.random.default_rng([seed, start])
        lab = labels[start : start + chunk]
        n = len(lab)
        img = _render_background(rng, n, size, nuis)
        centre = rng.uniform(-nuis.max_shift, nuis.max_shift, (n, 2))
        scale = rng.uniform(*nuis.scale, n)
        img = _composite_objects(img, protos.take(lab), rng, nuis, centre, scale)
        out[start : start + n] = _finish(img, rng, nuis)
    return out


def render_multi(
    protos: Prototypes,
    slot_labels: np.ndarray,
    slot_present: np.ndarray,
    size: int,
    seed: int,
    nuis: Nuisance = Nuisance(scale=(0.25, 0.38), distractors=1),
    chunk: int = 256,
) -> np.ndarray:
    """Several objects per image: slot j of image i shows prototype `slot_labels[i, j]` if `slot_present[i, j]`.

    Slots are placed in distinct cells of a 2x2 grid (jittered) so objects rarely overlap, which keeps counts
    countable.
    """
    n_img, n_slots = slot_labels.shape
    out = np.empty((n_img, 3, size, size), dtype=np.uint8)
    cells = np.array([[-0.5, -0.5], [0.5, -0.5], [-0.5, 0.5], [0.5, 0.5]])
    for start in range(0, n_img, chunk):
        rng = np.random.default_rng([seed, start, 1])
        sl = slice(start, start + chunk)
        lab, pres = slot_labels[sl], slot_present[sl]
        n = len(lab)
        img = _render_background(rng, n, size, nuis)
        order = np.argsort(rng.random((n, len(cells))), axis=1)[:, :n_slots]
        centres = cells[order] + rng.uniform(-0.12, 0.12, (n, n_slots, 2))
        for j in range(n_slots):
            scale = rng.uniform(*nuis.scale, n)
            img = _composite_objects(img, protos.take(lab[:, j]), rng, nuis, centres[:, j], scale, pres[:, j])
        out[start : start + n] = _finish(img, rng, nuis)
    return out


def balanced_labels(num_classes: int, per_class: int, seed: int) -> np.ndarray:
    """`per_class` copies of every class, shuffled deterministically."""
    labels = np.repeat(np.arange(num_classes), per_class)
    return np.random.default_rng([seed, 31]).permutation(labels)
