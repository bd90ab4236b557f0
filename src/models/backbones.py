"""Source nets from the ecosystem's model libraries, as config options (no torch here unless a model must be described).

Families (`arch=`), all with the same `arch.<key>` options (`FIELDS`):
  timm         `arch.model=<any timm.list_models() name>` (timm's `create_model`, its `pretrained_cfg` for input
               size, mean/std and interpolation)
  torchvision  `arch.model=<any torchvision.models.list_models() name>` (`get_model`; the weights enum's transforms)
  module       `arch.builder=pkg.module:function`, the user's callable returning an `nn.Module`
               (`arch.input_size`, `arch.mean`, `arch.std` say how inputs are prepared)
  backbone     `arch.model=timm:resnet18`, `torchvision:mobilenet_v3_small`, `module:pkg.mod:fn`, any of them with
               `@/path/to/weights`, or `file:/path/ckpt.safetensors` (a checkpoint that names its model, as
               `src.models.external.save_checkpoint` writes it): the references `experiment=model_selection` sweeps
Weights (`arch.weights`): null = random init (seeded by `arch.seed`; for tests and "untrained net" baselines), a
file (.pth, .pt, .bin, .safetensors; its classifier may have another class count: the head takes the file's), or
`pretrained` (timm's default tag / torchvision's DEFAULT enum member, or a member name such as IMAGENET1K_V1) read
from the library's own cache (Hugging Face hub / torch hub). Nothing is downloaded unless `arch.download=true`.

A model's layers (its graph nodes, their output shapes, its blocks) are learnt by building it once at random init
and tracing one forward pass; the description is cached as JSON under `<cache_dir>/models/`, keyed by library,
library version, model and constructor arguments, so the config check of every later job reads a small file
instead of importing torch.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from src.errors import ConfigError
from src.fields import Bool, Choice, Float, Int, List, Node, Str
from src.models.spec import ArchSpec

FAMILIES = {
    "timm": "any timm model (arch.model=<timm.list_models() name>)",
    "torchvision": "any torchvision model (arch.model=<torchvision.models.list_models() name>)",
    "module": "your own nn.Module (arch.builder=pkg.module:function)",
    "backbone": "a reference library:model[@weights] or file:path (arch.model; experiment=model_selection)",
}
LIBRARIES = ("timm", "torchvision", "module")
WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")
DESCRIPTION_VERSION = 2
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

FIELDS = {
    "model": Str("the model: a library's model name (timm, torchvision) or a library:model[@weights] / file:path "
                 "reference (backbone)", null=True),
    "builder": Str("module: pkg.module:function returning the nn.Module", null=True),
    "weights": Str("null: random init; a weights file (.pth .pt .bin .safetensors); pretrained (or a torchvision "
                   "weights enum member): the library's own cache", null=True),
    "download": Bool("let the library download `weights=pretrained` when it is not in its cache"),
    "seed": Int(0, 2**31 - 1, "the random init's seed (weights=null)"),
    "input_size": Int(8, 1024, "input side the images are resized to; null: the library's (module: required)",
                      null=True),
    "mean": List(Float(), "per-channel input mean on [0, 1] images; null: the library's (ImageNet's)", null=True),
    "std": List(Float(0, low_open=True), "per-channel input std; null: the library's (ImageNet's)", null=True),
    "interpolation": Choice(("bilinear", "bicubic", "nearest"), "resize interpolation; null: the library's",
                            null=True),
    "kwargs": Node("keyword arguments for the constructor (e.g. {img_size: 64} for a timm ViT)", null=True,
                   free=True),
    "models": List(Str(), "experiment=model_selection: the backbones to rank (references as arch.model)",
                   null=True),
}


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
    state = _torch_load(path)
    return state.get("model") if isinstance(state, dict) and isinstance(state.get("model"), str) else None


def _torch_load(path: Path):
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, pickled code, not a torch file: name the file, not torch's internals
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"arch.weights={path} is not a readable weights file ({first[:160]})") from None


def weights_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """name -> shape of every tensor in a weights file (a checkpoint's `state_dict` / `model` entry unwrapped)."""
    if path.suffix == ".safetensors":
        return {k: tuple(v["shape"]) for k, v in safetensors_header(path).items() if k != "__metadata__"}
    return {k: tuple(v.shape) for k, v in unwrap_state(_torch_load(path)).items()}


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


# --- the description of a model: nodes, shapes, blocks, head, input ---------------------------------------------


def library_version(library: str) -> str:
    if library == "module":
        return "user"
    return importlib.metadata.version(library)


def _builder_digest(builder: str) -> str:
    """sha256 of the builder's source file: editing the user's module describes (and keys) it anew."""
    module = builder.partition(":")[0]
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin or not Path(spec.origin).is_file():
        raise ConfigError(f"arch.builder={builder}: module {module!r} cannot be found (is it on PYTHONPATH, "
                          f"relative to the directory you run from?)")
    return hashlib.sha256(Path(spec.origin).read_bytes()).hexdigest()


def model_identity(ref: Ref, arch_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """What determines the architecture (not the weights): library, its version, model, constructor arguments."""
    ident = {"library": ref.library, "version": library_version(ref.library), "model": ref.model,
             "kwargs": dict(arch_cfg.get("kwargs") or {}), "input_size": arch_cfg.get("input_size")}
    if ref.library == "module":
        ident["source_sha256"] = _builder_digest(ref.model)
    if ref.library == "torchvision" and weights_kind(ref.weights) == "library":
        ident["weights_tag"] = ref.weights  # the enum member fixes the preprocessing
    return ident


def describe(ref: Ref, arch_cfg: Mapping[str, Any], cache_dir: str | Path | None) -> dict[str, Any]:
    """The model's description (see the module docstring), from the JSON cache or built once (imports torch)."""
    ident = model_identity(ref, arch_cfg)
    key = hashlib.sha256(json.dumps([DESCRIPTION_VERSION, ident], sort_keys=True, default=str).encode()).hexdigest()
    path = Path(os.path.expanduser(str(cache_dir))) / "models" / f"{key[:32]}.json" if cache_dir else None
    if path is not None:
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            pass
    from src.models import external  # torch, and the library, only on a miss

    desc = external.describe_model(ref, arch_cfg)
    desc["identity"] = ident
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(desc))
        tmp.replace(path)
    return desc


def nearest_names(name: str, names: list[str], n: int = 5) -> str:
    near = difflib.get_close_matches(name, names, n=n, cutoff=0.5)
    return ", ".join(near) if near else ", ".join(names[:n])


def spec_from_description(family: str, num_classes: int, ref: Ref, desc: Mapping[str, Any],
                          arch_cfg: Mapping[str, Any]) -> ArchSpec:
    """The ArchSpec of a described model: every tensor node a tap (dim = channels / features / token width),
    `pre_logits` and `logits` aliases, the blocks for `depth:`."""
    vocab: dict[str, tuple[str, int, bool]] = {}
    tokens = set()
    for node, shape in desc["nodes"]:
        if len(shape) == 3:  # (C, H, W)
            vocab[node] = (node, shape[0], True)
        elif len(shape) == 2:  # (T, D): a token sequence
            vocab[node] = (node, shape[1], True)
            tokens.add(node)
        elif len(shape) == 1:
            vocab[node] = (node, shape[0], False)
    for alias in ("pre_logits", "logits"):
        target = desc.get(alias)
        if target in vocab:
            vocab[alias] = vocab[target]
    logits = desc.get("logits")
    if logits in vocab:  # the head tap last: the 'probs' estimators read the spec's last tap
        vocab = {k: v for k, v in vocab.items() if k not in (logits, "logits")} | {logits: vocab[logits],
                                                                                   "logits": vocab[logits]}
    inp = dict(desc["input"])
    for key in ("input_size", "mean", "std", "interpolation"):
        if arch_cfg.get(key) is not None:
            inp[{"input_size": "size"}.get(key, key)] = (list(arch_cfg[key]) if key in ("mean", "std")
                                                        else arch_cfg[key])
    extra = {"library": ref.library, "model": ref.model, "weights": ref.weights, "label": ref.label,
             "kwargs": dict(arch_cfg.get("kwargs") or {}), "seed": int(arch_cfg.get("seed") or 0),
             "download": bool(arch_cfg.get("download")), "input": inp, "prefix_tokens": desc["prefix_tokens"],
             "version": desc["identity"]["version"], "identity": desc["identity"]}
    return ArchSpec(family, None, num_classes, vocab, nodes={t: t for t, (c, _, _) in vocab.items() if t == c},
                    head=desc["head"], pretrained=True, tokens=frozenset(tokens),
                    blocks=tuple(b for b in desc["blocks"] if b in vocab), extra=extra, min_input=8)


def spec_fn(family: str):
    def build(depth: None, width: float, num_classes: int, arch_cfg: Mapping[str, Any], cache_dir) -> ArchSpec:
        from omegaconf import DictConfig, OmegaConf

        cfg = OmegaConf.to_container(arch_cfg, resolve=True) if isinstance(arch_cfg, DictConfig) else dict(arch_cfg)
        ref = parse_ref(family, cfg)
        if ref.library == "module" and cfg.get("input_size") is None:
            raise ConfigError("arch.input_size is required for arch=module (the side your net's inputs are resized "
                              "to), e.g. arch.input_size=32")
        desc = describe(ref, cfg, cache_dir)
        spec = spec_from_description(family, num_classes, ref, desc, cfg)
        if weights_kind(ref.weights) == "file":
            head = check_weights(ref, desc).get(f"{desc['head']}.weight")
            if head is not None and "logits" in spec.vocab:  # the file's classifier (another class count)
                for name in ("logits", spec.vocab["logits"][0]):
                    spec.vocab[name] = (spec.vocab[name][0], int(head[0]), False)
        return spec

    return build
