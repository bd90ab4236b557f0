"""A sweep's plan (src/sweep_plan.py): the stage keys it schedules by are the ones the jobs use, who builds what,
the local order, `--plan`, and what happens to the jobs of a source net whose training failed."""

from __future__ import annotations

import json

import pytest
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.utils import create_config_search_path
from hydra.types import RunMode
from omegaconf import open_dict

from src import REPO_ROOT
from src.cache import Store
from src.check import validate
from src.errors import ConfigError
from src.keys import stage_keys
from src.main import config_hash, execute
from src.sweep_plan import LocalSchedule, describe, plan_sweep, task_config
from tests.conftest import NO_REPORT, TINY, results, run_cli


def composed(sweep_dir, grid: list[list[str]], common=TINY):
    """The sweep job configs Hydra's launcher gets (each with its hydra node and job number)."""
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(REPO_ROOT / "conf")))
    master = loader.load_configuration("config", overrides=[f"hydra.sweep.dir={sweep_dir}", *common],
                                       run_mode=RunMode.MULTIRUN)
    cfgs = []
    for num, overrides in enumerate(grid):
        cfg = loader.load_sweep_config(master, [*overrides, *common])
        with open_dict(cfg):
            cfg.hydra.job.num = num
            cfg.hydra.job.id = str(num)
        cfgs.append(cfg)
    return cfgs


@pytest.mark.parametrize("overrides", [
    [],
    ["finetune=last", "finetune.epochs=1"],  # a fine-tuned classifier: no features stage
    ["finetune=last", "finetune.epochs=1", "target=synth_retrieval", "target.data.num_instances=8"],  # features of
    ["estimator=logme", "source_val_features=true"],                                                # the tuned net
])
def test_planned_keys_are_the_keys_the_job_uses(make_cfg, tmp_path, overrides):
    cfg = make_cfg(*overrides, tiny="source" if "target=synth_retrieval" in overrides else True)
    planned = stage_keys(cfg, validate(cfg))
    used = execute(cfg, tmp_path)["keys"]
    assert {k: v for k, v in planned.items() if v is not None} == {k: used[k] for k in planned if k in used
                                                                    and used[k] is not None}
    assert {k for k, v in planned.items() if v is not None} == {k for k in planned if used.get(k) is not None}


def test_plan_of_a_grid_names_builders_and_dependents(cache_dir, tmp_path):
    """alexnet's source net is the session's (its val features, which every untuned job's measured distance needs,
    are not: its first job builds them), vgg's is not cached; conv9 fails the check; a job already done with this
    config is planned as done."""
    grid = [[f"arch={a}", f"target={t}", f"layer={l}"] for a in ("alexnet", "vgg")
            for t in ("synth_objects_new", "synth_scenes") for l in ("fc6", "fc7")] + [["layer=conv9"]]
    cfgs = composed(tmp_path / "sweep", grid)
    (tmp_path / "sweep" / "1").mkdir(parents=True)
    (tmp_path / "sweep" / "1" / "result.json").write_text(json.dumps({"status": "ok",
                                                                        "config_hash": config_hash(task_config(cfgs[1]))}))
    plan = plan_sweep(cfgs)
    assert [j.state for j in plan.jobs] == ["run", "done"] + ["run"] * 6 + ["invalid"]
    assert "conv9" in plan.job(8).error
    sources = {u.label.split()[0]: u for u in plan.units.values() if u.kind == "source"}
    assert sources["alexnet/tiny"].missing == ["source_val_features"] and sources["alexnet/tiny"].builder == 0
    assert sources["alexnet/tiny"].jobs == [0, 2, 3]  # not the done job, nor the one that fails its check
    assert sources["vgg/tiny"].missing == ["source", "source_val_features"] and sources["vgg/tiny"].jobs == [4, 5, 6, 7]
    extracts = [u for u in plan.units.values() if u.kind == "extract"]
    assert sorted(u.builder for u in extracts) == [0, 2, 4, 6] and not any(u.cached for u in extracts)
    assert plan.waits_on(plan.job(7)) == [plan.job(4).source, plan.job(6).extract]
    assert plan.waits_on(plan.job(2)) == [plan.job(0).source]  # it builds its own extraction
    text = describe(plan)
    assert "9 jobs (7 to run, 1 already done, 1 fail the config check)" in text
    assert "source nets           2       0         2" in text and "extractions           4       0         4" in text

    order = LocalSchedule(plan, Store(cache_dir))
    assert [order.next() for _ in range(4)] == [0, 4, 1, 8]  # the source builders, then the jobs that need nothing
    assert order.next() is None  # every other job waits for one of those


