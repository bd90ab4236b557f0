"""Re-measure the probe solver's speed constants (src/probe/path.py) on this machine.

Each constant picks one of two ways to compute the same product or step (tests/test_probe_path.py checks that both
give the same solution); this times both ways on synthetic features and prints where they cross, with the value
the timings suggest. It writes nothing: if a crossing moved, edit the constant in src/probe/path.py.

    python -m benchmarks.solver_constants            # P4-sized products (10,000 x 4,096), layer_study-sized paths
    python -m benchmarks.solver_constants --quick    # smaller sizes, a few minutes
    python -m benchmarks.solver_constants --device cuda   # NEWTON_FLOPS and STALLED_NEWTON on a GPU

Timings are medians of `--repeat` runs; run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import src.probe.path as solver
from benchmarks.p4_probe import make_data
from src.probe.path import LinearPathClassifier, newton_costs


def timed(fn, repeat: int) -> float:
    """Median milliseconds of fn() over `repeat` runs, after one untimed run."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def orientation(n: int, d: int, repeat: int) -> None:
    """SKINNY_COLUMNS and the float64 rule of _transposed_is_faster: a @ b vs (b^T a^T)^T per width."""
    print(f"\n_mm orientation: X ({n} x {d}, stored d x n as the solver does) times a w-column matrix, ms")
    print("dtype    w  X@D plain  X@D transp  X^T G plain  X^T G transp")
    widths = [1, 2, 4, 8, 10, 11, 12, 13, 16, 24, 32, 64, 100]
    for dtype in (torch.float32, torch.float64):
        xt = torch.randn(d, n, dtype=dtype)
        plain_wins = []
        for w in widths:
            dm, gm = torch.randn(d, w, dtype=dtype), torch.randn(n, w, dtype=dtype)
            row = [timed(lambda: xt.T @ dm, repeat), timed(lambda: (dm.T @ xt).T, repeat),
                   timed(lambda: xt @ gm, repeat), timed(lambda: (gm.T @ xt.T).T, repeat)]
            plain_wins.append(row[0] <= row[1] and row[2] <= row[3])
            print(f"{str(dtype)[6:]:8} {w:3}  " + "  ".join(f"{t:10.2f}" for t in row))
        cut = next((w for i, w in enumerate(widths) if all(plain_wins[i:])), None)
        name = str(dtype)[6:]
        if dtype == torch.float32:
            print(f"  {name}: the plain product is no slower from {cut} columns on -> SKINNY_COLUMNS = {cut} "
                  f"(now {solver.SKINNY_COLUMNS})")
        else:
            print(f"  {name}: the transposed product is faster at every width: {not any(plain_wins)} "
                  "(the solver assumes yes)")


def xt_block(n: int, d: int, repeat: int) -> None:
    """XT_BLOCK: X^T G (float32, 100 columns) in blocks of feature rows vs one GEMM."""
    xt, g = torch.randn(d, n), torch.randn(n, 100)
    out = torch.empty(d, 100)

    def blocked(block: int) -> None:
        for j in range(0, d, block):
            torch.mm(xt[j : j + block], g, out=out[j : j + block])

    print(f"\nXT_BLOCK: X^T G with X {n} x {d}, G {n} x 100 (float32), ms")
    times = {b: timed(lambda b=b: blocked(b), repeat) for b in (256, 512, 1024, 2048) if b < d}
    times[d] = timed(lambda: xt @ g, repeat)
    for b, t in times.items():
        print(f"  block {b:5}{' (one GEMM)' if b == d else '':11} {t:8.2f}")
    print(f"  fastest: {min(times, key=times.get)} (now {solver.XT_BLOCK}; one GEMM when d <= XT_BLOCK)")


