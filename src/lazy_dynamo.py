"""Import torchvision without importing torch's compiler (torch._dynamo) with it.

torchvision's `ops/roi_align.py` imports one helper, `torch._dynamo.utils.is_compile_supported`, at the top of the
module, and `import torchvision` runs it: every process that imports torchvision (or timm, which imports it) also
loads torch._dynamo, seconds of CPU, more than torchvision itself. The helper is only called when `roi_align`
runs, which this project never does; torchvision's own comment in that file says it means to avoid "eagerly
importing dynamo". A job that extracts features or lists a net's layers is a fresh process on a
cluster node (every SLURM task of an extraction array), so it paid this on every start.

`install()` puts a finder in front of the import system for the process's first import of that one module,
`torchvision.ops.roi_align`: while it runs, `torch._dynamo.utils` is a stand-in module whose
`is_compile_supported` imports the real one (and torch._dynamo with it) when first called, and returns what the
real one returns. The stand-in is taken out of `sys.modules` as soon as that module is imported, so any later
`import torch._dynamo` (Lightning's, `torch.compile`'s) loads the real package as usual. A process that has already
loaded torch._dynamo, or imported torchvision, is left as it is.

A guarded patch (`GUARDS`, src/patching.py): `TRANSFER_PATCH_LAZY_DYNAMO=0` turns it off, and torchvision or torch
versions it was not checked against (what their imports load may differ) import as they ship. Checked by
tests/test_job_overhead.py and tests/test_patches.py. A leaf module: imports nothing of ours but the guard.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
import types

from src.patching import Guard

STOCK = "torchvision imports torch._dynamo when it is imported"
GUARDS = (Guard("lazy_dynamo", "torchvision", ("0.29.1",), STOCK), Guard("lazy_dynamo", "torch", ("2.14.1",), STOCK))
MODULE = "torchvision.ops.roi_align"  # the one module of torchvision that imports torch._dynamo
STAND_IN = "torch._dynamo.utils"


def is_compile_supported(device_type):
    """torch._dynamo.utils.is_compile_supported, imported when first called (what roi_align gets)."""
    from torch._dynamo.utils import is_compile_supported as real

    return real(device_type)


class _StandIn(importlib.abc.Loader):
    """The module's own loader, with the stand-in in sys.modules while it runs the module."""

    def __init__(self, loader) -> None:
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        module.__loader__ = module.__spec__.loader = self.loader  # the module keeps no trace of this one
        stand_in = types.ModuleType(STAND_IN, "Stand-in while torchvision imports (src/lazy_dynamo.py).")
        stand_in.is_compile_supported = is_compile_supported
        placed = STAND_IN not in sys.modules and "torch._dynamo" not in sys.modules
        if placed:
            sys.modules[STAND_IN] = stand_in
        try:
            self.loader.exec_module(module)
        finally:
            if placed and sys.modules.get(STAND_IN) is stand_in:
                del sys.modules[STAND_IN]


class _Finder(importlib.abc.MetaPathFinder):
    """Finds the module once, through the rest of the import system, and hands it `_StandIn`'s loader."""

    def find_spec(self, name, path=None, target=None):
        if name != MODULE:
            return None
        sys.meta_path[:] = [f for f in sys.meta_path if f is not self]  # one import: a reload goes the usual way
        if "torch._dynamo" in sys.modules:
            return None
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _StandIn(spec.loader)
        return spec


def installed() -> bool:
    return any(isinstance(f, _Finder) for f in sys.meta_path)


def install() -> bool:
    """Put the finder in place (once per process) if torchvision is still to be imported and `GUARDS` allow it;
    returns whether it is in place."""
    if installed():
        return True
    if MODULE in sys.modules or "torch._dynamo" in sys.modules or not all(g.allowed() for g in GUARDS):
        return False
    sys.meta_path.insert(0, _Finder())
    return True