def test_local_order_and_a_source_that_was_not_built(cache_dir, tmp_path):
    """A job runs once its builders ended; an extraction its builder did not leave passes to the next job that needs
    it; a source net its builder did not leave fails the jobs that need it (with the reason) instead of each
    training it again."""
    grid = [[f"arch={a}", f"layer={l}", "seed=5"] for a in ("alexnet", "vgg") for l in ("fc6", "fc7", "conv5")]
    plan = plan_sweep(composed(tmp_path / "sweep", grid))
    store = Store(cache_dir)
    order = LocalSchedule(plan, store)
    assert [order.next(), order.next(), order.next()] == [0, 3, None]  # the two source builders, together
    alexnet = store.path("source", plan.units[plan.job(0).source].keys["source"])
    alexnet.mkdir(parents=True)
    (alexnet / "manifest.json").write_text("{}")  # as far as a plan looks, the net is built
    assert order.finished(0) == []
    assert [order.next(), order.next()] == [1, None]  # job 0 left no features: job 1 builds them, job 2 waits
    dropped = order.finished(3)  # vgg's builder ended without its net
    assert [n for n, _ in dropped] == [4, 5]
    vgg = plan.units[plan.job(3).source].keys["source"]
    assert all(why.startswith(f"source net {vgg} was not built: job 3, which trains it, failed") for _, why in dropped)
    order.finished(1)
    assert [order.next(), order.next()] == [2, None]
    order.finished(2)
    assert order.exhausted()


def test_a_free_worker_takes_an_extraction_builder_before_a_job_that_builds_nothing(cache_dir, tmp_path):
    """Job 1 needs only what is cached once job 0 ends; job 2 builds target B's extraction, which job 3 waits for:
    job 2 goes first (its extraction unblocks another job), then job 1."""
    grid = [[f"target={t}", f"layer={l}"] for t in ("synth_objects_new", "synth_scenes") for l in ("fc6", "fc7")]
    plan = plan_sweep(composed(tmp_path / "sweep", grid))
    store = Store(cache_dir)
    order = LocalSchedule(plan, store)
    assert order.next() == 0 and order.next() is None
    built_a = store.path("features", plan.units[plan.job(0).extract].keys["features"])
    built_a.mkdir(parents=True)
    (built_a / "manifest.json").write_text("{}")  # as far as a plan looks, job 0 left target A's features
    assert order.finished(0) == []
    assert [order.next(), order.next(), order.next()] == [2, 1, None]
    order.finished(2)
    assert order.next() == 3


def test_a_pretrained_source_is_no_unit_and_estimates_are_the_median_of_recorded_builds(cache_dir, tmp_path):
    from tests.test_backbones import MODULE

    plan = plan_sweep(composed(tmp_path / "lib", [[*MODULE, "layer=depth:1.0"]]))
    assert plan.job(0).source is None and not [u for u in plan.units.values() if u.kind == "source"]
    assert plan.job(0).extract is not None
    grid = [["arch=vgg", "layer=fc6"]]
    (unit,) = plan_sweep(composed(tmp_path / "a", grid)).missing("source")
    store = Store(cache_dir)
    for i, seconds in enumerate((1.0, 2.0, 10.0)):
        store.record_timing("source", f"k{i}", 100.0, 100.0 + seconds, unit.cost)
    (unit,) = plan_sweep(composed(tmp_path / "b", grid)).missing("source")
    assert unit.estimate_s == 2.0


