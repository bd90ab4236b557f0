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

A model's layers (its graph nodes, their output shapes, its blocks) are learnt by building it once (on PyTorch's
meta device where the net allows it, else at random init on the CPU) and tracing one forward pass; the
description is cached as JSON under `<cache_dir>/models/`, keyed by library, library version, model and constructor
arguments, so the config check of every later job reads a small file instead of importing torch.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
from pathlib import Path
from typing import Any, Mapping

from src.errors import ConfigError
from src.fields import Bool, Choice, Float, Int, List, Node, Str
from src.models.refs import Ref, check_weights, parse_ref, weights_kind
from src.models.spec import INPUT_CHANNELS, ArchSpec, output_node

FAMILIES = {
    "timm": "any timm model (arch.model=<timm.list_models() name>)",
    "torchvision": "any torchvision model (arch.model=<torchvision.models.list_models() name>)",
    "module": "your own nn.Module (arch.builder=pkg.module:function)",
    "backbone": "a reference library:model[@weights] or file:path (arch.model; experiment=model_selection)",
}
DESCRIPTION_VERSION = 4  # 3: the input records the resize before a centre crop; 4: a net that is itself an
# nn.Sequential of blocks has them as its blocks (its parameterised leaves before)

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
    "mean": List(Float(), "input mean on [0, 1] images, one per channel (3: RGB); null: the library's (ImageNet's)",
                 null=True),
    "std": List(Float(0, low_open=True), "input std, one per channel (3: RGB); null: the library's (ImageNet's)",
                null=True),
    "interpolation": Choice(("bilinear", "bicubic", "nearest"), "resize interpolation; null: the library's",
                            null=True),
    "kwargs": Node("keyword arguments for the constructor (e.g. {img_size: 64} for a timm ViT)", null=True,
                   free=True),
    "models": List(Str(), "experiment=model_selection: the backbones to rank (references as arch.model)",
                   null=True),
    "aliases": Node("layer names of your own for the model's graph nodes or modules, e.g. {fc7: classifier.5} "
                    "(the tv_* presets give torchvision's nets the paper's names)", null=True, free=True),
}


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
    names, aliased = [n for n, _ in desc["nodes"]], []
    for alias, module in (arch_cfg.get("aliases") or {}).items():
        node = output_node(str(module), names)
        if node not in vocab:
            raise ConfigError(f"arch.aliases.{alias}={module} is neither a graph node nor a module of {ref.label}; "
                              f"`python -m src.models arch={family} arch.model={ref.model}` lists them")
        vocab[str(alias)] = vocab[node]
        aliased.append(node)
    logits = desc.get("logits")
    if logits in vocab:  # the head tap last: the 'probs' estimators read the spec's last tap
        vocab = {k: v for k, v in vocab.items() if k not in (logits, "logits")} | {logits: vocab[logits],
                                                                                   "logits": vocab[logits]}
    inp = dict(desc["input"])
    if arch_cfg.get("input_size") is not None:
        inp.pop("resize", None)  # a side of the user's: resized to it, no crop
    for key in ("input_size", "mean", "std", "interpolation"):
        if arch_cfg.get(key) is not None:
            inp[{"input_size": "size"}.get(key, key)] = (list(arch_cfg[key]) if key in ("mean", "std")
                                                        else arch_cfg[key])
    extra = {"library": ref.library, "model": ref.model, "weights": ref.weights, "label": ref.label,
             "kwargs": dict(arch_cfg.get("kwargs") or {}), "seed": int(arch_cfg.get("seed") or 0),
             "download": bool(arch_cfg.get("download")), "input": inp, "prefix_tokens": desc["prefix_tokens"],
             "version": desc["identity"]["version"], "identity": desc["identity"], "aliased": aliased}
    return ArchSpec(family, None, num_classes, vocab, nodes={t: t for t, (c, _, _) in vocab.items() if t == c},
                    head=desc["head"], pretrained=True, tokens=frozenset(tokens),
                    blocks=tuple(b for b in desc["blocks"] if b in vocab), extra=extra, min_input=8)


def check_normalisation(arch_cfg: Mapping[str, Any]) -> None:
    """`arch.mean` / `arch.std`, where set, give one value per input channel (the schema has checked that each is a
    number and every std > 0); a wrong count would fail only in the first extraction, as a tensor-size error."""
    for key in ("mean", "std"):
        values = arch_cfg.get(key)
        if values is not None and len(values) != INPUT_CHANNELS:
            example = ",".join(["0.5" if key == "mean" else "0.25"] * INPUT_CHANNELS)
            raise ConfigError(f"arch.{key}={list(values)} has {len(values)} value{'s' * (len(values) != 1)}; valid: "
                              f"one per input channel, {INPUT_CHANNELS} (RGB), e.g. arch.{key}=[{example}], or null "
                              f"(the library's)")


def spec_fn(family: str):
    def build(depth: None, width: float, num_classes: int, arch_cfg: Mapping[str, Any], cache_dir) -> ArchSpec:
        from omegaconf import DictConfig, OmegaConf

        cfg = OmegaConf.to_container(arch_cfg, resolve=True) if isinstance(arch_cfg, DictConfig) else dict(arch_cfg)
        check_normalisation(cfg)  # before the model is described (which may import torch)
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
