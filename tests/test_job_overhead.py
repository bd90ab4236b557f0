"""What a job spends outside its stages: the thread limits of a job are set without rescanning the process's
shared libraries in every job of a sweep (src/experiment.py `_limit_threads`)."""

from __future__ import annotations


def test_thread_limits_apply_to_every_pool_and_reuse_one_scan(make_cfg):
    import torch
    from threadpoolctl import threadpool_info

    from src import experiment

    before = torch.get_num_threads()
    try:
        for n in (1, 2, 1):
            experiment._limit_threads(make_cfg(f"trainer.num_threads={n}"))
            assert torch.get_num_threads() == n
            assert {p["num_threads"] for p in threadpool_info()} == {n}  # BLAS and OpenMP pools alike
        scanned = experiment._POOLS[0][1]
        experiment._limit_threads(make_cfg("trainer.num_threads=1"))
        assert experiment._POOLS[0][1] is scanned  # no new imports: the same scan serves the next job
        import sys
        import types
        sys.modules["_a_new_module_for_this_test"] = types.ModuleType("x")  # an import may load a library
        try:
            experiment._limit_threads(make_cfg("trainer.num_threads=1"))
            assert experiment._POOLS[0][1] is not scanned
        finally:
            del sys.modules["_a_new_module_for_this_test"]
    finally:
        torch.set_num_threads(before)
        from threadpoolctl import threadpool_limits

        threadpool_limits(before)


def test_a_job_whose_stages_are_cached_imports_neither_lightning_nor_torchvision(make_cfg, tmp_path):
    """Each job of a SLURM array (and each fresh worker) is a new process: a job that only reads its cached net and
    features must not pay for importing Lightning or torchvision's models (seconds per process), which only the
    trainings and the extraction need."""
    import subprocess
    import sys

    from src.main import execute
    from tests.conftest import REPO, TINY

    first = execute(make_cfg(), tmp_path / "first")  # fills the cache: features (the source net is the session's)
    assert first["status"] == "ok"
    code = (
        "import sys\n"
        "from hydra import compose, initialize_config_dir\n"
        "from src.main import execute\n"
        f"with initialize_config_dir({str(REPO / 'conf')!r}):\n"
        f"    cfg = compose('config', overrides={TINY!r})\n"
        f"r = execute(cfg, __import__('pathlib').Path({str(tmp_path / 'again')!r}))\n"
        "print(r['status'], r['cache']['source_hit'], r['cache']['features_hit'])\n"
        "print(sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0] in ('pytorch_lightning', 'lightning',"
        " 'lightning_fabric', 'torchvision')}))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split("\n")[:2] == ["ok True True", "[]"], r.stdout
