"""Replicate source nets trained as one batched group (src/train/group.py, `trainer.group_replicates`): ordinary
entries under the single trainings' keys, equivalence within the stated tolerance, interruption and resume, and the
sweep's plan (one builder per group; a group with a bad member is refused before anything runs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from src.cache import Store, make_key, verify
from src.check import validate
from src.keys import source_payload, stage_keys
from tests.conftest import NO_REPORT, TINY, run_cli

SEEDS = (0, 1, 2)
# One step per epoch: 4 classes x 8 images = one batch of 32.
ONE_STEP = ["source.images_per_class=8", "source.epochs=1"]


def group_cfgs(make_cfg, *overrides, seeds=SEEDS):
    cfgs = [make_cfg(f"seed={s}", "trainer.group_replicates=on", *overrides) for s in seeds]
    return cfgs, [validate(c) for c in cfgs]


def snapshot(entry: Path, epoch: int) -> dict:
    import torch

    return torch.load(entry / f"snapshot_{epoch}.pt", weights_only=True)


@pytest.mark.empty_cache
def test_a_group_gives_the_single_trainings_entries(make_cfg, cache_dir):
    """3 members -> 3 complete source entries whose keys are the keys single trainings (and every later stage) use,
    holding what a single training's entry holds (a snapshot per epoch that loads into the net, metrics.json)."""
    from src.experiment import source_group_stage
    from src.train.source import load_snapshot

    cfgs, plans = group_cfgs(make_cfg)
    stages = source_group_stage(cfgs, plans, Store(cache_dir))
    keys = [make_key(source_payload(c, p)) for c, p in zip(cfgs, plans)]
    assert [s.key for s in stages] == keys == [stage_keys(c, p)["source"] for c, p in zip(cfgs, plans)]
    assert len(set(keys)) == 3 and all(s.hit is False for s in stages)
    epochs = int(cfgs[0].source.epochs)
    for s, plan in zip(stages, plans):
        assert s.entry == cache_dir / "source" / s.key and verify(s.entry, s.key) is None
        metrics = json.loads((s.entry / "metrics.json").read_text())
        assert sorted(metrics["val_acc"]) == [str(e) for e in range(1, epochs + 1)]
        load_snapshot(s.entry, plan.spec, epochs)  # a plain state_dict of the net
    # The group is no part of a key: trained again singly, each finds its entry.
    again = [make_cfg(f"seed={s}", "trainer.group_replicates=off") for s in SEEDS]
    assert [make_key(source_payload(c, validate(c))) for c in again] == keys
    assert [s.hit for s in source_group_stage(cfgs, plans, Store(cache_dir))] == [True, True, True]
    assert not list((cache_dir / "source").glob(".*"))  # no staging or resume dirs left


@pytest.mark.empty_cache
def test_member_equals_single_training_within_tolerance(make_cfg, cache_dir, monkeypatch):
    """The contract (docs/replicates.md): a member's initialisation, batches and augmentation are its single
    training's; after one step (dropout off: vmap draws a group's masks from one stream) its weights and BatchNorm
    statistics equal the single training's within 1e-4 relative."""
    import torch

    from src.experiment import source_group_stage, source_stage

    monkeypatch.setattr(torch.nn.Dropout, "forward", lambda self, x: x)
    cfgs, plans = group_cfgs(make_cfg, *ONE_STEP)
    grouped = source_group_stage(cfgs, plans, Store(cache_dir))
    single_root = cache_dir.parent / "single"
    for cfg, plan, g in zip(cfgs, plans, grouped):
        cfg.paths.cache_dir = str(single_root)
        single = source_stage(cfg, plan, Store(single_root))
        assert single.key == g.key
        a, b = snapshot(g.entry, 1), snapshot(single.entry, 1)
        assert a.keys() == b.keys()
        for k in a:
            if a[k].is_floating_point():
                torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=f"{k} differs beyond 1e-4")
            else:
                assert torch.equal(a[k], b[k]), k


