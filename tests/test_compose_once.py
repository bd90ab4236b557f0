"""src/compose_once: the sweeper's validation composes each job's config, the launcher gets that config instead
of composing it again (Hydra composed every job twice: ~10 s of a 56-job study)."""

from __future__ import annotations

from types import SimpleNamespace

from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra._internal.utils import create_config_search_path
from hydra.plugins.sweeper import Sweeper
from hydra.types import RunMode

from src import REPO_ROOT, compose_once, patching


def _loader_and_master(overrides=()):
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(REPO_ROOT / "conf")))
    master = loader.load_configuration("config", overrides=["hydra.sweep.dir=/tmp/unused", *overrides],
                                       run_mode=RunMode.MULTIRUN)
    return loader, master


def test_each_job_is_composed_once_and_gets_its_own_overrides(monkeypatch):
    compose_once.install()
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(REPO_ROOT / "conf")))
    master = loader.load_configuration("config", overrides=["hydra.sweep.dir=/tmp/unused"],
                                       run_mode=RunMode.MULTIRUN)
    calls = []
    original = ConfigLoaderImpl._load_configuration
    monkeypatch.setattr(ConfigLoaderImpl, "_load_configuration",
                        lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    sweeper = SimpleNamespace(hydra_context=SimpleNamespace(config_loader=loader), config=master,
                              launcher=BasicLauncher())
    batch = [["layer=fc6", "target=digits"], ["layer=fc7", "target=digits"]]
    Sweeper.validate_batch_is_legal(sweeper, batch)  # what every Hydra sweeper calls before launching
    assert len(calls) == 2
    jobs = [loader.load_sweep_config(master, list(o)) for o in batch]  # what the launcher calls
    assert len(calls) == 2, "the launcher composed a job the validation had composed"
    assert [(c.layer, c.target.name) for c in jobs] == [("fc6", "digits"), ("fc7", "digits")]
    assert jobs[0] is not jobs[1]
    again = loader.load_sweep_config(master, list(batch[0]))  # handed over once only: a second call composes
    assert len(calls) == 3 and again is not jobs[0] and again.layer == "fc6"

    # Composed ahead when the sweep starts (the progress line's plan): the validation and the launcher take those.
    ahead = [compose_once.compose_ahead(loader, master, list(o)) for o in batch]
    assert len(calls) == 5
    Sweeper.validate_batch_is_legal(sweeper, batch)
    assert len(calls) == 5, "the validation composed a job the plan had composed"
    launched = [loader.load_sweep_config(master, list(o)) for o in batch]
    assert all(a is b for a, b in zip(launched, ahead)) and len(calls) == 5

    # A launcher that runs the jobs elsewhere (joblib, SLURM) composes them there: nothing is kept for it.
    sweeper.launcher = object()
    Sweeper.validate_batch_is_legal(sweeper, batch)
    assert len(calls) == 7 and not compose_once._composed


def test_config_files_are_parsed_once_per_version_and_each_composition_gets_its_own_copy(tmp_path, monkeypatch):
    """A sweep's compositions share each YAML file's parse (PyYAML's pure-Python loader was a quarter of every
    composition); a file edited on disk is parsed again, and mutating one composition's config leaves the rest."""
    import os

    import yaml

    compose_once.install()
    (tmp_path / "config.yaml").write_text("a: 1\nb: {c: 2}\n")
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(tmp_path)))
    parses = []
    original = yaml.load
    monkeypatch.setattr(yaml, "load", lambda *a, **k: parses.append(1) or original(*a, **k))
    first = loader.load_configuration("config", overrides=[], run_mode=RunMode.RUN)
    parsed = len(parses)  # ours and Hydra's own (hydra/config, its launcher, sweeper, logging, ...)
    second = loader.load_configuration("config", overrides=["b.c=3"], run_mode=RunMode.RUN)
    assert (first.a, first.b.c, second.b.c) == (1, 2, 3) and len(parses) == parsed, "a file was parsed twice"
    second.a = 7
    assert loader.load_configuration("config", overrides=[], run_mode=RunMode.RUN).a == 1
    assert compose_once.installed()
    stat = os.stat(tmp_path / "config.yaml")
    (tmp_path / "config.yaml").write_text("a: 5\nb: {c: 2}\n")  # same size: the mtime/inode tell the edit
    os.utime(tmp_path / "config.yaml", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    third = loader.load_configuration("config", overrides=[], run_mode=RunMode.RUN)
    assert third.a == 5 and len(parses) == parsed + 1


def test_jobs_with_one_defaults_list_share_its_merge_and_compose_as_without(monkeypatch):
    """In a batch's validation, jobs that differ only in plain values build their defaults list and merge their
    config files once; each still gets exactly the config Hydra composes for it alone, as its own copy."""
    from hydra._internal import config_loader_impl, defaults_list
    from omegaconf import OmegaConf

    compose_once.install()
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(REPO_ROOT / "conf")))
    master = loader.load_configuration("config", overrides=["hydra.sweep.dir=/tmp/unused"],
                                       run_mode=RunMode.MULTIRUN)
    trees = []
    monkeypatch.setattr(config_loader_impl, "create_defaults_list", compose_once._defaults_once(
        lambda *a: trees.append(1) or defaults_list.create_defaults_list(*a)))  # Hydra's own, counted
    merges = []
    inner = ConfigLoaderImpl._compose_config_from_defaults_list.__closure__[0].cell_contents  # Hydra's own merge
    monkeypatch.setattr(ConfigLoaderImpl, "_compose_config_from_defaults_list",
                        compose_once._merge_once(lambda self, d, r: merges.append(1) or inner(self, d, r)))
    sweeper = SimpleNamespace(hydra_context=SimpleNamespace(config_loader=loader), config=master,
                              launcher=BasicLauncher())
    batch = [[f"layer={layer}", f"target={target}"] for target in ("digits", "synth_scenes")
             for layer in ("conv1", "fc6", "fc7")] + [["layer=fc6", "target=digits", "seed=3"]]
    Sweeper.validate_batch_is_legal(sweeper, batch)
    assert len(merges) == len(trees) == 2, "one defaults list and one merge per distinct group choices (targets)"
    jobs = [loader.load_sweep_config(master, list(o)) for o in batch]  # handed over by the validation
    alone = [loader.load_sweep_config(master, list(o)) for o in batch]  # outside a batch: composed as Hydra does
    assert len(merges) == len(trees) == 2 + len(batch)
    for job, ref in zip(jobs, alone):
        assert OmegaConf.to_container(job, resolve=False) == OmegaConf.to_container(ref, resolve=False)
    assert [(c.layer, c.target.name) for c in jobs[:3]] == [("conv1", "digits"), ("fc6", "digits"), ("fc7", "digits")]
    assert jobs[-1].seed == 3 and jobs[-1].hydra.overrides.task == ["layer=fc6", "target=digits", "seed=3"]
    jobs[0].target.name = "changed"  # a job's config is its own (the first two share their merge)
    assert jobs[1].target.name == "digits" and compose_once._merged is None and compose_once._trees is None


