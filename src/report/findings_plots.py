"""Plots of the findings: per question, score-vs-setting curves coloured by distance (mean over source seeds), and
the statistic's own picture: each task's contrast against distance, one point per source seed, the seed mean per
task and the OLS line the trend / end statistics are read from (level questions: the contrast per task)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from src.report import analysis as A
from src.report.questions import BY_ID

CONTRAST = {"layer_gap_shrinks": "late-minus-early gap", "layer_optimum_shift": "best earlier - best late layer",
            "finetune_far_gain": "fine-tuning gain"}


def findings_plots(details: dict[str, Any], axis: str, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files, curves_done = [], set()
    for qid, d in details.items():
        factor, dist = d["factor"], d["distance"]
        finite = [v for v in dist.values() if math.isfinite(v)]
        cmap = plt.get_cmap("viridis")
        lo, hi = min(finite, default=0.0), max(finite, default=1.0)
        norm = matplotlib.colors.Normalize(lo, max(hi, lo + 1e-9))
        if factor not in curves_done:
            curves_done.add(factor)
            fig, ax = plt.subplots(figsize=(7, 4.2))
            labels = [str(v) for v in d["settings"]]
            for task, mean in d["curves"].items():
                colour = cmap(norm(dist[task])) if math.isfinite(dist[task]) else "grey"
                ax.plot(range(len(labels)), mean, marker="o", color=colour, label=f"{task} ({dist[task]:.3g})")
            ax.set_xticks(range(len(labels)), labels)
            ax.set_xlabel(factor)
            ax.set_ylabel(f"test score (mean over {len(d['seeds'])} source seeds)")
            ax.set_title(f"Score vs {factor}; colour = {axis.split(' (')[0]}")
            ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
            ax.grid(alpha=0.3)
            files.append(_save(fig, out / f"findings_score_vs_{factor}.png"))
        if "contrast" not in d:
            continue
        files.append(_save(_contrast_plot(plt, qid, d, axis), out / f"findings_{qid}.png"))
    return files


def _contrast_plot(plt, qid: str, d: dict[str, Any], axis: str):
    q = BY_ID[qid]
    tasks = sorted(d["contrast"], key=lambda t: d["distance"][t])
    fig, ax = plt.subplots(figsize=(6.5, 4))
    level = q.kind == "level"
    x = np.arange(len(tasks), dtype=float) if level else np.array([d["distance"][t] for t in tasks])
    values = np.array([d["contrast"][t] for t in tasks], dtype=float)  # task x seed
    for j in range(values.shape[1]):
        ax.scatter(x, values[:, j], s=12, color="grey", alpha=0.5, label="one source seed" if j == 0 else None)
    mean = values.mean(axis=1)
    ax.plot(x, mean, "o", color="C0", label="mean over seeds")
    if not level and np.ptp(x) > 0:
        coef = np.polyfit(x, mean, 1)
        grid = np.linspace(x.min(), x.max(), 50)
        ax.plot(grid, np.polyval(coef, grid), color="C1", label="OLS line over tasks")
        ax.set_xlabel(axis)
    else:
        ax.set_xticks(x, tasks, rotation=30, ha="right", fontsize=7)
        ax.set_xlabel("task")
    ax.axhline(0, color="black", lw=0.6)
    ax.set_ylabel(CONTRAST.get(qid, f"{A.sort_values(d['factor'], d['settings'])[-1]} - first setting"))
    lo, hi = d["ci"]
    ci = f"[{lo:.3f}, {hi:.3f}]" if math.isfinite(lo) else "no CI"
    ax.set_title(f"{qid}: estimate {d['estimate']:.3f}, seed-level 95% CI {ci}", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return fig


def _save(fig, path: Path) -> str:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path.name