@pytest.mark.empty_cache
def test_interrupted_group_keeps_finished_members_and_trains_only_the_missing(make_cfg, cache_dir, monkeypatch):
    """A group interrupted while its members are being saved: the members saved before are complete and usable,
    the others absent (no half-written entry); the rerun trains only the missing ones, from their checkpoints."""
    import src.cache as cache
    from src.experiment import source_group_stage

    cfgs, plans = group_cfgs(make_cfg)
    real, calls = cache._write_manifest, []

    def killed_at_second(entry):
        calls.append(entry)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        real(entry)

    monkeypatch.setattr(cache, "_write_manifest", killed_at_second)
    with pytest.raises(KeyboardInterrupt):
        source_group_stage(cfgs, plans, Store(cache_dir))
    monkeypatch.setattr(cache, "_write_manifest", real)
    store = Store(cache_dir)
    keys = [make_key(source_payload(c, p)) for c, p in zip(cfgs, plans)]
    done = [k for k in keys if store.lookup("source", k) is not None]
    assert len(done) == 1 and not [k for k in keys if k not in done and (cache_dir / "source" / k).exists()]
    assert not list((cache_dir / "source").glob(".*.tmp-*"))

    rerun = source_group_stage(cfgs, plans, store)
    assert sorted(s.hit for s in rerun) == [False, False, True]
    for s in rerun:
        assert verify(s.entry, s.key) is None
        if not s.hit:  # every epoch was checkpointed: nothing is trained again
            metrics = json.loads((s.entry / "metrics.json").read_text())
            assert metrics["resumed_from_epoch"] == int(cfgs[0].source.epochs)


