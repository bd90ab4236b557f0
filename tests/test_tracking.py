"""logger=tensorboard|mlflow: training curves and one run per job, read back with the tools' own readers
(TensorBoard's EventAccumulator, MLflow's client against its SQLite store and a real `mlflow server`)."""

import json

import pytest
from mlflow import MlflowClient  # the `tracking` extra, which `make test` installs
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from src.check import ConfigError
from src.main import execute
from src.tracking import check, job_metrics
from tests.conftest import TINY, run_cli
from tests.services.mlflow import mlflow_server


def hparams_of(run_dir) -> tuple[dict, dict]:
    """(hparams, scalars at step 0) of one TensorBoard run, as TensorBoard's HParams view reads them."""
    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    hparams = {k: v.string_value or v.number_value for k, v in info.hparams.items()}
    return hparams, {tag: acc.Scalars(tag)[0].value for tag in acc.Tags()["scalars"]}


@pytest.mark.empty_cache  # the job that trains the source net logs its curves: this one
def test_tensorboard_and_local_mlflow_runs_per_job(make_cfg, tmp_path):
    tb_dir, ml_dir = tmp_path / "tb", tmp_path / "ml"
    tb = execute(make_cfg("logger=tensorboard", f"logger.save_dir={tb_dir}"), tmp_path / "job0")
    assert tb["cache"]["source_hit"] is False  # this job trained the source net, so it logged the curves
    # Source training curves (the job that trained the net logged them), per epoch.
    (source_run,) = (tb_dir / "tensorboard" / "source").iterdir()
    assert source_run.name == tb["keys"]["source"][:12]
    curves = EventAccumulator(str(source_run))
    curves.Reload()
    assert len(curves.Scalars("val_acc")) == 2 and len(curves.Scalars("train_loss")) == 2  # source.epochs=2
    hparams, scalars = hparams_of(tb_dir / "tensorboard" / "jobs" / "job0")
    assert hparams["layer"] == "fc6" and hparams["target"] == "synth_objects_new" and hparams["status"] == "ok"
    assert scalars["target_score"] == pytest.approx(tb["metrics"]["target_score"])
    assert scalars["tr_logme"] == pytest.approx(tb["metrics"]["transferability"]["logme"])

    # MLflow's default store: SQLite in the save dir; the source net is cached now, so only the job's run.
    ml = execute(make_cfg("logger=mlflow", f"logger.save_dir={ml_dir}", "layer=fc7"), tmp_path / "job1")
    client = MlflowClient(f"sqlite:///{ml_dir / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("transferfactors").experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["stage"] == "job"
    assert run.data.params["layer"] == "fc7" and run.data.params["finetune"] == "none"
    assert run.data.metrics["target_score"] == pytest.approx(ml["metrics"]["target_score"])


def test_failed_job_is_a_failed_run_with_its_error(make_cfg, tmp_path):
    with pytest.raises(ConfigError):
        execute(make_cfg("logger=mlflow", f"logger.save_dir={tmp_path}", "source.snapshot=9"), tmp_path / "job")
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("transferfactors").experiment_id])
    assert run.info.status == "FAILED" and "source.snapshot=9" in run.data.tags["error"]
    assert run.data.params["status"] == "failed"


@pytest.mark.slow
def test_unknown_logger_is_one_line_with_the_choices(make_cfg):
    with pytest.raises(ConfigError, match=r"logger='wandb' is unknown; valid loggers: csv, tensorboard, mlflow"):
        check(make_cfg("logger.name=wandb"))
    r = run_cli("logger=wandb", "--cfg", "job")
    assert r.returncode != 0 and "logger" in r.stderr and "mlflow" in r.stderr


def test_job_metrics_are_the_numeric_results():
    result = {"metrics": {"target_score": 0.5, "target_metric": "accuracy", "best_C": None, "feature_dim": 64,
                          "val_scores": {"0.1": 0.4}, "transferability": {"logme": -1.5, "leep": float("nan")}},
              "timings_s": {"total": 2.0}}
    assert job_metrics(result) == {"target_score": 0.5, "feature_dim": 64.0, "tr_logme": -1.5, "time_total_s": 2.0}


@pytest.mark.slow
@pytest.mark.empty_cache  # the source net's curves are logged by the job that trains it
def test_sweep_logs_to_a_real_mlflow_server(cache_dir, tmp_path):
    """`python -m src.main -m layer=fc6,fc7 logger=mlflow` against `mlflow server` on loopback: one run per job
    with its factors and metrics, the source net's curves once, and the progress line after each job."""
    sweep = tmp_path / "sweep"
    with mlflow_server(tmp_path / "server") as uri:
        r = run_cli("-m", "layer=fc6,fc7", "logger=mlflow", f"logger.tracking_uri={uri}",
                    f"hydra.sweep.dir={sweep}", *TINY)
        assert r.returncode == 0, r.stderr[-3000:]
        client = MlflowClient(uri)
        runs = client.search_runs([client.get_experiment_by_name("transferfactors").experiment_id])
        source_curve = [client.get_metric_history(run.info.run_id, "val_acc") for run in runs
                        if run.data.tags["stage"] == "source"]
    jobs = {run.data.params["layer"]: run for run in runs if run.data.tags["stage"] == "job"}
    assert set(jobs) == {"fc6", "fc7"}
    hits = sorted(json.loads((sweep / job / "result.json").read_text())["cache"]["source_hit"] for job in ("0", "1"))
    assert hits == [False, True]  # trained by one of the jobs
    for job in ("0", "1"):
        result = json.loads((sweep / job / "result.json").read_text())
        run = jobs[result["factors"]["layer"]]
        assert run.info.status == "FINISHED"
        assert run.data.metrics["target_score"] == pytest.approx(result["metrics"]["target_score"])
    assert [len(curve) for curve in source_curve] == [2]  # trained once, one value per epoch
    assert "[sweep] job 1/2 | elapsed" in r.stdout and "[sweep] job 2/2" in r.stdout
    assert "best val_score=" in r.stdout  # the objective a sweep returns: the probe's val score
    assert (sweep / "report" / "report.html").stat().st_size > 10_000
