"""Source pretraining: a LightningModule + LightningDataModule over in-memory uint8 images (also used by
fine-tuning, `src.train.finetune`).

The trained artifact (written into a cache entry by `train_source`) is:
  snapshot_<k>.pt   the model's state_dict after k epochs, for every k in 1..epochs (a plain state_dict, so
                    extraction needs no Lightning), so `source.snapshot=1,2,4` reuses one training run
  metrics.json      validation accuracy per epoch, wall time, images/s, the epoch it resumed from (0: none)
  logs/             Lightning's CSV logs

Resumable training: given a `resume_dir` (the cache's `.<key>.resume/`, which outlives a killed process), training
runs there and saves a full checkpoint after every epoch (`ResumePoint`: model, optimiser, LR schedule, Lightning's
loop counters, the RNG states and the data order's generator). A training interrupted anywhere (kill -9, a SLURM
preemption or time limit) restarts from its last complete epoch, and on the CPU at the same thread count the
resumed net is bitwise the net an uninterrupted run gives.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.loggers import CSVLogger, Logger
from torch.utils.data import DataLoader, TensorDataset

from src.models import nets
from src.models.nets import build_model, to_input  # noqa: F401  (to_input: the input transform of our nets)
from src.models.spec import ArchSpec
from src.train import snapshot_file
from src.train.registry import OPTIMIZERS, augmentation

# Lightning's start-up banners (GPU/TPU availability, tips) are noise in a sweep log.
logging.getLogger("pytorch_lightning.utilities.rank_zero").setLevel(logging.WARNING)
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
# Fine-tuning with a frozen backbone starts in eval mode on purpose (see ClassifierModule.on_train_epoch_start).
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training")
# A resumed training's CSV log goes where the interrupted one's was (its metrics file is kept under another name).
warnings.filterwarnings("ignore", message=r"Experiment logs directory .* exists and is not empty")
# Every training is one process on one device: a machine with SLURM's tools installed (a login node, a test cluster)
# is not a reason to run it under srun, so Lightning's hint would only be noise in each job's log.
warnings.filterwarnings("ignore", message=r"The `srun` command is available on your system but is not used")
log = logging.getLogger(__name__)
CHECKPOINT = "last.ckpt"  # in the resume dir: the last complete epoch's full training state

def augment_batch(x: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """Random horizontal flip + random crop after mid-grey padding, vectorised over the (uint8) batch."""
    n, c, h, w = x.shape
    flip = torch.rand(n, device=x.device) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    padded = F.pad(x, (pad, pad, pad, pad), value=128)
    dy = torch.randint(0, 2 * pad + 1, (n, 1), device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (n, 1), device=x.device)
    rows = (dy + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx + torch.arange(w, device=x.device))[:, None, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chan = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chan, rows, cols]


class ArrayDataModule(pl.LightningDataModule):
    """Train/val loaders over uint8 numpy arrays held in memory (the synthetic data is small)."""

    def __init__(self, splits: Mapping[str, tuple[np.ndarray, np.ndarray]], batch_size: int, seed: int):
        super().__init__()
        self.splits = {k: TensorDataset(torch.from_numpy(x), torch.from_numpy(y)) for k, (x, y) in splits.items()}
        self.batch_size = batch_size
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)  # the data order: each epoch's shuffle draws from it

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.splits["train"], batch_size=self.batch_size, shuffle=True, generator=self.generator,
                          drop_last=False)

    # Saved in a resumable training's checkpoint, so the epochs after a resume see the batches they would have seen.
    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.splits["val"], batch_size=max(self.batch_size, 256))


class ClassifierModule(pl.LightningModule):
    """Cross-entropy training of a classifier net with SGD (Nesterov) or AdamW and a one-cycle schedule.

    Used for source pretraining (all parameters) and fine-tuning (`trainable` = the parameters to update;
    with a frozen backbone its BatchNorm statistics stay fixed too). `preprocess` maps a uint8 batch to inputs.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optim: Mapping[str, Any],
        augment: str,
        total_steps: int,
        preprocess: Callable[[torch.Tensor], torch.Tensor] = None,
        trainable: list[torch.nn.Parameter] | None = None,
        what: str = "source training",
        lr_key: str = "trainer.optim.lr",
    ):
        super().__init__()
        self.model = model.to(memory_format=torch.channels_last)
        self.optim = dict(optim)
        self.augment = augmentation(augment)
        self.total_steps = total_steps
        self.preprocess = preprocess or to_input
        self.trainable = trainable
        self.what, self.lr_key = what, lr_key

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def on_train_epoch_start(self):
        # A frozen backbone keeps its BatchNorm running statistics as they are (eval mode); otherwise train mode,
        # whatever mode the (possibly loaded) model arrived in.
        self.model.train(self.trainable is None)

    def training_step(self, batch, batch_idx):
        x, y = batch
        if self.augment is not None:
            x = self.augment(x)
        logits = self.model(self.preprocess(x))
        loss = F.cross_entropy(logits, y, label_smoothing=self.optim.get("label_smoothing", 0.0))
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"{self.what} loss is {loss.item()} at epoch {self.current_epoch} step {batch_idx}; "
                f"lower {self.lr_key} (now {self.optim['lr']})"
            )
        self.log("train_loss", loss, prog_bar=True, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        acc = (self.model(self.preprocess(x)).argmax(1) == y).float().mean()
        self.log("val_acc", acc, prog_bar=True, on_epoch=True)

    def configure_optimizers(self):
        o = self.optim
        params = self.trainable if self.trainable is not None else list(self.parameters())
        opt = OPTIMIZERS.get_valid(o["name"])(params, o)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=o["lr"], total_steps=max(1, self.total_steps))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class SnapshotEveryEpoch(pl.Callback):
    """Save the bare model state_dict after each epoch and record that epoch's validation accuracy.

    Lightning's ModelCheckpoint would save full training checkpoints (optimizer state, Lightning metadata);
    snapshots here are inputs to feature extraction, so a plain state_dict per epoch is all we keep.
    """

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.val_acc: dict[int, float] = {}

    def on_validation_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        epoch = trainer.current_epoch + 1
        self.val_acc[epoch] = float(trainer.callback_metrics["val_acc"])
        torch.save(pl_module.model.state_dict(), snapshot_file(self.out_dir, epoch))

    def state_dict(self) -> dict[str, Any]:  # a resumed training keeps the earlier epochs' accuracies
        return {"val_acc": dict(self.val_acc)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.val_acc = {int(k): float(v) for k, v in state["val_acc"].items()}


class ResumePoint(pl.Callback):
    """A full checkpoint after every epoch (after its validation), written atomically to `<dir>/last.ckpt`.

    Lightning's checkpoint holds the model, optimiser, LR scheduler, loop counters, the callbacks' and the data
    module's state (the data order's generator); this callback adds the global RNG states (augmentation, dropout),
    which Lightning does not save, and restores them when training resumes from the checkpoint.
    """

    def __init__(self, directory: Path):
        self.directory = directory

    def on_train_epoch_end(self, trainer, pl_module):
        tmp = self.directory / f".{CHECKPOINT}.tmp"
        trainer.save_checkpoint(tmp, weights_only=False)  # the full state: resuming needs the optimiser and loops
        os.replace(tmp, self.directory / CHECKPOINT)  # a kill while saving leaves the previous epoch's intact

    def state_dict(self) -> dict[str, Any]:
        return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        np.random.set_state(state["numpy"])
        random.setstate(state["python"])


def _resume_from(directory: Path) -> tuple[Path | None, int]:
    """(checkpoint, its epoch) of an interrupted training in `directory`, or (None, 0). A checkpoint that does not
    load (another code version's, damaged) is set aside with a warning and training starts over."""
    ckpt = directory / CHECKPOINT
    if not ckpt.is_file():
        return None, 0
    try:
        epoch = int(torch.load(ckpt, map_location="cpu", weights_only=False)["epoch"]) + 1
    except Exception as e:  # noqa: BLE001  (anything unreadable: start over rather than fail the build)
        log.warning("resume checkpoint %s does not load (%s: %s); training from epoch 0", ckpt, type(e).__name__, e)
        ckpt.unlink(missing_ok=True)
        return None, 0
    return ckpt, epoch


def fit(
    module: ClassifierModule,
    splits: Mapping[str, tuple[np.ndarray, np.ndarray]],
    out_dir: Path,
    epochs: int,
    batch_size: int,
    trainer_cfg: Mapping[str, Any],
    seed: int,
    loggers: Sequence[Logger] = (),
    resume_dir: Path | None = None,
) -> dict[str, Any]:
    """Train `module` with Lightning, saving a state_dict per epoch into `out_dir`; returns (and writes) metrics.

    The CSV log always goes into `out_dir/logs`; `loggers` adds trackers (`src.tracking.training_loggers`).
    With `resume_dir`, training runs there, checkpoints every epoch, resumes from its last complete epoch if an
    earlier run was interrupted, and moves the finished artifact into `out_dir`."""
    work = out_dir if resume_dir is None else resume_dir
    work.mkdir(parents=True, exist_ok=True)
    ckpt, resumed = _resume_from(work) if resume_dir is not None else (None, 0)
    if ckpt is not None:
        log.info("resuming %s from epoch %d of %d (%s)", module.what, resumed, epochs, ckpt)
        old = work / "logs" / "metrics.csv"
        if old.is_file():  # Lightning's CSV logger would delete it: keep the interrupted run's log
            old.rename(work / "logs" / f"metrics_until_epoch_{resumed}.csv")
    dm = ArrayDataModule(splits, batch_size=batch_size, seed=seed)
    steps = math.ceil(len(splits["train"][1]) / batch_size)
    snap = SnapshotEveryEpoch(work)
    callbacks: list[pl.Callback] = [snap] + ([ResumePoint(work)] if resume_dir is not None else [])
    progress = trainer_cfg.get("progress_bar")
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator=trainer_cfg.get("accelerator", "auto"),
        devices=1,
        precision=trainer_cfg.get("precision", "32-true"),
        logger=[CSVLogger(str(work), name="logs", version=""), *loggers],
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_model_summary=False,
        # Lightning's bar writes to stdout: on for a terminal, off when stdout goes to a file or a pipe.
        enable_progress_bar=sys.stdout.isatty() if progress is None else bool(progress),
        num_sanity_val_steps=0,
        log_every_n_steps=max(1, min(50, steps)),
        deterministic=False,
    )
    t0 = time.perf_counter()
    # weights_only=False: the checkpoint is our own (in the cache), and its RNG states are not plain tensors.
    trainer.fit(module, datamodule=dm, ckpt_path=str(ckpt) if ckpt is not None else None, weights_only=False)
    wall = time.perf_counter() - t0
    metrics = {
        "val_acc": {str(k): v for k, v in sorted(snap.val_acc.items())},
        "epochs": epochs,
        "train_images": int(len(splits["train"][1])),
        "val_images": int(len(splits["val"][1])),  # what val_acc is a fraction of (the report's chance check)
        "wall_s": wall,  # this run's (after a resume: the epochs it trained)
        "images_per_s": (epochs - resumed) * len(splits["train"][1]) / wall,
        "resumed_from_epoch": resumed,
    }
    (work / "metrics.json").write_text(json.dumps(metrics, indent=1))
    if resume_dir is not None:  # the artifact, without the checkpoint, into the staging dir
        for name in (CHECKPOINT, "group.ckpt"):  # (a replicate group's, left by an interrupted group: src.train.group)
            (work / name).unlink(missing_ok=True)
        for item in work.iterdir():
            shutil.move(str(item), out_dir / item.name)
    return metrics


def train_source(
    out_dir: Path,
    spec: ArchSpec,
    splits: Mapping[str, tuple[np.ndarray, np.ndarray]],
    source_cfg: Mapping[str, Any],
    trainer_cfg: Mapping[str, Any],
    seed: int,
    loggers: Sequence[Logger] = (),
    resume_dir: Path | None = None,
) -> dict[str, Any]:
    """Train the source net into `out_dir` (a cache staging dir); returns the metrics written to metrics.json.
    `resume_dir`: where an interrupted training's progress is kept and picked up (see the module docstring)."""
    pl.seed_everything(seed, workers=True, verbose=False)
    optim = trainer_cfg["optim"]
    epochs = int(source_cfg["epochs"])
    steps = math.ceil(len(splits["train"][1]) / optim["batch_size"])
    module = ClassifierModule(build_model(spec), optim, source_cfg["augment"], epochs * steps)
    return fit(module, splits, out_dir, epochs, optim["batch_size"], trainer_cfg, seed, loggers, resume_dir)


def load_snapshot(entry: Path, spec: ArchSpec, snapshot: int) -> torch.nn.Module:
    return nets.load(spec, weights_file=snapshot_file(entry, snapshot))