@pytest.mark.empty_cache
def test_group_killed_mid_training_resumes_bitwise(make_cfg, cache_dir, tmp_path, monkeypatch):
    """Interrupted after its first of 3 epochs, a group resumes from that epoch's checkpoints and gives the nets an
    uninterrupted group gives, bitwise (CPU, one thread)."""
    import torch

    from src.experiment import source_group_stage
    from src.train.group import GroupTrainer

    cfgs, plans = group_cfgs(make_cfg, "source.epochs=3")
    real, epochs = GroupTrainer.train_epoch, []

    def interrupted(self):
        if len(epochs) == 1:
            raise KeyboardInterrupt("killed")
        epochs.append(1)
        real(self)

    monkeypatch.setattr(GroupTrainer, "train_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        source_group_stage(cfgs, plans, Store(cache_dir))
    monkeypatch.setattr(GroupTrainer, "train_epoch", real)
    assert len(list((cache_dir / "source").glob(".*.resume/group.ckpt"))) == 3
    resumed = source_group_stage(cfgs, plans, Store(cache_dir))

    fresh = tmp_path / "fresh"
    for c in cfgs:
        c.paths.cache_dir = str(fresh)
    straight = source_group_stage(cfgs, plans, Store(fresh))
    for r, s in zip(resumed, straight):
        assert json.loads((r.entry / "metrics.json").read_text())["resumed_from_epoch"] == 1
        for epoch in (1, 2, 3):
            a, b = snapshot(r.entry, epoch), snapshot(s.entry, epoch)
            assert all(torch.equal(a[k], b[k]) for k in a), f"epoch {epoch} differs"
        assert not (r.entry / "group.ckpt").exists()


def test_plan_gives_a_group_one_builder(cache_dir, tmp_path):
    """With grouping on, the missing nets of seeds 1..3 (one config) have one builder, the first job; their other
    jobs wait for it. Off: each seed's first job builds its own net."""
    from src.sweep_plan import LocalSchedule, plan_sweep
    from tests.test_sweep_plan import composed

    grid = [[f"seed={s}", f"layer={l}"] for s in (1, 2, 3) for l in ("fc6", "fc7")]
    plan = plan_sweep(composed(tmp_path / "on", grid, TINY + ["trainer.group_replicates=on"]))
    sources = [u for u in plan.units.values() if u.kind == "source"]
    assert len(sources) == 3 and {u.builder for u in sources} == {0}
    assert sorted(plan.group(plan.job(0))) == sorted(u.id for u in sources)
    assert plan.waits_on(plan.job(2)) == [plan.job(2).source]
    order = LocalSchedule(plan, Store(cache_dir))
    assert order.next() == 0 and order.next() is None  # the rest wait for the group's nets
    off = plan_sweep(composed(tmp_path / "off", grid, TINY + ["trainer.group_replicates=off"]))
    assert sorted(u.builder for u in off.units.values() if u.kind == "source") == [0, 2, 4]
    assert not off.group(off.job(0))
    auto = plan_sweep(composed(tmp_path / "auto", grid, TINY + ["trainer.accelerator=cpu"]))  # auto on the CPU: off
    assert not auto.group(auto.job(0))


def test_a_group_is_one_run_setting_and_a_bad_member_refuses_the_plan(cache_dir, tmp_path):
    """Seeds of one config are one group only where they also run alike (threads here; not in the source key): two
    groups, each with its own builder. A member that fails the config check (even one whose target sample has its
    own seed) refuses the plan before anything runs."""
    from src.errors import ConfigError
    from src.sweep_plan import plan_sweep
    from tests.test_sweep_plan import composed

    grid = [[f"seed={s}", f"trainer.num_threads={t}"] for t, seeds in ((1, (1, 2)), (2, (3, 4))) for s in seeds]
    common = [o for o in TINY if not o.startswith("trainer.num_threads")] + ["trainer.group_replicates=on"]
    plan = plan_sweep(composed(tmp_path / "threads", grid, common))
    assert sorted(u.builder for u in plan.units.values() if u.kind == "source") == [0, 0, 2, 2]
    bad = [[f"seed={s}", f"target.data.seed={t}"] for s, t in ((1, 1), (2, 2), (-1, 3))]
    with pytest.raises(ConfigError, match=r"seed=-1 is out of range.*a member of a replicate group"):
        plan_sweep(composed(tmp_path / "bad", bad, TINY + ["trainer.group_replicates=on"]))


@pytest.mark.slow
@pytest.mark.empty_cache
def test_grouped_sweep_runs_and_a_bad_member_is_refused(cache_dir, tmp_path):
    """The basic launcher: seeds 1..3 with grouping on train one group (3 entries, metrics say the group size) and
    every job scores from them. A group with a member that fails the config check: one line naming the key, the
    value and what is valid, exit 1, before anything is trained."""
    bad = run_cli("-m", "seed=1,2,-1", "trainer.group_replicates=on", f"hydra.sweep.dir={tmp_path / 'bad'}", *TINY)
    assert bad.returncode == 1
    lines = (bad.stdout + bad.stderr).strip().splitlines()
    assert len(lines) == 1, bad.stdout + bad.stderr  # the error alone: no summary of a sweep that never ran
    assert lines[0].startswith("error: seed=-1 is out of range; valid: 0..") and "replicate group" in lines[0]
    assert not (cache_dir / "source").exists() and not (tmp_path / "bad").exists()

    sweep = tmp_path / "s"
    r = run_cli("-m", "seed=1,2,3", "trainer.group_replicates=on", f"hydra.sweep.dir={sweep}", NO_REPORT, *TINY)
    assert r.returncode == 0, r.stderr[-3000:]
    from tests.conftest import results

    res = results(sweep)
    assert [res[str(n)]["status"] for n in range(3)] == ["ok"] * 3
    entries = list((cache_dir / "source").glob("*/metrics.json"))
    assert len(entries) == 3 and {json.loads(p.read_text()).get("group_size") for p in entries} == {3}
    assert sorted(p.parent.name for p in entries) == sorted(res[str(n)]["keys"]["source"] for n in range(3))


@pytest.mark.slow
@pytest.mark.empty_cache
def test_killed_grouped_sweep_reruns_from_the_group_checkpoints(cache_dir, tmp_path):
    """`kill -9` of a grouped sweep while its group trains (after an epoch is checkpointed), then the same command:
    the group resumes from its members' checkpoints (not from epoch 0) and every job scores."""
    import os
    import signal
    import time

    from tests.conftest import results, spawn_cli

    args = [o for o in TINY if not o.startswith("source.epochs")] + ["source.epochs=6"]
    cmd = ["-m", "seed=1,2,3", "trainer.group_replicates=on", f"hydra.sweep.dir={tmp_path / 's'}", NO_REPORT, *args]
    proc = spawn_cli(*cmd)
    deadline = time.time() + 300
    while time.time() < deadline and len(list((cache_dir / "source").glob(".*.resume/group.ckpt"))) < 3:
        assert proc.poll() is None, "the sweep ended before it could be interrupted"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not list((cache_dir / "source").glob("*/manifest.json"))  # nothing published, nothing half-written

    r = run_cli(*cmd)
    assert r.returncode == 0, r.stderr[-3000:]
    res = results(tmp_path / "s")
    assert [res[str(n)]["status"] for n in range(3)] == ["ok"] * 3
    entries = list((cache_dir / "source").glob("*/metrics.json"))
    assert len(entries) == 3
    assert all(json.loads(p.read_text())["resumed_from_epoch"] >= 1 for p in entries)
    assert not list((cache_dir / "source").glob(".*"))