def path_ms(x, y, Cs, repeat: int, device: str, tol: float = 1e-4, **constants) -> tuple[float, str, int, int]:
    """Median ms of a C path with the solver's module constants set as given; its methods, iterations and float64
    iterations."""
    saved = {k: getattr(solver, k) for k in constants}
    try:
        for k, v in constants.items():
            setattr(solver, k, v)
        info = LinearPathClassifier(tol=tol, device=device).fit_path(x, y, Cs)
        ms = timed(lambda: LinearPathClassifier(tol=tol, device=device).fit_path(x, y, Cs), repeat)
    finally:
        for k, v in saved.items():
            setattr(solver, k, v)
    methods = sorted({p["method"] for p in info})
    return ms, "/".join(methods), sum(p["n_iter"] for p in info), sum(p["float64_iter"] for p in info)


def newton(shapes, repeat: int, device: str) -> None:
    """NEWTON_FLOPS: a squared-hinge C path with Newton steps (the cheaper of primal and kernel) vs L-BFGS."""
    Cs = [1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0]
    print(f"\nNEWTON_FLOPS: squared-hinge path over {len(Cs)} Cs (tol 1e-4), ms (iterations)")
    print("      n     d    k  Newton cost   Newton              L-BFGS              default (method)")
    won, lost = [], []
    for n, d, k in shapes:
        x, y, _, _ = make_data(n, d, k, 0)
        cost = min(newton_costs(n, d, k))
        nt, _, ni, _ = path_ms(x, y, Cs, repeat, device, NEWTON_FLOPS=float("inf"))
        lt, _, li, _ = path_ms(x, y, Cs, repeat, device, NEWTON_FLOPS=0.0)
        dt, dm, di, _ = path_ms(x, y, Cs, repeat, device)
        (won if nt <= lt else lost).append(cost)
        print(f"  {n:5} {d:5} {k:4}  {cost:11.3g}  {nt:9.0f} ({ni:4})  {lt:9.0f} ({li:4})  {dt:9.0f} ({di:4}) {dm}")
    lo = max(won, default=0.0)
    hi = min((c for c in lost if c > lo), default=float("inf"))
    print(f"  Newton was the faster up to cost {lo:.3g} and L-BFGS from {hi:.3g} on: NEWTON_FLOPS belongs in "
          f"[{lo:.3g}, {hi:.3g}) (now {solver.NEWTON_FLOPS:.3g}). Larger squared-hinge problems with n <= KERNEL_ROWS "
          f"({solver.KERNEL_ROWS}, a memory bound: its n x n float64 Gram is "
          f"{solver.KERNEL_ROWS ** 2 * 8 / 2 ** 20:.0f} MiB) use kernel Newton on the margin rows when that is "
          "within NEWTON_FLOPS (the default column).")


def stalled(n: int, d: int, k: int, repeat: int, device: str) -> None:
    """STALLED_NEWTON: a Newton path at a tol beyond float32's reach, for several values."""
    x, y, _, _ = make_data(n, d, k, 0)
    Cs = [1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0]
    print(f"\nSTALLED_NEWTON: Newton path {n} x {d} x {k} over {len(Cs)} Cs at tol 1e-10, ms (iterations, of them "
          "float64)")
    for value in (1, 2, 4, 8, 16):
        ms, _, it, it64 = path_ms(x, y, Cs, repeat, device, tol=1e-10, STALLED_NEWTON=value)
        print(f"  {value:3} {ms:9.0f} ({it}, {it64})")
    print(f"  (now {solver.STALLED_NEWTON})")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes (about a minute)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--device", default="cpu", help="where the paths run; the product switches are CPU-only")
    args = ap.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, paths on {args.device}")
    n, d = (2000, 1024) if args.quick else (10000, 4096)
    if args.device == "cpu":
        orientation(n, d, args.repeat)
        xt_block(n, d, args.repeat)
    shapes = [(400, 64, 20), (400, 256, 20), (400, 1024, 20)]
    if not args.quick:
        shapes += [(900, 512, 20), (900, 1024, 20), (2000, 256, 50)]
    newton(shapes, args.repeat, args.device)
    stalled(400, 64, 20, args.repeat, args.device)


if __name__ == "__main__":
    main()
