"""What net a model-library arch names (`Ref`), parsed from its `arch` options, and its weights files read without
torch where the format allows (a safetensors header is JSON): the torch-free half shared by `src.models.backbones`
(the config check) and `src.models.external` (the torch side)."""

from __future__ import annotations

import difflib
import json
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from src.errors import ConfigError

LIBRARIES = ("timm", "torchvision", "module")
WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def nearest_names(name: str, names: list[str], n: int = 5) -> str:
    near = difflib.get_close_matches(name, names, n=n, cutoff=0.5)
    return ", ".join(near) if near else ", ".join(names[:n])


@dataclass(frozen=True)
class Ref:
    """Which net: library, model name (or builder), weights (None, a file path, or a library tag)."""

    library: str
    model: str
    weights: str | None = None

    @property
    def label(self) -> str:
        return f"{self.library}:{self.model}" + (f"@{self.weights}" if self.weights else "")


def weights_kind(weights: str | None) -> str | None:
    """None (random init), "file" or "library" (the library's own cache)."""
    if weights is None:
        return None
    w = str(weights)
    return "file" if os.sep in w or w.lower().endswith(WEIGHT_SUFFIXES) or w.startswith("~") else "library"


def parse_ref(family: str, arch_cfg: Mapping[str, Any]) -> Ref:
    """The net an `arch` node names, or a one-line ConfigError."""
    weights = arch_cfg.get("weights")
    if family in ("timm", "torchvision"):
        if not arch_cfg.get("model"):
            raise ConfigError(f"arch.model is required for arch={family}, e.g. arch.model="
                              f"{'resnet18' if family == 'timm' else 'mobilenet_v3_small'}")
        return Ref(family, str(arch_cfg["model"]), weights)
    if family == "module":
        builder = arch_cfg.get("builder")
        if not builder or ":" not in str(builder):
            raise ConfigError(f"arch.builder={builder!r} must be pkg.module:function (a callable returning an "
                              f"nn.Module) for arch=module")
        return Ref("module", str(builder), weights)
    return parse_reference(str(arch_cfg.get("model") or ""), weights)


def parse_reference(text: str, weights: str | None = None) -> Ref:
    """`timm:resnet18`, `torchvision:vgg11@/w.pth`, `module:pkg.mod:fn`, `file:/ckpt.safetensors` -> Ref."""
    library, sep, rest = text.partition(":")
    if library == "file" and sep:
        path = Path(os.path.expanduser(rest))
        named = checkpoint_model(path)
        if named is None:
            raise ConfigError(f"arch.model=file:{rest}: the file does not name its model; use "
                              f"library:model@{rest} (e.g. timm:resnet18@{rest})")
        return parse_reference(named, str(path))
    if library not in LIBRARIES or not sep or not rest:
        raise ConfigError(f"arch.model={text!r} is not a backbone reference; valid: library:model[@weights] with "
                          f"library one of {', '.join(LIBRARIES)}, or file:/path/to/checkpoint")
    model, at, path = rest.partition("@")
    return Ref(library, model, path if at else weights)


# --- weights files, read without torch where the format allows --------------------------------------------------


def safetensors_header(path: Path) -> dict:
    """The JSON header of a .safetensors file (tensor names, dtypes, shapes, metadata); ConfigError if corrupt."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            (n,) = struct.unpack("<Q", head) if len(head) == 8 else (None,)
            size = path.stat().st_size
            if n is None or n > min(size - 8, 100_000_000):
                raise ValueError("header length out of range")
            header = json.loads(f.read(n))
        data = size - 8 - n
        for name, t in header.items():
            if name != "__metadata__" and (not isinstance(t, dict) or t["data_offsets"][1] > data):
                raise ValueError(f"tensor {name} lies past the end of the file")
    except (OSError, ValueError, KeyError, TypeError, struct.error) as e:
        raise ConfigError(f"arch.weights={path} is not a readable safetensors file ({e}); re-save or re-download "
                          f"it") from None
    return header


def checkpoint_model(path: Path) -> str | None:
    """The `library:model` a checkpoint names (safetensors metadata `model`, or a .pth dict's `model` key)."""
    if not path.is_file():
        raise ConfigError(f"arch.model=file:{path}: no such file")
    if path.suffix == ".safetensors":
        return (safetensors_header(path).get("__metadata__") or {}).get("model")
    state = torch_load(path)
    return state.get("model") if isinstance(state, dict) and isinstance(state.get("model"), str) else None


def first_sentence(e: BaseException, limit: int = 160) -> str:
    """`Type: first sentence` of an exception (torch's messages run to paragraphs), cut at a word if still longer
    than `limit`: one complete line."""
    text = " ".join((str(e).strip().splitlines() or [""])[0].split())
    sentence = re.match(r"(.*?[.!?])(?:\s|$)", text)
    text = sentence.group(1) if sentence else text
    if len(text) > limit:
        text = text[:limit].rsplit(" ", 1)[0] + " ..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def torch_load(path: Path):
    """A .pth / .pt / .bin file's content (tensors only: weights_only), or a one-line ConfigError naming it."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, pickled code, not a torch file: name the file, not torch's internals
        raise ConfigError(f"arch.weights={path} is not a readable PyTorch checkpoint ({first_sentence(e)}); give a "
                          f"state dict saved by torch.save (.pth .pt .bin) or a .safetensors file") from None


def weights_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """name -> shape of every tensor in a weights file (a checkpoint's `state_dict` / `model` entry unwrapped)."""
    if path.suffix == ".safetensors":
        return {k: tuple(v["shape"]) for k, v in safetensors_header(path).items() if k != "__metadata__"}
    return {k: tuple(v.shape) for k, v in unwrap_state(torch_load(path)).items()}


def unwrap_state(state: Any) -> dict:
    """The state dict inside a checkpoint (`state_dict`, `model` or `state` entries; a DDP `module.` prefix)."""
    if isinstance(state, dict):
        for key in ("state_dict", "model_state", "state"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
        else:
            if isinstance(state.get("model"), dict):
                state = state["model"]
    if not isinstance(state, dict):
        raise ConfigError("the weights file holds no state dict")
    state = {k: v for k, v in state.items() if hasattr(v, "shape")}
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def weights_path(weights: str) -> Path:
    return Path(os.path.expanduser(str(weights)))


def check_weights(ref: Ref, desc: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """A weights file exists, is readable and fits the model (the classifier may differ in its class count);
    one line naming the first few missing / unexpected / mis-shaped keys otherwise."""
    path = weights_path(ref.weights)
    if not path.is_file():
        raise ConfigError(f"arch.weights={path}: no such file (a .pth, .pt, .bin or .safetensors state dict)")
    have = weights_shapes(path)
    want = {k: tuple(v) for k, v in desc["params"].items()}
    head = desc["head"]
    missing = [k for k in want if k not in have]
    unexpected = [k for k in have if k not in want]
    shaped = [k for k in want if k in have and have[k] != want[k] and not k.startswith(head + ".")]
    if not (missing or unexpected or shaped):
        return have
    parts = []
    for what, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatch", shaped)):
        if keys:
            more = f" (+{len(keys) - 4} more)" if len(keys) > 4 else ""
            parts.append(f"{what}: {', '.join(keys[:4])}{more}")
    raise ConfigError(f"arch.weights={path} does not fit {ref.library}:{ref.model} ({'; '.join(parts)}); "
                      f"point arch.weights at weights of this architecture")
