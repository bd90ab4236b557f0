"""Optuna studies shared between processes and machines: a heartbeat storage that fails the trials of dead
workers (storage) and N worker processes on one study (workers). Storage URLs lose their password on the command
line (src/storage_url.py)."""
