"""Write a sweep's report: results.csv, report.md, report.html, analysis.json and PNG plots
(see `python -m src.report -h`)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from src.report import analysis as A
from src.report import zoo as Z
from src.report import findings as F
from src.report.collect import load_results
from src.report.html import write_html
from src.report.plots import write_plots


def default_baseline() -> dict[str, Any]:
    """The factor values of the default config (conf/config.yaml's defaults list): the paper's 'standard setting'.

    Read with OmegaConf rather than composed with Hydra, so it also works inside a running Hydra (the callback).
    """
    from omegaconf import OmegaConf

    import src
    from src.models.registry import ARCHS

    conf = src.REPO_ROOT / "conf"
    root = OmegaConf.load(conf / "config.yaml")
    groups = {k: v for d in root.defaults if isinstance(d, dict) or OmegaConf.is_dict(d) for k, v in d.items()}
    g = {name: OmegaConf.load(conf / name / f"{opt}.yaml") for name, opt in groups.items() if opt is not None}
    src_cfg = g["source"]
    return {
        "source": src_cfg.name, "source_num_classes": src_cfg.num_classes,
        "source_images_per_class": src_cfg.images_per_class, "source_epochs": src_cfg.epochs,
        "snapshot": src_cfg.snapshot or "last", "arch": g["arch"].name, "width": g["width"].name,
        "depth": root.depth or ARCHS[g["arch"].name].default_depth, "layer": root.layer, "pooling": root.pooling,
        "norm": g["norm"].name, "dimred": g["dimred"].name, "n_components": None, "classifier": g["classifier"].name,
    }


def parse_baseline(pairs: list[str]) -> dict[str, Any]:
    base = default_baseline()
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in A.FACTORS:
            raise SystemExit(f"error: --baseline {pair!r} must be factor=value with a factor in: {', '.join(A.FACTORS)}")
        base[key] = value
    return base


def md_table(df: pd.DataFrame, floatfmt: str = ".3f") -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return "" if math.isnan(v) else format(v, floatfmt)
        return str(v)

    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def _source_val_features(cache_dir: Path, jobs: pd.DataFrame, tap: str) -> np.ndarray | None:
    """The source task's val images through `tap`, as the pipeline cached them (`source_val_features=true`, key
    `keys.source_val_features` in result.json); None when none of the jobs asked for them."""
    keys = jobs["source_val_features_key"].dropna() if "source_val_features_key" in jobs else []
    for key in keys:
        path = cache_dir / "features" / key / "val" / f"{tap}.npy"
        if path.is_file():
            return np.load(path)
    return None


def measured_distance(df: pd.DataFrame, cache_dir: Path) -> pd.DataFrame:
    """Per source net and target, from the cached features of the sweep's jobs at the penultimate layer (fc7, or
    pool for resnets): 1 - min-max normalised LogME of the target's labels, and the Frechet distance between the
    source task's val features and the target's features (how far the target's images sit from the source's;
    NaN unless the jobs ran with `source_val_features=true`). Reads cached files only."""
    from src.transferability import logme
    from src.transferability.distance import frechet_distance

    ok = A.ok_rows(df).dropna(subset=["features_key"])
    rows, source_feats = [], {}
    for (source_key, target), jobs in ok.groupby(["source_key", "target"]):
        features = cache_dir / "features" / jobs["features_key"].iloc[0]
        entry = features / "train" if (features / "train").is_dir() else features / "database"  # retrieval
        tap = next((entry / f"{t}.npy" for t in ("fc7", "pool") if (entry / f"{t}.npy").exists()), None)
        if tap is None:
            continue
        x, y = np.load(tap), np.load(entry / "labels.npy")
        if source_key not in source_feats:
            source_feats[source_key] = _source_val_features(cache_dir, ok[ok["source_key"] == source_key], tap.stem)
        src_x = source_feats[source_key]
        rows.append({"source_key": source_key, "source": f"{jobs['arch'].iloc[0]}/{jobs['width'].iloc[0]}",
                     "target": target, "distance_rank": jobs["distance_rank"].iloc[0], "layer": tap.stem,
                     "logme": logme(x, y) if y.ndim == 1 else math.nan,
                     "frechet": frechet_distance(src_x, x) if src_x is not None else math.nan})
    out = pd.DataFrame(rows)
    if len(out):
        lo = out.groupby("source_key")["logme"].transform("min")
        hi = out.groupby("source_key")["logme"].transform("max")
        out["logme_distance"] = 1 - (out["logme"] - lo) / (hi - lo).replace(0, np.nan)
    return out.sort_values(["source_key", "distance_rank"]).reset_index(drop=True)


def build_report(dirs: list[str | Path], out: Path | None = None, baseline: dict[str, Any] | None = None,
                 distance: bool = False, cache_dir: Path | None = None) -> Path:
    dirs = [Path(d) for d in dirs]
    missing = [str(d) for d in dirs if not d.exists()]
    if missing:
        raise SystemExit(f"error: {', '.join(missing)} does not exist; give sweep dirs holding result.json files")
    df = load_results(dirs)
    if df.empty:  # checked before creating the output dir, so a failed report leaves nothing behind
        raise SystemExit(f"error: no result.json under {', '.join(map(str, dirs))}")
    out = Path(out) if out else dirs[0] / "report"
    out.mkdir(parents=True, exist_ok=True)
    df = F.with_task_axes(df)  # each synth_shift shift is a task; tasks ordered by shift or measured distance
    df.to_csv(out / "results.csv", index=False)
    baseline = baseline if baseline is not None else default_baseline()
    factors = A.swept_factors(df)
    n_ok = int((df["status"] == "ok").sum())
    md = [f"# Transfer report\n", f"Sweeps: {', '.join(map(str, dirs))}  ",
          f"Jobs: {len(df)} ({n_ok} ok, {len(df) - n_ok} failed)  ",
          f"Swept factors: {', '.join(factors) or 'none'}  ",
          "Baseline (standard setting): " + (", ".join(f"{f}={baseline.get(f)}" for f in factors) or "n/a") + "\n"]
    analysis: dict[str, Any] = {"swept_factors": factors, "baseline": {f: baseline.get(f) for f in factors}}
    if n_ok and "target_score" in df:
        pt = A.per_task(df, baseline)
        md += ["## Per task (ordered by distance from the source)\n",
               "Best setting of each swept factor (with replicates: the best mean over them), its score, the baseline's "
               "score, and the relative error reduction (err_base - err_best) / err_base.\n", md_table(pt), ""]
        bp = A.best_practice(df)
        if len(bp):
            md += ["## Best practice per task group\n",
                   "For each factor, the setting with the highest mean score over the group's tasks (other factors "
                   "at their best).\n", md_table(bp), ""]
        fd = A.factor_distance(df)
        if fd:
            md += ["## Optimal setting vs distance from the source\n",
                   f"Spearman correlation between a task's distance ({df.attrs.get('distance_axis', 'distance_rank')}) "
                   "and the ordinal of its optimal setting "
                   "(positive: farther tasks prefer later layers / wider / deeper / more components).\n",
                   md_table(pd.DataFrame([{"factor": f, "rho": e["rho"], "p": e["p"],
                                           "optimal per task": ", ".join(f"{t}={v}" for t, v in e["optimal"].items())}
                                          for f, e in fd.items()])), ""]
        ea = A.estimator_agreement(df)
        if len(ea):
            md += ["## Transferability estimators vs measured probe score\n",
                   "Kendall tau between each estimate (computed from the features, no training) and the test score.\n",
                   md_table(ea), ""]
        analysis.update(per_task=pt.to_dict("records"), best_practice=bp.to_dict("records"), factor_distance=fd,
                        estimator_agreement=ea.to_dict("records"))
        for truth in Z.ground_truths(df):  # several source nets per target: the papers' ranking table
            zoo = Z.zoo_agreement(df, truth)
            md += Z.zoo_markdown(zoo)
            if zoo:
                analysis.setdefault("estimator_zoo", {})[truth] = Z.zoo_json(zoo)
        regret = Z.selection_regret(df)
        if len(regret):
            mean = regret.groupby("estimator")["regret"].mean().sort_values()
            md += ["## Picking by an estimator instead of the probe\n",
                   "Per target, the job an estimator ranks first (what `objective=<estimator>` in a search picks) "
                   "and its regret: best probe score minus the picked job's probe score. Mean regret: "
                   + ", ".join(f"{k} {v:.4f}" for k, v in mean.items()) + "\n", md_table(regret), ""]
            analysis["selection_regret"] = regret.to_dict("records")
        f_md, f_analysis = F.findings_section(df, baseline, out, md_table)
        md += f_md
        analysis.update(f_analysis)
        plots = write_plots(df, out, fd)
        md += ["## Plots\n"] + [f"![{p}]({p})" for p in plots] + [""]
    if distance:
        import os

        import src

        cache = Path(cache_dir or os.environ.get("TRANSFER_CACHE_DIR", src.REPO_ROOT / ".cache"))
        md_df = measured_distance(df, cache)
        if len(md_df):
            from scipy import stats

            rhos: dict[str, dict] = {}
            for key, g in md_df.groupby("source_key"):
                for measure in ("logme_distance", "frechet"):
                    sub = g[["distance_rank", measure]].dropna()
                    if len(sub) >= 3:
                        r = stats.spearmanr(sub["distance_rank"], sub[measure])
                        rhos.setdefault(key, {})[measure] = {"rho": float(r.statistic), "p": float(r.pvalue)}
            agreement = "; ".join(f"source {k[:8]} {m}: Spearman rho={v['rho']:.2f} (p={v['p']:.3g})"
                                  for k, ms in rhos.items() for m, v in ms.items())
            md += ["## Measured distance from the source\n",
                   "Two distances computed from the source net itself at its penultimate layer: 1 - normalised LogME "
                   "of the target (how well the features explain its labels) and the Frechet distance between the "
                   "source task's val features and the target's (how far its images sit from the source's), against "
                   "the a priori distance_rank. " + agreement + "\n", md_table(md_df), ""]
            analysis["measured_distance"] = {"table": md_df.to_dict("records"), "spearman": rhos}
    failed = df[df["status"] != "ok"]
    if len(failed):
        cols = [c for c in ("job_dir", "error_type", "error_message") if c in failed]
        md += ["## Failed jobs\n", md_table(failed[cols]), ""]
    (out / "report.md").write_text("\n".join(md))
    (out / "analysis.json").write_text(json.dumps(analysis, indent=1, default=A._plain))
    write_html(out, dirs)
    return out
