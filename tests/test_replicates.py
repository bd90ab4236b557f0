"""`replicates=N`: source seeds 0..N-1 with each job's target sample tied to its seed, expanded before Hydra sees the
command line; and the study presets' `report:` settings."""

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from src.errors import ConfigError
from src.record import FINDING_IDS
from src.argv import check_report_args, expand_replicates
from tests.conftest import REPO, run_cli


def test_expansion_of_the_command_line():
    assert expand_replicates(["main.py", "experiment=layer_study", "replicates=6"]) == [
        "main.py", "experiment=layer_study", "seed=0,1,2,3,4,5", "target.data.seed=${seed}", "hydra.mode=MULTIRUN"]
    assert expand_replicates(["main.py", "-m", "replicates=2"]) == [
        "main.py", "-m", "seed=0,1", "target.data.seed=${seed}"]  # already a multirun
    assert expand_replicates(["main.py", "replicates=1"]) == ["main.py", "seed=0", "target.data.seed=${seed}"]
    assert expand_replicates(["main.py", "layer=fc7"]) == ["main.py", "layer=fc7"]


@pytest.mark.parametrize("argv, message", [
    (["replicates=0"], "replicates=0 is out of range; valid: 1..1000"),  # an integer, outside the range
    (["replicates=-2"], "replicates=-2 is out of range; valid: 1..1000"),
    (["replicates=1001"], "replicates=1001 is out of range; valid: 1..1000"),
    (["replicates=six"], "replicates='six' must be an integer; valid: 1..1000"),
    (["replicates=1.5"], "replicates='1.5' must be an integer; valid: 1..1000"),
    (["replicates=1_0"], "replicates='1_0' must be an integer; valid: 1..1000"),
    (["replicates=3", "seed=4"], "replicates=3 sets seed and target.data.seed itself; drop seed=4"),
    (["replicates=3", "target.data.seed=1"], "drop target.data.seed=1"),
    (["replicates=3", "replicates=4"], "replicates= is given 2 times"),
])
def test_bad_replicates_are_one_line(argv, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        expand_replicates(["main.py", *argv])
    assert "\n" not in str(e.value)


def _jobs(overrides: list[str]) -> list[list[str]]:
    """The job override lists Hydra's basic sweeper makes of a preset's params and the command line."""
    with initialize_config_dir(str(REPO / "conf")):
        cfg = compose("config", overrides=[o for o in overrides if o.startswith("experiment=")],
                      return_hydra_config=True)
    params = [f"{k}={v}" for k, v in (cfg.hydra.sweeper.params or {}).items()]
    parsed = OverridesParser.create().parse_overrides(params + [o for o in overrides if not o.startswith("hydra.")])
    return BasicSweeper.split_arguments(parsed, None)[0]


@pytest.mark.parametrize("study, jobs_per_seed", [("layer_study", 56), ("distance_study", 48)])
def test_a_study_with_replicates_runs_every_job_once_per_seed_with_tied_target_samples(study, jobs_per_seed):
    argv = expand_replicates([f"experiment={study}", "replicates=6"])
    jobs = _jobs(argv)
    assert len(jobs) == 6 * jobs_per_seed
    with initialize_config_dir(str(REPO / "conf")):
        for job in (jobs[0], jobs[-1]):
            cfg = compose("config", overrides=job)
            assert cfg.target.data.seed == cfg.seed
            assert cfg.report.primary in FINDING_IDS and cfg.report.min_seeds == 6
    assert sorted({int(dict(o.split("=", 1) for o in j)["seed"]) for j in jobs}) == list(range(6))


def test_every_study_preset_declares_a_known_primary_and_its_seeds():
    for path in sorted((REPO / "conf" / "experiment").glob("*.yaml")):
        report = OmegaConf.load(path).get("report")
        if report is None:  # studies without a direction of the paper (pooling, PCA, the estimator zoo)
            continue
        assert report.primary in FINDING_IDS, path.name
        assert int(report.min_seeds) >= 3, path.name


def test_report_keys_on_the_command_line_are_checked_before_any_job():
    check_report_args(["report.primary=width_helps", "report.min_seeds=4", "report.primary=null"])
    with pytest.raises(ConfigError, match="report.primary='wider' is unknown; valid: layer_gap_shrinks, .*, or null"):
        check_report_args(["report.primary=wider"])
    with pytest.raises(ConfigError, match="report.min_seeds=0 is out of range; valid: 1..1000"):
        check_report_args(["report.min_seeds=0"])


def test_cli_reports_a_bad_replicates_in_one_line():
    r = run_cli("experiment=layer_study", "replicates=lots", timeout=120)
    assert r.returncode == 1
    assert r.stderr.strip() == "error: replicates='lots' must be an integer; valid: 1..1000"
