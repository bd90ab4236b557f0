"""src/config_copy: OmegaConf deep copies without the node constructors give the same tree as OmegaConf's own copy
(classes, metadata, flags, values, parents, resolver caches), independent of the original."""

from __future__ import annotations

import copy
import enum
from contextlib import contextmanager

import pytest
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.utils import create_config_search_path
from hydra.types import RunMode
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ReadonlyConfigError

from src import REPO_ROOT, config_copy


@contextmanager
def omegaconf_own_copy():
    """OmegaConf's own __deepcopy__ for the duration (the reference): the patch removed, then put back."""
    config_copy.uninstall()
    try:
        yield
    finally:
        assert config_copy.install()


_IMMUTABLE = (type(None), bool, int, float, complex, str, bytes, type, enum.Enum, frozenset)


def _mutable(value) -> bool:
    return not isinstance(value, _IMMUTABLE) and type(value).__module__ != "typing"


def assert_nothing_mutable_shared(new, original, path):
    """No mutable attribute of a copied node (or of its metadata) is the original's object: a later change to
    either could not leak into the other. Values are the exception OmegaConf makes itself (shared, immutable)."""
    for name, value in new.__dict__.items():
        if name in ("_parent", "_val"):
            continue
        if _mutable(value):
            assert value is not original.__dict__[name], (path, name)
    for name, value in new.__dict__["_metadata"].__dict__.items():
        if _mutable(value):
            assert value is not original.__dict__["_metadata"].__dict__[name], (path, "_metadata", name)


def assert_same_tree(ref, new, original, path="cfg"):
    """`new` (fast copy) is node for node what `ref` (OmegaConf's copy) is, and shares no node with `original`."""
    assert type(new) is type(ref), path
    assert new is not original, path
    assert_nothing_mutable_shared(new, original, path)
    dr, dn = ref.__dict__, new.__dict__
    assert set(dn) == set(dr), path
    assert dn["_metadata"] == dr["_metadata"], path  # every field: types, key, optional, flags, resolver cache
    assert dn["_metadata"] is not original.__dict__["_metadata"], path
    assert dn["_metadata"].flags is not original.__dict__["_metadata"].flags, path
    for name in set(dr) - {"_metadata", "_content", "_parent", "_flags_cache"}:
        assert dn[name] == dr[name], (path, name)
    if not isinstance(ref, (DictConfig, ListConfig)):
        assert dn["_val"] is original.__dict__["_val"], path  # values shared, as OmegaConf does
        return
    assert dn["_flags_cache"] == dr["_flags_cache"], path
    rc, nc, oc = dr["_content"], dn["_content"], original.__dict__["_content"]
    if not isinstance(rc, (dict, list)):
        assert nc == rc, path
        return
    keys = list(rc) if isinstance(rc, dict) else range(len(rc))
    assert (list(nc) if isinstance(nc, dict) else range(len(nc))) == keys, path
    for k in keys:
        assert nc[k].__dict__["_parent"] is new and rc[k].__dict__["_parent"] is ref, f"{path}.{k}"
        assert_same_tree(rc[k], nc[k], oc[k], f"{path}.{k}")


JOBS = [  # (the sweep's overrides, the job's): real job configs as the launcher gets them, Hydra's node included
    ([], []),
    (["experiment=layer_study"], ["target=digits", "layer=fc6", "experiment=layer_study"]),
    ([], ["classifier=logistic", "dimred=pca", "layer=conv3"]),
]


@pytest.mark.parametrize("sweep,job", JOBS)
def test_the_copy_is_omegaconfs_copy_node_for_node(sweep, job):
    config_copy.install()
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(REPO_ROOT / "conf")))
    cfg = loader.load_configuration("config", overrides=["hydra.sweep.dir=/tmp/unused", *sweep],
                                    run_mode=RunMode.MULTIRUN)
    if job:
        cfg = loader.load_sweep_config(cfg, job)
    OmegaConf.set_readonly(cfg.hydra, True)  # as HydraConfig.set_config leaves it
    with omegaconf_own_copy():
        ref = copy.deepcopy(cfg)
    new = copy.deepcopy(cfg)
    assert_same_tree(ref, new, cfg)
    assert OmegaConf.to_yaml(new) == OmegaConf.to_yaml(cfg)
    job = OmegaConf.masked_copy(new, [k for k in new if k != "hydra"])
    assert OmegaConf.to_container(job, resolve=True) == OmegaConf.to_container(
        OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)

    # Flags hold in the copy and changing the copy leaves the original as it was.
    with pytest.raises(ReadonlyConfigError):
        new.hydra.job.name = "changed"
    with pytest.raises(ConfigAttributeError):
        new.not_a_key = 1  # struct mode kept
    new.seed = int(cfg.seed) + 1
    new.classifier.C_grid[0] = 123.0
    OmegaConf.set_readonly(new.hydra, False)
    new.hydra.job.name = "changed"
    assert cfg.seed == ref.seed and cfg.classifier.C_grid[0] == ref.classifier.C_grid[0]
    assert cfg.hydra.job.name == ref.hydra.job.name and OmegaConf.is_readonly(cfg.hydra)


def test_resolver_caches_are_copied_and_shared_nodes_stay_shared():
    config_copy.install()
    calls = []
    OmegaConf.register_resolver("config_copy_calls", lambda: calls.append(1) or len(calls), use_cache=True,
                                replace=True)
    cfg = OmegaConf.create({"a": "${config_copy_calls:}", "b": [1, {"c": None}], "d": "???"})
    assert cfg.a == 1
    with omegaconf_own_copy():
        assert copy.deepcopy(cfg).a == 1 and len(calls) == 1  # OmegaConf's copy takes the cached value along
    new = copy.deepcopy(cfg)
    assert new.a == 1 and len(calls) == 1  # and so does this one
    cfg.a, new.b[1].c = "x", 2
    assert new.a == 1 and cfg.b[1].c is None and OmegaConf.is_missing(new, "d")
    pair = copy.deepcopy([cfg, cfg])  # one memo: a node met twice is copied once
    assert pair[0] is pair[1] and pair[0] is not cfg


def test_guard_leaves_omegaconfs_copy_when_switched_off(monkeypatch):
    from src import patching

    config_copy.uninstall()
    stock = DictConfig.__dict__["__deepcopy__"]
    monkeypatch.setattr(patching, "_said", set())
    monkeypatch.setenv("TRANSFER_PATCHES", "0")
    assert not config_copy.install() and DictConfig.__dict__["__deepcopy__"] is stock
    monkeypatch.delenv("TRANSFER_PATCHES")
    assert config_copy.install() and DictConfig.__dict__["__deepcopy__"] is not stock
