"""P8 extraction from model-library backbones: the features stage's extraction vs a bare inference loop.

Models: timm's resnet18 and torchvision's mobilenet_v3_small at random init (the weights do not change the work),
on the same uint8 images (random pixels at 32x32, resized to each model's input side as the stage does).
Ours = what `src.experiment.features_stage` runs for `arch=timm|torchvision`: the model and its preprocessing from
`src.models.external`, its blocks, pre_logits and logits traced with the library's FX helpers, conv maps pooled
(avg, spp), everything written to memory-mapped .npy (`src.features.extract.extract_splits`). Bare = the same model
called on the same preprocessed batches under `torch.inference_mode`, outputs discarded.
Rounds alternate the two paths; the ratio is the median over >= 5 rounds of bare / ours seconds.
Goal: ours >= 0.9 x bare throughput on each model. `--gpu` runs both on the CUDA device.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import parser, write

MODELS = [("timm", "resnet18", 160), ("torchvision", "mobilenet_v3_small", 224)]


def spec_of(library: str, model: str, size: int, cache: Path):
    from src.models.registry import get_arch

    cfg = {"name": library, "model": model, "weights": None, "seed": 0, "input_size": size, "kwargs": {}}
    return get_arch(library).spec(None, 1.0, 1000, cfg, cache)


def measure(library: str, model_name: str, size: int, n: int, batch: int, rounds: int, device: str,
            scratch: Path) -> dict:
    from src.features.extract import extract_splits
    from src.models import external

    spec = spec_of(library, model_name, size, scratch / "models")
    model = external.load(spec).to(device)
    prep = external.preprocess(spec)
    nodes = external.tap_nodes(spec)  # blocks, pre_logits, logits: what a `depth:` sweep writes
    images = np.random.default_rng(0).integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    labels = np.zeros(n, dtype=np.int64)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    @torch.inference_mode()
    def bare():
        for i in range(0, n, batch):
            model(prep(torch.from_numpy(images[i:i + batch]).to(device)))
        sync()

    runs = iter(range(10**6))

    def ours():
        extract_splits(model, nodes, {"train": (images, labels)}, scratch / f"{model_name}-{next(runs)}",
                       batch_size=batch, preprocess=prep, device=device, prefix_tokens=spec.extra["prefix_tokens"],
                       extractor=lambda m, r: external.feature_extractor(m, r, spec))
        sync()

    def timed(fn) -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    bare(), ours()  # warm-up: allocator, tracing, kernels
    pairs = [(timed(bare), timed(ours)) for _ in range(rounds)]
    t_bare, t_ours = float(np.median([b for b, _ in pairs])), float(np.median([o for _, o in pairs]))
    return {"model": f"{library}:{model_name} @{size}px", "taps": len(nodes), "device": device,
            "bare_img_s": n / t_bare, "ours_img_s": n / t_ours,
            "ratio": float(np.median([b / o for b, o in pairs])),
            "ratio_spread": f"{min(b / o for b, o in pairs):.2f}-{max(b / o for b, o in pairs):.2f}"}


def main(argv=None) -> dict:
    ap = parser(__doc__)
    ap.add_argument("--gpu", action="store_true", help="run on the CUDA device")
    args = ap.parse_args(argv)
    device = "cuda" if args.gpu else "cpu"
    n, batch, rounds = (64, 32, 1) if args.smoke else ((4096, 256, 5) if args.gpu else (512, 128, 5))
    scratch = Path(tempfile.mkdtemp())
    try:
        rows = [measure(lib, name, 64 if args.smoke else size, n, batch, rounds, device, scratch)
                for lib, name, size in MODELS]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    ratio = min(r["ratio"] for r in rows)
    name = "p8_backbones_gpu" if args.gpu else "p8_backbones"
    return write(name, f"P8 backbone extraction ({device}): stage / bare inference throughput", rows, ratio,
                 ">= 0.9 on every model", ratio >= 0.9, args.smoke,
                 ours=", ".join(f"{r['model']} {r['ours_img_s']:.0f} img/s" for r in rows),
                 reference=", ".join(f"bare {r['bare_img_s']:.0f} img/s" for r in rows),
                 raw={"images": n, "batch": batch, "rounds": rounds})


if __name__ == "__main__":
    main()
