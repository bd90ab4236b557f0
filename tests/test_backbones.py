"""Source nets from model libraries: timm, torchvision and the user's own nn.Module, with weights files, layers by
graph node name and by relative depth, cache keys that follow the weights' content, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from src.check import validate
from src.errors import ConfigError
from src.main import execute
from src.models.spec import output_node
from tests.conftest import REPO, run_cli

MODULE = ["arch=module", "arch.builder=tests.fixtures.tiny:build", "arch.input_size=32"]
RESNET = ["arch=timm", "arch.model=resnet18", "arch.input_size=32"]
VIT = ["arch=timm", "arch.model=vit_tiny_patch16_224", "arch.input_size=32"]  # timm builds it for 32px
SMALL_BATCH = ["trainer.extract_batch_size=64"]


def test_relative_depth_on_the_families_trained_here():
    from src.models.registry import arch_spec

    alexnet = arch_spec("alexnet", None, 0.25, 10)  # conv1..conv5, fc6, fc7: block i of 7 at (i + 1) / 7
    assert [alexnet.resolve(f"depth:{f}") for f in (0.25, 0.5, 0.75, 1.0)] == ["conv2", "conv3", "conv5", "fc7"]
    assert arch_spec("resnet", 18, 0.25, 10).resolve("depth:1.0") == "pool"
    with pytest.raises(ValueError, match="depth:<fraction> with 0 < fraction <= 1"):
        alexnet.resolve("depth:zero")


def test_user_module_end_to_end(make_cfg, cache_dir, tmp_path):
    """arch=module: its blocks are the Sequential's children, depth: picks them, a named node works, fine-tuning
    finds the last Linear; the listing names the blocks with their depths."""
    plan = validate(make_cfg(*MODULE, "layer=depth:0.67"))
    assert plan.spec.blocks == ("stages.0.pool", "stages.1.pool", "stages.2.pool")
    assert plan.tap == "stages.1.pool" and plan.feature_dim == 32
    r = execute(make_cfg(*MODULE, "layer=depth:0.67"), tmp_path / "a")
    assert r["status"] == "ok" and r["cache"]["features_hit"] is False and r["metrics"]["target_score"] > 0.25
    assert set(r["metrics"]["transferability"]) >= {"logme", "hscore", "leep"}
    # Another block: the same extraction; a node that is no block: one of its own.
    assert execute(make_cfg(*MODULE, "layer=depth:1.0"), tmp_path / "b")["cache"]["features_hit"] is True
    assert execute(make_cfg(*MODULE, "layer=pre_logits"), tmp_path / "c")["cache"]["features_hit"] is True
    assert execute(make_cfg(*MODULE, "layer=stages.0.conv"), tmp_path / "d")["cache"]["features_hit"] is False
    tuned = execute(make_cfg(*MODULE, "layer=pre_logits", "finetune=last", "finetune.epochs=1"), tmp_path / "e")
    assert tuned["cache"]["finetune_hit"] is False and tuned["metrics"]["target_score"] is not None


def test_a_net_that_is_itself_a_sequential_has_its_children_as_blocks(make_cfg, cache_dir):
    """The outermost container may be the net itself (a builder returning nn.Sequential(block, block, ..., head)):
    its blocks are its children, tapped at their outputs (it had the blocks' first conv layers, before BN, ReLU and
    pooling)."""
    plan = validate(make_cfg("arch=module", "arch.builder=tests.fixtures.tiny:build_sequential", "arch.input_size=32",
                             "layer=depth:0.5"))
    assert plan.spec.blocks == ("0.pool", "1.pool") and plan.tap == "0.pool" and plan.feature_dim == 8


def test_listing_names_blocks_shapes_and_depths(cache_dir):
    out = subprocess.run([sys.executable, "-m", "src.models", *MODULE], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    lines = {ln.split()[0]: ln for ln in out.stdout.splitlines()[2:]}
    assert lines["stages.2.pool"].split()[1:] == ["32x2x2", "map", "1.000"]
    assert lines["stages.0.pool"].split()[-1] == "0.333"
    assert lines["stem.pool"].split()[1:] == ["8x16x16", "map"]
    assert "(pre_logits)" in lines["flatten"] and lines["classifier"].split()[1:3] == ["(logits)", "10"]


def test_weights_file_content_keys_the_source(make_cfg, cache_dir, tmp_path):
    """Replacing the weights file (same path, new content) invalidates the source and its features; the same
    content again is a hit; a file with another class count loads with the file's head."""
    from src.models.external import save_checkpoint
    from tests.fixtures.tiny import build

    path = tmp_path / "w.safetensors"
    torch.manual_seed(1)
    save_checkpoint(build(), path, "module:tests.fixtures.tiny:build")
    cfg = [*MODULE, f"arch.weights={path}", "layer=depth:1.0"]
    first = execute(make_cfg(*cfg), tmp_path / "1")
    again = execute(make_cfg(*cfg), tmp_path / "2")
    assert again["keys"] == first["keys"] and again["cache"]["features_hit"] is True
    torch.manual_seed(2)
    save_checkpoint(build(), path, "module:tests.fixtures.tiny:build")
    changed = execute(make_cfg(*cfg), tmp_path / "3")
    assert changed["keys"]["features"] != first["keys"]["features"] and changed["cache"]["features_hit"] is False
    random_init = execute(make_cfg(*MODULE, "layer=depth:1.0"), tmp_path / "4")
    assert random_init["keys"]["features"] not in (first["keys"]["features"], changed["keys"]["features"])
    # A checkpoint with a 6-class head (a net trained elsewhere) and the file: reference that names its model.
    six = tmp_path / "six.pth"
    save_checkpoint(build(num_classes=6), six, "module:tests.fixtures.tiny:build")
    r = execute(make_cfg("arch=backbone", f"arch.model=file:{six}", "arch.input_size=32", "layer=logits"),
                tmp_path / "5")
    assert r["status"] == "ok" and r["metrics"]["feature_dim"] == 6
    import numpy as np

    assert np.load(cache_dir / "features" / r["keys"]["features"] / "train" / "classifier.npy").shape[1] == 6


