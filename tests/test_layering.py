"""The import layering stays true: no cycles, no module imports a layer above it, validation never imports torch.

Layers, bottom up: shared vocabulary (src, errors, record, cache) -> data, models, probe, transferability ->
features, train, the config check and the cache keys -> the experiment's stages -> main and the report (which
only reads).
Imports inside functions count too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from graphlib import CycleError, TopologicalSorter

from tests.conftest import REPO

SRC = REPO / "src"
LAYERS = {
    "src": 0, "src.errors": 0, "src.record": 0, "src.cache": 0, "src.device": 0, "src.registry": 0,
    "src.patching": 0, "src.services": 0, "src.fields": 0, "src.compose_once": 0, "src.lazy_dynamo": 0, "src.config_copy": 0, "src.storage_url": 0,
    "src.data": 1, "src.models": 1, "src.probe": 1, "src.transferability": 1,
    "src.features": 2, "src.train": 2, "src.check": 2, "src.keys": 2, "src.schema": 2, "src.tracking": 2,
    "src.experiment": 3,
    "src.main": 4, "src.argv": 4, "src.report": 4, "src.search": 4, "src.job_plan": 4, "src.sweep_plan": 4,
}


def module_name(path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in SRC.rglob("*.py")}


def layer(module: str) -> int | None:
    """The layer LAYERS gives the module or its closest listed package (src.report.stats: src.report's); None
    when only the root package `src` would cover it: a new module must be placed explicitly."""
    name = module
    while name not in LAYERS:
        name = name.rpartition(".")[0]
        if not name:
            return None
    return None if name == "src" and module != "src" else LAYERS[name]


def imports(module: str) -> set[str]:
    """The src modules `module` imports (anywhere in its body)."""
    out = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module
                     for a in node.names]
        else:
            continue
        out |= {n for n in names if n.split(".")[0] == "src" and n != module}
    return out


GRAPH = {m: imports(m) for m in MODULES}


def test_every_src_module_has_an_explicit_layer():
    unplaced = sorted(m for m in MODULES if layer(m) is None)
    assert not unplaced, f"add these modules (or their package) to LAYERS: {unplaced}"


def test_no_import_cycles():
    try:
        TopologicalSorter(GRAPH).prepare()
    except CycleError as e:
        raise AssertionError(f"import cycle: {' -> '.join(e.args[1])}") from None


def test_no_module_imports_a_layer_above_it():
    upward = [f"{m} (layer {layer(m)}) imports {d} (layer {layer(d)})"
              for m, deps in GRAPH.items() for d in deps if layer(d) > layer(m)]
    assert not upward, upward


def test_report_only_reads_results():
    """The report never re-runs a stage: no experiment, check, training or extraction code."""
    banned = ("src.experiment", "src.check", "src.train", "src.features", "src.main")
    bad = [(m, d) for m, deps in GRAPH.items() if m.startswith("src.report") for d in deps if d.startswith(banned)]
    assert not bad, bad


def test_config_error_has_one_source():
    from src.errors import ConfigError

    defining = [m for m, p in MODULES.items() if "class ConfigError" in p.read_text()]
    assert defining == ["src.errors"]
    assert ConfigError.__module__ == "src.errors"


def test_validation_and_registries_do_not_import_torch():
    code = (
        "import sys\n"
        "from hydra import compose, initialize_config_dir\n"
        "import src.check, src.record, src.models.registry, src.probe.registry, src.data.tasks, src.data.__main__\n"
        "import src.report.collect, src.report.analysis\n"
        f"with initialize_config_dir({str(REPO / 'conf')!r}):\n"
        "    src.check.validate(compose('config', overrides=['target=synth_retrieval', 'arch=resnet', 'layer=pool']))\n"
        "src.models.registry.layer_table()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'pytorch_lightning')))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "[]"
