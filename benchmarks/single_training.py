"""Single source training at the limit: each option of how one net trains, against the default, as a ratio of
wall time (below 1: the option is faster).

The default source (alexnet width small, synthetic 20 classes x 300 images at 32 px, flip+crop, SGD Nesterov
one-cycle, batch 128), 2 epochs, trained by `src.train.source.fit` (Lightning) as a sweep trains it. The default
path: channels_last weights and inputs, the images as uint8 tensors in memory, augmentation on the whole uint8
batch at once (`augment_batch`), torch's default thread count. The options, one change each:

  - `contiguous`: NCHW (contiguous) weights and inputs instead of channels_last;
  - `compile`: the net through `torch.compile` (inductor on the CPU), its compile time counted in the wall time;
  - `threads=1` (and `threads=2x` where torch defaults to fewer than the cores): torch's intra-op threads;
  - `float inputs`: the normalised float32 images precomputed in memory, so a step does not convert uint8 (the
    augmentation then runs on float images);
  - `no augmentation`: what the batched augmentation costs (a different recipe: the bound on that cost, not an
    option to keep).

Rounds are interleaved (every option once per round, `--rounds`, default 5); each figure is the median of its
rounds (`--compile-rounds N`: `compile` in the first N rounds only). `--epochs` and `--images-per-class` shorten a
run (each step costs the same; the JSON records the sizes used). An option becomes the default only if it wins in
the medians and keeps the trained net within the
determinism contract (bitwise on the CPU at a given thread count). `--smoke` leaves out `compile` (compiling takes
minutes whatever the size).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import parser, write
from src.data.tasks import load_source
from src.models.nets import PIXEL_MEAN, PIXEL_STD, build_model
from src.models.registry import arch_spec
from src.train.source import ClassifierModule, fit

OPTIM = {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "batch_size": 128, "label_smoothing": 0.0}


def _contiguous(x: torch.Tensor) -> torch.Tensor:
    return ((x.float() - PIXEL_MEAN) / PIXEL_STD).contiguous()


def _float_ready(x: torch.Tensor) -> torch.Tensor:  # already normalised float32 (the `float inputs` option)
    return x.contiguous(memory_format=torch.channels_last)


def _float_flip_crop(x: torch.Tensor, pad: int = 4) -> torch.Tensor:
    import torch.nn.functional as F

    n, c, h, w = x.shape
    flip = torch.rand(n) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    padded = F.pad(x, (pad, pad, pad, pad), value=(128 - PIXEL_MEAN) / PIXEL_STD)  # the normalised mid-grey
    dy = torch.randint(0, 2 * pad + 1, (n, 1))
    dx = torch.randint(0, 2 * pad + 1, (n, 1))
    rows = (dy + torch.arange(h))[:, None, :, None]
    cols = (dx + torch.arange(w))[:, None, None, :]
    return padded[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]


def run(option: str, spec, splits, src) -> float:
    """Seconds to train one net with `option` (compile time included)."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    model = build_model(spec)
    steps = -(-len(splits["train"][1]) // OPTIM["batch_size"])
    augment = "none" if option == "no augmentation" else src["augment"]
    data = splits
    module = ClassifierModule(model, OPTIM, augment, src["epochs"] * steps)
    if option == "contiguous":
        module.model = module.model.to(memory_format=torch.contiguous_format)
        module.preprocess = _contiguous
    elif option == "compile":
        module.model = torch.compile(module.model)
    elif option == "float inputs":
        data = {k: (((torch.from_numpy(x).float() - PIXEL_MEAN) / PIXEL_STD).numpy(), y) for k, (x, y) in splits.items()}
        module.preprocess = _float_ready
        module.augment = _float_flip_crop
    elif option.startswith("threads="):
        torch.set_num_threads(int(option.split("=")[1]))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            fit(module, data, Path(tmp), src["epochs"], OPTIM["batch_size"], {"accelerator": "cpu",
                                                                              "progress_bar": False}, seed=0)
            return time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)
        if option == "compile":
            torch._dynamo.reset()  # every round compiles afresh, as every training process would


def main(argv=None) -> dict:
    ap = parser(__doc__)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--options", default="", help="comma-separated subset of the options")
    ap.add_argument("--compile-rounds", type=int, default=None, help="rounds that include `compile` (default: all)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--images-per-class", type=int, default=300, help="fewer: a shorter run (the per-step cost is "
                    "the same)")
    args = ap.parse_args(argv)
    src = {"kind": "synthetic", "num_classes": 20, "images_per_class": args.images_per_class, "val_per_class": 25,
           "image_size": 32, "epochs": args.epochs, "augment": "flip_crop"}
    width, rounds = 0.25, args.rounds
    options = ["default", "contiguous", "compile", "threads=1", "float inputs", "no augmentation"]
    if args.smoke:  # compiling takes minutes whatever the size: --smoke leaves it out
        src.update(num_classes=4, images_per_class=64, epochs=1)
        width, rounds = 0.125, 1
        options.remove("compile")
    cores = os.cpu_count() or 1
    if torch.get_num_threads() < cores:
        options.insert(4, f"threads={cores}")
    if args.options:
        options = ["default"] + [o for o in args.options.split(",") if o != "default"]
    splits = load_source(src, seed=0)
    spec = arch_spec("alexnet", None, width, src["num_classes"])
    times: dict[str, list[float]] = {o: [] for o in options}
    for i in range(rounds):
        for option in options:
            if option == "compile" and args.compile_rounds is not None and i >= args.compile_rounds:
                continue
            times[option].append(run(option, spec, splits, src))
    base = statistics.median(times["default"])
    rows = [{"option": o, "wall_s": statistics.median(t), "ratio_to_default": statistics.median(t) / base,
             "rounds": len(t)} for o, t in times.items()]
    best = min((r for r in rows if r["option"] not in ("default", "no augmentation")), key=lambda r: r["wall_s"])
    return write("single_training", "Single source training: options vs the default", rows,
                 best["ratio_to_default"], "keep an option only if it beats the default (ratio < 1)",
                 best["ratio_to_default"] >= 1.0, args.smoke, ours=f"{base:.1f} s (default)",
                 reference=f"{best['wall_s']:.1f} s ({best['option']})",
                 raw={"seconds": times, "threads": torch.get_num_threads(), "cores": cores, "epochs": src["epochs"],
                      "images_per_class": src["images_per_class"]})


if __name__ == "__main__":
    main()
