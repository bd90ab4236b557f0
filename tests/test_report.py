import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from src.report import analysis as A
from src.report.build import build_report
from tests.conftest import FAKE_LAYERS, FAKE_TASKS, REPO, TINY_TARGET


def test_report_files_tables_and_numbers(fake_sweep, tmp_path):
    out = build_report([fake_sweep], tmp_path / "out", baseline={"layer": "fc7"})
    df = pd.read_csv(out / "results.csv")
    assert len(df) == 17 and (df["status"] == "failed").sum() == 1
    analysis = json.loads((out / "analysis.json").read_text())
    per_task = {r["target"]: r for r in analysis["per_task"]}
    # far: best conv5 0.65 vs baseline fc7 0.40 -> errors 0.35 vs 0.60 -> (0.60 - 0.35) / 0.60.
    assert per_task["far"]["layer"] == "conv5" and per_task["far"]["baseline_score"] == pytest.approx(0.40)
    assert per_task["far"]["rel_error_reduction"] == pytest.approx((0.60 - 0.35) / 0.60)
    assert per_task["near"]["rel_error_reduction"] == 0.0
    # Each task's optimal layer, described (these jobs recorded no val scores: chosen on the test score).
    fd = analysis["optimal_settings"]["layer"]
    assert fd["optimal"] == {"near": "fc7", "mid": "fc6", "far": "conv5", "farthest": "conv3"}
    assert "rho" not in fd  # whether the optimum moves is a finding, with its own inference
    # One source seed: the layer questions get an estimate and no verdict.
    gap = analysis["findings"]["layer_gap_shrinks"]
    assert gap["estimate"] < 0 and gap["verdict"].startswith("no verdict: 1 source seed")
    shift = analysis["findings"]["layer_optimum_shift"]
    assert shift["estimate"] > 0 and shift["verdict"].startswith("no verdict: 1 source seed")
    assert any("no val scores for far, farthest, mid, near" in n
               for n in analysis["findings_details"]["layer_optimum_shift"]["notes"])
    # Estimators that order jobs exactly like the score (logme) or exactly reversed (nce).
    ea = {r["estimator"]: r for r in analysis["estimator_agreement"]}
    assert ea["logme"]["kendall_tau_all"] == pytest.approx(1.0) and ea["nce"]["kendall_tau_all"] == pytest.approx(-1.0)
    md = (out / "report.md").read_text()
    assert "## Failed jobs" in md and "layer='conv9' does not exist" in md
    assert "| structured | layer | conv3 |" in md  # best practice per group
    for name in ("score_vs_layer.png", "heatmap_layer.png", "optimal_layer_vs_distance.png"):
        assert (out / name).stat().st_size > 1000


def test_distance_with_a_cache_that_lacks_the_sweeps_features_says_so(fake_sweep, tmp_path):
    """`report --distance` without --cache-dir reads the default cache; where the sweep's features are not there it
    wrote no report at all ('error: KeyError: 'source_key''). Now the section names the cache it looked in."""
    out = build_report([fake_sweep], tmp_path / "out", distance=True, cache_dir=tmp_path / "elsewhere")
    md = (out / "report.md").read_text()
    assert f"none of the jobs' features is in the cache {tmp_path / 'elsewhere'}" in md
    assert "measured_distance" not in json.loads((out / "analysis.json").read_text())


def test_a_width_multiplier_of_ones_own_is_a_width_setting_of_its_own(make_cfg):
    """`width.multiplier=0.1,0.2` (README: `width=` ... or `width.multiplier=`): every job recorded width `small` (the
    group's name), so the report saw no width sweep ('Swept factors: none') and pooled the nets. A multiplier other
    than the option's own is now the width's value, ordered with the options by multiplier."""
    from src.record import factors, width_label

    assert factors(make_cfg("width=medium"))["width"] == "medium"
    assert factors(make_cfg("width.multiplier=0.1"))["width"] == "x0.1"
    assert width_label({"name": "tiny", "multiplier": 0.125}) == "tiny"
    assert A.sort_values("width", ["large", "x0.3", "tiny", "x0.1", "small"]) == ["x0.1", "tiny", "small", "x0.3",
                                                                                  "large"]


