"""Benchmarks: one script per figure (python -m benchmarks.<name> [--smoke]); `make bench` runs them all."""
