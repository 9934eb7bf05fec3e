"""Interoperability with torchvision's DeepLabv3 models (``torchvision.models.segmentation``).

torchvision ships ``deeplabv3_resnet50``, ``deeplabv3_resnet101`` (output stride 8) and
``deeplabv3_mobilenet_v3_large`` (output stride 16), all with ASPP rates (12, 24, 36), dropout 0.5
after the ASPP projection, and one extra 3x3 conv (256, BN, ReLU) before the classifier that the
DeepLabv3 paper (sec. 3.3) does not have. :func:`torchvision_equivalent` builds our model in exactly
that configuration, and :func:`load_torchvision_state_dict` renames torchvision's parameters into it:

==========================  ==========================
torchvision                 deeplab_edu
==========================  ==========================
``backbone.layerN...``      ``backbone.layerN...`` (ResNet)
``backbone.I...``           ``backbone.features.I...`` (MobileNetV3)
``classifier.0...``         ``aspp...``
``classifier.1/2...``       ``refine.0/1...``
``classifier.4...``         ``classifier...``
``aux_classifier...``       ``aux_classifier...``
==========================  ==========================
"""

from __future__ import annotations

import os
import re
from typing import Any, Mapping, Union, cast

import torch
from torch import nn

from .deeplab import DeepLabV3, build_model
from .pretrained import cached_weights, download_state_dict, load_state_dict_file, load_weights_into

__all__ = [
    "TORCHVISION_CONFIGS", "torchvision_equivalent", "convert_torchvision_state_dict", "load_torchvision_state_dict",
    "from_torchvision", "torchvision_pretrained", "torchvision_pretrained_weights", "cached_torchvision_pretrained",
]

#: backbone -> output stride of torchvision's ``deeplabv3_<backbone>``
TORCHVISION_CONFIGS = {"resnet50": 8, "resnet101": 8, "mobilenet_v3_large": 16}


def _check_backbone(backbone: str) -> None:
    if backbone not in TORCHVISION_CONFIGS:
        raise ValueError(f"torchvision has DeepLabv3 for {', '.join(TORCHVISION_CONFIGS)}; got backbone={backbone!r}")


def torchvision_equivalent(backbone: str = "resnet50", num_classes: int = 21, aux_loss: bool = False) -> DeepLabV3:
    """Our DeepLabv3 configured like torchvision's ``deeplabv3_<backbone>`` (random weights).

    Raises:
        ValueError: ``backbone`` is not ``"resnet50"``, ``"resnet101"`` or ``"mobilenet_v3_large"``
            (:data:`TORCHVISION_CONFIGS`).
    """
    _check_backbone(backbone)
    model = build_model(
        "deeplabv3",
        backbone=backbone,
        num_classes=num_classes,
        output_stride=TORCHVISION_CONFIGS[backbone],
        atrous_rates=(12, 24, 36),
        aux_loss=aux_loss,
        torchvision_head=True,
        dropout=0.5,
    )
    assert isinstance(model, DeepLabV3)
    return model


_HEAD_RULES = [
    (re.compile(r"^classifier\.0\."), "aspp."),
    (re.compile(r"^classifier\.1\."), "refine.0."),
    (re.compile(r"^classifier\.2\."), "refine.1."),
    (re.compile(r"^classifier\.4\."), "classifier."),
]


def convert_torchvision_state_dict(state_dict: Mapping[str, torch.Tensor], backbone: str) -> dict[str, torch.Tensor]:
    """Rename the parameters of a torchvision DeepLabv3 state dict to ours (table in the module docstring).

    Raises:
        ValueError: ``backbone`` is not one torchvision builds a DeepLabv3 on (``"resnet50"``,
            ``"resnet101"``, ``"mobilenet_v3_large"``): its names would be mapped wrongly without a word.
    """
    if backbone not in TORCHVISION_CONFIGS:
        raise ValueError(f"backbone must be one of {', '.join(TORCHVISION_CONFIGS)} (torchvision's DeepLabv3 "
                         f"backbones), got {backbone!r}")
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        new = key
        if key.startswith("backbone.") and backbone == "mobilenet_v3_large":
            new = "backbone.features." + key[len("backbone."):]
        for pattern, repl in _HEAD_RULES:
            new = pattern.sub(repl, new)
        out[new] = value
    return out


def load_torchvision_state_dict(model: DeepLabV3, state_dict: Mapping[str, torch.Tensor],
                                backbone: str | None = None) -> DeepLabV3:
    """Load torchvision DeepLabv3 weights into ``model`` (built by :func:`torchvision_equivalent`), strictly.

    ``backbone`` (``"resnet50"``, ``"resnet101"`` or ``"mobilenet_v3_large"``) defaults to the one
    ``model`` is built on.

    Raises:
        ValueError: the weights do not fit (:func:`~deeplab_edu.models.pretrained.load_weights_into`),
            or ``model``'s backbone is none of those three.
    """
    if backbone is None:
        backbone = _backbone_name(model)
    load_weights_into(model, convert_torchvision_state_dict(state_dict, backbone),
                      f"a torchvision-equivalent DeepLabv3-{backbone}")
    return model


def _backbone_name(model: nn.Module) -> str:
    from .backbones import MobileNetV3Backbone, ResNetBackbone, TinyResNetBackbone

    body = getattr(model, "backbone", None)
    if (isinstance(body, ResNetBackbone) and not isinstance(body, TinyResNetBackbone)
            and f"resnet{body.depth}" in TORCHVISION_CONFIGS):  # a ResNet torchvision has a DeepLabv3 on
        return f"resnet{body.depth}"
    if isinstance(body, MobileNetV3Backbone):
        return "mobilenet_v3_large"
    raise ValueError(f"torchvision has no DeepLabv3 on this model's backbone ({type(body).__name__}); "
                     "build the model with torchvision_equivalent()")


