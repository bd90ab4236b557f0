"""Optuna studies shared between processes and machines: storage URLs without passwords (cli), a heartbeat
storage that fails the trials of dead workers (storage), and N worker processes on one study (workers)."""