def test_bad_input_is_one_line(make_cfg, cache_dir, tmp_path):
    from src.models.external import save_checkpoint
    from tests.fixtures.tiny import build

    with pytest.raises(ConfigError, match=r"arch.model=resnt18 is not a timm model; nearest: resnet18"):
        validate(make_cfg("arch=timm", "arch.model=resnt18"))
    with pytest.raises(ConfigError, match=r"layer='conv9' does not exist in arch=module .*valid layers: .*stem"):
        validate(make_cfg(*MODULE, "layer=conv9"))
    with pytest.raises(ConfigError, match=r"depth:<fraction> with 0 < fraction <= 1"):
        validate(make_cfg(*MODULE, "layer=depth:1.5"))
    with pytest.raises(ConfigError, match=r"arch.aliases.top=head.nine is neither a graph node nor a module of "):
        validate(make_cfg(*MODULE, "arch.aliases={top: head.nine}", "layer=top"))
    plan = validate(make_cfg(*MODULE, "arch.aliases={top: stem}", "layer=top"))  # a module: its output node
    assert plan.tap == output_node("stem", [n for n in plan.spec.vocab]) and plan.tap in plan.spec.always_tapped()
    with pytest.raises(ConfigError, match=r"pooling=cls .* applies to token outputs only"):
        validate(make_cfg(*MODULE, "layer=depth:1.0", "pooling=cls"))
    other = tmp_path / "other.safetensors"
    save_checkpoint(torch.nn.Sequential(torch.nn.Linear(3, 4)), other, "module:x:y")
    with pytest.raises(ConfigError, match=r"does not fit module:tests.fixtures.tiny:build \(missing keys: "
                                          r"stem.conv.weight, .* \(\+\d+ more\); unexpected keys: 0.bias, 0.weight\)"):
        validate(make_cfg(*MODULE, f"arch.weights={other}"))
    good = tmp_path / "w.safetensors"
    save_checkpoint(build(), good, "module:tests.fixtures.tiny:build")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ConfigError, match=r"corrupt.safetensors is not a readable safetensors file"):
        validate(make_cfg(*MODULE, f"arch.weights={corrupt}"))
    with pytest.raises(ConfigError, match=r"arch.input_size is required for arch=module"):
        validate(make_cfg("arch=module", "arch.builder=tests.fixtures.tiny:build"))
    # From the command line: one line, exit 1, nothing run.
    out = run_cli("arch=timm", "arch.model=vit_tiny_patch16_22")
    assert out.returncode == 1 and out.stderr.strip().splitlines()[-1].startswith(
        "error: arch.model=vit_tiny_patch16_22 is not a timm model; nearest: vit_tiny_patch16_224")


