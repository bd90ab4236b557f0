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
