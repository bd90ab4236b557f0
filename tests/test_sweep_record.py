"""The report's "Command line and config": the command Hydra recorded, verbatim and quoted for a shell, such that
pasting it runs the same sweep (every job composed to the config that job ran with)."""

import shlex
import subprocess
import sys

import yaml
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

from src.argv import prepare
from src.report.study import sweep_record
from tests.conftest import REPO, run_cli


def _pasted(command: str) -> list[str]:
    """The argv a POSIX shell gives `python` for the pasted command (a shell function stands in for python)."""
    r = subprocess.run(["bash", "-c", 'python() { printf "%s\\0" "$@"; }\n' + command], capture_output=True,
                       text=True, check=True)
    return r.stdout.split("\0")[:-1]


def test_the_shown_command_reruns_the_same_jobs(tmp_path):
    """A sweep whose jobs fail before anything trains (an ImageFolder source with a truncated image; a sweep whose
    every job failed the config check would not start at all) run with replicates=2, which puts
    `target.data.seed=${seed}` on the command line; then every job of the pasted command, rerun with `--cfg job`,
    composes to the config that job saved."""
    from tests.test_bad_input import tree

    root = tree(tmp_path / "corrupt", {"a": 3, "b": 3})
    (root / "b" / "1.jpg").write_bytes((root / "b" / "0.jpg").read_bytes()[:200])
    sweep = tmp_path / "sweep"
    r = run_cli("replicates=2", "source=imagefolder", f"source.root={root}", "source.image_size=32,40",
                f"paths.cache_dir={tmp_path / 'c'}", f"hydra.sweep.dir={sweep}")
    assert r.returncode == 0, r.stderr
    command, config = sweep_record(sweep)
    first, *comments = command.splitlines()
    assert "'target.data.seed=${seed}'" in first and "target.data.seed=0" not in first  # unresolved, quoted
    assert comments == ["# seed=0,1 'target.data.seed=${seed}' is what replicates=2 expands to"]
    assert "seed: ${seed}" in config  # the composed config as saved, not resolved against job 0

    argv = _pasted(first)
    assert argv[:3] == ["-m", "src.main", "-m"]
    overrides = [a for a in prepare(argv[3:]) if not a.startswith("hydra.")]
    parsed = OverridesParser.create().parse_overrides(overrides)
    jobs = [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
    saved = sorted(sweep.glob("*/.hydra/config.yaml"), key=lambda p: int(p.parent.parent.name))
    assert len(jobs) == len(saved) == 4
    shell = "\n".join(f"{sys.executable} -m src.main {shlex.join(job)} --cfg job; echo '---'"
                      for job in jobs)
    r = subprocess.run(["bash", "-c", shell], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rerun = [yaml.safe_load(doc) for doc in r.stdout.split("---\n")[:-1]]
    for job, again, path in zip(jobs, rerun, saved):
        assert again == yaml.safe_load(path.read_text()), job
        assert again["target"]["data"]["seed"] == "${seed}"



def test_the_comment_names_only_the_sweeper_params_the_command_line_left(tmp_path):
    """Hydra's basic sweeper appends the command line's overrides to its params and keeps each key's last value:
    `target=a,b layer=conv2,fc6` on the command line replaces an experiment's own target and layer sweeps."""
    params = {"target": "t1,t2,t3", "layer": "conv1,conv2,fc6,fc7", "seed": "0,1"}
    task = ["experiment=layer_study", "target=a,b", "layer=conv2,fc6"]
    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()] + task)
    jobs = [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
    assert len(jobs) == 2 * 2 * 2 and {j for job in jobs for j in job if j.startswith("target=")} == {
        "target=a", "target=b"}  # the precedence the report's comment follows
    record = {"hydra": {"overrides": {"task": task, "hydra": ["hydra.mode=MULTIRUN"]},
                        "sweeper": {"params": params}}, "seed": 0}
    (tmp_path / "multirun.yaml").write_text(yaml.safe_dump(record))
    command, _ = sweep_record(tmp_path)
    assert command.splitlines() == ["python -m src.main -m experiment=layer_study target=a,b layer=conv2,fc6",
                                    "# swept by the config's hydra.sweeper.params: seed=0,1"]
    record["hydra"]["overrides"]["task"] = task + ["seed=3"]  # every param overridden: no comment
    (tmp_path / "multirun.yaml").write_text(yaml.safe_dump(record))
    assert sweep_record(tmp_path)[0] == "python -m src.main -m experiment=layer_study target=a,b layer=conv2,fc6 seed=3"


def test_the_models_list_is_shown_as_typed_not_as_its_expansion():
    """`arch.models=[a,b]` is recorded next to the `arch.model=a,b` sweep it expands to; the shown command keeps the
    short form only (pasted, it expands again)."""
    from omegaconf import OmegaConf

    from src.argv import expand_models
    from src.report.study import sweep_command

    typed = ["experiment=model_selection", "target=digits", "arch.models=[timm:resnet18,torchvision:vgg11]"]
    cfg = OmegaConf.create({"hydra": {"overrides": {"task": expand_models(typed), "hydra": ["hydra.mode=MULTIRUN"]}}})
    assert sweep_command(cfg) == ("python -m src.main -m experiment=model_selection target=digits "
                                  "'arch.models=[timm:resnet18,torchvision:vgg11]'")
