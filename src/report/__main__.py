"""python -m src.report <sweep dir> [<sweep dir> ...] [--out DIR] [--baseline factor=value ...] [--distance]
                       [--primary FINDING_ID] [--min-seeds N] [--no-plots]

Reads every result.json (ok and failed) under the sweep dirs and writes results.csv, report.md, report.html
(self-contained: open it in any browser), analysis.json and PNG plots to --out (default: the first sweep dir's
report/).
"""

from __future__ import annotations

import os
import sys
import time

from src.errors import ArgumentParser
from src.report.build import build_report, parse_baseline


def _file_in_path(out: str) -> str | None:
    """The existing path nearest to `out` (itself, else its deepest existing parent) when it is not a directory."""
    path = os.path.abspath(out)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return None if os.path.isdir(path) else path


def main(argv: list[str] | None = None) -> None:
    ap = ArgumentParser(prog="python -m src.report", description=" ".join(__doc__.split("\n\n")[1].split()))
    ap.add_argument("sweep_dirs", nargs="*", help="one or more sweep dirs")
    ap.add_argument("--out", default=None, help="output dir (default: <first sweep dir>/report)")
    ap.add_argument("--baseline", nargs="*", default=[], metavar="FACTOR=VALUE",
                    help="the standard setting to compare against (default: the default config's factor values)")
    ap.add_argument("--distance", action="store_true",
                    help="also measure each target's distance from the source (LogME on cached features)")
    ap.add_argument("--cache-dir", default=None, help="artifact cache (default: $TRANSFER_CACHE_DIR or .cache)")
    ap.add_argument("--primary", default=None, metavar="FINDING_ID",
                    help="the question the sweep was designed to test, not Holm-adjusted (default: the study's "
                         "report.primary; 'null' for none)")
    ap.add_argument("--min-seeds", type=int, default=None,
                    help="source seeds a verdict needs (default: the study's report.min_seeds)")
    ap.add_argument("--no-plots", action="store_true",
                    help="tables and findings only, without the PNG plots (drawing them is most of a report's time); "
                         "the plots an earlier report drew in the output dir are removed")
    args = ap.parse_args(argv)
    # `--baseline layer=fc7 DIR`: the option's list takes every word after it; an existing dir among them is a
    # sweep dir (anything else stays, so that `--baseline layer:fc7` is still named as not factor=value)
    dirs = [b for b in args.baseline if "=" not in b and os.path.isdir(b)]
    args.sweep_dirs += dirs
    args.baseline = [b for b in args.baseline if b not in dirs]
    if not args.sweep_dirs:
        ap.error("give at least one sweep dir (python -m src.report DIR [DIR ...] [options])")
    if args.out and (blocker := _file_in_path(args.out)):  # else a FileExistsError once the results are read
        ap.error(f"--out {args.out}: {blocker} is a file, not a directory; give a directory (created if missing)")
    t0 = time.perf_counter()
    try:
        out = build_report(args.sweep_dirs, args.out, parse_baseline(args.baseline), args.distance, args.cache_dir,
                           args.primary, args.min_seeds, plots=not args.no_plots,
                           given=dict(p.split("=", 1) for p in args.baseline if "=" in p))
    except Exception as e:  # noqa: BLE001  (one line for the user; HYDRA_FULL_ERROR=1 as for src.main)
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        sys.exit(f"error: {type(e).__name__}: {' '.join(str(e).split())}")
    print(f"report written to {out}/report.md and {out}/report.html ({time.perf_counter() - t0:.1f}s)")


if __name__ == "__main__":
    main()