def from_torchvision(tv_model: nn.Module) -> DeepLabV3:
    """Our equivalent of a torchvision DeepLabv3 instance, with its weights: the same outputs ``{"out": (N,
    num_classes, H, W)}`` (and ``"aux"`` when it has an auxiliary head) for the same input, returned in
    ``tv_model``'s mode (training or eval), so that its batch norms and dropout act alike.

    Raises:
        ValueError: ``tv_model`` is not torchvision's ``DeepLabV3`` (its FCN and LR-ASPP builders make other
            architectures), its backbone is not recognised (it has neither ``layer4`` nor a child ``16``),
            or its weights do not fit the equivalent model.
    """
    from torchvision.models.segmentation import DeepLabV3 as TorchvisionDeepLabV3

    if not isinstance(tv_model, TorchvisionDeepLabV3):
        raise ValueError(f"not a torchvision DeepLabv3 model but a {type(tv_model).__name__}: from_torchvision takes "
                         "what deeplabv3_resnet50, deeplabv3_resnet101 or deeplabv3_mobilenet_v3_large build")
    body: Any = tv_model.backbone  # torchvision's IntermediateLayerGetter over a ResNet or MobileNetV3
    if hasattr(body, "layer4"):
        backbone = "resnet50" if len(body.layer3) == 6 else "resnet101"
    elif hasattr(body, "16"):
        backbone = "mobilenet_v3_large"
    else:
        raise ValueError(f"not a torchvision DeepLabv3 model: cannot recognise its backbone {type(body).__name__}")
    num_classes = int(cast(nn.Conv2d, cast(nn.Sequential, tv_model.classifier)[-1]).out_channels)
    aux = getattr(tv_model, "aux_classifier", None) is not None
    model = torchvision_equivalent(backbone, num_classes, aux_loss=aux)
    return load_torchvision_state_dict(model, tv_model.state_dict(), backbone).train(tv_model.training)


def torchvision_pretrained(
    backbone: str = "resnet50", weights: Union[bool, str, os.PathLike] = True, *, progress: bool = True
) -> DeepLabV3:
    """torchvision's *trained* DeepLabv3 (COCO images, PASCAL VOC's 21 classes) as this course's model.

    Args:
        backbone: ``"resnet50"``, ``"resnet101"`` or ``"mobilenet_v3_large"``.
        weights: ``True`` downloads torchvision's ``COCO_WITH_VOC_LABELS_V1`` weights once (then
            cached); a path loads a local copy of that file (``torch.load(..., weights_only=True)``).
            Offline without a cached copy, the error says where to put the file.
        progress: show a download progress bar.

    Raises:
        ValueError: ``backbone`` is not ``"resnet50"``, ``"resnet101"`` or ``"mobilenet_v3_large"``
            (:data:`TORCHVISION_CONFIGS`); the file at ``weights`` cannot be read by ``torch.load`` or holds no
            state dict; the state dict has no ``classifier.4.weight``; or its weights do not fit the equivalent
            model.
        TypeError: ``weights`` is neither ``True`` nor a file path.
        FileNotFoundError: ``weights`` is a path to no file.
        deeplab_edu.models.pretrained.PretrainedWeightsUnavailable: ``weights`` is ``True`` and the download failed
            (e.g. offline); the message says where to put the file.
    """
    _check_backbone(backbone)
    if weights is True:
        state = download_state_dict(torchvision_pretrained_weights(backbone), f"torchvision's trained deeplabv3_{backbone}",
                                    "weights", progress=progress)
    elif isinstance(weights, (str, os.PathLike)):
        state = load_state_dict_file(weights, "weights")
    else:
        raise TypeError(f"weights must be True or a file path, got {weights!r}")
    if "classifier.4.weight" not in state:
        raise ValueError("weights does not hold a torchvision DeepLabv3 state dict (no 'classifier.4.weight')")
    num_classes = int(state["classifier.4.weight"].shape[0])
    aux = any(k.startswith("aux_classifier.") for k in state)
    return load_torchvision_state_dict(torchvision_equivalent(backbone, num_classes, aux_loss=aux), state, backbone)


def torchvision_pretrained_weights(backbone: str = "resnet50") -> Any:
    """torchvision's ``DeepLabV3_<backbone>_Weights.COCO_WITH_VOC_LABELS_V1``, the weights
    :func:`torchvision_pretrained` downloads (its ``url``, its ``meta``: categories, metrics on VOC).

    Raises:
        ValueError: ``backbone`` is not one of :data:`TORCHVISION_CONFIGS`.
    """
    _check_backbone(backbone)
    from torchvision.models import segmentation as seg

    return {
        "resnet50": seg.DeepLabV3_ResNet50_Weights,
        "resnet101": seg.DeepLabV3_ResNet101_Weights,
        "mobilenet_v3_large": seg.DeepLabV3_MobileNet_V3_Large_Weights,
    }[backbone].COCO_WITH_VOC_LABELS_V1


def cached_torchvision_pretrained(backbone: str = "mobilenet_v3_large") -> DeepLabV3 | None:
    """:func:`torchvision_pretrained` when torchvision's download of its weights is already on this machine
    (``$TORCH_HOME/hub/checkpoints``), else ``None``: it never touches the network, so a notebook can show
    the trained model where it can and run offline everywhere.

    Raises:
        ValueError: as :func:`torchvision_pretrained` (an unknown ``backbone``, a file that holds no
            torchvision DeepLabv3 state dict).
    """
    path = cached_weights(torchvision_pretrained_weights(backbone))
    return None if path is None else torchvision_pretrained(backbone, path)
