"""P6 CLI latency: `python -m src.main --help` and `--cfg job` vs `python -c pass` (median of 5).

Composing or printing a config must not import torch. Goal: < 2 s for each.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from benchmarks.common import REPO, parser, write


def wall(cmd: list[str], reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=REPO, capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> dict:
    args = parser(__doc__).parse_args(argv)
    reps = 1 if args.smoke else 5
    base = wall([sys.executable, "-c", "pass"], reps)
    t_help = wall([sys.executable, "-m", "src.main", "--help"], reps)
    t_cfg = wall([sys.executable, "-m", "src.main", "--cfg", "job", "arch=vgg", "depth=16"], reps)
    rows = [{"command": "python -c pass", "wall_s": base},
            {"command": "python -m src.main --help", "wall_s": t_help, "over_python_s": t_help - base},
            {"command": "python -m src.main --cfg job ...", "wall_s": t_cfg, "over_python_s": t_cfg - base}]
    worst = max(t_help, t_cfg)
    return write("p6_cli", "P6 CLI latency: slowest of --help / --cfg job (seconds)", rows, worst, "< 2 s",
                 worst < 2.0, args.smoke, ours=f"--help {t_help:.2f} s, --cfg job {t_cfg:.2f} s",
                 reference=f"python -c pass {base:.2f} s", raw={"python_s": base, "help_s": t_help, "cfg_job_s": t_cfg})


if __name__ == "__main__":
    main()
