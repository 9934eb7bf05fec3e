"""torchvision's DeepLabv3 weights load into our models and give the same outputs."""

from __future__ import annotations

import pytest
import torch
from torchvision.models import segmentation as tvseg

from deeplab_edu.models.interop import convert_torchvision_state_dict, from_torchvision, torchvision_equivalent

BUILDERS = {
    "resnet50": tvseg.deeplabv3_resnet50,
    "resnet101": tvseg.deeplabv3_resnet101,
    "mobilenet_v3_large": tvseg.deeplabv3_mobilenet_v3_large,
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _randomise_bn(model: torch.nn.Module) -> None:
    """Non-trivial running statistics, so that a BN mapped to the wrong place would show."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def _assert_same_conv_geometry(tv: torch.nn.Module, ours: torch.nn.Module, backbone: str) -> None:
    """Every conv has the same stride, dilation and padding in both models. At this small input the
    ASPP's 3x3 taps at rates 12-36 all fall on padding (chapter 04), so outputs alone could not tell
    a wrong rate; the geometry can."""
    modules = dict(ours.named_modules())
    for name, conv in tv.named_modules():
        if isinstance(conv, torch.nn.Conv2d):
            key = next(iter(convert_torchvision_state_dict({name + ".weight": conv.weight}, backbone)))
            mine = modules[key[: -len(".weight")]]
            assert (mine.stride, mine.dilation, mine.padding) == (conv.stride, conv.dilation, conv.padding), name


@pytest.mark.parametrize("backbone", ["resnet50", "mobilenet_v3_large", pytest.param("resnet101", marks=pytest.mark.slow)])
def test_outputs_match_torchvision(backbone: str) -> None:
    torch.manual_seed(0)
    tv = BUILDERS[backbone](weights=None, weights_backbone=None, num_classes=5, aux_loss=True).eval()
    _randomise_bn(tv)
    ours = from_torchvision(tv)
    assert not ours.training and from_torchvision(tv.train()).training  # the source's mode (a trial: always training)
    tv.eval()
    assert ours.output_stride == (16 if backbone == "mobilenet_v3_large" else 8)
    assert ours.atrous_rates == (12, 24, 36)
    _assert_same_conv_geometry(tv, ours, backbone)
    x = torch.rand(1, 3, 65, 67)
    with torch.no_grad():
        ref, got = tv(x), ours(x)
    for key in ("out", "aux"):
        assert got[key].shape == ref[key].shape
        torch.testing.assert_close(got[key], ref[key], rtol=1e-4, atol=1e-4)


def test_every_parameter_is_mapped() -> None:
    tv = tvseg.deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=3, aux_loss=True)
    ours = torchvision_equivalent("mobilenet_v3_large", num_classes=3, aux_loss=True)
    converted = convert_torchvision_state_dict(tv.state_dict(), "mobilenet_v3_large")
    assert set(converted) == set(ours.state_dict())


def test_wrong_state_dict_is_explained() -> None:
    from deeplab_edu.models.interop import load_torchvision_state_dict

    ours = torchvision_equivalent("mobilenet_v3_large", num_classes=3)
    with pytest.raises(ValueError, match="does not fit"):
        load_torchvision_state_dict(ours, {"backbone.0.0.weight": torch.zeros(1)}, "mobilenet_v3_large")
    with pytest.raises(ValueError, match="torchvision has DeepLabv3"):
        torchvision_equivalent("vgg16")


def test_trained_torchvision_weights_from_a_local_file(tmp_path) -> None:
    from deeplab_edu.models.interop import torchvision_pretrained

    torch.manual_seed(0)
    tv = tvseg.deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21, aux_loss=True).eval()
    path = tmp_path / "deeplabv3_mobilenet_v3_large-fc3c493d.pth"
    torch.save(tv.state_dict(), path)
    ours = torchvision_pretrained("mobilenet_v3_large", path).eval()
    assert ours.aux_classifier is not None
    x = torch.rand(1, 3, 49, 49)
    with torch.no_grad():
        torch.testing.assert_close(ours(x)["out"], tv(x)["out"], rtol=1e-4, atol=1e-4)
    with pytest.raises(FileNotFoundError, match="weights="):
        torchvision_pretrained("mobilenet_v3_large", tmp_path / "missing.pth")


def test_trained_torchvision_weights_offline(offline_torch_hub) -> None:
    from deeplab_edu.models.interop import torchvision_pretrained
    from deeplab_edu.models.pretrained import PretrainedWeightsUnavailable

    with pytest.raises(PretrainedWeightsUnavailable, match="weights='/path/to/deeplabv3_mobilenet_v3_large"):
        torchvision_pretrained("mobilenet_v3_large", progress=False)


def test_load_torchvision_state_dict_reads_the_backbone_from_the_model() -> None:
    from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large

    from deeplab_edu.models.interop import load_torchvision_state_dict, torchvision_equivalent

    tv = deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=3).eval()
    ours = load_torchvision_state_dict(torchvision_equivalent("mobilenet_v3_large", 3), tv.state_dict()).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(ours(x)["out"], tv(x)["out"])


def test_cached_torchvision_pretrained_needs_no_network(offline_torch_hub) -> None:
    from deeplab_edu.models.interop import cached_torchvision_pretrained, torchvision_pretrained_weights
    from deeplab_edu.models.pretrained import torchvision_cache_path

    assert cached_torchvision_pretrained("mobilenet_v3_large") is None  # nothing downloaded: None, no attempt
    torch.manual_seed(0)
    tv = tvseg.deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21, aux_loss=True).eval()
    path = torchvision_cache_path(torchvision_pretrained_weights("mobilenet_v3_large"))
    path.parent.mkdir(parents=True)
    torch.save(tv.state_dict(), path)  # what torchvision's download leaves in $TORCH_HOME/hub/checkpoints
    ours = cached_torchvision_pretrained("mobilenet_v3_large")
    assert ours is not None
    x = torch.rand(1, 3, 49, 49)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x)["out"], tv(x)["out"], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="torchvision has DeepLabv3"):
        cached_torchvision_pretrained("vgg16")


@pytest.mark.parametrize("builder", [tvseg.fcn_resnet50, tvseg.lraspp_mobilenet_v3_large])
def test_another_torchvision_architecture_is_named(builder) -> None:
    """A trial: from_torchvision(fcn_resnet50(...)) said its state dict 'does not fit (321 of 362 names
    match)'; it is not a DeepLabv3, and the message says so."""
    tv = builder(weights=None, weights_backbone=None, num_classes=3)
    with pytest.raises(ValueError, match=f"not a torchvision DeepLabv3 model but a {type(tv).__name__}"):
        from_torchvision(tv)
