"""Torch side of the model-library families (`arch=timm|torchvision|module|backbone`, `src.models.backbones`).

Builds the net (random init under `arch.seed`, a weights file, or the library's own cached weights), describes it
once (graph nodes and their output shapes from one traced forward pass, blocks, head, input preprocessing), and
gives the arch registry's torch-side protocol: load, tap_nodes, preprocess, head_path, replace_head,
feature_extractor, weights_file. timm models are traced with timm's own FX helpers (they know which of timm's
modules and functions must stay leaves); the others with torchvision's feature extraction.
"""

from __future__ import annotations

import contextlib
import os
from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from src import lazy_dynamo
from src.errors import ConfigError
from src.models.refs import (IMAGENET_MEAN, IMAGENET_STD, Ref, nearest_names, torch_load, unwrap_state,
                             weights_kind, weights_path)
from src.models.spec import INPUT_CHANNELS, ArchSpec, output_node

lazy_dynamo.install()  # torchvision and timm, imported below when needed, without torch._dynamo


class MissingWeightsError(ConfigError, FileNotFoundError):
    """A library's pretrained weights are not in its cache and downloading was not allowed."""


@contextlib.contextmanager
def _offline(allowed: bool):
    """Hugging Face hub offline unless downloading is allowed (timm reads the hub's cache either way)."""
    if allowed:
        yield
        return
    old = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old


def _check_name(ref: Ref) -> None:
    if ref.library == "timm":
        import timm

        if not timm.is_model(ref.model):
            raise ConfigError(f"arch.model={ref.model} is not a timm model; nearest: "
                              f"{nearest_names(ref.model, timm.list_models())} (timm.list_models() lists them)")
    elif ref.library == "torchvision":
        import torchvision

        names = torchvision.models.list_models()
        if ref.model not in names:
            raise ConfigError(f"arch.model={ref.model} is not a torchvision model; nearest: "
                              f"{nearest_names(ref.model, names)} (torchvision.models.list_models() lists them)")


def _tv_weights(ref: Ref):
    import torchvision

    enum = torchvision.models.get_model_weights(ref.model)
    tag = "DEFAULT" if ref.weights in ("pretrained", "DEFAULT") else ref.weights
    try:
        return enum.DEFAULT if tag == "DEFAULT" else enum[tag]
    except KeyError:
        raise ConfigError(f"arch.weights={ref.weights} is not a weights enum member of torchvision's {ref.model}; "
                          f"valid: pretrained, {', '.join(w.name for w in enum)}, a file, or null") from None


def _builder(ref: Ref) -> Callable[..., nn.Module]:
    import importlib

    module, _, fn = ref.model.partition(":")
    try:
        return getattr(importlib.import_module(module), fn)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"arch.builder={ref.model} cannot be imported ({e})") from None


def timm_kwargs(ref: Ref, kwargs: Mapping[str, Any], input_size: int | None) -> dict[str, Any]:
    """The constructor arguments; a timm net built for a fixed input size (a ViT's position embeddings) is built
    for `arch.input_size` when one is set (timm resamples pretrained position embeddings to it)."""
    kwargs = dict(kwargs)
    if ref.library == "timm" and input_size and "img_size" not in kwargs:
        import timm

        cfg = timm.models.get_pretrained_cfg(ref.model)
        if cfg is not None and cfg.fixed_input_size:
            kwargs["img_size"] = int(input_size)
    return kwargs


def build(ref: Ref, kwargs: Mapping[str, Any], seed: int = 0, input_size: int | None = None,
          device: torch.device | None = None) -> nn.Module:
    """The net at random init (seeded), in eval mode; constructed on `device` when given (the meta device: shapes
    only, no weights allocated or initialised). The library, or the builder's module, is imported before that
    device's scope begins: the tensors a module creates when imported stay ordinary ones."""
    _check_name(ref)  # imports the library
    torch.manual_seed(seed)
    if ref.library == "timm":
        import timm

        make = partial(timm.create_model, ref.model, pretrained=False, **timm_kwargs(ref, kwargs, input_size))
    elif ref.library == "torchvision":
        import torchvision

        make = partial(torchvision.models.get_model, ref.model, weights=None, **kwargs)
    else:
        make = partial(_builder(ref), **kwargs)
    with device if device is not None else contextlib.nullcontext():
        model = make()
    if not isinstance(model, nn.Module):
        raise ConfigError(f"arch.builder={ref.model} returned {type(model).__name__}, not an nn.Module")
    return model.eval()


