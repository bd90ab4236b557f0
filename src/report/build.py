"""Write a sweep's report: results.csv, report.md, report.html, analysis.json and PNG plots
(see `python -m src.report -h`)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from src.cache import atomic_open, atomic_write_text
from src.report import analysis as A
from src.report.distance import measured_distance
from src.report import findings as F
from src.report import jobs as J
from src.report import numbers as N
from src.report import stats as S
from src.report import selection as MS
from src.report import zoo as Z
from src.report.collect import load_results
from src.report.html import write_html
from src.report.plot_tasks import task_keys
from src.report.plots import write_plots
from src.report.sections import Section, filled, render_md
from src.report.study import Study, import_sweep_extensions, read_study, sweep_record


def default_baseline() -> dict[str, Any]:
    """The factor values of the default config (conf/config.yaml's defaults list): the paper's 'standard setting',
    read off by the result record's own factor table (`src.record.factors`), as a run of the defaults records them.

    Loaded with OmegaConf rather than composed with Hydra, so it also works inside a running Hydra (the callback).
    """
    from omegaconf import OmegaConf

    import src
    from src.models.registry import get_arch
    from src.record import FACTORS, factors

    conf = src.REPO_ROOT / "conf"
    root = OmegaConf.load(conf / "config.yaml")
    groups = {k: v for d in root.defaults if isinstance(d, dict) or OmegaConf.is_dict(d) for k, v in d.items()}
    cfg = OmegaConf.merge({k: v for k, v in root.items() if k not in ("defaults", "hydra")},
                          {name: OmegaConf.load(conf / name / f"{opt}.yaml") for name, opt in groups.items()
                           if opt is not None and "/" not in name})
    base = {f: v for f, v in factors(cfg).items() if f in FACTORS}
    base["snapshot"] = base["snapshot"] or "last"  # the last epoch, whatever source.epochs a run uses
    base["depth"] = base["depth"] or get_arch(base["arch"]).default_depth
    return base


def _check_given(df: pd.DataFrame, given: dict[str, str]) -> None:
    """A baseline the user named (`--baseline factor=value`) that no finished job of the sweep ran: refused,
    before anything is written, instead of a report whose baseline columns are all empty."""
    ok, varied = A.ok_rows(df), set(A.swept_factors(df))  # (a baseline only matters for a factor the sweep varies)
    for factor, value in given.items():
        if factor not in varied or (factor == "snapshot" and value == "last"):
            continue
        values = A.sort_values(factor, list(ok[factor].dropna().unique()))
        if not any(A.same_value(value, v) for v in values):
            raise SystemExit(f"error: --baseline {factor}={value}: no finished job of this sweep ran it; valid: "
                             f"{', '.join(map(str, values)) or 'none'}")


def _baseline_hint(df: pd.DataFrame, baseline: dict[str, Any], factors: list[str]) -> str:
    """Which swept factors' baseline values no finished job ran, and the values it did run, as a `--baseline` a
    reader can pass (a sweep over a library net's layers has no fc6)."""
    ok = A.ok_rows(df)
    absent = [(f, A.sort_values(f, list(ok[f].dropna().unique()))) for f in factors if f in baseline and f in ok
              and not (f == "snapshot" and str(baseline[f]) == "last")
              and not any(A.same_value(baseline[f], v) for v in ok[f].dropna().unique())]
    if not absent:
        return ""
    ran = "; ".join(f"{f} ran {', '.join(map(str, values))}" for f, values in absent)
    # The example is a setting some job ran: the absent factors' values from a job at the baseline of the others
    # (experiment=diversity_density at another image budget ran 20 classes only with 100 images per class, and
    # the first value of images per class alone, 50, named a baseline that no job ran either).
    names = [f for f, _ in absent]
    present = [f for f in factors if f in baseline and f in ok and f not in names]
    at_base = ok[[all(A.same_value(v, baseline[f]) for f, v in zip(present, row))
                  for row in ok[present].itertuples(index=False)]] if present else ok
    ran_there = sorted(at_base[names].drop_duplicates().itertuples(index=False),
                       key=lambda r: A.setting_key(names, tuple(r)))
    pick = dict(zip(names, ran_there[0])) if ran_there else {f: values[0] for f, values in absent if values}
    example = " ".join(f"--baseline {f}={pick[f]}" for f, _ in absent if f in pick)
    uncompressed = ""
    if "n_components" in names and A.same_value(baseline.get("n_components"), None):
        # experiment=dimred_study sweeps PCA sizes only: its standard setting, the representation without PCA,
        # is the reference the study's question needs ("how far can PCA compress before the score drops?")
        uncompressed = (" The uncompressed representation (dimred=none) is not in this sweep: run it on the same "
                        "targets and seeds and give both sweep dirs to `python -m src.report` to compare with it.")
    return (f" ({ran}: `python -m src.report DIR {example}` names one.){uncompressed}" if example
            else f" ({ran}.){uncompressed}")


def parse_baseline(pairs: list[str]) -> dict[str, Any]:
    base = default_baseline()
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in A.FACTORS:
            raise SystemExit(f"error: --baseline {pair!r} must be factor=value with a factor in: {', '.join(A.FACTORS)}")
        base[key] = value
    return base


def build_report(dirs: list[str | Path], out: Path | None = None, baseline: dict[str, Any] | None = None,
                 distance: bool = False, cache_dir: Path | None = None, primary: str | None = None,
                 min_seeds: int | None = None, plots: bool = True, given: dict[str, str] | None = None) -> Path:
    """Write the report of the sweeps in `dirs` to `out` (default: <first dir>/report). `primary`/`min_seeds`
    override the study's `report.primary` / `report.min_seeds` from the sweep's Hydra record. `plots=False`: the
    tables and findings without the PNG plots (drawing them is most of a report's time)."""
    dirs = [Path(d) for d in dirs]
    missing = [str(d) for d in dirs if not d.exists()]
    if missing:
        raise SystemExit(f"error: {', '.join(missing)} does not exist; give sweep dirs holding result.json files")
    df = load_results(dirs)
    if df.empty:  # checked before creating the output dir, so a failed report leaves nothing behind
        raise SystemExit(f"error: no result.json under {', '.join(map(str, dirs))}")
    _check_given(df, given or {})
    unimported = import_sweep_extensions(dirs)  # the user's archs, tasks, estimators: as the jobs knew them
    study = read_study(dirs, primary, min_seeds)
    out = Path(out) if out else dirs[0] / "report"
    out.mkdir(parents=True, exist_ok=True)
    drawn_before = _drawn(out)
    df = F.with_task_axes(df)  # each synth_shift shift is a task; tasks ordered by shift or measured distance
    with atomic_open(out / "results.csv", durable=False) as f:  # a crash leaves the old table, never half of one
        df.to_csv(f, index=False)
    baseline = baseline if baseline is not None else default_baseline()
    factors = A.swept_factors(df)
    baseline = _arch_depth(baseline, df, factors, given or {})
    n_ok = int((df["status"] == "ok").sum())
    jobs = J.census(dirs, df["job_dir"])  # the planned or started jobs that left no result.json
    sec = {sid: Section(sid) for sid in ("summary", "findings", "per-task", "best-practice", "optimal", "settings",
                                         "estimator-agreement", "zoo", "model-selection", "selection-regret", "measured-distance",
                                         "plots", "failed-jobs", "command")}
    sec["summary"].notes += [
        f"Sweeps: {', '.join(map(str, dirs))}", J.summary(jobs, len(df), n_ok),
        f"Swept factors: {', '.join(factors) or 'none'}" + _models_note(df), *_search_note(dirs),
        "Baseline (standard setting): " + (", ".join(f"{f}={baseline.get(f)}" for f in factors) or "n/a"),
        *(f"Warning: {line}" for line in unimported)]
    analysis: dict[str, Any] = {"swept_factors": factors, "baseline": {f: baseline.get(f) for f in factors},
                                "study": {"primary": study.primary, "primary_from": study.primary_from,
                                          "min_seeds": study.min_seeds, "min_seeds_from": study.min_seeds_from},
                                "jobs": {"expected": jobs["expected"],
                                         "expected_from": "plan.json and job dirs" if jobs["from_plan"] else "job dirs",
                                         "with_results": len(df), "ok": n_ok, "failed": len(df) - n_ok,
                                         "without_result": jobs["without_result"]}}
    if n_ok and "target_score" in df:
        pt = A.per_task(df, baseline)
        # a rank describes distance from the synthetic source only: for other sources the column is empty
        empty_rank = "distance_rank" in pt and pt["distance_rank"].isna().all()
        sec["per-task"].table(pt.drop(columns="distance_rank") if empty_rank else pt)
        if factors and "baseline_score" in pt and len(pt) and pt["baseline_score"].isna().all():  # e.g. a search
            sec["per-task"].notes.append(
                "The baseline setting (" + ", ".join(f"{f}={baseline.get(f)}" for f in factors) + ") was not run in "
                "this sweep: no baseline score, relative error reduction or gain over it." + _baseline_hint(df, baseline, factors))
        _, on_test = A.selection_score(A.ok_rows(df))
        if on_test:  # said here, where the choice is made, and not only under a question that chooses nothing
            sec["per-task"].notes.append(
                f"{', '.join(map(str, on_test))}: no val score (no C search there), so the best setting is chosen on "
                f"the test scores it reports: its best_score is optimistic, and the optimal-setting table's entry too.")
        bp = A.best_practice(df)
        sec["best-practice"].table(bp)
        optimal = A.optimal_settings(df)
        sec["optimal"].table([{"factor": f, "optimal per task (distance)": ", ".join(
            f"{t}={A.tie_label(e['ties'].get(t, [v]))} ({e['distance'][t]:.3g})" for t, v in e["optimal"].items())}
            for f, e in optimal.items()])
        ea = A.estimator_agreement(df)
        sec["estimator-agreement"].table(ea)
        analysis.update(per_task=pt.to_dict("records"), best_practice=bp.to_dict("records"),
                        optimal_settings=optimal, estimator_agreement=ea.to_dict("records"))
        zoos = {truth: Z.zoo_agreement(df, truth) for truth in Z.ground_truths(df)}  # several nets per target
        items, kind = F.answers(df, study.primary)
        family = _adjust(items, zoos)
        keys = task_keys(df) if plots else None  # each task's colour, metric and chance level, in every figure
        _findings(sec["findings"], items, kind, study, analysis, out, family, plots, keys)
        if warning := F.chance_sources(df):  # every finding describes these nets: said above the table
            # (no question read the sweep's factors: in the summary, so the findings keep saying why they are empty)
            (sec["findings"] if items else sec["summary"]).notes.insert(0 if items else len(sec["summary"].notes),
                                                                        warning)
        analysis["source_chance_warning"] = warning or None
        one_seed = "seed" in df and A.ok_rows(df)["seed"].nunique() == 1
        for truth, zoo in zoos.items():
            notes, tables = Z.zoo_content(zoo)
            if one_seed and zoo:  # its calls are over targets; the nets themselves are one training run each
                notes = notes + ["One source seed: each net here is one training run, so a call in these tables "
                                 "is about these nets on targets like these, not about the recipes (width, depth, "
                                 "data) they were trained with."]
            sec["zoo"].notes += notes
            for caption, t in tables:
                sec["zoo"].table(t, caption)
            if zoo:
                analysis.setdefault("estimator_zoo", {})[truth] = Z.zoo_json(zoo)
        selections = MS.model_selection(df)
        for target, sel in selections.items():
            sec["model-selection"].table(sel["backbones"], f"{target}: backbones by probe score "
                                                           f"({sel['test_images']} test images)")
            sec["model-selection"].table(sel["estimators"], f"{target}: estimators against the probe's ranking")
            sec["model-selection"].notes += [f"{target}: {n}" for n in sel["notes"]]
            analysis.setdefault("model_selection", {})[target] = {k: v.to_dict("records") if hasattr(v, "to_dict")
                                                                  else v for k, v in sel.items()}
        if selections:
            sec["model-selection"].notes.append(
                "Seconds are each job's own stage times. The first job a worker process runs also pays one-off "
                "start-up costs (library imports, thread pools, the model library's first build), so its times read "
                "high: compare backbones by times from a rerun with the features cached, or by jobs that ran later.")
        regret = Z.selection_regret(df)
        if len(regret):
            mean = regret.groupby("estimator")["regret"].mean().sort_values()
            places = N.decimals(mean)
            sec["selection-regret"].notes.append("Mean regret: " + ", ".join(f"{k} {N.number(v, places)}"
                                                                           for k, v in mean.items()))
            sec["selection-regret"].table(regret)
            analysis["selection_regret"] = regret.to_dict("records")
        settings = F.setting_table(df, baseline)
        sec["settings"].table(settings)
        analysis["settings_ci"] = settings.to_dict("records")
        if plots:
            sec["plots"].images += write_plots(df, out, optimal, keys)
            if not sec["plots"].images:
                sec["plots"].notes.append("None drawn: they show scores against the swept factors, and this sweep "
                                          "varies none of them.")
        else:
            sec["plots"].notes.append("Not drawn (python -m src.report --no-plots).")
    sec["measured-distance"].notes.append(f"Distance axis of this report: {df.attrs.get('distance_axis', 'none')}.")
    if distance:
        _measured_distance(sec["measured-distance"], df, cache_dir, analysis)
    else:
        sec["measured-distance"].notes.append("LogME and Frechet distances at the penultimate layer: not computed "
                                              "(python -m src.report DIR --distance).")
    failed = df[df["status"] != "ok"]
    if len(failed):
        sec["failed-jobs"].table(failed[[c for c in ("job_dir", "error_type", "error_message") if c in failed]])
    if jobs["without_result"]:
        sec["failed-jobs"].table([{"job": r["num"], "job_dir": r["job_dir"], "setting": r["setting"],
                                   "state": "started, no result.json" if r["started"] else "not started"}
                                  for r in jobs["without_result"]],
                                 "Jobs without a result.json (killed, still running, or not started)")
    for d in dirs:
        cmd, config = sweep_record(d)
        sec["command"].code += [{"caption": str(d), "text": cmd, "fold": False}] + (
            [{"caption": "config", "text": config, "fold": True}] if config else [])
    analysis["sections"] = filled(sec)
    # The previous report's figures this one did not draw (--no-plots, or fewer factors) would sit next to a report
    # that no longer shows them: removed, by the names that report recorded, and nothing else in the dir.
    for name in drawn_before - {n for s in analysis["sections"] for n in s["images"]}:
        (out / name).unlink(missing_ok=True)
    text = json.dumps(_strict(analysis), indent=1, default=_json_default, allow_nan=False)
    atomic_write_text(out / "analysis.json", text, durable=False)  # a report is rebuilt from the results: no fsync
    atomic_write_text(out / "report.md", render_md(analysis["sections"]), durable=False)
    write_html(out, analysis)
    return out


def _drawn(out: Path) -> set[str]:
    """The PNGs that the last report written to `out` drew, as its analysis.json's sections name them (plain file
    names in `out` only; none when there is no readable record)."""
    try:
        names = {n for s in json.loads((out / "analysis.json").read_text())["sections"] for n in s["images"]}
    except (OSError, ValueError, KeyError, TypeError):
        return set()
    return {n for n in names if isinstance(n, str) and n.endswith(".png") and n == Path(n).name
            and not n.startswith(".")}


def _arch_depth(baseline: dict[str, Any], df: pd.DataFrame, factors: list[str], given: dict[str, str]
                ) -> dict[str, Any]:
    """A depth sweep of one family is compared against that family's own standard depth (vgg: 11), not the
    default config's arch's (alexnet: 8, which a vgg sweep does not even run), unless --baseline names one."""
    from src.models.registry import ARCHS

    if "depth" not in factors or "depth" in given or "arch" not in df:
        return baseline
    archs = df.loc[df["status"] == "ok", "arch"].dropna().unique() if "status" in df else df["arch"].dropna().unique()
    arch = ARCHS.get(str(archs[0])) if len(archs) == 1 else None
    return {**baseline, "depth": arch.default_depth} if arch is not None and arch.default_depth else baseline


def _search_note(dirs: list[Path]) -> list[str]:
    """What an Optuna search's own record says (optimization_results.yaml): its best trial, or its Pareto front."""
    import yaml

    lines = []
    for d in dirs:
        path = Path(d) / "optimization_results.yaml"
        if not path.is_file():
            continue
        res = yaml.safe_load(path.read_text()) or {}
        if "solutions" in res:
            lines.append(f"Optuna search ({path}): a Pareto front of {len(res['solutions'])} settings over the whole "
                         f"study (earlier runs' trials included), listed there with their objective values.")
        elif "best_params" in res:
            best = {str(k): v for k, v in res["best_params"].items()}
            # A group's option is sampled whatever the group's choice (Optuna's space here is flat); with the
            # group at none the option set nothing, so it is not part of the best setting.
            params = ", ".join(f"{k}={v}" + (f" (unused: {k.split('.')[0]}=none)"
                                             if "." in k and str(best.get(k.split(".")[0])) == "none" else "")
                               for k, v in best.items())
            lines.append(f"Optuna search ({path}): the study's best trial by its objective (earlier runs' trials "
                         f"included): {N.number(float(res['best_value']))} at {params}. The sections below choose "
                         f"per task on val scores and give test scores.")
    return lines


def _models_note(df: pd.DataFrame) -> str:
    """The backbones a sweep compares (arch.model: not a factor the analyses read, a section of its own)."""
    ok = df[df["status"] == "ok"] if "status" in df else df
    n = ok["model"].dropna().astype(str).nunique() if "model" in ok else 0
    return f"; backbones compared: {n} (arch.model; see Model selection)" if n > 1 else ""


def _adjust(items: list[F.Answer], zoos: dict[str, dict]) -> str:
    """One Holm family per report: every secondary question's task-level p and every zoo call (the primary
    question is tested at the full level). Returns what the family holds, for the findings' note."""
    family = F.family_pvalues(items)
    zoo_ps = {truth: Z.calls(z) for truth, z in zoos.items()}
    everything = family + [p for ps in zoo_ps.values() for p in ps]
    adjusted = S.holm(everything)
    for i, (a, p) in enumerate(zip(items, adjusted)):
        a.task_p_adjusted = p
        if math.isfinite(family[i]):  # what its tasks allow at best, adjusted among the family's actual calls
            floor = everything.copy()
            floor[i] = S.smallest_p(a.q.kind, a.n_tasks)
            a.floor_adjusted, a.family_size = S.holm(floor)[i], sum(math.isfinite(p) for p in everything)
    start = len(family)
    for truth, ps in zoo_ps.items():
        Z.decide(zoos[truth], adjusted[start:start + len(ps)])
        start += len(ps)
    n_q, n_z = sum(math.isfinite(p) for p in family), sum(math.isfinite(p) for p in everything[len(family):])
    return (f"Holm family: {n_q} secondary question{'s' if n_q != 1 else ''}"
            + (f" and {n_z} estimator-zoo calls (this sweep ranks several nets or layers per target)" if n_z else "")
            + ".")


def _findings(section: Section, items: list[F.Answer], kind: str, study: Study, analysis: dict, out: Path,
              family: str, plots: bool, keys: dict | None = None) -> None:
    from src.report.findings_plots import findings_plots

    if not items:  # no question reads the swept factors (pooling, dimred): the section says so in its empty text,
        # not under notes on seeds and a Holm family that read as if questions had been asked ('Source seeds: n/a')
        analysis.update(findings={}, findings_details={}, distance_axis=kind, source_seeds=[])
        return
    seeds = sorted({len(a.grid.seeds) for a in items})
    section.notes.append(f"Distance axis: {kind}. Source seeds: {', '.join(map(str, seeds)) or 'n/a'}; "
                         f"{_study_note(study, {a.q.id for a in items})} {family}")
    rows = [F.row(a, study.min_seeds) for a in items]
    table = N.frame(rows)  # (the interval column prints at one precision)
    if len(table):
        section.table(table[F.COLUMNS])
        section.table(table[["id", "question", "measured as"]], "What each question measures")
        section.after += F.notes(items)
    details = {a.q.id: F.details(a) for a in items}
    if plots:
        section.images += findings_plots(details, kind, out, keys)
    analysis.update(findings={r["id"]: _numeric_row(a, r) for a, r in zip(items, rows)}, findings_details=details,
                    distance_axis=kind, source_seeds=seeds)


POWER = "seeds for 80% power"
TEXT_ONLY = ("seed-level 95% CI", "source seeds", POWER)  # findings.row's cells that are formatted text


def _numeric_row(a: F.Answer, row: dict[str, Any]) -> dict[str, Any]:
    """analysis.json's findings row: the table's row with numbers in place of the cells it prints as text (the
    interval as [lo, hi] or null, the defined source seeds and the undefined ones, the seeds for 80% power or
    null with the reason), for readers that compute with them."""
    out = {k: v for k, v in row.items() if k not in TEXT_ONLY}
    lo, hi = a.scalar("lo"), a.scalar("hi")
    out["ci"] = [lo, hi] if math.isfinite(lo) and math.isfinite(hi) else None
    out["source_seeds"] = len(a.defined) if a.result is not None else None
    out["undefined_seeds"] = list(a.undefined)
    out["seeds_for_80_power"], out["seeds_for_80_power_reason"] = _power(a)
    return out


def _power(a: F.Answer) -> tuple[int | None, str | None]:
    """(seeds, None), or (None, why there is no count)."""
    need = F.seeds_needed(a)
    if math.isfinite(need):
        return int(need), None
    if need == math.inf and F.ends_stay(a):
        return None, "unreachable: the near and the far end point the same way (the optimum does not move)"
    if need == math.inf:
        return None, "unreachable: the estimate is 0 or undefined, or too small for its per-seed SD"
    if a.result is None:
        return None, a.reason or "no estimate"
    return None, "fewer than 2 defined source seeds (no per-seed SD)"


def _study_note(study: Study, answered: set[str]) -> str:
    """The seeds a verdict needs and the primary question, each credited to where it was set (the sweep's record
    or the command line: `--min-seeds` alone leaves report.primary as the record says)."""
    need = max(S.MIN_SEEDS, study.min_seeds)
    given = f"={study.min_seeds}" if study.min_seeds and study.min_seeds < S.MIN_SEEDS else ""
    seeds = (f"a verdict needs {need} (report.min_seeds{given}{' from ' + study.min_seeds_from if study.min_seeds else ''}"
             f"; never fewer than {S.MIN_SEEDS}).")
    where = f"report.primary from {study.primary_from}"
    if study.primary in answered:
        return f"{seeds} Primary question: {study.primary} (not adjusted; {where})."
    if study.primary:
        return (f"{seeds} The primary question ({study.primary}, {where}) is not one this sweep answers: every "
                "question is Holm-adjusted.")
    declared = f"report.primary=null from {study.primary_from}" if study.primary_from != "none" else "report.primary"
    return f"{seeds} No primary question declared ({declared}): every question is Holm-adjusted."


def _measured_distance(section: Section, df: pd.DataFrame, cache_dir, analysis: dict) -> None:
    import os

    import src
    from scipy import stats

    cache = Path(cache_dir or os.environ.get("TRANSFER_CACHE_DIR", src.REPO_ROOT / ".cache"))
    md_df = measured_distance(df, cache)
    if not len(md_df):
        section.notes.append(f"LogME and Frechet distances at the penultimate layer: not computed, none of the "
                             f"jobs' features is in the cache {cache} (--cache-dir: the cache the sweep ran with)")
        return
    rhos: dict[str, dict] = {}
    for key, g in md_df.groupby("source_key"):
        for measure in ("logme_distance", "frechet"):
            sub = g[["distance_rank", measure]].dropna()
            if len(sub) >= 3:
                r = stats.spearmanr(sub["distance_rank"], sub[measure])
                rhos.setdefault(key, {})[measure] = {"rho": float(r.statistic), "p": float(r.pvalue)}
    if rhos:
        section.notes.append("; ".join(f"source {k[:8]} {m}: Spearman rho={v['rho']:.2f} ({_p(v['p'])})"
                                       for k, ms in rhos.items() for m, v in ms.items()))
    section.table(md_df)
    analysis["measured_distance"] = {"table": md_df.to_dict("records"), "spearman": rhos}


def _p(p: float) -> str:
    text = N.pvalue(p)
    return text if text.startswith("p ") else f"p={text}"


def _strict(v: Any) -> Any:
    """`v` as strict JSON can hold it: NaN and infinities as null (json.dumps would write bare `NaN`, which
    JSON.parse and other strict readers reject), numpy scalars and arrays as Python numbers and lists."""
    if isinstance(v, dict):
        return {k: _strict(x) for k, x in v.items()}
    if isinstance(v, (set, frozenset)):
        v = sorted(v)
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_strict(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if v is pd.NA or v is pd.NaT:
        return None
    return v


def _json_default(v: Any) -> Any:
    return _strict(v.item()) if hasattr(v, "item") else str(v)
