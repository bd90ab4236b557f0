"""A Hydra callback the tests add to a sweep on the command line
(`+hydra.callbacks.job_probe._target_=tests.job_probe.JobProbe`) to see what each job ran with, from inside the job's
own process: its torch thread count and the `trainer.num_threads` its config ended with, in `<job dir>/job_probe.json`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class JobProbe(Callback):
    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        import torch

        record = {"torch_threads": torch.get_num_threads(), "num_threads": job_return.cfg.trainer.num_threads,
                  "cpu_count": os.cpu_count(), "pid": os.getpid()}
        (Path(config.hydra.runtime.output_dir) / "job_probe.json").write_text(json.dumps(record))
