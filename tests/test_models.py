"""DeepLab v1/v2/v3/v3+: shapes at any input size, batch size 1, train/eval, forward/backward, rates."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from deeplab_edu.models import ASPP, ASPPv2, ImagePooling, atrous_rates_for, build_model

# (model, backbone, output stride): every model at the output strides its paper uses.
CONFIGS = [
    ("deeplabv1", "vgg16", 8),
    ("deeplabv2", "resnet50", 8),
    ("deeplabv2", "vgg16", 8),
    ("deeplabv3", "resnet50", 16),
    ("deeplabv3", "resnet50", 8),
    ("deeplabv3plus", "resnet50", 16),
    ("deeplabv3plus", "resnet50", 8),
    ("deeplabv3", "mobilenet_v3_large", 16),
    ("deeplabv3plus", "mobilenet_v3_large", 8),
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("name,backbone,output_stride", CONFIGS, ids=lambda v: str(v))
def test_train_and_eval_on_odd_sizes(name: str, backbone: str, output_stride: int) -> None:
    torch.manual_seed(0)
    model = build_model(name, backbone=backbone, num_classes=3, output_stride=output_stride, aux_loss=True)
    assert model.output_stride == output_stride
    # training: batch size 1, odd non-square size, forward and backward
    model.train()
    x = torch.rand(1, 3, 33, 37)
    out = model(x)
    assert out["out"].shape == (1, 3, 33, 37) and out["aux"].shape == (1, 3, 33, 37)
    (out["out"].logsumexp(1).mean() + 0.4 * out["aux"].logsumexp(1).mean()).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad, f"parameters without gradient: {no_grad[:5]}"
    # evaluation: another odd size, batch of 2, deterministic
    model.eval()
    x = torch.rand(2, 3, 29, 41)
    with torch.no_grad():
        a, b = model(x)["out"], model(x)["out"]
    assert a.shape == (2, 3, 29, 41) and torch.isfinite(a).all()
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("size", [(17, 17), (21, 30), (65, 65), (97, 61)])
def test_any_input_size(size: tuple[int, int]) -> None:
    model = build_model("deeplabv3plus", backbone="mobilenet_v3_large", num_classes=2).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, *size))["out"].shape == (1, 2, *size)


def test_paper_rates() -> None:
    assert build_model("deeplabv3plus", backbone="mobilenet_v3_large").atrous_rates == (6, 12, 18)
    assert build_model("deeplabv3", backbone="mobilenet_v3_large", output_stride=8).atrous_rates == (12, 24, 36)
    assert build_model("deeplabv2", backbone="vgg16").atrous_rates == (6, 12, 18, 24)
    assert build_model("deeplabv1").atrous_rates == (12,)
    assert atrous_rates_for(32) == (3, 6, 9)
    with pytest.raises(ValueError, match="integer"):
        atrous_rates_for(32, (5, 10, 15))


def test_settings_a_model_does_not_have_are_refused_and_the_rest_recorded() -> None:
    for kwargs in ({"image_pooling": False}, {"dropout": 0.3}):  # v2 has no ASPP projection: not ignored silently
        with pytest.raises(ValueError, match="settings of the ASPP of deeplabv3/deeplabv3plus; deeplabv2 has none"):
            build_model("deeplabv2", backbone="mobilenet_v3_large", **kwargs)
    model = build_model("deeplabv3", backbone="tiny_resnet", num_classes=4, multi_grid=(1, 2, 4))
    rebuilt = build_model(num_classes=4, **model.build_kwargs)  # what a checkpoint records
    assert rebuilt.build_kwargs == model.build_kwargs and model.build_kwargs["multi_grid"] == [1, 2, 4]
    assert rebuilt.state_dict().keys() == model.state_dict().keys()


def test_set_output_stride_switches_backbone_and_rates() -> None:
    torch.manual_seed(0)
    model = build_model("deeplabv3plus", backbone="mobilenet_v3_large", num_classes=2).eval()
    fresh = build_model("deeplabv3plus", backbone="mobilenet_v3_large", num_classes=2, output_stride=8).eval()
    fresh.load_state_dict(model.state_dict())
    model.set_output_stride(8)
    assert model.output_stride == 8 and model.atrous_rates == (12, 24, 36)
    x = torch.rand(1, 3, 45, 45)
    with torch.no_grad():
        torch.testing.assert_close(model(x)["out"], fresh(x)["out"])
    model.set_output_stride(16)
    assert model.atrous_rates == (6, 12, 18)
    with pytest.raises(ValueError, match="output_stride"):
        model.set_output_stride(4)


def test_image_pooling_batch_one_training_uses_running_statistics() -> None:
    torch.manual_seed(0)
    pool = ImagePooling(8, 4).train()
    pool[2].running_mean.fill_(0.3)
    before = pool[2].running_var.clone()
    x = torch.rand(1, 8, 5, 7, requires_grad=True)
    y = pool(x)  # torchvision's ASPPPooling raises "Expected more than 1 value per channel" here
    assert y.shape == (1, 4, 5, 7)
    assert torch.equal(pool[2].running_var, before) and torch.all(pool[2].running_mean == 0.3)
    expected = pool.eval()(x)
    torch.testing.assert_close(y, expected)
    y.sum().backward()
    assert x.grad is not None and pool[1].weight.grad is not None
    # batches of two or more use ordinary batch statistics
    pool.train()
    y2 = pool(torch.rand(2, 8, 5, 7))
    assert not torch.all(pool[2].running_mean == 0.3) and y2.shape == (2, 4, 5, 7)


def test_torchvision_pooling_really_crashes_at_batch_one() -> None:
    """The trap this project avoids (if torchvision ever fixes it, this test tells us)."""
    from torchvision.models.segmentation.deeplabv3 import ASPPPooling

    with pytest.raises(ValueError, match="more than 1 value per channel"):
        ASPPPooling(8, 4).train()(torch.rand(1, 8, 5, 5))


def test_one_by_one_feature_map_batch_one_training_is_a_clear_error() -> None:
    aspp = ASPP(8, (1, 2, 3), out_channels=4).train()
    with pytest.raises(ValueError, match="1 x 1 feature map with batch size 1"):
        aspp(torch.rand(1, 8, 1, 1))
    assert aspp.eval()(torch.rand(1, 8, 1, 1)).shape == (1, 4, 1, 1)


def test_aspp_v2_sums_its_branch_classifiers() -> None:
    aspp = ASPPv2(16, 3, (1, 2, 3, 4)).eval()
    x = torch.rand(1, 16, 9, 9)
    torch.testing.assert_close(aspp(x), sum(branch(x) for branch in aspp.branches))  # summed class scores
    assert [b[0].dilation[0] for b in aspp.branches] == [1, 2, 3, 4]


def test_aspp_v3_concatenates_five_branches() -> None:
    aspp = ASPP(32, (6, 12, 18), out_channels=16).eval()
    outs = aspp.branch_outputs(torch.rand(1, 32, 9, 11))
    assert len(outs) == 5 and all(o.shape == (1, 16, 9, 11) for o in outs)
    assert aspp.project[0].in_channels == 5 * 16
    assert len(ASPP(32, (6, 12, 18), 16, image_pooling=False).convs) == 4
    sep = ASPP(32, (6, 12, 18), 16, separable=True)
    assert sep.convs[1][0].groups == 32 and sep.atrous_rates == (6, 12, 18)


def test_decoder_reduces_low_level_to_48_channels() -> None:
    model = build_model("deeplabv3plus", backbone="resnet50", num_classes=2)
    assert model.decoder.reduce[0].out_channels == 48
    assert model.decoder.refine[0][-3].out_channels == 256  # pointwise conv of the first separable conv
    plain = build_model("deeplabv3plus", backbone="mobilenet_v3_large", num_classes=2, separable=False)
    assert isinstance(plain.decoder.refine[0][0], nn.Conv2d) and plain.decoder.refine[0][0].kernel_size == (3, 3)


def test_head_is_everything_but_the_backbone() -> None:
    model = build_model("deeplabv3", backbone="mobilenet_v3_large", num_classes=2, aux_loss=True)
    backbone_ids = {id(p) for p in model.backbone.parameters()}
    head = [n for n, p in model.named_parameters() if id(p) not in backbone_ids]
    assert head and all(not n.startswith("backbone.") for n in head)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"name": "deeplabv4"}, ValueError, "unknown model"),
        ({"name": "deeplabv1", "backbone": "resnet50"}, ValueError, "vgg16"),
        ({"name": "deeplabv3", "backbone": "vgg16"}, ValueError, "ResNet"),
        ({"name": "deeplabv3", "backbone": "no_such_backbone"}, ValueError, "unknown backbone"),
        ({"name": "deeplabv3", "num_classes": 0}, ValueError, "num_classes"),
        ({"name": "deeplabv3", "output_stride": 12}, ValueError, "output_stride"),
        ({"name": "deeplabv2", "separable": True}, ValueError, "separable"),
    ],
)
def test_bad_arguments(kwargs: dict, exc: type, match: str) -> None:
    name = kwargs.pop("name")
    with pytest.raises(exc, match=match):
        build_model(name, **kwargs)


def test_bad_input_shape_is_named() -> None:
    model = build_model("deeplabv3", backbone="mobilenet_v3_large", num_classes=2).eval()
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        model(torch.rand(3, 32, 32))


_TINY: dict[str, nn.Module] = {}


def _tiny_model() -> nn.Module:
    if "m" not in _TINY:
        torch.manual_seed(0)
        _TINY["m"] = build_model("deeplabv3plus", backbone="mobilenet_v3_large", num_classes=2).eval()
    return _TINY["m"]


@settings(max_examples=12, deadline=None)
@given(h=st.integers(min_value=9, max_value=90), w=st.integers(min_value=9, max_value=90))
def test_output_matches_any_input_size(h: int, w: int) -> None:
    with torch.no_grad():
        assert _tiny_model()(torch.rand(1, 3, h, w))["out"].shape == (1, 2, h, w)


def test_pretrained_backbone_from_a_local_file_reaches_the_model(tmp_path) -> None:
    from torchvision.models import mobilenet_v3_large

    torch.manual_seed(0)
    ref = mobilenet_v3_large(weights=None)
    path = tmp_path / "mobilenet_v3_large.pth"
    torch.save(ref.state_dict(), path)
    model = build_model("deeplabv3", backbone="mobilenet_v3_large", num_classes=2, pretrained_backbone=path)
    torch.testing.assert_close(model.backbone.features[4].block[1][0].weight, ref.features[4].block[1][0].weight)


def test_pretrained_backbone_offline_message(offline_torch_hub) -> None:
    from deeplab_edu.models.pretrained import PretrainedWeightsUnavailable

    with pytest.raises(PretrainedWeightsUnavailable, match="pretrained_backbone="):
        build_model("deeplabv3", backbone="mobilenet_v3_large", pretrained_backbone=True)


def test_aspp_l_branches_start_from_the_decimated_fc_layers() -> None:
    fc = {
        "fc6.weight": torch.randn(1024, 512, 3, 3), "fc6.bias": torch.randn(1024),
        "fc7.weight": torch.randn(1024, 1024, 1, 1), "fc7.bias": torch.randn(1024),
    }
    aspp = ASPPv2(512, 3, (6, 12), hidden_channels=1024)
    aspp.load_fc_weights(fc)
    for branch in aspp.branches:
        assert torch.equal(branch[0].weight, fc["fc6.weight"]) and torch.equal(branch[3].bias, fc["fc7.bias"])
    assert [b[0].dilation[0] for b in aspp.branches] == [6, 12]  # same weights, different rates
    with pytest.raises(ValueError, match="VGG-style"):
        ASPPv2(16, 3, (1, 2)).load_fc_weights(fc)


def test_at_output_stride_restores_the_stride_also_when_the_block_raises() -> None:
    from deeplab_edu.models import at_output_stride

    model = build_model("deeplabv3", backbone="tiny_resnet", num_classes=3, output_stride=16)
    rates = model.atrous_rates
    with at_output_stride(model, 8):
        assert model.output_stride == 8 and model.atrous_rates == tuple(2 * r for r in rates)
    assert model.output_stride == 16 and model.atrous_rates == rates
    with pytest.raises(RuntimeError, match="inside"):
        with at_output_stride(model, 8):
            raise RuntimeError("inside")
    assert model.output_stride == 16 and model.atrous_rates == rates
    with at_output_stride(model, None), at_output_stride(model, 16):
        assert model.output_stride == 16
    with pytest.raises(ValueError, match="Conv2d cannot change its output stride"):
        with at_output_stride(torch.nn.Conv2d(3, 3, 1), 8):
            pass
    with pytest.raises(ValueError, match="output_stride must be one of"):
        with at_output_stride(model, 12):
            pass
    assert model.output_stride == 16


def test_aspp_checks_its_arguments_when_built() -> None:
    """A negative rate built, then failed at the first forward pass with "negative padding is not
    supported"; in_channels=0 built an empty layer. Each now fails when built, naming the argument."""
    from deeplab_edu.models import ASPP, ASPPv2

    for kwargs, message in ((dict(in_channels=64, atrous_rates=(6, -1, 18)), "atrous_rates must be positive integers"),
                            (dict(in_channels=0), "in_channels must be a positive integer, got 0"),
                            (dict(in_channels=64, out_channels=2.5), "out_channels must be a positive integer"),
                            (dict(in_channels=64, atrous_rates=(6, "12")), "atrous_rates must be positive integers"),
                            (dict(in_channels=64, dropout=1.0), r"dropout is a probability in \[0, 1\)")):
        with pytest.raises(ValueError, match=message):
            ASPP(**kwargs)
    assert ASPP(64, atrous_rates=())(torch.randn(2, 64, 5, 5)).shape == (2, 256, 5, 5)  # the 1x1 (+ pooling) ablation
    import numpy as np

    assert ASPP(64, atrous_rates=(np.int64(2), 4, 6.0)).atrous_rates == (2, 4, 6)  # whole numbers of any kind
    with pytest.raises(ValueError, match="atrous_rates is a sequence of rates"):
        ASPP(64, atrous_rates=6)  # type: ignore[arg-type]
    aspp = ASPP(16)
    with pytest.raises(ValueError, match="must be positive integers"):
        aspp.atrous_rates = (1.5, 2, 3)  # was quietly truncated to 1
    with pytest.raises(ValueError, match="ASPPv2: atrous_rates is empty"):
        ASPPv2(64, 5, ())
    with pytest.raises(ValueError, match="ASPPv2: num_classes must be a positive integer"):
        ASPPv2(64, 0)


