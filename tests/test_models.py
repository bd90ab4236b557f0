import itertools

import pytest
import torch

from src.features.extract import pool_conv
from src.models.nets import build_model
from src.models.registry import ARCHS, arch_spec
from src.models.spec import POOLINGS

FAMILY_DEPTHS = {a.name: a.depths for a in ARCHS.values() if not a.pretrained}

WIDTHS = {"tiny": 0.125, "small": 0.25, "medium": 0.5, "large": 1.0}
COMBOS = [(f, d, w) for f, depths in FAMILY_DEPTHS.items() for d, w in itertools.product(depths, WIDTHS)]


@pytest.mark.parametrize("family,depth,width", COMBOS)
def test_every_arch_width_depth_builds_and_taps_with_expected_dims(family, depth, width):
    spec = arch_spec(family, depth, WIDTHS[width], num_classes=7)
    if family != "resnet":
        assert len(spec.convs) == depth - 3
    model = build_model(spec).eval()
    from torchvision.models.feature_extraction import create_feature_extractor

    fx = create_feature_extractor(model, return_nodes={n: t for t, n in spec.nodes.items()})
    with torch.inference_mode():
        outs = fx(torch.randn(2, 3, 32, 32))
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    for layer in spec.taps():
        tap = spec.resolve(layer)
        value = outs[tap]
        if spec.is_conv(tap):
            pooled = pool_conv(value)
            for pooling, arr in pooled.items():
                assert arr.shape == (2, spec.tap_dim(layer, pooling)), (layer, pooling)
            # spp's first block is the global max over the whole map
            c = spec.tap_dim(layer, "max")
            assert torch.equal(pooled["spp"][:, :c], value.amax((2, 3)))
        else:
            assert value.shape == (2, spec.tap_dim(layer))


def test_width_scales_channels_and_fc_units():
    small, medium = arch_spec("alexnet", None, 0.25, 10), arch_spec("alexnet", None, 0.5, 10)
    assert [c.out_channels * 2 for c in small.convs] == [c.out_channels for c in medium.convs]
    assert small.fc_units * 2 == medium.fc_units
    assert medium.tap_dim("conv_last", "spp") == 5 * medium.tap_dim("conv_last", "avg")


def test_vocabulary_and_errors_list_valid_choices():
    spec = arch_spec("vgg", 16, 0.25, 10)
    assert spec.taps()[:2] == ["conv1", "conv2"] and spec.resolve("conv_last") == "conv13"
    from src.models.registry import layer_order  # the report's layer ordinal: input side first, every arch

    order = layer_order()
    assert [order.index(t) for t in spec.taps()] == sorted(order.index(t) for t in spec.taps())
    with pytest.raises(ValueError, match="valid layers: conv1, .*conv13, conv_last, fc6, fc7, fc8"):
        spec.resolve("conv14")
    with pytest.raises(ValueError, match="valid depths: 8, 11, 13, 16, 19"):
        arch_spec("vgg", 12, 0.25, 10)
    with pytest.raises(ValueError, match="valid archs: alexnet, vgg, resnet, timm, torchvision, module, backbone"):
        arch_spec("lenet", None, 0.25, 10)
    assert set(POOLINGS) == {"avg", "max", "spp", "cls"}


def test_min_input_size():
    assert arch_spec("vgg", 11, 0.125, 3).min_input == 32
    assert arch_spec("alexnet", None, 0.125, 3).min_input == 8


def test_resnet_vocabulary_and_depths():
    spec = arch_spec("resnet", 18, 0.25, 10)
    assert spec.taps() == ["stage1", "stage2", "stage3", "stage4", "pool", "logits"]
    assert spec.stages == ((16, 2), (32, 2), (64, 2), (128, 2))
    assert spec.tap_dim("pool") == 128 and spec.tap_dim("stage4", "spp") == 640
    assert sum(isinstance(m, torch.nn.Conv2d) for m in build_model(spec).modules()) == 1 + 16 + 3
    with pytest.raises(ValueError, match="valid layers: stage1, stage2, stage3, stage4, pool, logits"):
        spec.resolve("fc7")
