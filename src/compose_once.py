"""Compose each sweep job's config once, not twice.

Hydra's basic sweeper first composes every job of a batch to fail early on a bad override
(`Sweeper.validate_batch_is_legal`), then the launcher composes each job again to run it, so a study of a few
dozen jobs spent seconds composing configs it had already composed. `install()` keeps the configs the validation composed and hands each to the launcher's
identical `load_sweep_config` call, once, when the launcher runs the jobs in this process (Hydra's basic one) or
plans the sweep from them (this project's launchers: `src.sweep_plan`); anything else (another override list, a
second call, jobs composed in joblib workers or on SLURM nodes) composes as before. The validation
itself is unchanged, so bad input still fails before any job runs.

Each composition also re-read and re-parsed every YAML file of the config tree (~35 per job, ours and Hydra's own;
PyYAML's pure-Python loader, ~1/4 of a composition): `install()` keeps each file's parsed config, keyed by its
path, size, mtime and inode (an edited file is parsed again; a packaged one by package and name), and hands every
composition its own deep copy.

Within one batch's validation, jobs that differ only in plain values (`layer=fc6,fc7`: one defaults list) also share
the defaults list Hydra builds from their group choices and the merge of their config files (together ~3/4 of a
composition): each is done once per distinct set of group overrides, and each job gets its own value overrides
and a deep copy of the merge before they are applied (layer_study's 56 jobs have 7 defaults lists).

Hydra parses every job's override strings with its ANTLR grammar, twice per composition (a few ms a job): each
distinct string is parsed once (`experiment=layer_study` recurs in every job) and every caller gets its own copy of
the parsed override. A string calling a grammar function (`shuffle(...)`, `glob(...)`) is parsed each time.

A guarded patch of Hydra's internals (`GUARD`, src/patching.py): `TRANSFER_PATCH_COMPOSE_ONCE=0` turns it off, and
Hydra versions it was not checked against leave Hydra as it is. What it saves: `python -m
benchmarks.framework_patches` (layer_study's sweep overhead with and without it).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
from typing import Any

from src.patching import Guard

_composed: dict[tuple, Any] = {}  # (loader, master config, overrides) -> the config the validation composed


def _key(loader: Any, master_config: Any, overrides: Any) -> tuple:
    return id(loader), id(master_config), tuple(overrides)


_parsed: dict[tuple, Any] = {}  # a config file's identity -> the ConfigResult Hydra's config source loaded from it


def _file_identity(source, config_path: str) -> tuple | None:
    """A file under a directory on the search path: its path, size, mtime and inode (an edit is parsed again)."""
    try:
        st = os.stat(os.path.realpath(os.path.join(source.path, source._normalize_file_name(config_path))))
    except OSError:  # missing: Hydra's own error
        return None
    return source.path, config_path, st.st_size, st.st_mtime_ns, st.st_ino


def _package_identity(source, config_path: str) -> tuple:
    """A config inside an installed package (Hydra's own, its plugins'): fixed for the life of the process."""
    return type(source).__name__, source.path, config_path


_merged: dict[tuple, Any] | None = None  # during a batch's validation: defaults list -> the merge of its files
_trees: dict[tuple, Any] | None = None  # during a batch's validation: group overrides -> their defaults list


def _defaults_once(create):
    """Hydra's `create_defaults_list`, shared by the jobs of a batch whose overrides differ only in plain values:
    the defaults tree depends on the config name and the group overrides, not on value overrides (`layer=fc6`),
    which it only passes through (`config_overrides`). Each job gets the shared result with its own value
    overrides, classified as Hydra does (its `Overrides`)."""
    from hydra._internal.defaults_list import Overrides

    def create_defaults_list(repo, config_name, overrides_list, prepend_hydra, skip_missing):
        if _trees is None or any(o.input_line is None for o in overrides_list):  # as Hydra does
            return create(repo, config_name, overrides_list, prepend_hydra, skip_missing)
        values = Overrides(repo=repo, overrides_list=overrides_list).config_overrides
        plain = {id(o) for o in values}
        key = (config_name, prepend_hydra, skip_missing,
               tuple(o.input_line for o in overrides_list if id(o) not in plain))
        if key not in _trees:
            _trees[key] = create(repo, config_name, overrides_list, prepend_hydra, skip_missing)
        shared = _trees[key]
        return dataclasses.replace(shared, defaults=list(shared.defaults), config_overrides=values)

    return create_defaults_list


def _merge_once(merge):
    def compose(self, defaults, repo):
        if _merged is None:  # outside a batch's validation: as Hydra does
            return merge(self, defaults, repo)
        key = tuple((d.config_path, d.parent, d.package, d.is_self, d.primary) for d in defaults)
        if key not in _merged:
            _merged[key] = merge(self, defaults, repo)
        return copy.deepcopy(_merged[key])  # each job's own (its value overrides are applied to it next)

    return compose


def _parse_once(load, identity):
    def load_config(self, config_path: str):
        key = identity(self, config_path)
        if key is None:
            return load(self, config_path)
        if key not in _parsed:
            _parsed[key] = load(self, config_path)
        kept = _parsed[key]  # (Hydra's repository sets fields of what it gets: a copy each time)
        return dataclasses.replace(kept, config=copy.deepcopy(kept.config), header=dict(kept.header))

    return load_config


_overrides: dict[str, Any] = {}  # an override string -> what Hydra's grammar parsed it into


def _override_once(parse_rule):
    def parse(self, s: str, rule_name: str):
        if rule_name != "override" or "(" in s:  # a function's value may differ per call (shuffle)
            return parse_rule(self, s, rule_name)
        if s not in _overrides:  # (a string that does not parse raises here each time: nothing kept)
            _overrides[s] = parse_rule(self, s, rule_name)
        return copy.deepcopy(_overrides[s])  # the caller sets fields of it (its config loader)

    return parse


@contextlib.contextmanager
def batch():
    """Compositions inside share defaults lists and merges as one batch's validation does (when installed): for
    code that composes every job of a sweep ahead of the launcher (the progress line's plan)."""
    global _merged, _trees
    if not installed() or _merged is not None:
        yield
        return
    _merged, _trees = {}, {}
    try:
        yield
    finally:
        _merged = _trees = None


def compose_ahead(loader: Any, master_config: Any, overrides: list[str]) -> Any:
    """A sweep job's config composed before the sweeper validates its batch (the progress plan, when the multirun
    starts), kept so that the validation and then the launcher use it instead of composing the job again
    (installed, with Hydra's basic launcher; otherwise the validation composes as before). The caller must not
    change it: it is the config the job will run with."""
    cfg = loader.load_sweep_config(master_config, list(overrides))
    if installed():
        _composed[_key(loader, master_config, overrides)] = cfg
    return cfg


GUARD = Guard("compose_once", "hydra-core", ("1.4.0rc3",), "every sweep job is composed by Hydra itself")


def keeps_configs(launcher: Any) -> bool:
    """Whether the validation's configs are kept for `launcher`: Hydra's basic launcher (it runs the jobs here),
    and a launcher that asks for them (`uses_composed_configs`: ours plan the sweep from them)."""
    from hydra._internal.core_plugins.basic_launcher import BasicLauncher

    return isinstance(launcher, BasicLauncher) or bool(getattr(launcher, "uses_composed_configs", False))


_ORIGINAL: dict[tuple[Any, str], Any] = {}  # (owner, attribute) -> Hydra's own, while installed


def installed() -> bool:
    return bool(_ORIGINAL)


def install() -> bool:
    """Patch Hydra (once per process) if `GUARD` allows it; returns whether the patch is in place."""
    if installed():
        return True
    if not GUARD.allowed():
        return False
    from hydra._internal import config_loader_impl
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.core_plugins.file_config_source import FileConfigSource
    from hydra._internal.core_plugins.importlib_resources_config_source import ImportlibResourcesConfigSource
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.plugins.sweeper import Sweeper

    compose, check = ConfigLoaderImpl.load_sweep_config, Sweeper.validate_batch_is_legal

    def validate_batch_is_legal(self, batch) -> None:
        global _merged, _trees
        loader = self.hydra_context.config_loader
        keys = [_key(loader, self.config, overrides) for overrides in batch]
        ahead = {k: _composed[k] for k in keys if k in _composed}  # composed when the sweep started: valid
        _composed.clear()
        _merged, _trees = {}, {}  # the files cannot change between the compositions of one batch: share them
        try:
            if not keeps_configs(getattr(self, "launcher", None)):  # jobs composed in other processes (a stock
                return check(self, batch)  # joblib or submitit launcher): keep no config
            _composed.update(ahead)
            for key, overrides in zip(keys, batch):
                if key not in _composed:
                    _composed[key] = loader.load_sweep_config(self.config, list(overrides))
        finally:
            _merged = _trees = None

    def load_sweep_config(self, master_config, sweep_overrides):
        cfg = _composed.pop(_key(self, master_config, sweep_overrides), None)
        return cfg if cfg is not None else compose(self, master_config, sweep_overrides)

    merge = ConfigLoaderImpl._compose_config_from_defaults_list
    replacements = {
        (FileConfigSource, "load_config"): _parse_once(FileConfigSource.load_config, _file_identity),
        (ImportlibResourcesConfigSource, "load_config"): _parse_once(ImportlibResourcesConfigSource.load_config,
                                                                     _package_identity),
        (Sweeper, "validate_batch_is_legal"): validate_batch_is_legal,
        (ConfigLoaderImpl, "load_sweep_config"): load_sweep_config,
        (ConfigLoaderImpl, "_compose_config_from_defaults_list"): _merge_once(merge),
        (config_loader_impl, "create_defaults_list"): _defaults_once(config_loader_impl.create_defaults_list),
        (OverridesParser, "parse_rule"): _override_once(OverridesParser.parse_rule),
    }
    for (owner, name), fn in replacements.items():
        _ORIGINAL[(owner, name)] = getattr(owner, name)
        setattr(owner, name, fn)
    return True


def uninstall() -> None:
    """Hydra's own composition again (tests compare both); forgets every kept config."""
    for (owner, name), fn in _ORIGINAL.items():
        setattr(owner, name, fn)
    _ORIGINAL.clear()
    _composed.clear()
    _parsed.clear()
    _overrides.clear()
