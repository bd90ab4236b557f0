"""Grouped replicate training: R source nets of one config (seeds 0..R-1) trained as one batched group
(`src.train.group`, `torch.func` vmap over stacked parameters) against the same R nets trained one after another
the way a sweep trains them without grouping (`src.train.source.train_source`, Lightning).

The default source (alexnet width small, synthetic 20 classes x 300 images at 32 px, flip+crop, SGD Nesterov
one-cycle, batch 128), 2 epochs per net (the per-epoch cost is what grouping changes), R=3 (`--members`), on the
CPU with torch's default threads, or on the GPU with `--gpu`. Rounds are interleaved (sequential, group,
sequential, group, ...; `--rounds`, default 3); each figure is the median of its rounds. `--epochs` and
`--images-per-class` shorten a run (each step costs the same; the JSON records the sizes used). The ratio is the group's
time over the sequential time: below 1, grouping wins on the hardware measured. `trainer.group_replicates=auto` groups on a
GPU and not on the CPU; the goal checks that this measurement agrees with that choice for the hardware measured.
The GPU goal (6 nets in one group within 1.5x one net's time) is the `group / one net` column of a
`--gpu --members 6` run.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import parser, write
from src.data.tasks import load_source
from src.models.registry import arch_spec
from src.train.group import train_group
from src.train.source import train_source

OPTIM = {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "batch_size": 128, "label_smoothing": 0.0}


def sequential(spec, splits, src, trainer_cfg, seeds) -> tuple[float, list[float]]:
    """(seconds for every net one after another, each net's seconds)."""
    each = []
    for seed, s in zip(seeds, splits):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            train_source(Path(tmp), spec, s, src, trainer_cfg, seed=seed)
            each.append(time.perf_counter() - t0)
    return sum(each), each


def grouped(spec, splits, src, trainer_cfg, seeds, device) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        dirs = [Path(tmp) / str(s) for s in seeds]
        for d in dirs:
            d.mkdir()
        t0 = time.perf_counter()
        train_group(dirs, spec, splits, src, trainer_cfg, seeds, device=device)
        if device != "cpu":
            torch.cuda.synchronize()
        return time.perf_counter() - t0


def main(argv=None) -> dict:
    ap = parser(__doc__)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--gpu", action="store_true", help="train on the GPU (CUDA)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--images-per-class", type=int, default=300, help="fewer: a shorter run (the per-step cost is "
                    "the same)")
    args = ap.parse_args(argv)
    args.device = "cuda" if args.gpu else "cpu"
    src = {"kind": "synthetic", "num_classes": 20, "images_per_class": args.images_per_class, "val_per_class": 25,
           "image_size": 32, "epochs": args.epochs, "augment": "flip_crop"}
    width, rounds, members = 0.25, args.rounds, args.members
    if args.smoke:
        src.update(num_classes=4, images_per_class=64, epochs=1)
        width, rounds, members = 0.125, 1, 2
    seeds = list(range(members))
    splits = [load_source(src, seed=s) for s in seeds]
    spec = arch_spec("alexnet", None, width, src["num_classes"])
    trainer_cfg = {"optim": OPTIM, "accelerator": "gpu" if args.device == "cuda" else "cpu", "progress_bar": False}
    seq, one, grp = [], [], []
    for _ in range(rounds):
        total, each = sequential(spec, splits, src, trainer_cfg, seeds)
        seq.append(total)
        one.append(statistics.median(each))
        grp.append(grouped(spec, splits, src, trainer_cfg, seeds, args.device))
    t_seq, t_one, t_grp = statistics.median(seq), statistics.median(one), statistics.median(grp)
    ratio = t_grp / t_seq
    rows = [{"path": f"{members} nets one after another (Lightning)", "wall_s": t_seq, "per_net_s": t_seq / members,
             "group / one net": None},
            {"path": f"{members} nets as one group (vmap)", "wall_s": t_grp, "per_net_s": t_grp / members,
             "group / one net": t_grp / t_one}]
    grouping_on = args.device == "cuda"  # what trainer.group_replicates=auto does on this device
    return write("group_replicates" + ("_gpu" if args.gpu else ""), f"Grouped replicate training ({members} nets, {args.device})", rows, ratio,
                 "group faster than sequential exactly where auto groups (GPU: 6 nets <= 1.5x one net)",
                 (ratio < 1) == grouping_on, args.smoke, ours=f"{t_grp:.1f} s", reference=f"{t_seq:.1f} s",
                 raw={"sequential_s": seq, "one_net_s": one, "group_s": grp, "device": args.device,
                      "threads": torch.get_num_threads(), "members": members, "epochs": src["epochs"],
                      "images_per_class": src["images_per_class"]})


if __name__ == "__main__":
    main()