def head_module(model: nn.Module, library: str) -> str:
    """The classifier's module path: timm's own metadata, else the last Linear."""
    if library == "timm" and hasattr(model, "get_classifier"):
        head = model.get_classifier()
        for name, m in model.named_modules():
            if m is head and name:
                return name
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError("the model has no nn.Linear classifier to tap as logits or to fine-tune")
    return linears[-1]


def _composite(m: nn.Module) -> bool:
    return any(True for _ in m.children()) and any(True for _ in m.parameters())


def block_modules(model: nn.Module, head: str) -> list[str]:
    """The network's blocks, input side first: the children of the outermost containers (Sequential / ModuleList)
    that hold two or more composite modules (residual blocks, transformer blocks, stages); else its parameterised
    leaf modules. The head is not a block."""
    blocks: list[str] = []

    def container(module: nn.Module) -> bool:
        return isinstance(module, (nn.Sequential, nn.ModuleList)) and sum(map(_composite, module.children())) >= 2

    def visit(module: nn.Module, prefix: str) -> None:
        for name, child in module.named_children():
            path = f"{prefix}{name}"
            if path == head:
                continue
            if container(child):
                blocks.extend(f"{path}.{n}" for n, c in child.named_children() if any(True for _ in c.parameters()))
            else:
                visit(child, f"{path}.")

    if container(model):  # the net itself is the outermost container (a builder returning an nn.Sequential)
        blocks = [n for n, c in model.named_children() if n != head and any(True for _ in c.parameters())]
    else:
        visit(model, "")
    if not blocks:
        blocks = [n for n, m in model.named_modules()
                  if n and n != head and not any(True for _ in m.children()) and any(True for _ in m.parameters())]
    return blocks


def _graph_tools(library: str):
    if library == "timm":
        from timm.models._features_fx import create_feature_extractor, get_graph_node_names
    else:
        from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names
    return get_graph_node_names, create_feature_extractor


def feature_extractor(model: nn.Module, return_nodes: Mapping[str, str], spec: ArchSpec | None = None) -> nn.Module:
    """The graph module returning `return_nodes` (node -> name), traced with the library's own helpers."""
    library = spec.extra["library"] if spec is not None else "torchvision"
    return _graph_tools(library)[1](model, return_nodes=dict(return_nodes))


