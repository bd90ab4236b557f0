"""Benchmarks: one script per figure (python -m benchmarks.<name> [--smoke]); `make bench` runs them all."""

import src  # noqa: F401  (before numpy: the BLAS threads' environment a job runs with, see src/__init__.py)