BATCHES = [  # (the sweep's own overrides, its jobs): group and value overrides, overlays, seeds, interpolations
    ([], [["layer=fc6", "target=digits"], ["layer=conv2", "target=digits"], ["layer=fc6", "target=synth_scenes"]]),
    (["experiment=distance_study"], [[f"seed={s}", f"target.data.shift={x}", "layer=fc7", "experiment=distance_study"]
                                     for s in (0, 1) for x in (0.0, 0.6)]),
    (["experiment=width_study"], [[f"width={w}", "target=synth_count", "experiment=width_study"]
                                  for w in ("tiny", "small")] + [["width=tiny", "target=digits", "seed=2",
                                                                  "experiment=width_study"]]),
]


def test_patched_compositions_equal_stock_hydras():
    """The reference is Hydra with the patch removed: every job's config (the hydra node included) is what stock
    Hydra composes for that job alone."""
    from omegaconf import OmegaConf

    for sweep_overrides, batch in BATCHES:
        compose_once.uninstall()
        loader, master = _loader_and_master(sweep_overrides)
        stock = [OmegaConf.to_container(loader.load_sweep_config(master, list(o)), resolve=False) for o in batch]
        assert compose_once.install()
        loader, master = _loader_and_master(sweep_overrides)
        sweeper = SimpleNamespace(hydra_context=SimpleNamespace(config_loader=loader), config=master,
                                  launcher=BasicLauncher())
        Sweeper.validate_batch_is_legal(sweeper, batch)
        patched = [OmegaConf.to_container(loader.load_sweep_config(master, list(o)), resolve=False) for o in batch]
        assert patched == stock, sweep_overrides


