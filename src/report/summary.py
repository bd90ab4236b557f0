"""Sweep summary: `summary.csv` (one row per job: factors, metrics, status) in the sweep dir.

As a Hydra callback (configured in conf/config.yaml) it runs at the end of every multirun, followed by the
report (`python -m src.report`, into <sweep dir>/report/); as a command,
`python -m src.report.summary <sweep dir>`, it summarises any sweep afterwards, one that died included.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from src.errors import ArgumentParser
from src.record import SUMMARY_COLUMNS

log = logging.getLogger(__name__)


def write_summary(sweep_dir: str | Path, echo: bool = True, strict: bool = False) -> Path | None:
    """summary.csv of a sweep dir; None (a warning) when it holds no result.json. `strict` (the command): a dir
    that does not exist or holds no result.json is an error line (SystemExit), as for `python -m src.report`."""
    import pandas as pd

    from src.cache import atomic_open
    from src.report.collect import load_results

    sweep_dir = Path(sweep_dir)
    if strict and not sweep_dir.exists():
        raise SystemExit(f"error: {sweep_dir} does not exist; give a sweep dir holding result.json files")
    df = load_results([sweep_dir])
    if df.empty:
        if strict:
            raise SystemExit(f"error: no result.json under {sweep_dir}")
        log.warning("no result.json under %s", sweep_dir)
        return None
    df["job"] = [Path(p).relative_to(sweep_dir).as_posix() for p in df["job_dir"]]
    df = df.sort_values("job", key=lambda s: s.map(lambda j: (len(j), j))).reset_index(drop=True)
    out = sweep_dir / "summary.csv"
    with atomic_open(out, durable=False) as f:
        df.to_csv(f, index=False)
    if echo:
        cols = ["job"] + [c for c in SUMMARY_COLUMNS if c in df.columns and df[c].notna().any()]
        with pd.option_context("display.width", 200, "display.max_rows", 500):
            print(df[cols].to_string(index=False))
        n_ok = int((df["status"] == "ok").sum())
        from src.report.jobs import census

        missing = len(census([sweep_dir], df["job_dir"])["without_result"])
        unfinished = f"; {missing} planned jobs without a result (interrupted or not started)" if missing else ""
        print(f"{len(df)} jobs ({n_ok} ok, {len(df) - n_ok} not ok){unfinished}; summary: {out}")
    return out


class SummaryCallback(Callback):
    """Writes the sweep's summary.csv and its report (report/) when a multirun ends."""

    def __init__(self, report: bool = True):
        self.report = report

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        import gc
        import os

        from src.argv import PLAN_ONLY

        if os.environ.get(PLAN_ONLY) == "1":  # --plan: no job ran
            return
        # What the sweep left (every job's config and return) stays until the process ends: the report's garbage
        # collections (statsmodels' multipletests calls gc.collect() on every call) need not walk it again.
        gc.freeze()
        sweep_dir = config.hydra.sweep.dir
        if not Path(str(sweep_dir)).is_dir():  # refused before any job ran (its error says why): nothing to sum up
            return
        if write_summary(sweep_dir) is None or not self.report:
            return
        try:
            from src.report.build import build_report

            out = build_report([sweep_dir])
            print(f"report: {out}/report.md, {out}/report.html")
        except Exception as e:  # a report problem must not turn a finished sweep into a failure
            log.warning("could not build the report for %s (%s: %s); run python -m src.report %s",
                        sweep_dir, type(e).__name__, e, sweep_dir)


def main(argv: list[str] | None = None) -> None:
    ap = ArgumentParser(prog="python -m src.report.summary", description=__doc__.splitlines()[0])
    ap.add_argument("sweep_dir")
    write_summary(ap.parse_args(argv).sweep_dir, strict=True)


if __name__ == "__main__":
    main()