@pytest.mark.empty_cache
def test_jobs_of_a_source_whose_training_failed_are_recorded_with_the_reason(cache_dir, tmp_path):
    """The basic launcher: the first job trains the net and diverges; the job that needs the same net is not run
    (it would diverge again) but recorded failed with why."""
    sweep = tmp_path / "s"
    r = run_cli("-m", "layer=fc6,fc7", "trainer.optim.lr=10", f"hydra.sweep.dir={sweep}", NO_REPORT, *TINY)
    assert r.returncode == 0, r.stderr[-3000:]
    res = results(sweep)
    assert res["0"]["error"]["type"] == "FloatingPointError"
    assert res["1"]["status"] == "failed" and res["1"]["error"]["type"] == "DependencyNeverSatisfied"
    assert "job 0, which trains it, failed (FloatingPointError: source training loss is" in res["1"]["error"]["message"]
    assert "[sweep] job 2/2" in r.stdout


def test_plan_flag_prints_the_plan_and_runs_nothing(cache_dir, tmp_path):
    sweep = tmp_path / "multirun" / "study" / "s"  # relative to the run's directory, as a preset's is
    (tmp_path / "multirun").mkdir()
    (tmp_path / "multirun" / ".gitkeep").touch()  # as in the repo
    r = run_cli("-m", "arch=alexnet,vgg", "layer=fc6,fc7,conv9", "hydra.sweep.dir=multirun/study/s", "--plan", *TINY,
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "sweep plan: 6 jobs (4 to run, 0 already done, 2 fail the config check)" in r.stdout
    # alexnet's net is the session's, not its val features (the jobs' measured distance): job 0 builds them
    assert "source nets           2       0         2" in r.stdout
    assert "order: source builds first (jobs 0,3)" in r.stdout
    assert not sweep.exists() and not sweep.parent.exists()  # no job ran, nothing was written (nor its parent)
    assert (tmp_path / "multirun" / ".gitkeep").is_file()  # what held something stays
    assert not (cache_dir / "features").exists() and not (cache_dir / ".timings").exists()
    r = run_cli("search=factors_tpe", "--plan", *TINY)
    assert r.returncode == 0 and r.stdout.startswith("no plan: an Optuna search is not planned"), r.stderr[-2000:]


def test_plan_read_by_a_reader_that_stops_early_leaves_no_sweep_dir(cache_dir, tmp_path):
    """`--plan | head -2`: the reader goes before the plan is printed whole, and the print fails; the sweep dir
    Hydra made (multirun.yaml alone) was left behind. A fresh interpreter: the pipe is this test's own."""
    import os
    import subprocess
    import sys

    r, w = os.pipe()
    os.close(r)  # no reader: the first write of the plan fails (EPIPE)
    proc = subprocess.run([sys.executable, "-m", "src.main", "-m", "layer=fc6,fc7", "hydra.sweep.dir=multirun/s/t",
                           "--plan", *TINY], cwd=tmp_path, stdout=w, stderr=subprocess.PIPE,
                          env={**os.environ, "TRANSFER_CACHE_DIR": str(cache_dir),
                               "PYTHONPATH": str(REPO_ROOT)}, timeout=300)
    os.close(w)
    assert "sweep plan" not in proc.stderr.decode()  # it went to the closed pipe
    assert not (tmp_path / "multirun").exists(), list((tmp_path / "multirun").rglob("*"))


def test_plan_flag_with_a_launcher_that_cannot_plan_is_refused_before_any_job():
    from src.argv import prepare

    env: dict[str, str] = {}
    with pytest.raises(ConfigError, match=r"^--plan: hydra/launcher=submitit_local cannot show a plan; valid: "
                                          r"basic, joblib, slurm$"):
        prepare(["-m", "hydra/launcher=submitit_local", "layer=fc6,fc7", "--plan"], env)
