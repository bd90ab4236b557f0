"""Replicate source nets of one config (configs that differ only in their seeds) trained as one batched ensemble.

R nets of one architecture are stacked (`torch.func.stack_module_state`) and trained together: one forward and
backward of `vmap(functional_call)` over the stacked parameters per step, one optimiser over the stacked tensors
(SGD and AdamW update each element on its own, so this is R independent optimisers), one LR schedule (every member
has the same number of steps). A small net leaves a GPU mostly idle (a step is latency-bound), so R nets in one
step cost little more than one; on the CPU a step is compute-bound and a group is slower than its nets in turn
(`benchmarks/group_replicates.py` measures both; `trainer.group_replicates=auto` groups only on a GPU).

Each member is what a single training of its config (`src.train.source.train_source`) would start from:
  - its initialisation: `build_model` after `seed_everything(seed)`, bitwise the single training's;
  - its data: its own splits (`load_source` with its seed) and its own data order (the same seeded generator and
    DataLoader as `ArrayDataModule`), bitwise the single training's batches;
  - its augmentation: drawn from its own RNG stream, continued from where its initialisation left it, as in a
    single training.
What differs: the floating-point order of the batched convolutions, and dropout, whose masks vmap draws for the
whole group from one stream seeded by the members' seeds. The reproducibility contract (docs/replicates.md, tested
in tests/test_group_training.py): a member's weights after one step equal a single training's to within 1e-4
(relative, dropout off), and its scores equal a single training's within the noise between seeds. A member's
artifact is an ordinary source entry (snapshot_<k>.pt per epoch, metrics.json) under its own key.

Resumable: with resume dirs (one per member, the cache's `.<key>.resume/`), every epoch ends with each member's
state (weights, optimiser slice, schedule, data order, RNG streams) in `<resume dir>/group.ckpt`; a rerun of the
same group resumes from the last epoch every member completed, bitwise on the CPU at the same thread count.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from src.models.nets import build_model, to_input
from src.models.spec import ArchSpec
from src.train import snapshot_file
from src.train.registry import OPTIMIZERS, augmentation
from src.train.source import ArrayDataModule

log = logging.getLogger(__name__)
GROUP_CHECKPOINT = "group.ckpt"  # in each member's resume dir: its state after the last epoch the group completed
Splits = Mapping[str, tuple[np.ndarray, np.ndarray]]


def _rng_state(device: torch.device) -> torch.Tensor:
    return torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()


def _set_rng_state(device: torch.device, state: torch.Tensor) -> None:
    if device.type == "cuda":
        torch.cuda.set_rng_state(state, device)
    else:
        torch.set_rng_state(state)


class GroupTrainer:
    """Train R initialised nets of one architecture together (see the module docstring). `models[i]` is trained on
    `splits[i]` with data order `seeds[i]` and augmentation stream `rng[i]` (a torch RNG state)."""

    def __init__(self, models: Sequence[torch.nn.Module], splits: Sequence[Splits], seeds: Sequence[int],
                 rng: Sequence[torch.Tensor], optim: Mapping[str, Any], augment: str, epochs: int,
                 device: str = "cpu", label_smoothing: float | None = None):
        self.device = torch.device(device)
        self.r = len(models)
        self.optim = dict(optim)
        self.batch_size = int(optim["batch_size"])
        self.epochs = epochs
        self.augment: Callable | None = augmentation(augment)
        self.smoothing = float(self.optim.get("label_smoothing", 0.0) if label_smoothing is None else label_smoothing)
        models = [m.to(self.device) for m in models]
        params, self.buffers = stack_module_state(models)
        self.params = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        self.names = list(models[0].state_dict().keys())  # state_dict order, for the snapshots
        self.base = copy.deepcopy(models[0]).to("meta")  # the architecture only: weights come from the stack
        self.data = [ArrayDataModule(s, batch_size=self.batch_size, seed=seed) for s, seed in zip(splits, seeds)]
        self.rng = list(rng)
        n_train = {len(s["train"][1]) for s in splits}
        if len(n_train) != 1:
            raise ValueError(f"a replicate group's members have different training set sizes ({sorted(n_train)})")
        self.n_train = n_train.pop()
        self.steps = math.ceil(self.n_train / self.batch_size)
        self.opt = OPTIMIZERS.get_valid(self.optim["name"])(list(self.params.values()), self.optim)
        self.sched = torch.optim.lr_scheduler.OneCycleLR(self.opt, max_lr=self.optim["lr"],
                                                         total_steps=max(1, epochs * self.steps))
        self.epoch = 0  # epochs completed
        self.val_acc: list[dict[int, float]] = [{} for _ in range(self.r)]
        self.group_rng = torch.Generator().manual_seed(int(np.random.SeedSequence(list(seeds)).generate_state(1)[0]))

    # --- one step and one epoch ---------------------------------------------------------------------------------

    def _loss(self, p, b, x, y):
        return F.cross_entropy(functional_call(self.base, (p, b), (x,)), y, label_smoothing=self.smoothing)

    def _inputs(self, batches) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for i, (x, y) in enumerate(batches):
            x, y = x.to(self.device), y.to(self.device)
            if self.augment is not None:  # from the member's own stream, as a single training draws it
                _set_rng_state(self.device, self.rng[i])
                x = self.augment(x)
                self.rng[i] = _rng_state(self.device)
            xs.append(to_input(x))
            ys.append(y)
        return torch.stack(xs), torch.stack(ys)

    def step(self, batches) -> torch.Tensor:
        """One optimisation step of every member on its batch; returns the members' losses."""
        x, y = self._inputs(batches)
        _set_rng_state(self.device, self._group_state())  # dropout: the group's stream
        self.base.train()
        losses = vmap(self._loss, randomness="different")(self.params, self.buffers, x, y)
        self._keep_group_state()
        if not torch.isfinite(losses).all():
            bad = int((~torch.isfinite(losses)).nonzero()[0, 0])
            raise FloatingPointError(f"source training loss is {losses[bad].item()} (group member {bad}) at epoch "
                                     f"{self.epoch} ; lower trainer.optim.lr (now {self.optim['lr']})")
        self.opt.zero_grad(set_to_none=True)
        losses.sum().backward()  # each member's gradient is its own loss's: the sum separates
        self.opt.step()
        self.sched.step()
        return losses.detach()

    def _group_state(self) -> torch.Tensor:
        if self.device.type == "cuda":
            if not hasattr(self, "_cuda_group"):
                torch.cuda.manual_seed(int(torch.randint(0, 2**62, (1,), generator=self.group_rng)))
                self._cuda_group = torch.cuda.get_rng_state(self.device)
            return self._cuda_group
        return self.group_rng.get_state()

    def _keep_group_state(self) -> None:
        if self.device.type == "cuda":
            self._cuda_group = torch.cuda.get_rng_state(self.device)
        else:
            self.group_rng.set_state(torch.get_rng_state())

    def train_epoch(self) -> None:
        loaders = [d.train_dataloader() for d in self.data]
        for batches in zip(*loaders):
            self.step(batches)
        self.epoch += 1
        for i, acc in enumerate(self.validate()):
            self.val_acc[i][self.epoch] = acc

    @torch.no_grad()
    def validate(self) -> list[float]:
        self.base.eval()
        correct = torch.zeros(self.r, device=self.device)
        n = 0
        loaders = [d.val_dataloader() for d in self.data]
        fwd = vmap(lambda p, b, x: functional_call(self.base, (p, b), (x,)))
        for batches in zip(*loaders):
            x = torch.stack([to_input(xb.to(self.device)) for xb, _ in batches])
            y = torch.stack([yb.to(self.device) for _, yb in batches])
            correct += (fwd(self.params, self.buffers, x).argmax(-1) == y).float().sum(1)
            n += y.shape[1]
        return (correct / max(1, n)).tolist()

    def state_dict(self, i: int) -> dict[str, torch.Tensor]:
        """Member i's model state_dict (as `build_model(spec).state_dict()` names it), on the CPU."""
        both = {**self.params, **self.buffers}
        return {k: both[k][i].detach().to("cpu", copy=True).contiguous() for k in self.names}

    # --- resume: member i's slice of everything that continues the training -----------------------------------

    def member_checkpoint(self, i: int) -> dict[str, Any]:
        opt_state = self.opt.state_dict()
        sliced = {s: {k: (v[i].clone() if torch.is_tensor(v) and v.dim() > 0 else v) for k, v in st.items()}
                  for s, st in opt_state["state"].items()}
        return {"epoch": self.epoch, "r": self.r, "model": self.state_dict(i),
                "optimizer": {"state": sliced, "param_groups": opt_state["param_groups"]},
                "scheduler": self.sched.state_dict(), "data": self.data[i].state_dict(), "rng": self.rng[i],
                "group_rng": self.group_rng.get_state(), "val_acc": dict(self.val_acc[i])}

    def load_members(self, ckpts: Sequence[dict[str, Any]]) -> None:
        """Continue from the members' checkpoints of one epoch (`member_checkpoint`, in member order)."""
        with torch.no_grad():
            for name in self.names:
                target = self.params.get(name, self.buffers.get(name))
                target.copy_(torch.stack([c["model"][name] for c in ckpts]).to(self.device))
        state = ckpts[0]["optimizer"]
        merged = {s: {k: (torch.stack([c["optimizer"]["state"][s][k] for c in ckpts]).to(self.device)
                          if torch.is_tensor(v) and v.dim() > 0 else v) for k, v in st.items()}
                  for s, st in state["state"].items()}
        self.opt.load_state_dict({"state": merged, "param_groups": state["param_groups"]})
        self.sched.load_state_dict(ckpts[0]["scheduler"])
        for i, c in enumerate(ckpts):
            self.data[i].load_state_dict(c["data"])
            self.rng[i] = c["rng"]
            self.val_acc[i] = {int(k): float(v) for k, v in c["val_acc"].items()}
        self.group_rng.set_state(ckpts[0]["group_rng"])
        self.epoch = int(ckpts[0]["epoch"])