def test_a_practitioners_review_of_the_model_api() -> None:
    """A practitioner's review (stop 51): SeparableConv2d built with an even kernel shrank the map and
    with rate 0 or 2.5 failed inside torch; ASPP refused the NumPy rates build_model takes; rates for
    output stride 12 or 4 were computed; a head built for another backbone failed at the first forward
    pass inside a convolution."""
    import numpy as np

    from deeplab_edu.models import ASPP, ASPPv2, Decoder, DeepLabV2, DeepLabV3, DeepLabV3Plus, SeparableConv2d
    from deeplab_edu.models import atrous_rates_for, build_backbone
    from deeplab_edu.models.deeplab import default_atrous_rates

    for kwargs, message in ((dict(kernel_size=2), "kernel_size must be a positive odd integer"),
                            (dict(rate=0), "rate must be a positive integer"),
                            (dict(rate=2.5), "rate must be a positive integer")):
        with pytest.raises(ValueError, match=message):
            SeparableConv2d(8, 8, **kwargs)  # type: ignore[arg-type]
    assert SeparableConv2d(8, 4, rate=2, kernel_size=5)(torch.randn(2, 8, 9, 9)).shape == (2, 4, 9, 9)
    assert ASPP(8, np.array([6, 12, 18])).atrous_rates == (6, 12, 18) == ASPP(8, torch.tensor([6, 12, 18])).atrous_rates
    with pytest.raises(ValueError, match="output_stride must be 1, 2, 4, 8, 16 or 32"):
        atrous_rates_for(12)
    with pytest.raises(ValueError, match="output_stride must be one of 8, 16, 32"):
        default_atrous_rates("deeplabv3", 4)
    backbone = build_backbone("tiny_resnet")
    with pytest.raises(ValueError, match=f"DeepLabV3: the backbone gives {backbone.out_channels} channels but the ASPP takes 2048"):
        DeepLabV3(backbone, ASPP(2048), 5)
    with pytest.raises(ValueError, match="low-level features have .* the decoder's reduction takes 999"):
        DeepLabV3Plus(backbone, ASPP(backbone.out_channels), Decoder(999, 256, 5), 5)
    with pytest.raises(ValueError, match="the ASPP gives 128 channels but the decoder's encoder_channels are 256"):
        DeepLabV3Plus(backbone, ASPP(backbone.out_channels, out_channels=128), Decoder(backbone.low_level_channels, 256, 5), 5)
    with pytest.raises(ValueError, match="the decoder scores 6 channels but the model's num_classes is 5"):
        DeepLabV3Plus(backbone, ASPP(backbone.out_channels), Decoder(backbone.low_level_channels, 256, 6), 5)
    with pytest.raises(ValueError, match="DeepLabV2: the ASPP scores 6 channels"):
        DeepLabV2(backbone, ASPPv2(backbone.out_channels, 6), 5)
    wired = DeepLabV3Plus(backbone, ASPP(backbone.out_channels), Decoder(backbone.low_level_channels, 256, 5), 5)
    assert wired(torch.randn(2, 3, 33, 47))["out"].shape == (2, 5, 33, 47)
    # a built model whose rates cannot follow was told to pass atrous_rates to build_model
    from deeplab_edu.models import at_output_stride, build_model

    odd = build_model("deeplabv3", backbone="tiny_resnet", num_classes=3, atrous_rates=(5, 10, 15))
    with pytest.raises(ValueError, match=r"\(5, 10, 15\) at output stride 16 do not scale .* it can switch to output "
                                         "stride 8, or build it with rates that are multiples of 2"):
        with at_output_stride(odd, 32):
            pass
    assert odd.output_stride == 16 and odd.atrous_rates == (5, 10, 15)
    with pytest.raises(ValueError, match="unknown model 'DeepLabv3\\+' \\(did you mean 'deeplabv3plus'\\?\\)"):
        build_model("DeepLabv3+", num_classes=3)