def test_library_weights_are_never_downloaded(make_cfg, cache_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(ConfigError, match=r"pretrained weights of timm's resnet18 are not in the Hugging Face cache"):
        execute(make_cfg(*RESNET, "arch.weights=pretrained", "layer=depth:1.0"), tmp_path / "a")
    with pytest.raises(ConfigError, match=r"pretrained weights of torchvision's mobilenet_v3_small not found at"):
        execute(make_cfg("arch=torchvision", "arch.model=mobilenet_v3_small", "arch.weights=pretrained",
                         "layer=depth:1.0"), tmp_path / "b")
    assert not (tmp_path / "hf").exists() or not any((tmp_path / "hf").rglob("*.safetensors"))


# --- real images: CIFAR-10 JPEGs through timm nets -------------------------------------------------------------


def cifar_target(cifar_dir, classes="[cat,dog,ship]", per_class=20) -> list[str]:
    return ["target=imagefolder", f"target.root={cifar_dir}", f"target.data.classes={classes}",
            f"target.data.max_per_class={per_class}", "target.data.max_test_per_class=10", "source.image_size=32"]


def test_timm_nets_on_cifar(cifar_dir, make_cfg, cache_dir, tmp_path):
    """A timm ResNet-18 and ViT-tiny at random init and from checkpoints (.pth and .safetensors) on real images: a
    depth: sweep and a named layer from one extraction, the class token and the token mean, fine-tuning `last`,
    the estimators and the probe."""
    from src.models.refs import parse_reference
    from src.models.external import build, save_checkpoint

    target = cifar_target(cifar_dir) + SMALL_BATCH
    scores = {}
    for layer in ("depth:0.25", "depth:0.5", "depth:1.0", "layer3.1.act2", "pre_logits"):
        r = execute(make_cfg(*RESNET, *target, f"layer={layer}", tiny="source"), tmp_path / f"r-{layer}")
        assert r["status"] == "ok" and r["cache"]["features_hit"] is (layer != "depth:0.25")
        scores[layer] = r["metrics"]["target_score"]
        assert {"logme", "nce"} <= set(r["metrics"]["transferability"])
    assert validate(make_cfg(*RESNET, "layer=depth:0.75")).tap == "layer3.1.act2"  # the same block as the name
    assert scores["layer3.1.act2"] > 1 / 3  # chance: 1/3
    for pooling in ("cls", "avg"):
        r = execute(make_cfg(*VIT, *target, "layer=depth:1.0", f"pooling={pooling}", tiny="source"),
                    tmp_path / f"vit-{pooling}")
        assert r["status"] == "ok" and r["metrics"]["feature_dim"] == 192
    # Checkpoints the test saves first: the same weights as .pth and .safetensors give the same features.
    torch.manual_seed(3)
    net = build(parse_reference("timm:resnet18"), {})
    keys = []
    for suffix in (".pth", ".safetensors"):
        path = save_checkpoint(net, tmp_path / f"r18{suffix}", "timm:resnet18")
        r = execute(make_cfg(*RESNET, *target, f"arch.weights={path}", "layer=depth:1.0", tiny="source"),
                    tmp_path / f"ckpt{suffix}")
        keys.append(r["keys"]["features"])
        feats = cache_dir / "features" / r["keys"]["features"] / "train" / "layer4.1.act2.avg.npy"
        assert feats.exists()
    assert keys[0] != keys[1]  # keyed by content: the two files differ in format, so in bytes
    tuned = execute(make_cfg(*RESNET, *target, f"arch.weights={tmp_path / 'r18.pth'}", "layer=pre_logits",
                             "finetune=last", "finetune.epochs=1", tiny="source"), tmp_path / "tuned")
    assert tuned["status"] == "ok" and tuned["cache"]["finetune_hit"] is False
    assert json.loads((tmp_path / "tuned" / "result.json").read_text())["metrics"]["target_score"] >= 0


def test_model_selection_study_on_cifar(cifar_dir, cache_dir, tmp_path):
    """experiment=model_selection over 3 backbones (a timm net at random init, the user's module, a checkpoint
    that names its model) on a 3-class CIFAR subset, in one command: one job per backbone and the report's
    ranking with each estimator's weighted tau, its interval and time."""
    from src.models.external import save_checkpoint
    from tests.fixtures.tiny import build

    torch.manual_seed(5)
    ckpt = save_checkpoint(build(), tmp_path / "mine.safetensors", "module:tests.fixtures.tiny:build")
    sweep = tmp_path / "sweep"
    out = run_cli("experiment=model_selection", "target=imagefolder", f"target.root={cifar_dir}",
                  "target.data.classes=[cat,dog,ship]", "target.data.max_per_class=24",
                  "target.data.max_test_per_class=12", "source.image_size=32", "arch.input_size=32",
                  f"arch.models=[timm:resnet18,module:tests.fixtures.tiny:build,file:{ckpt}]",
                  "trainer.num_threads=1", f"hydra.sweep.dir={sweep}")
    assert out.returncode == 0, out.stderr[-3000:]
    jobs = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/result.json"))]
    assert [j["status"] for j in jobs] == ["ok"] * 3
    assert sorted(j["factors"]["model"] for j in jobs) == sorted(
        ["timm:resnet18", "module:tests.fixtures.tiny:build", f"module:tests.fixtures.tiny:build@{ckpt}"])
    analysis = json.loads((sweep / "report" / "analysis.json").read_text())
    sel = analysis["model_selection"]["imagefolder"]
    assert [r["rank"] for r in sel["backbones"]] == [1, 2, 3] and sel["test_images"] == 36
    scores = [r["probe score"] for r in sel["backbones"]]
    assert scores == sorted(scores, reverse=True)
    logme = next(r for r in sel["estimators"] if r["estimator"] == "logme")
    assert -1 <= logme["95% CI low"] <= logme["weighted tau"] <= logme["95% CI high"] <= 1
    assert logme["median s per backbone"] > 0 and 0 <= logme["top-1 agreement"] <= 1
    assert "Model selection: backbones ranked on the target" in (sweep / "report" / "report.md").read_text()


def test_models_list_becomes_one_job_per_backbone(tmp_path):
    from src.argv import prepare

    (tmp_path / "a b").mkdir()
    ckpt = tmp_path / "a b" / "x.safetensors"  # a space in the path: quoted for Hydra's sweep
    ckpt.write_bytes(b"")
    argv = prepare(["experiment=model_selection", "target=imagefolder", f"arch.models=[timm:resnet18,file:{ckpt}]"], {})
    assert argv[-1] == f"arch.model='timm:resnet18','file:{ckpt}'" and "hydra.mode=MULTIRUN" in argv
    with pytest.raises(ConfigError, match="drop arch.model="):
        prepare(["arch.models=[timm:resnet18]", "arch.model=timm:vgg11"], {})


def test_models_are_described_on_the_meta_device_as_on_the_cpu():
    """A model is described (nodes, shapes, blocks, head, parameters) without initialising or running its weights:
    built and traced on the meta device, with the description the CPU gives. A net whose constructor needs tensor
    values cannot be built there and is described on the CPU."""
    from src.models import external
    from src.models.refs import Ref

    meta, cpu = torch.device("meta"), torch.device("cpu")
    for ref, cfg in [(Ref("torchvision", "alexnet", None), {}),
                     (Ref("module", "tests.fixtures.tiny:build", None), {"input_size": 32})]:
        desc = external.describe_on(ref, cfg, meta)
        assert desc == external.describe_on(ref, cfg, cpu) and desc["nodes"], ref
    ref, cfg = Ref("module", "tests.fixtures.tiny:build_scheduled", None), {"input_size": 32}
    with pytest.raises(RuntimeError, match="meta"):
        external.describe_on(ref, cfg, meta)
    assert external.describe_model(ref, cfg) == external.describe_on(ref, cfg, cpu)
    assert torch.zeros(1).device == cpu  # the meta device's scope ended


def test_validation_reads_the_cached_description_without_torch(make_cfg, cache_dir, tmp_path):
    from src.models.external import save_checkpoint
    from tests.fixtures.tiny import build

    weights = save_checkpoint(build(), tmp_path / "w.safetensors", "module:tests.fixtures.tiny:build")
    overrides = [*MODULE, f"arch.weights={weights}", "layer=depth:1.0"]
    validate(make_cfg(*overrides))  # describes the model once, into the cache dir
    assert len(list((cache_dir / "models").glob("*.json"))) == 1
    code = ("import sys\nfrom tests.conftest import compose_tiny\nfrom src.check import validate\n"
            f"plan = validate(compose_tiny(*{overrides!r}))\n"
            "print(plan.tap, 'TORCH' if 'torch' in sys.modules else 'NO_TORCH')")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["stages.2.pool", "NO_TORCH"]


def test_l2_norm_is_exact_at_the_scale_of_an_untrained_deep_net():
    """A random-init deep net's float32 features can be ~1e-10; scikit-learn's Normalizer takes such rows for
    zero and leaves them unnormalised. norm=l2 gives the same directions at any scale."""
    import numpy as np
    from sklearn.preprocessing import Normalizer

    from src.probe.transforms import ScaleFreeNormalizer

    x = np.random.default_rng(0).normal(size=(50, 16)).astype(np.float32)
    x[3] = 0.0
    unit = ScaleFreeNormalizer().transform(x)
    tiny = ScaleFreeNormalizer().transform(x * np.float32(1e-10))
    np.testing.assert_allclose(tiny, unit, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.linalg.norm(unit[[0, 1, 2, 4]], axis=1), 1, rtol=1e-5)
    assert not np.any(unit[3]) and tiny.dtype == np.float32
    assert np.abs(Normalizer().transform(x * np.float32(1e-10))).max() < 1e-8  # what the plain one leaves


def test_l2_norm_of_ordinary_features_is_scikit_learns():
    import numpy as np
    from sklearn.preprocessing import Normalizer

    from src.probe.transforms import ScaleFreeNormalizer

    x = np.random.default_rng(1).normal(size=(40, 8)).astype(np.float32)
    assert np.array_equal(ScaleFreeNormalizer().transform(x), Normalizer().transform(x))


def test_a_library_net_ended_from_outside_records_what_its_plan_decides(make_cfg, tmp_path):
    """A job a scheduler ended (or whose dependency never came) has no plan of its own: its record is still that of
    a library net (no source, no width), not the source and width its config happens to carry."""
    from src.main import record_unfinished
    from src.record import NOT_TRAINED_HERE

    record_unfinished(make_cfg(*MODULE, "layer=depth:1.0"), tmp_path / "killed", "ended by the scheduler")
    killed = json.loads((tmp_path / "killed" / "result.json").read_text())
    assert killed["status"] == "failed" and killed["error"]["type"] == "JobEnded"
    assert killed["factors"]["source"] == NOT_TRAINED_HERE and killed["factors"]["width"] is None
    assert killed["factors"]["model"] == "module:tests.fixtures.tiny:build"
    # A config that fails its check still records its values as given.
    record_unfinished(make_cfg(*MODULE, "layer=conv9"), tmp_path / "bad", "ended")
    assert json.loads((tmp_path / "bad" / "result.json").read_text())["factors"]["width"] == "tiny"  # (the tiny test config's)