def _resume_point(resume_dirs: Sequence[Path]) -> list[dict[str, Any]] | None:
    """Every member's checkpoint of the same epoch, or None: start over. A member's checkpoint is its own slice of
    the group's state, so the members left after a kill resume together whichever group they were trained in."""
    ckpts = []
    for d in resume_dirs:
        path = d / GROUP_CHECKPOINT
        if not path.is_file():
            return None
        try:
            ckpts.append(torch.load(path, map_location="cpu", weights_only=False))
        except Exception as e:  # noqa: BLE001  (damaged or another version's: start over)
            log.warning("group checkpoint %s does not load (%s); the group trains from epoch 0", path, e)
            return None
    if len({c["epoch"] for c in ckpts}) != 1:
        return None
    return ckpts


def train_group(
    out_dirs: Sequence[Path],
    spec: ArchSpec,
    splits: Sequence[Splits],
    source_cfg: Mapping[str, Any],
    trainer_cfg: Mapping[str, Any],
    seeds: Sequence[int],
    device: str = "cpu",
    resume_dirs: Sequence[Path] | None = None,
    on_member_done: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Train the members (`seeds[i]` on `splits[i]`) as one group, writing each one's artifact into `out_dirs[i]`
    as `train_source` would; `on_member_done(i)` is called once member i's files are written (the cache
    publishes it then, so a kill while later members are written leaves the earlier ones complete)."""
    models, rng = [], []
    for seed in seeds:
        pl.seed_everything(seed, workers=True, verbose=False)
        models.append(build_model(spec))
        rng.append(torch.get_rng_state())  # the member's augmentation stream continues from its initialisation
    epochs = int(source_cfg["epochs"])
    trainer = GroupTrainer(models, splits, seeds, rng, trainer_cfg["optim"], source_cfg["augment"], epochs, device)
    if device != "cpu":  # RNG states of the device, not of the CPU
        for i, seed in enumerate(seeds):
            torch.cuda.manual_seed(seed)
            trainer.rng[i] = torch.cuda.get_rng_state(trainer.device)
    resumed = 0
    if resume_dirs is not None:
        for d in resume_dirs:
            d.mkdir(parents=True, exist_ok=True)
        ckpts = _resume_point(resume_dirs)
        if ckpts is not None:
            trainer.load_members(ckpts)
            resumed = trainer.epoch
            log.info("resuming a group of %d source nets from epoch %d of %d", len(seeds), resumed, epochs)
    work_dirs = list(resume_dirs) if resume_dirs is not None else list(out_dirs)
    t0 = time.perf_counter()
    while trainer.epoch < epochs:
        trainer.train_epoch()
        for i, work in enumerate(work_dirs):  # snapshots go where they outlive a kill (the resume dirs)
            torch.save(trainer.state_dict(i), snapshot_file(work, trainer.epoch))
        if resume_dirs is not None:
            for i, d in enumerate(resume_dirs):
                tmp = d / f".{GROUP_CHECKPOINT}.tmp"
                torch.save(trainer.member_checkpoint(i), tmp)
                os.replace(tmp, d / GROUP_CHECKPOINT)
    wall = time.perf_counter() - t0
    out = []
    for i, d in enumerate(out_dirs):
        if resume_dirs is not None:
            for k in range(1, epochs + 1):  # linked, not moved: the resume dir keeps them until the entry is in place
                _link(snapshot_file(work_dirs[i], k), snapshot_file(d, k))
        metrics = {
            "val_acc": {str(k): v for k, v in sorted(trainer.val_acc[i].items())},
            "epochs": epochs,
            "train_images": trainer.n_train,
            "val_images": int(len(splits[i]["val"][1])),
            "wall_s": wall,  # the group's (it trained every member)
            "images_per_s": (epochs - resumed) * trainer.n_train / wall if wall > 0 else 0.0,
            "resumed_from_epoch": resumed,
            "group_size": len(seeds),
        }
        (d / "metrics.json").write_text(json.dumps(metrics, indent=1))
        out.append(metrics)
        if on_member_done is not None:
            on_member_done(i)
    return out



def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another filesystem, or one without hard links
        shutil.copy2(src, dst)