def test_the_factor_table_records_what_each_job_ran(make_cfg, tmp_path):
    """Each factor as the validated plan resolves it (the snapshot a null source.snapshot means, an ImageFolder
    source's class count, which no config key holds), the target sample's own seed, n_components only with PCA;
    and the flat row leaves the per-C val scores out (kept whole in result.json)."""
    from PIL import Image

    from src.check import validate
    from src.record import Result, factors

    def ran(*o, **kw):
        cfg = make_cfg(*o, **kw)
        return factors(cfg, validate(cfg))

    base = ran()
    assert base["snapshot"] == make_cfg().source.epochs and make_cfg().source.snapshot is None
    assert (base["seed"], base["target_seed"]) == (0, 1) and ran("target.data.seed=5")["target_seed"] == 5
    assert ran("dimred=pca", "dimred.n_components=8")["n_components"] == 8
    assert base["n_components"] is None and ran("dimred.n_components=8")["n_components"] is None  # (a dimred sweep's)
    for c in ("a", "b", "c"):
        (tmp_path / "tree" / c).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(np.full((8, 8, 3), 60 * i, np.uint8)).save(tmp_path / "tree" / c / f"{i}.png")
    folder = ran("source=imagefolder", f"source.root={tmp_path / 'tree'}", "source.val_per_class=1", "width=tiny",
                 *TINY_TARGET, tiny=False)
    assert folder["source_num_classes"] == 3 and folder["source"] == "imagefolder"
    row = Result("ok", "h", metrics={"val_scores": {"0.1": 0.5, "1.0": 0.6}, "best_C": 1.0}).row("job")
    assert row["val_score"] == 0.6 and not [k for k in row if k.startswith("val_scores")]


def test_relative_error_reduction_arithmetic():
    assert A.relative_error_reduction(0.8, 0.9) == pytest.approx(0.5)
    assert A.relative_error_reduction(1.0, 1.0) == 0.0
    assert math.isnan(A.relative_error_reduction(math.nan, 0.9))


