"""Sources users bring: torchvision ImageNet weights (the tv_* presets; faked locally) and ImageFolder trees (real
CIFAR-10 JPEGs)."""

import json

import numpy as np
import pytest
import torch
import torchvision

from src.main import execute
from tests.conftest import TINY_TARGET, run_cli

TV_TINY_TARGET = ["target.data.num_classes=3", "target.data.train_per_class=8", "target.data.val_per_class=4",
                  "target.data.test_per_class=8", "trainer.extract_batch_size=32"]


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home"


def test_tv_alexnet_preset_reads_torch_hubs_cache_and_taps_the_papers_names(torch_home, make_cfg, tmp_path):
    """arch=tv_alexnet is arch=torchvision with model, weights=pretrained and the paper's layer names set: it reads
    torchvision's file from torch hub's cache and prepares inputs as the weights' own transform does."""
    from src.check import validate
    from src.models.external import load, preprocess, weights_file

    torch.manual_seed(0)
    state = torchvision.models.alexnet(weights=None).state_dict()
    tv = ["source=imagenet_torchvision", "arch=tv_alexnet", "source.image_size=32", *TV_TINY_TARGET]
    spec = validate(make_cfg(*tv, "layer=conv_last", tiny=False)).spec
    path = torch_home / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    assert weights_file(spec) == path
    assert torch.equal(load(spec).features[0].weight, state["features.0.weight"])
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    want = torchvision.models.AlexNet_Weights.DEFAULT.transforms(antialias=True)(x.float() / 255.0)
    assert torch.allclose(preprocess(spec)(x), want, atol=1e-4)  # resize 256, centre crop 224, ImageNet mean/std

    r = execute(make_cfg(*tv, "layer=conv_last", tiny=False), tmp_path / "run")
    assert r["metrics"]["feature_dim"] == 256 and r["metrics"]["source_val_acc"] is None
    assert r["cache"]["source_hit"] is True  # nothing to train
    r2 = execute(make_cfg(*tv, "layer=fc7", tiny=False), tmp_path / "run2")
    assert r2["cache"]["features_hit"] and r2["metrics"]["feature_dim"] == 4096


def test_tv_resnet50_and_vgg16_presets_map_the_papers_names_onto_torchvisions_modules(make_cfg):
    from src.check import validate
    from src.models.external import feature_extractor, load

    for arch, dims in (
            ("tv_resnet50", {"stage1": 256, "stage4": 2048, "pool": 2048, "logits": 1000}),
            ("tv_vgg16", {"conv1": 64, "conv13": 512, "conv_last": 512, "fc6": 4096, "fc7": 4096, "fc8": 1000})):
        # Random init (arch.weights=null): the taps are the modules' names and widths, whatever the weights; the
        # weights' paths (torch hub's cache, a file) are the tv_alexnet case's and tests/test_backbones.py's.
        spec = validate(make_cfg(f"arch={arch}", "arch.weights=null", "layer=pool" if "resnet" in arch else
                                 "layer=fc7")).spec
        named = {spec.resolve(t): t for t in dims}  # node -> one of its names (conv_last names conv13's node)
        fx = feature_extractor(load(spec), named, spec)
        with torch.inference_mode():
            out = fx(torch.randn(1, 3, 64, 64))
        for tap, dim in dims.items():  # the aliases' dims are torchvision's modules' output widths
            assert spec.tap_dim(tap) == dim and out[named[spec.resolve(tap)]].shape[1] == dim, (arch, tap)
    # conv_last is the last conv layer (its ReLU, before the final max pool), as in the families trained here.
    for arch, last in (("tv_vgg16", "conv13"), ("tv_alexnet", "conv5")):
        spec = validate(make_cfg(f"arch={arch}", "arch.weights=null", "layer=fc7")).spec
        assert spec.resolve("conv_last") == spec.resolve(last)
    assert validate(make_cfg("arch=alexnet", "layer=conv_last")).spec.resolve("conv_last") == "conv5"


