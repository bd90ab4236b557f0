"""The job's device: resolved from trainer.accelerator, used by every torch stage, recorded in result.json."""

import pytest
import torch

from src.device import job_device
from src.main import execute


def test_accelerator_resolves_to_what_this_machine_has():
    gpu = torch.cuda.is_available()
    assert job_device("cpu") == "cpu"
    assert job_device("auto") == ("cuda" if gpu else "cpu")
    if gpu:
        assert job_device("gpu") == "cuda"
    else:
        with pytest.raises(ValueError, match="sees no CUDA GPU"):
            job_device("gpu")
    with pytest.raises(ValueError, match="valid: auto, cpu, gpu, cuda"):
        job_device("tpu")


def test_result_records_the_device_and_cpu_runs_stay_on_the_cpu(make_cfg, tmp_path):
    auto = execute(make_cfg("classifier=linear_svm"), tmp_path / "auto")
    assert auto["device"] == job_device("auto")
    cpu = execute(make_cfg("classifier=linear_svm", "trainer.accelerator=cpu"), tmp_path / "cpu")
    assert cpu["device"] == "cpu"
    if auto["device"] == "cpu":  # a CPU-only machine: the same numbers either way
        assert cpu["metrics"]["target_score"] == auto["metrics"]["target_score"]
