"""P3 pretraining: our Lightning source training vs a bare PyTorch loop, as throughput and as achieved GFLOP/s
against this CPU's fp32 peak measured in the same run.

Both: alexnet on the default synthetic source (6,000 images, flip+crop augmentation), SGD Nesterov with the
one-cycle schedule, batch 128, 2 epochs, a validation pass per epoch; at width small (the default source) and
width medium. Ours also snapshots each epoch and writes CSV logs. FLOPs are counted, not estimated:
`torch.utils.flop_counter.FlopCounterMode` over one training step's forward and backward (convolutions and matrix
products; the elementwise work of BatchNorm, ReLU and pooling is not counted, so GFLOP/s here is the rate of the
counted work). The peak is the faster of a large float32 GEMM and a large 3x3 convolution, each the best of
several calls (`benchmarks.common.fp32_kernel_rates`). Rounds are interleaved (bare, ours, bare, ours, ...;
`--rounds`); each figure is the median of its rounds. Where the fraction of the peak is low, a profile of bare
training steps gives each layer type's share of the time and its own rate.
Goals: ours >= 0.95 x bare, and bare >= 0.85 of the measured peak (or each gap explained per layer type).
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import fp32_kernel_rates, parser, write
from src.data.tasks import load_source
from src.models.nets import build_model
from src.models.registry import arch_spec
from src.train.source import augment_batch, to_input, train_source

OPTIM = {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "batch_size": 128, "label_smoothing": 0.0}
# profiler op name fragments -> layer type (the rest is "other": augmentation, loss, optimiser, data movement)
LAYER_TYPES = {"convolution": "conv", "conv": "conv", "addmm": "linear", "aten::mm": "linear",
               "batch_norm": "batchnorm", "relu": "relu", "max_pool": "pool", "avg_pool": "pool"}


def train_flops(spec, batch: int = 128) -> tuple[float, dict[str, float]]:
    """(FLOPs per training image, {layer type: FLOPs per image}) of one forward + backward step."""
    model = build_model(spec).to(memory_format=torch.channels_last).train()
    x = torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8)
    y = torch.randint(0, spec.num_classes, (batch,))
    with FlopCounterMode(display=False) as fc:
        F.cross_entropy(model(to_input(x)), y).backward()
    per_type: dict[str, float] = {}
    for op, flops in fc.get_flop_counts()["Global"].items():
        kind = "conv" if "convolution" in str(op) else "linear"
        per_type[kind] = per_type.get(kind, 0.0) + flops / batch
    return fc.get_total_flops() / batch, per_type


def bare_loop(spec, splits, epochs: int, seed: int = 0) -> float:
    torch.manual_seed(seed)
    model = build_model(spec).to(memory_format=torch.channels_last)
    x_tr, y_tr = (torch.from_numpy(a) for a in splits["train"])
    x_va, y_va = (torch.from_numpy(a) for a in splits["val"])
    bs = OPTIM["batch_size"]
    steps = math.ceil(len(y_tr) / bs)
    opt = torch.optim.SGD(model.parameters(), lr=OPTIM["lr"], momentum=0.9, nesterov=True, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=OPTIM["lr"], total_steps=epochs * steps)
    t0 = time.perf_counter()
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(y_tr))
        for i in range(steps):
            idx = perm[i * bs : (i + 1) * bs]
            loss = F.cross_entropy(model(to_input(augment_batch(x_tr[idx]))), y_tr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        with torch.inference_mode():
            for i in range(0, len(y_va), 256):
                (model(to_input(x_va[i : i + 256])).argmax(1) == y_va[i : i + 256]).float().mean()
    return time.perf_counter() - t0


def layer_profile(spec, splits, steps: int = 8) -> dict[str, float]:
    """Seconds per training step spent in each layer type (profiler self CPU time of bare training steps)."""
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    model = build_model(spec).to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    x, y = (torch.from_numpy(a[:128]) for a in splits["train"])

    def step():
        loss = F.cross_entropy(model(to_input(augment_batch(x))), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    seconds: dict[str, float] = {}
    for ev in prof.key_averages():
        kind = next((t for frag, t in LAYER_TYPES.items() if frag in ev.key), "other")
        seconds[kind] = seconds.get(kind, 0.0) + ev.self_cpu_time_total / 1e6 / steps
    return seconds


def main(argv=None) -> dict:
    ap = parser(__doc__)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    src = {"kind": "synthetic", "num_classes": 20, "images_per_class": 300, "val_per_class": 25, "image_size": 32,
           "epochs": 2, "augment": "flip_crop"}
    widths = {"small": 0.25, "medium": 0.5}
    rounds = args.rounds
    if args.smoke:
        src.update(num_classes=4, images_per_class=64, epochs=1)
        widths, rounds = {"tiny": 0.125}, 1
    splits = load_source(src, seed=0)
    trainer_cfg = {"optim": OPTIM, "accelerator": "cpu", "progress_bar": False}
    images = src["epochs"] * len(splits["train"][1])
    kernels = fp32_kernel_rates(args.smoke)
    peak = max(kernels.values())
    rows, raw = [], {"peak_gflops": peak, "kernel_gflops": kernels, "images": images}
    for name, width in widths.items():
        spec = arch_spec("alexnet", None, width, src["num_classes"])
        flops, per_type = train_flops(spec)
        bare, ours = [], []
        for _ in range(rounds):
            bare.append(bare_loop(spec, splits, src["epochs"]))
            with tempfile.TemporaryDirectory() as tmp:
                ours.append(train_source(Path(tmp), spec, splits, src, trainer_cfg, seed=0)["wall_s"])
        t_bare, t_ours = statistics.median(bare), statistics.median(ours)
        # The validation passes are a small part of the work (forward only); the rate counts the training steps.
        for path, t in (("bare PyTorch loop", t_bare), ("ours (Lightning)", t_ours)):
            rows.append({"width": name, "path": path, "wall_s": t, "images_per_s": images / t,
                         "gflop_s": flops * images / t / 1e9, "fraction_of_peak": flops * images / t / 1e9 / peak,
                         "share_of_step": None})
        prof = layer_profile(spec, splits)
        total = sum(prof.values())
        step_images = 128
        for kind in ("conv", "linear", "batchnorm", "relu", "pool", "other"):
            if kind in prof:
                rate = per_type.get(kind, 0.0) * step_images / prof[kind] / 1e9 if kind in per_type else None
                rows.append({"width": name, "path": f"  {kind} layers (profile of a bare step)", "wall_s": None,
                             "images_per_s": None, "gflop_s": rate,
                             "fraction_of_peak": None if rate is None else rate / peak,
                             "share_of_step": prof[kind] / total})
        raw[name] = {"t_bare_s": bare, "t_ours_s": ours, "flops_per_image": flops, "flops_per_type": per_type,
                     "profile_s_per_step": prof}
    first = next(iter(widths))
    t_b, t_o = statistics.median(raw[first]["t_bare_s"]), statistics.median(raw[first]["t_ours_s"])
    ratio = t_b / t_o
    frac = raw[first]["flops_per_image"] * images / t_b / 1e9 / peak
    return write("p3_pretraining", "P3 pretraining: ours / bare throughput; bare / measured fp32 peak", rows, ratio,
                 ">= 0.95 (and bare >= 0.85 of the measured fp32 peak)", ratio >= 0.95 and frac >= 0.85, args.smoke,
                 ours=f"{images / t_o:.0f} img/s ({first})",
                 reference=f"bare loop {images / t_b:.0f} img/s = {frac:.0%} of the measured {peak:.0f} GFLOP/s peak "
                           f"(GEMM {kernels['gemm']:.0f}, 3x3 conv {kernels['conv3x3']:.0f})",
                 rounds=rounds, raw=raw)


if __name__ == "__main__":
    main()