def test_report_cli_default_out_dir(fake_sweep):
    """The report's command line: the default output dir (without the plots: `--no-plots`) and a bad baseline."""
    r = subprocess.run([sys.executable, "-m", "src.report", str(fake_sweep), "--baseline", "layer=fc6", "--no-plots"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    from src.report.analysis import same_value as _same

    assert _same("64", 64.0) and not _same("fc6", "fc7")  # as a table of floats writes n_components
    assert (fake_sweep / "report" / "report.md").exists() and not list((fake_sweep / "report").glob("*.png"))
    r = subprocess.run([sys.executable, "-m", "src.report", str(fake_sweep), "--baseline", "colour=red"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "must be factor=value with a factor in" in r.stderr
    # a baseline value the sweep never ran, and an argument of the wrong type: one line each, exit 1, nothing written
    for args, said in ((["--baseline", "layer=fc99"], "error: --baseline layer=fc99: no finished job of this sweep "
                                                      "ran it; valid: "),
                       (["--min-seeds", "abc"], "error: python -m src.report: argument --min-seeds: invalid int "
                                                "value: 'abc'")):
        r = subprocess.run([sys.executable, "-m", "src.report", str(fake_sweep), "--out", str(fake_sweep / "x"), *args],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 1 and r.stderr.startswith(said) and r.stderr.count("\n") == 1, r.stderr
        assert not (fake_sweep / "x").exists()
    # a factor the sweep does not vary, and a number written as the table does not write it: accepted
    r = subprocess.run([sys.executable, "-m", "src.report", str(fake_sweep), "--out", str(fake_sweep / "y"),
                        "--no-plots", "--baseline", "classifier=logistic", "layer=fc6"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_search_workers_refuse_bad_arguments_in_one_line():
    for args, said in ((["0", "search=factors_tpe"], "n=0: need at least 1 worker"),
                       (["2", "layer=fc6"], "no search= preset among the overrides (layer=fc6)"),
                       (["two"], "argument n: invalid int value: 'two'")):
        r = subprocess.run([sys.executable, "-m", "src.search.workers", *args], capture_output=True, text=True,
                           timeout=60, cwd=REPO)
        assert r.returncode == 1 and r.stderr.startswith(f"error: python -m src.search.workers: {said}"), r.stderr
        assert r.stderr.count("\n") == 1


def test_summary_command_summarises_a_sweep_that_died(fake_sweep):
    """`python -m src.report.summary DIR` (README, for a sweep whose end-of-sweep callback never ran): summary.csv
    with one row per job, in job order, failed job included, and the table on stdout."""
    r = subprocess.run([sys.executable, "-m", "src.report.summary", str(fake_sweep)], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    df = pd.read_csv(fake_sweep / "summary.csv")
    n_ok = sum(len(scores) for _, _, scores in FAKE_TASKS.values())
    assert df["job"].astype(str).tolist() == [str(i) for i in range(n_ok + 1)]
    assert (df["status"] == "ok").sum() == n_ok and df.loc[n_ok, "status"] == "failed"
    assert df.loc[n_ok, "error_type"] == "ConfigError" and df.loc[0, "layer"] == "conv3"
    assert df.loc[3, "target_score"] == pytest.approx(FAKE_TASKS["near"][2][3])
    assert f"{n_ok + 1} jobs ({n_ok} ok, 1 not ok); summary: {fake_sweep / 'summary.csv'}" in r.stdout
    # a job that started and left no result (a sweep interrupted there) is counted, not passed over
    (fake_sweep / "99" / ".hydra").mkdir(parents=True)
    r = subprocess.run([sys.executable, "-m", "src.report.summary", str(fake_sweep)], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert f"({n_ok} ok, 1 not ok); 1 planned jobs without a result (interrupted or not started); summary" in r.stdout


def _sections(out) -> dict:
    return {s["id"]: s for s in json.loads((out / "analysis.json").read_text())["sections"]}


def test_study_settings_are_credited_to_where_each_was_set(fake_sweep, tmp_path):
    """`--min-seeds` alone: the seed count from the command line, the primary question still from the record (and
    the other way round with `--primary` alone)."""
    record = fake_sweep / "multirun.yaml"
    record.write_text("report:\n  primary: layer_gap_shrinks\n  min_seeds: 6\nseed: 0\n")
    out = build_report([fake_sweep], tmp_path / "a", baseline={"layer": "fc7"}, min_seeds=3, plots=False)
    note = _sections(out)["findings"]["notes"][0]
    assert "a verdict needs 3 (report.min_seeds from command line;" in note
    assert f"Primary question: layer_gap_shrinks (not adjusted; report.primary from {record})." in note
    assert json.loads((out / "analysis.json").read_text())["study"] == {
        "primary": "layer_gap_shrinks", "primary_from": str(record), "min_seeds": 3, "min_seeds_from": "command line"}
    out = build_report([fake_sweep], tmp_path / "b", baseline={"layer": "fc7"}, primary="layer_optimum_shift",
                       plots=False)
    note = _sections(out)["findings"]["notes"][0]
    assert f"a verdict needs 6 (report.min_seeds from {record};" in note
    assert "Primary question: layer_optimum_shift (not adjusted; report.primary from command line)." in note


def _strict_json(text: str):
    """JSON as strict readers (JavaScript's JSON.parse) take it: NaN and Infinity are not JSON."""
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_analysis_json_is_strict_json_with_null_for_undefined_numbers(fake_sweep, tmp_path):
    """No baseline job (layer=fc8 is not swept) and one source seed: undefined numbers are null, not bare NaN."""
    out = build_report([fake_sweep], tmp_path / "out", baseline={"layer": "fc8"}, plots=False)
    analysis = _strict_json((out / "analysis.json").read_text())
    assert all(r["baseline_score"] is None and r["rel_error_reduction"] is None for r in analysis["per_task"])
    assert json.dumps(analysis, allow_nan=False)


def _seeded_sweep(root, seeds, skip=()):
    """conftest's fake tasks once per source seed (each seed's net a little better or worse), `skip`: (seed,
    target, layer) jobs that never finished."""
    rng = np.random.default_rng(0)
    job = 0
    for seed in seeds:
        for target, (group, rank, scores) in FAKE_TASKS.items():
            for layer, score in zip(FAKE_LAYERS, scores):
                if (seed, target, layer) in skip:
                    continue
                (root / str(job)).mkdir(parents=True)
                (root / str(job) / "result.json").write_text(json.dumps({
                    "status": "ok", "factors": {"arch": "alexnet", "layer": layer, "target": target, "group": group,
                                                "distance_rank": rank, "seed": seed},
                    "metrics": {"target_score": score + rng.normal(0, 0.03), "target_metric": "accuracy"}}))
                job += 1
    return root


def test_analysis_json_findings_hold_numbers_where_the_table_prints_text(tmp_path):
    """The CI as [lo, hi], source seeds as a count with the undefined ones listed, seeds for 80% power as a count
    or null with the reason; the markdown table keeps its text."""
    sweep = _seeded_sweep(tmp_path / "sw", [0, 1, 2], skip={(2, "far", "conv3")})
    out = build_report([sweep], tmp_path / "out", baseline={"layer": "fc7"}, plots=False)
    gap = _strict_json((out / "analysis.json").read_text())["findings"]["layer_gap_shrinks"]
    lo, hi = gap["ci"]
    assert isinstance(lo, float) and isinstance(hi, float) and lo <= gap["estimate"] <= hi
    assert gap["source_seeds"] == 2 and gap["undefined_seeds"] == ["2"]
    need, why = gap["seeds_for_80_power"], gap["seeds_for_80_power_reason"]
    assert (isinstance(need, int) and need >= 2 and why is None) or (need is None and why.startswith("unreachable"))
    assert not {"seed-level 95% CI", "source seeds", "seeds for 80% power"} & set(gap)
    assert isinstance(gap["task-level p"], float) and isinstance(gap["tasks"], int)
    table = _sections(out)["findings"]["tables"][0]
    row = next(dict(zip(table["columns"], r)) for r in table["rows"] if r[0] == "layer_gap_shrinks")
    assert row["source seeds"] == "2 of 3 (undefined: s2)" and row["seed-level 95% CI"].startswith("[")
    # One source seed: no interval, no power, each null with the reason.
    one = build_report([_seeded_sweep(tmp_path / "one", [0])], tmp_path / "out1", baseline={"layer": "fc7"},
                       plots=False)
    gap = _strict_json((one / "analysis.json").read_text())["findings"]["layer_gap_shrinks"]
    assert gap["ci"] is None and gap["source_seeds"] == 1 and gap["undefined_seeds"] == []
    assert gap["seeds_for_80_power"] is None and gap["seeds_for_80_power_reason"].startswith("fewer than 2")


def _dies_half_written(text: str):
    """A writer (to_csv, savefig) that writes the start of its file and then fails, as a killed process or a full
    disk would leave it."""
    def write(self, target=None, *args, **kwargs):
        if isinstance(target, (str, Path)):
            Path(target).write_bytes(text.encode())
        else:
            target.write(text if "b" not in getattr(target, "mode", "w") else text.encode())
        raise OSError("No space left on device")

    return write


def test_a_crash_mid_write_leaves_the_previous_table_and_figure_whole(fake_sweep, tmp_path, monkeypatch):
    import matplotlib.figure

    from src.report.layout import figure, save

    out = build_report([fake_sweep], tmp_path / "out", baseline={"layer": "fc7"}, plots=False)
    table = (out / "results.csv").read_bytes()
    fig, ax = figure(2, 2)
    ax.plot([0, 1])
    save(fig, out / "score_vs_layer.png")
    png = (out / "score_vs_layer.png").read_bytes()
    monkeypatch.setattr(pd.DataFrame, "to_csv", _dies_half_written("job_dir,sta"))
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", _dies_half_written("\x89PNG"))
    with pytest.raises(OSError, match="No space"):
        build_report([fake_sweep], out, baseline={"layer": "fc7"}, plots=False)
    with pytest.raises(OSError, match="No space"):
        save(figure(2, 2)[0], out / "score_vs_layer.png")
    assert (out / "results.csv").read_bytes() == table and (out / "score_vs_layer.png").read_bytes() == png
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temp file left behind
    # Written through temp files, yet with the permissions a plain write gives (not a temp file's 0o600).
    mask = os.umask(0o022)
    os.umask(mask)
    assert {(out / n).stat().st_mode & 0o777 for n in ("results.csv", "report.html", "score_vs_layer.png")} == {
        0o666 & ~mask}


def test_no_plots_removes_the_figures_of_the_report_it_replaces_and_nothing_else(fake_sweep, tmp_path):
    out = build_report([fake_sweep], tmp_path / "out", baseline={"layer": "fc7"})
    drawn = {n for s in _sections(out).values() for n in s["images"]}
    assert {"score_vs_layer.png", "heatmap_layer.png"} <= drawn and all((out / n).is_file() for n in drawn)
    (out / "mine.png").write_bytes(b"not the report's")
    (out / "notes.txt").write_text("mine")
    build_report([fake_sweep], out, baseline={"layer": "fc7"}, plots=False)
    assert sorted(p.name for p in out.iterdir()) == ["analysis.json", "mine.png", "notes.txt", "report.html",
                                                      "report.md", "results.csv"]
    assert "![" not in (out / "report.md").read_text()


def _started(job_dir, overrides):
    """A job dir as Hydra leaves it when the job starts (.hydra/ with its overrides), before any result.json."""
    (job_dir / ".hydra").mkdir(parents=True)
    (job_dir / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))


SWEPT = ("hydra:\n  sweeper: {}\n  overrides:\n    task: ['layer=conv3,conv5,fc6,fc7', 'target=near,mid,far,farthest',"
         " width=tiny]\nseed: 0\n")


def test_jobs_without_a_result_are_counted_and_named(fake_sweep, tmp_path):
    """fake_sweep's 17 jobs with results (0-16), job 17 started and killed (its dir, no result.json), job 18 never
    started: named from the launcher's plan.json (job 17's dir as the launcher wrote it, relative to where it ran;
    job 18's absolute), or without a plan from the started job dirs."""
    (fake_sweep / "multirun.yaml").write_text(SWEPT)
    _started(fake_sweep / "17", ["layer=fc6", "target=near", "width=tiny"])
    layers = {17: "fc6", 18: "fc7"}
    plan = {"jobs": [{"num": n, "overrides": [f"layer={layers.get(n, 'conv3')}", "target=near", "width=tiny"],
                      "out_dir": f"multirun/elsewhere/{n}" if n < 18 else str(fake_sweep / str(n)), "state": "run"}
                     for n in range(19)]}
    (fake_sweep / "plan.json").write_text(json.dumps(plan))
    out = build_report([fake_sweep], tmp_path / "out", baseline={"layer": "fc7"}, plots=False)
    sections = _sections(out)
    assert ("Jobs: 19 planned, 17 with results (16 ok, 1 failed), 2 without a result (#17: layer=fc6 target=near, "
            "#18: layer=fc7 target=near; killed, still running or not started)") in sections["summary"]["notes"]
    table = sections["failed-jobs"]["tables"][-1]
    assert table["caption"].startswith("Jobs without a result.json") and [r[0] for r in table["rows"]] == ["17", "18"]
    jobs = _strict_json((out / "analysis.json").read_text())["jobs"]
    assert jobs["expected"] == 19 and jobs["with_results"] == 17 and jobs["expected_from"] == "plan.json and job dirs"
    assert [(r["num"], r["started"], r["job_dir"]) for r in jobs["without_result"]] == [
        (17, True, str(fake_sweep / "17")), (18, False, str(fake_sweep / "18"))]
    (fake_sweep / "plan.json").unlink()  # no plan: the job that started is still named
    out = build_report([fake_sweep], tmp_path / "out", baseline={"layer": "fc7"}, plots=False)
    assert ("Jobs: 18 started, 17 with results (16 ok, 1 failed), 1 without a result (#17: layer=fc6 target=near; "
            "killed or still running)") in _sections(out)["summary"]["notes"]


def test_backbones_compared_without_a_swept_factor_get_no_invented_baseline(tmp_path):
    """A model-selection sweep varies arch.model only (not a factor the analyses read): the summary names the
    backbones compared, the per-task table has no baseline (every job would match an empty standard setting), and
    the plots section does not claim that no job succeeded."""
    for job, (model, score) in enumerate({"timm:a": 0.6, "timm:b": 0.5, "torchvision:c": 0.4}.items()):
        (tmp_path / "sw" / str(job)).mkdir(parents=True)
        (tmp_path / "sw" / str(job) / "result.json").write_text(json.dumps({
            "status": "ok", "factors": {"arch": "backbone", "model": model, "layer": "pre_logits", "target": "mine",
                                        "group": "mine", "distance_rank": None, "seed": 0},
            "metrics": {"target_score": score, "target_metric": "accuracy"}}))
    out = build_report([tmp_path / "sw"], tmp_path / "out")
    md = (out / "report.md").read_text()
    assert "Swept factors: none; backbones compared: 3 (arch.model; see Model selection)" in md
    row = json.loads((out / "analysis.json").read_text())["per_task"][0]
    assert row["best_score"] == pytest.approx(0.6) and row["baseline_score"] is None
    assert "no successful jobs" not in md and "None drawn: they show scores against the swept factors" in md


def test_a_factor_unset_for_some_jobs_does_not_break_the_report(tmp_path):
    """dimred=none,pca with dimred.n_components=16,32: n_components is unset (NaN) where PCA does not run. pandas
    3's astype(str) keeps NaN, which broke the joins that label settings; the report shows it as "-"."""
    job = 0
    for seed in (0, 1, 2):
        for dimred, n in (("none", None), ("pca", 16), ("pca", 32)):
            (tmp_path / "sw" / str(job)).mkdir(parents=True)
            (tmp_path / "sw" / str(job) / "result.json").write_text(json.dumps({
                "status": "ok", "factors": {"arch": "alexnet", "layer": "fc6", "dimred": dimred, "n_components": n,
                                            "target": "t", "group": "g", "distance_rank": 1, "seed": seed},
                "metrics": {"target_score": 0.5 + 0.01 * job, "target_metric": "accuracy"}}))
            job += 1
    out = build_report([tmp_path / "sw"], tmp_path / "out", plots=False)
    settings = json.loads((out / "analysis.json").read_text())["settings_ci"]
    assert {r["setting"] for r in settings} == {"none, -", "pca, 16.0", "pca, 32.0"}


def test_baseline_before_the_sweep_dir_leaves_the_dir_a_sweep_dir(fake_sweep, tmp_path, capsys):
    """`python -m src.report --baseline layer=fc7 DIR`: the option's word list must not take the dir."""
    from src.report.__main__ import main

    main(["--baseline", "layer=fc7", str(fake_sweep), "--out", str(tmp_path / "out"), "--no-plots"])
    assert "report written to" in capsys.readouterr().out
    assert json.loads((tmp_path / "out" / "analysis.json").read_text())["baseline"]["layer"] == "fc7"


def test_a_search_report_names_the_studys_best_trial(fake_sweep, tmp_path):
    (fake_sweep / "optimization_results.yaml").write_text(
        "name: optuna\nbest_params:\n  layer: fc7\n  pooling: avg\n  dimred: none\n  dimred.n_components: 16\n"
        "best_value: 0.8125\n")
    out = build_report([fake_sweep], tmp_path / "out", plots=False)
    assert ("the study's best trial by its objective (earlier runs' trials included): 0.812 at layer=fc7, "
            "pooling=avg, dimred=none, dimred.n_components=16 (unused: dimred=none)") in (out / "report.md").read_text()


def test_a_depth_sweep_of_one_family_is_compared_with_that_familys_standard_depth(tmp_path):
    """vgg 11/13/16: the baseline is vgg's default depth (11), not the default config's alexnet depth (8); each
    depth is its own net, and the per-setting table gives its source val accuracy next to its transfer score."""
    for job, (depth, score) in enumerate(((11, 0.6), (13, 0.55), (16, 0.5))):
        (tmp_path / "sw" / str(job)).mkdir(parents=True)
        (tmp_path / "sw" / str(job) / "result.json").write_text(json.dumps({
            "status": "ok", "factors": {"arch": "vgg", "depth": depth, "layer": "fc6", "target": "t", "group": "g",
                                        "distance_rank": 1, "seed": 0},
            "metrics": {"target_score": score, "target_metric": "accuracy", "source_val_acc": score + 0.1}}))
    out = build_report([tmp_path / "sw"], tmp_path / "out", plots=False)
    analysis = json.loads((out / "analysis.json").read_text())
    assert [r["source val acc"] for r in analysis["settings_ci"]] == pytest.approx([0.7, 0.65, 0.6])
    assert analysis["baseline"] == {"depth": 11} and analysis["per_task"][0]["baseline_score"] == pytest.approx(0.6)


def test_settings_are_listed_and_ties_named_in_the_factors_order(tmp_path):
    """Widths tiny < small < medium, whatever order the jobs ran in or their names sort in: the per-setting rows in
    that order, and a tie on val is led by its first setting in that order (the docs' rule), in every table."""
    for job, (width, val, score) in enumerate((("medium", 0.5, 0.45), ("small", 0.4, 0.44), ("tiny", 0.5, 0.39))):
        (tmp_path / "sw" / str(job)).mkdir(parents=True)
        (tmp_path / "sw" / str(job) / "result.json").write_text(json.dumps({
            "status": "ok", "factors": {"arch": "alexnet", "width": width, "layer": "fc6", "target": "t",
                                        "group": "g", "distance_rank": 1, "seed": 0},
            "metrics": {"target_score": score, "target_metric": "accuracy", "best_C": 1.0,
                        "val_scores": {"1.0": val}}}))
    out = build_report([tmp_path / "sw"], tmp_path / "out", plots=False)
    analysis = json.loads((out / "analysis.json").read_text())
    assert [r["setting"] for r in analysis["settings_ci"]] == ["tiny", "small", "medium"]
    row = analysis["per_task"][0]
    assert row["width"] == "tiny" and row["tied on val"] == "tiny = medium"
    assert analysis["optimal_settings"]["width"]["optimal"]["t"] == "tiny"


def test_an_unset_factor_matches_an_unset_baseline_and_estimator_only_sweeps_report(tmp_path):
    """dimred=none,pca: the default baseline (dimred=none, n_components unset) matches the jobs without PCA (their
    n_components is NaN, the baseline's None), so there is a baseline score and no claim that it was not run. A
    sweep whose jobs ran an estimator instead of the probe (no target_score) still gets a report."""
    job = 0
    for seed in (0, 1, 2):
        for dimred, n, score in (("none", None, 0.5), ("pca", 16, 0.55), ("pca", 32, 0.52)):
            (tmp_path / "sw" / str(job)).mkdir(parents=True)
            (tmp_path / "sw" / str(job) / "result.json").write_text(json.dumps({
                "status": "ok", "factors": {"arch": "alexnet", "layer": "fc6", "dimred": dimred, "n_components": n,
                                            "target": "t", "group": "g", "distance_rank": 1, "seed": seed},
                "metrics": {"target_score": score + 0.01 * seed, "target_metric": "accuracy"}}))
            job += 1
    out = build_report([tmp_path / "sw"], tmp_path / "out", plots=False)
    row = json.loads((out / "analysis.json").read_text())["per_task"][0]
    assert row["baseline_score"] == pytest.approx(0.51)
    assert "was not run in this sweep" not in (out / "report.md").read_text()
    for job in range(2):
        (tmp_path / "est" / str(job)).mkdir(parents=True)
        (tmp_path / "est" / str(job) / "result.json").write_text(json.dumps({
            "status": "ok", "factors": {"arch": "alexnet", "layer": ["fc6", "fc7"][job], "target": "t", "group": "g",
                                        "distance_rank": 1, "seed": 0},
            "metrics": {"target_score": None, "estimator": "logme", "estimator_score": -0.2 * job,
                        "target_metric": "accuracy"}}))
    assert (build_report([tmp_path / "est"], tmp_path / "out2", plots=False) / "report.md").exists()


def test_model_selection_on_two_targets_keeps_both_and_finetuned_jobs_do_not_break_it(tmp_path):
    job = 0
    for target in ("t1", "t2"):
        for model, score, ft in (("timm:a", 0.6, "none"), ("timm:b", 0.5, "none"), ("timm:a", 0.7, "last")):
            (tmp_path / "sw" / str(job)).mkdir(parents=True)
            (tmp_path / "sw" / str(job) / "result.json").write_text(json.dumps({
                "status": "ok", "factors": {"arch": "backbone", "model": model, "layer": "pre_logits", "finetune": ft,
                                            "target": target, "group": "g", "distance_rank": None, "seed": 0},
                "metrics": {"target_score": score, "target_metric": "accuracy",
                            "transferability": {"logme": score, "hscore": 49.0}}}))
            job += 1
    out = build_report([tmp_path / "sw"], tmp_path / "out", plots=False)
    selection = json.loads((out / "analysis.json").read_text())["model_selection"]
    assert set(selection) == {"t1", "t2"}
    assert [r["estimator"] for r in selection["t1"]["estimators"]] == ["logme"]  # a constant H-score ranks nothing


def test_model_selection_with_replicates_ranks_every_backbone_on_one_shared_sample(tmp_path):
    """experiment=model_selection replicates=3: each backbone had 3 jobs (target samples 0..2), and the section kept
    each backbone's last job in the table's file order (resnet18 on sample 2, resnet10t on sample 1), so backbones
    were ranked on different test images while the paired interval resampled image indices as if shared. It now
    ranks all on one replicate every backbone ran (the first), and says so."""
    # The jobs' dirs sort as text ("10" < "2"), which put different samples last for different backbones.
    rng = np.random.default_rng(0)
    job = 0
    for seed in (0, 1, 2):
        for model, base in (("timm:a", 0.6), ("timm:b", 0.5), ("timm:c", 0.4), ("timm:d", 0.3)):
            score = base + 0.1 * seed  # sample 2 is the easiest: the last job of a would beat every b job
            path = tmp_path / "sw" / str(job)
            path.mkdir(parents=True)
            (path / "result.json").write_text(json.dumps({
                "status": "ok", "factors": {"arch": "backbone", "model": model, "layer": "pre_logits", "target": "t",
                                            "group": "g", "distance_rank": None, "seed": seed, "target_seed": seed},
                "metrics": {"target_score": score, "target_metric": "accuracy",
                            "transferability": {"logme": base}}}))
            np.save(path / "test_correct.npy", (rng.random(200) < score).astype(np.uint8))
            job += 1
    out = build_report([tmp_path / "sw"], tmp_path / "out", plots=False)
    sel = json.loads((out / "analysis.json").read_text())["model_selection"]["t"]
    assert {r["backbone"]: r["probe score"] for r in sel["backbones"]} == pytest.approx(
        {"timm:a": 0.6, "timm:b": 0.5, "timm:c": 0.4, "timm:d": 0.3})  # all on sample 0
    assert sel["notes"][0].startswith("3 replicates (seed / target sample: 0/0, 1/1, 2/2): this section ranks the "
                                      "backbones on one, 0/0, which every backbone ran")


def test_the_findings_interval_column_prints_at_one_precision():
    """Each interval of the seed-level CI column at the column's decimals (the widest end's three significant
    digits), as a column of numbers: pandas made the Interval cells plain strings, each at its own precision."""
    from src.report.numbers import Interval, column, frame

    table = frame([{"ci": Interval(-0.225, -0.176)}, {"ci": Interval(0.0054, 0.0592)}])
    assert column("ci", list(table["ci"])) == ["[-0.225, -0.176]", "[0.005, 0.059]"]


def test_a_baseline_no_job_ran_is_named_with_the_values_that_ran(tmp_path):
    """A layer sweep of a net without fc6 (a library model's graph nodes): the report says the default baseline was
    not run and names the layers that were, as a --baseline the reader can pass."""
    for job, (layer, score) in enumerate((("layer1", 0.4), ("layer4", 0.6))):
        (tmp_path / "sw" / str(job)).mkdir(parents=True)
        (tmp_path / "sw" / str(job) / "result.json").write_text(json.dumps({
            "status": "ok", "factors": {"arch": "timm", "layer": layer, "target": "t", "group": "g", "distance_rank": None,
                                        "seed": 0},
            "metrics": {"target_score": score, "target_metric": "accuracy"}}))
    text = (build_report([tmp_path / "sw"], tmp_path / "out", plots=False) / "report.md").read_text()
    assert "was not run in this sweep" in text
    assert "(layer ran layer1, layer4: `python -m src.report DIR --baseline layer=layer1` names one.)" in text


def test_a_baseline_hint_names_a_setting_some_job_ran(tmp_path):
    """experiment=diversity_density at a budget of 2000 images: 20 classes (the default's) ran only with 100 images
    per class. The hint named the first images-per-class value on its own (50), a baseline no job ran either; it
    now takes the value from the jobs at the baseline's other factors."""
    job = 0
    for classes in (5, 20, 40):
        for target in ("a", "b"):
            (tmp_path / "sw" / str(job)).mkdir(parents=True)
            (tmp_path / "sw" / str(job) / "result.json").write_text(json.dumps({
                "status": "ok", "factors": {"arch": "alexnet", "layer": "fc6", "target": target, "group": "g",
                                            "distance_rank": None, "seed": 0, "source_num_classes": classes,
                                            "source_images_per_class": 2000 // classes},
                "metrics": {"target_score": 0.5, "target_metric": "accuracy"}}))
            job += 1
    text = (build_report([tmp_path / "sw"], tmp_path / "out", plots=False) / "report.md").read_text()
    assert ("(source_images_per_class ran 50, 100, 400: `python -m src.report DIR --baseline "
            "source_images_per_class=100` names one.)") in text


def test_a_sweep_no_question_reads_says_so_and_names_the_feature_dimension(tmp_path):
    """experiment=pooling_study replicates=3: no question reads pooling or norm, yet the Findings section printed
    its intro about rows, 'Source seeds: n/a' (there were 3) and a Holm family, and no row; it now gives its empty
    text. spp pools 5x the channels of avg and max, which the per-setting table did not show: a feature dim column
    where a task's settings differ in it."""
    job = 0
    for target in ("a", "b", "c"):
        for pooling, dim in (("avg", 64), ("max", 64), ("spp", 320)):
            for seed in (0, 1, 2):
                (tmp_path / "sw" / str(job)).mkdir(parents=True)
                (tmp_path / "sw" / str(job) / "result.json").write_text(json.dumps({
                    "status": "ok", "factors": {"arch": "alexnet", "layer": "conv_last", "pooling": pooling,
                                                "target": target, "group": "g", "distance_rank": None, "seed": seed,
                                                "target_seed": seed},
                    "metrics": {"target_score": 0.5 + 0.01 * seed, "target_metric": "accuracy",
                                "feature_dim": dim, "best_C": 1.0, "val_scores": {"1.0": 0.5}}}))
                job += 1
    out = build_report([tmp_path / "sw"], tmp_path / "out", plots=False)
    findings = _sections(out)["findings"]
    assert findings["notes"] == [] and findings["tables"] == [] and findings["intro"] == ""
    assert findings["empty"].startswith("The sweep varies none of the factors")
    table = _sections(out)["settings"]["tables"][0]
    dims = {r[table["columns"].index("setting")]: r[table["columns"].index("feature dim")] for r in table["rows"]}
    assert dims == {"avg": "64", "max": "64", "spp": "320"}


def test_one_representation_size_throughout_gets_no_feature_dim_column(fake_sweep, tmp_path):
    for job in fake_sweep.iterdir():  # every job the same dimension
        raw = json.loads((job / "result.json").read_text())
        raw.setdefault("metrics", {})["feature_dim"] = 128
        (job / "result.json").write_text(json.dumps(raw))
    out = build_report([fake_sweep], tmp_path / "out", plots=False)
    assert "feature dim" not in _sections(out)["settings"]["tables"][0]["columns"]


def test_a_pca_sweep_names_the_uncompressed_reference_it_lacks(tmp_path):
    """experiment=dimred_study runs PCA sizes only: its standard setting (no PCA) is the reference its question
    needs, which the hint now names, with how to add it."""
    for job, k in enumerate((8, 16, 32)):
        (tmp_path / "sw" / str(job)).mkdir(parents=True)
        (tmp_path / "sw" / str(job) / "result.json").write_text(json.dumps({
            "status": "ok", "factors": {"arch": "alexnet", "layer": "fc6", "dimred": "pca", "n_components": k,
                                        "target": "t", "group": "g", "distance_rank": None, "seed": 0},
            "metrics": {"target_score": 0.5, "target_metric": "accuracy"}}))
    text = (build_report([tmp_path / "sw"], tmp_path / "out", plots=False) / "report.md").read_text()
    assert ("The uncompressed representation (dimred=none) is not in this sweep: run it on the same targets and "
            "seeds and give both sweep dirs to `python -m src.report` to compare with it.") in text