@pytest.mark.slow
def test_missing_weights_fail_fast_with_where_it_looked(torch_home, tmp_path):
    r = run_cli("source=imagenet_torchvision", "arch=tv_resnet50", "layer=pool", f"hydra.run.dir={tmp_path}",
                env={"TORCH_HOME": str(torch_home), "TRANSFER_CACHE_DIR": str(tmp_path / "c")}, timeout=300)
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: pretrained weights of torchvision's resnet50 not found at ")
    assert str(torch_home / "hub" / "checkpoints") in last and "arch.download=true" in last


def test_the_pretrained_source_needs_a_pretrained_arch(make_cfg):
    from src.check import ConfigError, validate

    with pytest.raises(ConfigError, match="source=imagenet_torchvision trains nothing and needs a pretrained arch; "
                                          "valid: timm, torchvision, module, backbone"):
        validate(make_cfg("source=imagenet_torchvision", tiny=False))


def test_imagefolder_target_on_real_cifar10(cifar_dir, make_cfg, tmp_path):
    from src.data.tasks import load_target

    data = {"task": "imagefolder", "root": str(cifar_dir), "classes": ["airplane", "cat", "ship"],
            "max_per_class": 30, "max_test_per_class": 20, "val_fraction": 0.2, "seed": 0}
    splits = load_target(data, image_size=32)
    assert splits["train"][0].shape == (72, 3, 32, 32) and splits["val"][0].shape == (18, 3, 32, 32)
    assert splits["test"][0].shape == (60, 3, 32, 32) and splits["test"][0].dtype == np.uint8
    assert np.bincount(splits["test"][1]).tolist() == [20, 20, 20]
    cfg = make_cfg("target=imagefolder", f"target.root={cifar_dir}", "target.data.max_per_class=30",
                   "target.data.max_test_per_class=20", "target.data.classes=[airplane,cat,ship]", tiny="source")
    r = execute(cfg, tmp_path)
    # Features of a tiny net trained on synthetic shapes still tell airplanes, cats and ships apart: 0.55-0.62 over
    # seeds 0-3 (chance 1/3, 60 test images).
    assert r["metrics"]["target_score"] >= 1 / 3 + 0.1
    assert json.loads((tmp_path / "result.json").read_text())["factors"]["target"] == "imagefolder"


def test_imagefolder_source_with_class_subset(cifar_dir, make_cfg, cache_dir, tmp_path):
    """A source net trained on an ImageFolder tree's class subset learns from it: its recorded val accuracy is the
    last snapshot's own accuracy on the tree's held-out val images, computed here, and above chance (0.53-0.63 over
    seeds 0-3 after 10 epochs; chance 1/3, 30 val images)."""
    from src.check import ConfigError, validate
    from src.data.tasks import load_source
    from src.models.registry import get_arch

    small = ["width=tiny", "source.epochs=10", "trainer.optim.batch_size=32", *TINY_TARGET]
    cfg = make_cfg("source=imagefolder", f"source.root={cifar_dir / 'train'}", "source.classes=[dog,frog,truck]",
                   "source.max_per_class=40", "source.val_per_class=10", *small, tiny=False)
    r = execute(cfg, tmp_path)
    assert r["cache"]["source_hit"] is False
    plan = validate(cfg)
    impl = get_arch(plan.spec.family).torch()
    model = impl.load(plan.spec, cfg.source, cache_dir / "source" / r["keys"]["source"] / "snapshot_10.pt").eval()
    x_val, y_val = load_source(cfg.source, seed=int(cfg.seed))["val"]
    assert np.bincount(y_val).tolist() == [10, 10, 10]  # source.val_per_class of each class
    with torch.inference_mode():
        pred = model(impl.preprocess(plan.spec, cfg.source)(torch.from_numpy(x_val))).argmax(1).numpy()
    assert r["metrics"]["source_val_acc"] == pytest.approx((pred == y_val).mean())
    assert r["metrics"]["source_val_acc"] >= 1 / 3 + 0.1
    with pytest.raises(ConfigError, match=r"classes \['unicorn'\] are not in .*valid classes: airplane, automobile"):
        validate(make_cfg("source=imagefolder", f"source.root={cifar_dir / 'train'}", "source.classes=[unicorn]",
                          *small, tiny=False))
