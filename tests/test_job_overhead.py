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
    trainings and the extraction need. A job that extracts (its net cached) imports torchvision but not Lightning,
    and not torch's compiler either, which torchvision's own import would load (src/lazy_dynamo.py); the compiler's
    helper torchvision keeps is then the real one, loaded when first called."""
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
        "def loaded():\n"
        "    heavy = ('pytorch_lightning', 'lightning', 'lightning_fabric', 'torchvision')\n"
        "    return sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0] in heavy}\n"
        "                  | ({'torch._dynamo'} & set(sys.modules)))\n"
        f"with initialize_config_dir({str(REPO / 'conf')!r}):\n"
        f"    cached, extracting = (compose('config', overrides={TINY!r} + extra)\n"
        "                          for extra in ([], ['target.data.seed=5']))  # new target images: extracted\n"
        "for name, cfg in (('again', cached), ('extract', extracting)):\n"
        f"    r = execute(cfg, __import__('pathlib').Path({str(tmp_path)!r}) / name)\n"
        "    print(r['status'], r['cache']['source_hit'], r['cache']['features_hit'], loaded())\n"
        "from torch._dynamo.utils import is_compile_supported\n"
        "kept = sys.modules['torchvision.ops.roi_align'].is_compile_supported\n"
        "print([kept(d) == is_compile_supported(d) for d in ('cpu', 'meta')])\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    assert r.stdout.split("\n")[:3] == ["ok True True []", "ok True False ['torchvision']", "[True, True]"], r.stdout


def test_a_job_that_only_trains_loads_no_scikit_learn():
    """A source job (`SourceJob`: training and its val features) is a fresh process on a cluster: scikit-learn,
    with the SciPy and pandas it loads, is seconds of imports it never uses, so the modules such a job loads import
    the probe only inside the functions that fit or score one. Module-level imports, followed through src."""
    import ast

    from tests.conftest import REPO

    def module_level(path):  # the imports a module runs when it is loaded: not those inside a def or class
        todo, out = list(ast.parse(path.read_text()).body), []
        while todo:
            node = todo.pop()
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                out += [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            elif not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                todo += [c for c in ast.iter_child_nodes(node) if isinstance(c, ast.stmt)]
        return out

    def path_of(module):
        base = REPO.joinpath(*module.split("."))
        return next((p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()), None)

    seen, chains = set(), {m: [m] for m in ("src.check", "src.experiment", "src.train.source", "src.train.group")}
    todo = list(chains)
    while todo:
        module = todo.pop()
        for name in module_level(path_of(module)):
            assert name.split(".")[0] not in ("sklearn", "pandas"), " -> ".join(chains[module] + [name])
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # a package's __init__ runs too
                sub = ".".join(parts[:i])
                if sub.startswith("src") and sub not in seen and path_of(sub):
                    seen.add(sub)
                    chains[sub] = chains[module] + [sub]
                    todo.append(sub)
    assert {"src.probe", "src.features.extract", "src.models.registry"} <= seen, sorted(seen)  # it followed them
