"""Dense backbones: output stride, torchvision's dilation convention, multi-grid, going deeper."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.models import mobilenet_v3_large, resnet50

from deeplab_edu.models import build_backbone
from deeplab_edu.models.pretrained import PretrainedWeightsUnavailable, load_pretrained_state_dict


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _conv_geometry(module: nn.Module) -> list[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    return [(m.stride, m.dilation, m.padding) for m in module.modules() if isinstance(m, nn.Conv2d)]


@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_resnet_matches_torchvision_replace_stride_with_dilation(output_stride: int) -> None:
    flags = [False, output_stride <= 8, output_stride <= 16]
    ref = resnet50(weights=None, replace_stride_with_dilation=flags)
    ours = build_backbone("resnet50", output_stride=output_stride)
    ref_convs = _conv_geometry(nn.Sequential(ref.conv1, ref.layer1, ref.layer2, ref.layer3, ref.layer4))
    assert _conv_geometry(ours) == ref_convs


@pytest.mark.parametrize("output_stride", [16, 32])
def test_mobilenet_matches_torchvision(output_stride: int) -> None:
    ref = mobilenet_v3_large(weights=None, dilated=output_stride == 16)
    assert _conv_geometry(build_backbone("mobilenet_v3_large", output_stride=output_stride)) == _conv_geometry(
        ref.features
    )


@pytest.mark.parametrize(
    "name,size,output_stride,expected",
    [
        ("resnet50", 65, 8, 9),
        ("resnet50", 65, 16, 5),
        ("resnet50", 65, 32, 3),
        ("resnet50", 33, 16, 3),
        ("mobilenet_v3_large", 47, 8, 6),
        ("mobilenet_v3_large", 47, 16, 3),
        ("vgg16", 37, 8, 5),
    ],
)
def test_feature_sizes_on_odd_inputs(name: str, size: int, output_stride: int, expected: int) -> None:
    bb = build_backbone(name, output_stride=output_stride).eval()
    with torch.no_grad():
        feats = bb(torch.rand(1, 3, size, size + 2))
    assert feats["out"].shape[1] == bb.out_channels
    assert feats["low_level"].shape[1] == bb.low_level_channels
    assert feats["aux"].shape[1] == bb.aux_channels
    # each stride-2 layer maps n -> ceil(n / 2)
    n = size
    for _ in range({8: 3, 16: 4, 32: 5}[output_stride]):
        n = (n + 1) // 2
    assert n == expected and feats["out"].shape[-2] == expected
    assert feats["low_level"].shape[-2] == (((size + 1) // 2) + 1) // 2
    assert bb.output_stride == output_stride


def test_multi_grid_and_going_deeper_rates() -> None:
    bb = build_backbone("resnet50", output_stride=16, multi_grid=(1, 2, 4), extra_blocks=3)
    rates = bb.block_rates()
    assert rates[3] == (2, 4, 8)  # DeepLabv3 sec. 3.2: 2 * (1, 2, 4)
    assert rates[4:] == [(4, 8, 16), (8, 16, 32), (16, 32, 64)]  # blocks 5-7 double the rate
    bb.set_output_stride(8)
    assert bb.block_rates()[3] == (4, 8, 16)
    plain = build_backbone("resnet50", output_stride=8)
    assert plain.block_rates()[2:] == [(1, 2, 2, 2, 2, 2), (2, 4, 4)]  # torchvision's convention


@pytest.mark.parametrize("name", ["resnet50", "mobilenet_v3_large"])
def test_set_output_stride_equals_fresh_build(name: str) -> None:
    torch.manual_seed(0)
    bb = build_backbone(name, output_stride=16).eval()
    fresh = build_backbone(name, output_stride=8).eval()
    fresh.load_state_dict(bb.state_dict())
    bb.set_output_stride(8)
    x = torch.rand(1, 3, 41, 41)
    with torch.no_grad():
        torch.testing.assert_close(bb(x)["out"], fresh(x)["out"])
    bb.set_output_stride(32)
    assert bb(x)["out"].shape[-1] == 2


def test_train_mode_backward_batch_one() -> None:
    bb = build_backbone("mobilenet_v3_large", output_stride=8).train()
    feats = bb(torch.rand(1, 3, 35, 35))
    (feats["out"].mean() + feats["low_level"].mean()).backward()
    assert all(p.grad is not None for p in bb.parameters() if p.requires_grad)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"name": "no_such_backbone"}, "unknown backbone"),
        ({"name": "resnet50", "output_stride": 4}, "output_stride"),
        ({"name": "vgg16", "output_stride": 16}, "output_stride"),
        ({"name": "resnet50", "multi_grid": (1, 2)}, "multi_grid"),
        ({"name": "resnet50", "extra_blocks": 4}, "extra_blocks"),
        ({"name": "mobilenet_v3_large", "multi_grid": (1, 2, 4)}, "ResNet"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict, match: str) -> None:
    name = kwargs.pop("name")
    with pytest.raises(ValueError, match=match):
        build_backbone(name, **kwargs)


def test_vgg_largefov_decimates_imagenet_fc_layers() -> None:
    from torchvision.models import vgg16

    torch.manual_seed(0)
    ref = vgg16(weights=None)
    bb = build_backbone("vgg16", pretrained=False)
    bb.load_torchvision_state_dict(ref.state_dict())
    w6 = ref.classifier[0].weight.reshape(4096, 512, 7, 7)
    torch.testing.assert_close(bb.fc6.weight, w6[::4, :, ::3, ::3])
    assert bb.fc6.dilation == (12, 12) and bb.fc7.weight.shape == (1024, 1024, 1, 1)
    torch.testing.assert_close(bb.features[0].weight, ref.features[0].weight)
    state = ref.state_dict()
    state["classifier.3.weight"] = state["classifier.3.weight"][:1000]  # a VGG-16 trained for 1000 outputs at fc7
    with pytest.raises(ValueError, match=r"does not fit torchvision's vgg16: \{'classifier.3.weight': \(1000, 4096\)"):
        bb.load_torchvision_state_dict(state)


def test_pretrained_from_local_file(tmp_path) -> None:
    torch.manual_seed(0)
    ref = mobilenet_v3_large(weights=None)
    path = tmp_path / "mnv3.pth"
    torch.save({"state_dict": ref.state_dict()}, path)
    bb = build_backbone("mobilenet_v3_large", pretrained=str(path))
    torch.testing.assert_close(bb.features[0][0].weight, ref.features[0][0].weight)
    with pytest.raises(FileNotFoundError, match="pretrained_backbone"):
        build_backbone("resnet50", pretrained=str(tmp_path / "missing.pth"))


def test_unreadable_or_foreign_weights_fail_with_a_short_message(tmp_path) -> None:
    junk = tmp_path / "junk.pth"
    junk.write_text("junk\n")
    with pytest.raises(ValueError, match=r"pretrained_backbone='.*junk.pth' is not a weights file torch.load can read"):
        build_backbone("mobilenet_v3_large", pretrained=str(junk))
    foreign = tmp_path / "foreign.pth"
    torch.save({"foo": torch.zeros(1)}, foreign)
    with pytest.raises(ValueError) as info:
        build_backbone("mobilenet_v3_large", pretrained=str(foreign))
    msg = str(info.value)
    assert "does not fit it (0 of" in msg and "unexpected: foo" in msg and "more" in msg and len(msg) < 600


def test_pretrained_offline_fails_with_instructions(offline_torch_hub: Path) -> None:
    """No network: an empty torch hub and sockets that refuse to connect."""
    tmp_path = offline_torch_hub
    with pytest.raises(PretrainedWeightsUnavailable) as info:
        load_pretrained_state_dict("resnet50", True, progress=False)
    msg = str(info.value)
    assert "offline" in msg and "pretrained_backbone='/path/to/" in msg and str(tmp_path) in msg
    assert "--pretrained-backbone /path/to/resnet50-" in msg  # the command-line form too
    assert not list(tmp_path.rglob("*.pth"))


def test_pretrained_download_into_a_read_only_cache_is_not_called_offline(offline_torch_hub: Path) -> None:
    """An audit: any OSError of the download (socket.error is OSError) was reported as "You are probably offline",
    also a read-only TORCH_HOME or a full disk. Those now name the cache folder and the error."""
    import errno
    from types import SimpleNamespace

    from deeplab_edu.models.pretrained import download_state_dict

    def refuse(**kwargs: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(offline_torch_hub / "hub"))

    weights = SimpleNamespace(url="https://download.pytorch.org/models/resnet50-0676ba61.pth", get_state_dict=refuse)
    with pytest.raises(PretrainedWeightsUnavailable) as info:
        download_state_dict(weights, "the ImageNet weights of resnet50", "pretrained_backbone", progress=False)
    msg = str(info.value)
    assert "offline" not in msg and "Read-only file system" in msg, msg
    assert f"cache folder {offline_torch_hub / 'hub' / 'checkpoints'}" in msg and "TORCH_HOME" in msg, msg
