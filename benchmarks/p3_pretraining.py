"""P3 pretraining overhead: our Lightning source training vs a bare PyTorch loop, same model/data/batch/optimizer.

Both: alexnet width small on the default synthetic source (6,000 images, flip+crop augmentation), SGD Nesterov
with the one-cycle schedule, batch 128, 2 epochs, a validation pass per epoch. Ours also snapshots each epoch and
writes CSV logs. Goal: ours >= 0.9 x the bare loop's throughput.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.common import parser, write
from src.data.tasks import load_source
from src.models.nets import build_model
from src.models.registry import arch_spec
from src.train.source import augment_batch, to_input, train_source

OPTIM = {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "batch_size": 128, "label_smoothing": 0.0}


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


def main(argv=None) -> dict:
    args = parser(__doc__).parse_args(argv)
    src = {"kind": "synthetic", "num_classes": 20, "images_per_class": 300, "val_per_class": 25, "image_size": 32,
           "epochs": 2, "augment": "flip_crop"}
    width = 0.25
    if args.smoke:
        src.update(num_classes=4, images_per_class=64, epochs=1)
        width = 0.125
    splits = load_source(src, seed=0)
    spec = arch_spec("alexnet", None, width, src["num_classes"])
    trainer_cfg = {"optim": OPTIM, "accelerator": "cpu", "progress_bar": False}
    images = src["epochs"] * len(splits["train"][1])
    t_bare = bare_loop(spec, splits, src["epochs"])
    with tempfile.TemporaryDirectory() as tmp:
        ours = train_source(Path(tmp), spec, splits, src, trainer_cfg, seed=0)
    t_ours = ours["wall_s"]
    ratio = t_bare / t_ours
    rows = [{"path": "bare PyTorch loop", "wall_s": t_bare, "images_per_s": images / t_bare},
            {"path": "ours (Lightning)", "wall_s": t_ours, "images_per_s": images / t_ours}]
    return write("p3_pretraining", "P3 pretraining: ours / bare throughput", rows, ratio, ">= 0.9", ratio >= 0.9,
                 args.smoke, ours=f"{images / t_ours:.0f} img/s", reference=f"bare loop {images / t_bare:.0f} img/s", raw={"t_bare_s": t_bare, "t_ours_s": t_ours, "train_images": images // src["epochs"],
                                  "epochs": src["epochs"]})


if __name__ == "__main__":
    main()