def _library_input(ref: Ref, model: nn.Module, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    if ref.library == "timm":
        from timm.data import resolve_data_config

        cfg = resolve_data_config({}, model=model)
        return {"size": int(cfg["input_size"][-1]), "mean": list(cfg["mean"]), "std": list(cfg["std"]),
                "interpolation": cfg["interpolation"] if cfg["interpolation"] in ("bilinear", "bicubic", "nearest")
                else "bilinear"}
    if ref.library == "torchvision" and weights_kind(ref.weights) == "library":
        t = _tv_weights(ref).transforms()  # the weights' own eval transform: resize, centre crop, normalise
        return {"size": int(t.crop_size[0]), "resize": int(t.resize_size[0]), "mean": list(t.mean),
                "std": list(t.std), "interpolation": str(t.interpolation.value)}
    size = int(kwargs.get("image_size") or kwargs.get("img_size") or 224)
    return {"size": size, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "interpolation": "bilinear"}


def describe_model(ref: Ref, arch_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Nodes with their output shapes (one traced forward pass at the input size), blocks, head, input.

    Described on the meta device where the net allows it: no weights are allocated or initialised and no arithmetic
    is done, so validating a config (the first time a model is seen) does not cost a full-size init and forward
    pass (a VGG-16 is 138M parameters). A net whose constructor or forward needs real values (a `.item()`, an op
    without a meta kernel) is described on the CPU instead; both give the same description."""
    try:
        return describe_on(ref, arch_cfg, torch.device("meta"))
    except ConfigError:
        raise
    except Exception:
        return describe_on(ref, arch_cfg, torch.device("cpu"))


def describe_on(ref: Ref, arch_cfg: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    """`describe_model` on one device. On the meta device any failure is raised as is (the caller falls back to
    the CPU); on the CPU a net that cannot be traced is a ConfigError."""
    kwargs = dict(arch_cfg.get("kwargs") or {})
    model = build(ref, kwargs, input_size=arch_cfg.get("input_size"), device=device)
    head = head_module(model, ref.library)
    inp = _library_input(ref, model, kwargs)
    size = int(arch_cfg.get("input_size") or inp["size"])
    get_names, make = _graph_tools(ref.library)
    try:
        _, nodes = get_names(model)
        traced = make(model, return_nodes={n: n for n in nodes})
        with torch.inference_mode(), device:
            outs = traced(torch.zeros(1, INPUT_CHANNELS, size, size))
    except Exception as e:  # a net torch.fx cannot trace, or one that rejects this input size
        if device.type == "meta":
            raise
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"{ref.library}:{ref.model} cannot be traced at input {size}x{size} "
                          f"({type(e).__name__}: {first[:160]}); set arch.input_size (and arch.kwargs)") from None
    shapes = [(n, list(v.shape[1:])) for n, v in outs.items()
              if isinstance(v, torch.Tensor) and v.dim() in (2, 3, 4) and v.shape[0] == 1 and n != nodes[0]]
    names = [n for n, _ in shapes]
    blocks = [b for b in (output_node(m, names) for m in block_modules(model, head)) if b]
    logits = output_node(head, names)
    pre = _head_input(logits, names) if logits is not None else None
    prefix = int(getattr(model, "num_prefix_tokens", 0) or
                 (1 if getattr(model, "class_token", None) is not None or getattr(model, "cls_token", None)
                  is not None else 0))
    return {"nodes": shapes, "blocks": list(dict.fromkeys(blocks)), "head": head, "logits": logits,
            "pre_logits": pre, "input": inp, "prefix_tokens": prefix,
            "modules": [n for n, _ in model.named_modules() if n],
            "params": {k: list(v.shape) for k, v in model.state_dict().items()}}


def _head_input(logits: str, names: list[str]) -> str | None:
    """The node feeding the head (its pre-logits features): the last tensor node before the head's own nodes (for
    timm and torchvision nets, the pooled / flattened / dropout output the classifier reads)."""
    i = names.index(logits)
    before = [n for n in names[:i] if not n.startswith(logits + ".")]
    return before[-1] if before else None


# --- the arch registry's torch-side protocol ----------------------------------------------------------------------


def _ref(spec: ArchSpec) -> Ref:
    return Ref(spec.extra["library"], spec.extra["model"], spec.extra["weights"])


def weights_file(spec: ArchSpec) -> Path | None:
    """The file whose content the source key hashes: the weights file, the library's cached weights (an error if
    absent and downloading is not allowed; downloaded first if it is), or None for a random init."""
    ref = _ref(spec)
    kind = weights_kind(ref.weights)
    if kind is None:
        return None
    if kind == "file":
        return weights_path(ref.weights)
    if ref.library == "torchvision":
        w = _tv_weights(ref)
        path = Path(torch.hub.get_dir()) / "checkpoints" / Path(w.url).name
        if not path.is_file() and spec.extra["download"]:
            w.get_state_dict(progress=True)
        if not path.is_file():
            raise MissingWeightsError(f"pretrained weights of torchvision's {ref.model} not found at {path}; put "
                                      f"the file there (from {w.url}), set arch.weights=/path/to/file, or "
                                      f"arch.download=true")
        return path
    if ref.library == "timm":
        return _timm_cached(ref, spec.extra["kwargs"], spec.extra["download"])
    raise ConfigError(f"arch.weights={ref.weights}: arch=module takes a weights file or null")


def _timm_cached(ref: Ref, kwargs: Mapping[str, Any], download: bool) -> Path:
    import timm
    from huggingface_hub import try_to_load_from_cache

    cfg = timm.models.get_pretrained_cfg(ref.model)
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        raise ConfigError(f"timm's {ref.model} has no pretrained weights; set arch.weights=/path/to/file or null")

    def find() -> Path | None:
        if cfg.hf_hub_id:
            for name in ("model.safetensors", "pytorch_model.bin"):
                hit = try_to_load_from_cache(cfg.hf_hub_id, name)
                if isinstance(hit, str):
                    return Path(hit)
        if cfg.url:
            path = Path(torch.hub.get_dir()) / "checkpoints" / Path(cfg.url).name
            if path.is_file():
                return path
        return None

    path = find()
    if path is None and download:
        timm.create_model(ref.model, pretrained=True, **kwargs)  # fills the hub's cache
        path = find()
    if path is None:
        where = f"the Hugging Face cache ({cfg.hf_hub_id})" if cfg.hf_hub_id else cfg.url
        raise MissingWeightsError(f"pretrained weights of timm's {ref.model} are not in {where}; set "
                                  f"arch.download=true once, or arch.weights=/path/to/file")
    return path


def read_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:
            raise ConfigError(f"arch.weights={path} is not a readable safetensors file ({e})") from None
    return unwrap_state(torch_load(path))


def load(spec: ArchSpec, source_cfg: Mapping[str, Any] | None = None, weights: Path | None = None) -> nn.Module:
    """The net in eval mode: random init, or the configured weights (the head takes the file's class count)."""
    ref = _ref(spec)
    kwargs = dict(spec.extra["kwargs"])
    kind = weights_kind(ref.weights)
    if kind == "library" and ref.library == "timm":
        path = weights_file(spec)  # present, or a one-line error
        with _offline(spec.extra["download"]):
            import timm

            _check_name(ref)
            size = spec.extra["identity"]["input_size"]
            return timm.create_model(ref.model, pretrained=True, **timm_kwargs(ref, kwargs, size)).eval()
    model = build(ref, kwargs, seed=spec.extra["seed"], input_size=spec.extra["identity"]["input_size"])
    if kind is None:
        return model
    path = weights_file(spec)
    state = read_state(path)
    head = spec.head
    if f"{head}.weight" in state:
        n = state[f"{head}.weight"].shape[0]
        if n != model.get_submodule(head).out_features:
            replace_head(model, spec, n)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise ConfigError(f"arch.weights={path} does not fit {ref.label} ({' '.join(first[:2])[:240]})") from None
    return model.eval()


def tap_nodes(spec: ArchSpec, extra: tuple[str, ...] = ()) -> dict[str, str]:
    """The taps one extraction writes: those `ArchSpec.always_tapped` names and the chosen layer(s)
    (`src.keys.extracted_taps`)."""
    return {t: spec.nodes[t] for t in dict.fromkeys([*spec.always_tapped(), *extra])}


def preprocess(spec: ArchSpec, source_cfg: Mapping[str, Any] | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 (N, 3, H, W) -> resized to the model's input side (or, where the weights' own transform says so, to
    its resize side and centre-cropped to the input side: torchvision's 256 -> 224), normalised by its mean and std."""
    import torch.nn.functional as F

    inp = spec.extra["input"]
    size, mode = int(inp["size"]), inp["interpolation"]
    resize = max(int(inp.get("resize") or size), size)
    mean = torch.tensor(inp["mean"], dtype=torch.float32).view(1, -1, 1, 1) * 255.0
    std = torch.tensor(inp["std"], dtype=torch.float32).view(1, -1, 1, 1) * 255.0

    def prep(x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if x.shape[-1] != resize or x.shape[-2] != resize:
            x = F.interpolate(x, size=(resize, resize), mode=mode,
                              **({} if mode == "nearest" else {"align_corners": False, "antialias": True}))
        if resize > size:
            top = int(round((resize - size) / 2.0))  # torchvision's CenterCrop
            x = x[..., top:top + size, top:top + size]
        return ((x - mean.to(x.device)) / std.to(x.device)).contiguous(memory_format=torch.channels_last)

    return prep


def head_path(spec: ArchSpec) -> str:
    return spec.head


def replace_head(model: nn.Module, spec: ArchSpec, num_classes: int) -> nn.Module:
    """A new classifier for `num_classes` (timm's `reset_classifier`, else a new Linear in the last one's place)."""
    if spec.extra["library"] == "timm" and hasattr(model, "reset_classifier"):
        model.reset_classifier(num_classes)
        return model.get_classifier()
    parent_path, _, name = spec.head.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    new = nn.Linear(getattr(parent, name).in_features, num_classes)
    setattr(parent, name, new)
    return new


def save_checkpoint(model: nn.Module, path: str | Path, reference: str) -> Path:
    """Weights as .safetensors (or .pth) naming their model (`timm:resnet18`), so `file:<path>` finds it."""
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(tmp), metadata={"model": reference})
    else:
        torch.save({"model": reference, "state_dict": state}, tmp)
    tmp.replace(path)
    return path
