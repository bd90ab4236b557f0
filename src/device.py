"""Which torch device a job's own computations (extraction, predictions, the torch SVM, retrieval ranking) use:
the one Lightning trains on, from `trainer.accelerator`. Imports torch: call it only past the config check."""

from __future__ import annotations

ACCELERATORS = ("auto", "cpu", "gpu", "cuda")  # trainer.accelerator (src.schema reads them from here)


def job_device(accelerator: str) -> str:
    """'cuda' when the accelerator asks for (auto: allows) a GPU and torch sees one, else 'cpu'."""
    import torch

    if accelerator not in ACCELERATORS:
        raise ValueError(f"trainer.accelerator={accelerator!r}; valid: {', '.join(ACCELERATORS)}")
    if accelerator == "cpu" or not torch.cuda.is_available():
        if accelerator in ("gpu", "cuda"):
            raise ValueError(f"trainer.accelerator={accelerator} but torch sees no CUDA GPU; use auto or cpu")
        return "cpu"
    return "cuda"
