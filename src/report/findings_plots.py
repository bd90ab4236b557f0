"""Plots of the findings: the optimal setting vs distance with its CI band, and score-vs-setting curves coloured
by distance (one curve per task, mean over replicates)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from src.report import analysis as A


def findings_plots(details: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    axis = details.get("distance_axis", "distance")
    for factor, d in details.items():
        if not isinstance(d, dict) or "curves" not in d:
            continue
        dist = d["distance"]
        finite = [v for v in dist.values() if math.isfinite(v)]
        cmap = plt.get_cmap("viridis")
        norm = matplotlib.colors.Normalize(min(finite, default=0), max(max(finite, default=1), min(finite, default=0) + 1e-9))
        fig, ax = plt.subplots(figsize=(7, 4.2))
        all_values: list = []
        for task, c in d["curves"].items():
            for v in c["values"]:
                if v not in all_values:
                    all_values.append(v)
        all_values = A.sort_values(factor, all_values)
        pos = {str(v): i for i, v in enumerate(all_values)}
        for task, c in d["curves"].items():
            colour = cmap(norm(dist[task])) if math.isfinite(dist[task]) else "grey"
            ax.plot([pos[str(v)] for v in c["values"]], c["mean"], marker="o", color=colour,
                    label=f"{task} ({dist[task]:.3g})")
        ax.set_xticks(range(len(all_values)), [str(v) for v in all_values])
        ax.set_xlabel(factor)
        ax.set_ylabel(f"target score (mean over {len(d['replicates'])} replicates)")
        ax.set_title(f"Score vs {factor}; colour = {axis.split(' (')[0]}")
        ax.legend(fontsize=6, loc="best")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        files.append(_save(fig, out / f"findings_score_vs_{factor}.png"))

        band = d.get("optimal_band")
        if band:
            tasks = [t for t in band if math.isfinite(dist[t])]
            tasks.sort(key=lambda t: dist[t])
            x = [dist[t] for t in tasks]
            y, lo, hi = ([band[t][i] for t in tasks] for i in range(3))
            fig, ax = plt.subplots(figsize=(6, 4))
            ax.plot(x, y, marker="o", color="C0", label="optimal (mean over replicates)")
            if len(d["replicates"]) >= 2 or any(math.isfinite(v) for v in lo):
                what = "95% CI" if len(d["replicates"]) >= 2 else "95% CI (test images only)"
                ax.fill_between(x, lo, hi, color="C0", alpha=0.25, label=what)
            ordinals = sorted({A.ordinal(factor, v) for v in all_values})
            ax.set_yticks(ordinals, [str(v) for v in all_values if A.ordinal(factor, v) in ordinals])
            ax.set_xlabel(axis)
            ax.set_ylabel(f"optimal {factor}")
            lo_e, hi_e = d["ci"]
            ci = f"[{lo_e:.2f}, {hi_e:.2f}]" if len(d["replicates"]) >= 2 else "1 replicate: no CI"
            ax.set_title(f"Optimal {factor} vs distance: rho={d['effect']:.2f}, 95% CI {ci}", fontsize=9)
            ax.legend(fontsize=7)
            ax.grid(alpha=0.3)
            fig.tight_layout()
            files.append(_save(fig, out / f"findings_optimal_{factor}_vs_distance.png"))
    return files


def _save(fig, path: Path) -> str:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name
