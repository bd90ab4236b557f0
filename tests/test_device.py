"""The job's device: resolved from trainer.accelerator, used by every torch stage, recorded in result.json.

Each stage's device is observed where its tensors are (Lightning's root device for training, the batches the
extraction and the fine-tuned net's predictions see, the C-path solver's own record of its tensors, the tensor the
GPU-capable estimators get, the ranking of a retrieval target), and compared with what the job recorded and with
what torch reports about this machine."""

from __future__ import annotations

import dataclasses
from collections import defaultdict

import pytest
import torch

from src.device import job_device
from src.main import execute

HAS_CUDA = torch.cuda.is_available()


def test_accelerator_resolves_to_what_this_machine_has():
    assert job_device("cpu") == "cpu"
    assert job_device("auto") == ("cuda" if HAS_CUDA else "cpu")
    if HAS_CUDA:
        assert job_device("gpu") == "cuda" and job_device("cuda") == "cuda"
    else:
        with pytest.raises(ValueError, match="sees no CUDA GPU"):
            job_device("gpu")
    with pytest.raises(ValueError, match="valid: auto, cpu, gpu, cuda"):
        job_device("tpu")


def _device(x) -> str:
    return x.device.type if isinstance(x, torch.Tensor) else "cpu"  # numpy arrays live on the CPU


@pytest.fixture
def stage_devices(monkeypatch):
    """(stage -> the torch device types its tensors were on, the devices of each Lightning training in order),
    recorded while the test runs jobs in this process."""
    import pytorch_lightning as pl

    import src.experiment as experiment
    import src.probe.retrieval as retrieval
    import src.train.finetune as finetune
    from src.transferability.estimators import ESTIMATORS

    seen: dict[str, set[str]] = defaultdict(set)
    trainings: list[str] = []

    def on_batches(stage, prep):
        def spy(x):
            seen[stage].add(_device(x))
            return prep(x)
        return spy

    fit = pl.Trainer.fit

    def trainer_fit(self, *args, **kwargs):  # source training and fine-tuning, through Lightning
        out = fit(self, *args, **kwargs)
        seen["train"].add(self.strategy.root_device.type)
        trainings.append(self.strategy.root_device.type)
        return out

    monkeypatch.setattr(pl.Trainer, "fit", trainer_fit)
    extract = experiment.extract_splits
    monkeypatch.setattr(experiment, "extract_splits", lambda *a, preprocess, **k: extract(
        *a, preprocess=on_batches("extract", preprocess), **k))
    predict = finetune.predict  # the stage imports it when it runs (src.train imports Lightning)
    monkeypatch.setattr(finetune, "predict", lambda model, x, prep, *a, **k: predict(
        model, x, on_batches("predict", prep), *a, **k))
    rank = retrieval.mean_average_precision
    monkeypatch.setattr(retrieval, "mean_average_precision", lambda *a, **k: (
        seen["rank"].add(torch.device(a[4] if len(a) > 4 else k.get("device", "cpu")).type), rank(*a, **k))[1])
    originals = {name: e for name, e in ESTIMATORS.items() if e.torch}
    for name, e in originals.items():
        def fn(x, y, _fn=e.fn):
            seen["estimate"].add(_device(x))
            return _fn(x, y)
        dict.__setitem__(ESTIMATORS, name, dataclasses.replace(e, fn=fn))  # in place (the registry refuses a new
        # entry under a taken name; this one is put back below)
    yield seen, trainings
    for name, e in originals.items():
        dict.__setitem__(ESTIMATORS, name, e)


@pytest.mark.parametrize("accelerator,expected", [
    ("cpu", "cpu"),
    ("auto", "cuda" if HAS_CUDA else "cpu"),
    pytest.param("gpu", "cuda", marks=pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU; torch sees none")),
])
def test_every_stage_runs_on_the_recorded_device(make_cfg, tmp_path, stage_devices, accelerator, expected):
    """Three jobs cover every torch stage: a probe job that trains its own source net (seed 5: not the session's
    pre-trained one), a fine-tuned classifier, and a retrieval target; each records `device`, and every stage's
    tensors were on that device, the one torch reports for the accelerator on this machine."""
    acc = f"trainer.accelerator={accelerator}"
    probe = execute(make_cfg(acc, "seed=5"), tmp_path / "probe")
    tuned = execute(make_cfg(acc, "finetune=full", "finetune.epochs=1"), tmp_path / "tuned")
    ranked = execute(make_cfg(acc, "target=synth_retrieval", "target.data.num_instances=4",
                              "target.data.database_per_instance=2", "target.data.queries_per_instance=1",
                              tiny="source"), tmp_path / "ranked")
    assert (probe["cache"]["source_hit"], tuned["cache"]["finetune_hit"]) == (False, False)  # both trained here
    assert [r["device"] for r in (probe, tuned, ranked)] == [expected] * 3
    assert {p["device"] for p in probe["metrics"]["probe_path"]} == {expected}  # the C-path solver's own record
    seen, trainings = stage_devices
    assert trainings == [expected] * 2  # the first job's source net, the second's fine-tuning
    assert dict(seen) == {stage: {expected} for stage in ("train", "extract", "predict", "estimate", "rank")}