@pytest.mark.parametrize("name", ["deeplabv2", "deeplabv3", "deeplabv3plus"])
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_whole_models_trace_with_torch_fx(name: str, training: bool) -> None:
    """torch.fx traces a whole model, as it does torchvision's DeepLabV3: forward's input checks (isinstance, dim)
    failed on the Proxy ("expected a tensor of images ..., got Proxy"), and in training ASPP's and image pooling's
    batch-size branches were control flow on a traced value. The traced module computes what the model does."""
    torch.manual_seed(0)
    model = build_model(name, backbone="tiny_resnet", num_classes=5, aux_loss=True).train(training)
    traced = torch.fx.symbolic_trace(model)
    x = torch.randn(2, 3, 40, 44)
    torch.manual_seed(1)  # the same dropout in both
    expected = model(x)
    torch.manual_seed(1)
    got = traced(x)
    assert got.keys() == expected.keys() == {"out", "aux"}
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0)
    with pytest.raises(TypeError, match="expected a tensor of images"):  # eager, the checks still hold
        model([x])


def test_aspp_traces_in_training_mode() -> None:
    """ASPP alone, in training: its check of a 1 x 1 map at batch size 1 was a Python ``if`` on the traced shape."""
    aspp = ASPP(64, (6, 12, 18), dropout=0.0).train()
    traced = torch.fx.symbolic_trace(aspp)
    x = torch.randn(2, 64, 5, 7)
    torch.testing.assert_close(traced(x), aspp(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="1 x 1 feature map with batch size 1"):  # eager, the check still holds
        aspp(torch.randn(1, 64, 1, 1))


def test_create_feature_extractor_reads_a_deeplab_model() -> None:
    """torchvision's create_feature_extractor, built on torch.fx, gives a model's ASPP output (it failed to trace)."""
    from torchvision.models.feature_extraction import create_feature_extractor

    model = build_model("deeplabv3", backbone="tiny_resnet", num_classes=5).eval()
    extractor = create_feature_extractor(model, {"aspp": "aspp", "backbone.layer4": "layer4"})
    x = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        features = extractor(x)
        torch.testing.assert_close(features["aspp"], model.aspp(model.backbone(x)["out"]), rtol=0, atol=0)
    assert features["layer4"].shape[-2:] == (3, 3)  # output stride 16
