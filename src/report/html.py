"""`report.html`: the sweep's report as one self-contained page (tables, PNG plots as data: URIs, a few lines of
inline JS to sort tables; nothing is fetched when it is viewed).

It is rendered from what the report already wrote into its directory (analysis.json, results.csv, the PNGs) and
from the sweeps' own Hydra records (multirun.yaml, or a job's .hydra/), so it shows exactly what report.md does.
Every section is always present (saying so when a sweep has nothing for it); a `findings` list of rows in
analysis.json renders as the Findings table.
"""

from __future__ import annotations

import base64
import html
import json
import math
import shlex
from pathlib import Path
from typing import Any

import pandas as pd

# (section id, title, what it shows); the order of the page.
SECTIONS = [
    ("summary", "Sweep", ""),
    ("per-task", "Per task (ordered by distance from the source)",
     "Best setting of each swept factor (with replicates: the best mean over them), its score, the baseline's score, "
     "and the relative error reduction (err_base - err_best) / err_base."),
    ("best-practice", "Best practice per task group",
     "For each factor, the setting with the highest mean score over the group's tasks (other factors at their best)."),
    ("factor-distance", "Optimal setting vs distance from the source",
     "Spearman correlation between a task's distance_rank and the ordinal of its optimal setting."),
    ("findings", "Findings", "Each finding with its confidence interval."),
    ("estimator-agreement", "Transferability estimators vs measured probe score",
     "Kendall tau between each estimate (from the features, no training) and the test score."),
    ("measured-distance", "Measured distance from the source",
     "1 - normalised LogME and the Frechet distance of each target from the source net (report --distance)."),
    ("plots", "Plots", ""),
    ("failed-jobs", "Failed jobs", "Jobs whose result.json has status failed, with their errors."),
    ("command", "Command line and config", "How the sweep was run: its command line and composed config."),
]

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:13px;margin:.5em 0} th,td{border:1px solid #ddd;padding:3px 7px}
th{background:#f3f3f3;cursor:pointer;position:sticky;top:0} tr:nth-child(even) td{background:#fafafa}
td.num{text-align:right;font-variant-numeric:tabular-nums} .note{color:#666;font-size:13px}
figure{margin:1em 0} img{max-width:100%;border:1px solid #eee} pre{background:#f6f6f6;padding:.8em;
overflow:auto;font-size:12px;white-space:pre-wrap} .error{color:#a00}
"""

# Click a header to sort by it (numbers as numbers); then the render check the browser test reads from the DOM.
SCRIPT = """
document.querySelectorAll('table.sortable th').forEach(function(th, col){
  th.addEventListener('click', function(){
    var body = th.closest('table').tBodies[0], rows = Array.from(body.rows);
    var dir = th.dataset.dir === 'asc' ? -1 : 1; th.dataset.dir = dir === 1 ? 'asc' : 'desc';
    function key(r){ var t = r.cells[col].textContent.trim(), n = parseFloat(t);
      return t !== '' && !isNaN(n) && isFinite(t) ? n : t; }
    rows.sort(function(a, b){ var x = key(a), y = key(b);
      if (typeof x === typeof y) return (x < y ? -1 : x > y ? 1 : 0) * dir;
      return (typeof x === 'number' ? -1 : 1) * dir; });
    rows.forEach(function(r){ body.appendChild(r); });
  });
});
window.addEventListener('load', function(){
  var imgs = Array.from(document.images);
  var ok = imgs.filter(function(i){ return i.complete && i.naturalWidth > 0; }).length;
  var p = document.createElement('p'); p.id = 'render-check'; p.className = 'note';
  p.dataset.imagesOk = ok; p.dataset.imagesTotal = imgs.length;
  p.dataset.sections = document.querySelectorAll('section').length;
  p.textContent = 'rendered: ' + ok + '/' + imgs.length + ' images';
  document.body.appendChild(p);
});
"""


def _table(rows: list[dict[str, Any]] | pd.DataFrame) -> str:
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
    if df.empty:
        return ""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = []
    for row in df.itertuples(index=False):
        cells = []
        for v in row:
            if isinstance(v, float):
                cells.append(f'<td class="num">{"" if math.isnan(v) else format(v, ".4g")}</td>')
            elif isinstance(v, (int, bool)) or v is None:
                cells.append(f'<td class="num">{"" if v is None else v}</td>')
            else:
                text = json.dumps(v) if isinstance(v, (dict, list)) else str(v)
                cells.append(f"<td>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _factor_distance_rows(fd: dict[str, dict]) -> list[dict[str, Any]]:
    return [{"factor": f, "rho": e.get("rho"), "p": e.get("p"),
             "optimal per task": ", ".join(f"{t}={v}" for t, v in e.get("optimal", {}).items())}
            for f, e in fd.items()]


def _sweep_record(sweep_dir: Path) -> tuple[str, str]:
    """(command line, composed config as YAML) from Hydra's multirun.yaml, or a job's .hydra/ for single runs."""
    from omegaconf import OmegaConf

    multirun = sweep_dir / "multirun.yaml"
    if multirun.exists():
        cfg = OmegaConf.load(multirun)
        task = list(OmegaConf.select(cfg, "hydra.overrides.task", default=[]) or [])
        params = OmegaConf.select(cfg, "hydra.sweeper.params", default=None) or {}
        cmd = "python -m src.main -m " + " ".join(shlex.quote(str(o)) for o in task)
        if params:
            cmd += "\n# sweeper params: " + " ".join(f"{k}={v}" for k, v in params.items())
        cfg.pop("hydra", None)
        return cmd, OmegaConf.to_yaml(cfg)
    job = next((p.parent for p in sorted(sweep_dir.rglob(".hydra/config.yaml"))), None)
    if job is None:
        return "(no Hydra record in this directory)", ""
    overrides = OmegaConf.load(job / "overrides.yaml") if (job / "overrides.yaml").exists() else []
    cmd = "python -m src.main " + " ".join(shlex.quote(str(o)) for o in overrides)
    return cmd, (job / "config.yaml").read_text()


def _section(sid: str, title: str, intro: str, content: str, empty: str) -> str:
    text = f'<p class="note">{html.escape(intro)}</p>' if intro and content else ""
    return (f'<section id="{sid}"><h2>{html.escape(title)}</h2>{text}'
            f'{content or f"<p class=note>{html.escape(empty)}</p>"}</section>')


def write_html(out: Path, dirs: list[Path]) -> Path:
    """Render `out/report.html` from the report files in `out` and the sweeps' Hydra records."""
    analysis = json.loads((out / "analysis.json").read_text())
    results = pd.read_csv(out / "results.csv")
    n_ok = int((results["status"] == "ok").sum())
    factors = analysis.get("swept_factors", [])
    summary = (f"<p>Sweeps: {html.escape(', '.join(map(str, dirs)))}<br>Jobs: {len(results)} ({n_ok} ok, "
               f"{len(results) - n_ok} failed)<br>Swept factors: {html.escape(', '.join(factors) or 'none')}<br>"
               "Baseline (standard setting): "
               + html.escape(", ".join(f"{k}={v}" for k, v in analysis.get("baseline", {}).items()) or "n/a")
               + "</p>")
    md = analysis.get("measured_distance") or {}
    failed = results[results["status"] != "ok"]
    cols = [c for c in ("job_dir", "error_type", "error_message") if c in failed]
    plots = []
    order = ("score_vs_", "heatmap_", "optimal_")  # as report.md lists them: per factor, then vs distance
    for png in sorted(out.glob("*.png"), key=lambda p: (next((i for i, o in enumerate(order)
                                                              if p.name.startswith(o)), len(order)), p.name)):
        data = base64.b64encode(png.read_bytes()).decode()
        plots.append(f'<figure><img alt="{html.escape(png.name)}" src="data:image/png;base64,{data}">'
                     f"<figcaption class=note>{html.escape(png.name)}</figcaption></figure>")
    records = []
    for d in dirs:
        cmd, config = _sweep_record(d)
        records.append(f"<h3>{html.escape(str(d))}</h3><pre class=command>{html.escape(cmd)}</pre>"
                       f"<details><summary>config</summary><pre>{html.escape(config)}</pre></details>")
    content = {
        "summary": (summary, ""),
        "per-task": (_table(analysis.get("per_task", [])), "No successful job with a target score."),
        "best-practice": (_table(analysis.get("best_practice", [])), "No task group with a swept factor."),
        "factor-distance": (_table(_factor_distance_rows(analysis.get("factor_distance", {}))),
                            "No ordinal factor was swept."),
        "findings": (_table(analysis.get("findings", [])), "No findings in these results."),
        "estimator-agreement": (_table(analysis.get("estimator_agreement", [])),
                                "Fewer than 3 jobs with transferability estimates."),
        "measured-distance": (_table(md.get("table", [])), "Not measured (python -m src.report DIR --distance)."),
        "plots": ("".join(plots), "No plots (no successful jobs)."),
        "failed-jobs": (_table(failed[cols]) if len(failed) else "", "No failed jobs."),
        "command": ("".join(records), "No sweep record."),
    }
    body = "".join(_section(sid, title, intro, *content[sid]) for sid, title, intro in SECTIONS)
    page = (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>Transfer report</title>"
            f"<style>{STYLE}</style></head><body><h1>Transfer report</h1>{body}<script>{SCRIPT}</script>"
            "</body></html>")
    path = out / "report.html"
    tmp = out / ".report.html.tmp"
    tmp.write_text(page)
    tmp.replace(path)
    return path
