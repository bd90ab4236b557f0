"""Turning sweeps into tables and plots (`python -m src.report`), and the sweep summary callback."""