def test_guard_leaves_stock_hydra_when_switched_off_or_on_an_unchecked_version(monkeypatch, caplog):
    compose_once.uninstall()
    stock = Sweeper.validate_batch_is_legal, ConfigLoaderImpl.load_sweep_config
    monkeypatch.setattr(patching, "_said", set())
    monkeypatch.setenv("TRANSFER_PATCH_COMPOSE_ONCE", "0")
    assert not compose_once.install() and not compose_once.installed()
    assert (Sweeper.validate_batch_is_legal, ConfigLoaderImpl.load_sweep_config) == stock
    monkeypatch.delenv("TRANSFER_PATCH_COMPOSE_ONCE")
    monkeypatch.setattr(compose_once, "GUARD", compose_once.GUARD.__class__(
        "compose_once", "hydra-core", ("0.0.1",), "every sweep job is composed by Hydra itself"))
    monkeypatch.setattr(patching, "_said", set())
    with caplog.at_level("WARNING", logger="src.patching"):
        assert not compose_once.install()
    assert Sweeper.validate_batch_is_legal is stock[0]
    lines = [r.getMessage() for r in caplog.records if r.name == "src.patching"]
    assert len(lines) == 1 and "hydra-core 1.4.0rc3 is not among the versions" in lines[0], lines
    monkeypatch.undo()
    assert compose_once.install() and Sweeper.validate_batch_is_legal is not stock[0]


def test_each_override_string_is_parsed_once_and_every_caller_gets_its_own(monkeypatch):
    """Hydra's grammar parses each job's overrides twice per composition: a distinct string is parsed once, every
    caller gets its own copy (Hydra sets fields of it), and one that calls a grammar function is parsed each time
    (shuffle's value differs per call)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    compose_once.uninstall()
    stock = OverridesParser.create().parse_overrides(["layer=fc6", "seed=shuffle(1,2,3)", "+x.y=[1,2]"])
    assert compose_once.install()
    parses = []
    original = compose_once._ORIGINAL[(OverridesParser, "parse_rule")]
    monkeypatch.setattr(OverridesParser, "parse_rule", compose_once._override_once(
        lambda self, s, rule: parses.append(s) or original(self, s, rule)))
    parser = OverridesParser.create(config_loader="loader")
    first = parser.parse_overrides(["layer=fc6", "seed=shuffle(1,2,3)", "+x.y=[1,2]"])
    again = parser.parse_overrides(["layer=fc6", "seed=shuffle(1,2,3)", "+x.y=[1,2]"])
    assert parses == ["layer=fc6", "seed=shuffle(1,2,3)", "+x.y=[1,2]", "seed=shuffle(1,2,3)"]
    assert [(o.key_or_group, o.input_line) for o in first] == [(o.key_or_group, o.input_line) for o in stock]
    assert first[0] == again[0] and first[0] is not again[0] and first[2]._value is not again[2]._value
    assert first[0].config_loader == "loader" and compose_once._overrides["layer=fc6"].config_loader is None
