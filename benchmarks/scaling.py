"""Scaling: extraction and probe time vs number of images (1k, 4k, 16k) and probe time vs feature dim,
with the exponent of a log-log fit (extraction should be ~1), and extraction's peak memory.

Extraction: all taps of alexnet width small; memory: peak RSS growth during a 16k-image extraction (in its own
process) against the size of the feature matrices it writes. Goal: that growth < 2x the features' size.
Probe: scikit-learn's LinearSVC at C=1 (the reference classifier, classifier=linear_svm_liblinear; the default,
linear_svm, is the C-path solver of P4) on fc6-like features, 10 classes.
"""

from __future__ import annotations

import json
import time

import numpy as np

from benchmarks.common import parser, run_module, write


def status_kb(field: str) -> int:
    return int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith(field)))


def extract_rss(n: int) -> dict:
    """Time and peak RSS growth of one extraction of `n` images (run in a process of its own: `--extract-rss N`)."""
    import tempfile
    from pathlib import Path

    import torch

    from src.features.extract import extract_splits
    from src.models.nets import build_model
    from src.models.registry import arch_spec

    model = build_model(arch_spec("alexnet", None, 0.25, 20)).eval().to(memory_format=torch.channels_last)
    images = np.random.default_rng(0).integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    extract_splits(model, model.spec.nodes, {"w": (images[:256], np.zeros(256, dtype=np.int64))},
                   Path(tempfile.mkdtemp()))
    before = status_kb("VmRSS")
    open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to now: measure this extraction only
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        extract_splits(model, model.spec.nodes, {"train": (images, np.zeros(n, dtype=np.int64))}, Path(tmp))
        t = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in Path(tmp).rglob("*.npy"))
    peak = status_kb("VmHWM")
    return {"extract_s": t, "features_bytes": size, "rss_growth_bytes": (peak - before) * 1024}


def slope(xs, ys) -> float:
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def probe_time(n: int, d: int) -> float:
    from sklearn.svm import LinearSVC

    rng = np.random.default_rng(0)
    centers = rng.normal(size=(10, d))
    y = rng.integers(0, 10, n)
    x = np.maximum(0.1 * centers[y] + rng.normal(size=(n, d)), 0).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    t0 = time.perf_counter()
    LinearSVC(C=1.0, dual="auto", max_iter=2000).fit(x, y)
    return time.perf_counter() - t0


def main(argv=None) -> dict:
    ap = parser(__doc__)
    ap.add_argument("--extract-rss", type=int, metavar="N", help="print one extraction's time and memory as JSON")
    args = ap.parse_args(argv)
    if args.extract_rss:
        print(json.dumps(extract_rss(args.extract_rss)))
        return {}
    sizes = [256, 512] if args.smoke else [1000, 4000, 16000]  # smoke: two points still give each slope
    dims = [64, 128] if args.smoke else [256, 1024, 4096]
    rows, ext = [], []
    for n in sizes:
        # A process of its own per size (its peak RSS is this extraction's); in smoke mode forked from the server
        # that has done the imports (benchmarks/common.py).
        res = json.loads(run_module("benchmarks.scaling", "--extract-rss", str(n))[1].strip().splitlines()[-1])
        res["probe_s"] = probe_time(n, 1024 if not args.smoke else 128)
        ext.append(res)
        rows.append({"images": n, "extract_s": res["extract_s"], "probe_s": res["probe_s"],
                     "features_MB": res["features_bytes"] / 2**20, "rss_growth_MB": res["rss_growth_bytes"] / 2**20})
    dim_times = [probe_time(sizes[1], d) for d in dims]
    for d, t in zip(dims, dim_times):
        rows.append({"feature_dim": d, "probe_s": t, "images": sizes[1]})
    e_extract = slope(sizes, [r["extract_s"] for r in ext])
    e_probe_n = slope(sizes, [r["probe_s"] for r in ext])
    e_probe_d = slope(dims, dim_times)
    mem_ratio = ext[-1]["rss_growth_bytes"] / ext[-1]["features_bytes"]
    return write("scaling", "Scaling: peak RSS growth / feature bytes at the largest size", rows, mem_ratio,
                 "< 2 (extraction exponent ~1)", mem_ratio < 2, args.smoke,
                 ours=f"+{ext[-1]['rss_growth_bytes'] / 2**20:.0f} MB RSS; exponents: extract {e_extract:.2f}, "
                 f"probe vs n {e_probe_n:.2f}, vs dim {e_probe_d:.2f}",
                 reference=f"features {ext[-1]['features_bytes'] / 2**20:.0f} MB ({sizes[-1]} images)",
                 exponents={"extract_vs_images": e_extract, "probe_vs_images": e_probe_n, "probe_vs_dim": e_probe_d})


if __name__ == "__main__":
    main()
