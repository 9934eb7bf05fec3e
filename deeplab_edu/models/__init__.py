"""DeepLab models: dense backbones, ASPP, DeepLab v1 (LargeFOV), v2, v3 and v3+.

>>> from deeplab_edu.models import build_model
>>> model = build_model("deeplabv3", backbone="resnet50", num_classes=21, output_stride=16)  # doctest: +SKIP
>>> model(images)["out"].shape  # (N, 21, H, W), the input size            # doctest: +SKIP
"""

from .aspp import ASPP, ASPPv2, ImagePooling, SeparableConv2d, atrous_rates_for, set_recompute_depthwise
from .backbones import BACKBONES, OUTPUT_STRIDES, at_output_stride, build_backbone
from .deeplab import MODELS, DeepLab, DeepLabV1, DeepLabV2, DeepLabV3, DeepLabV3Plus, build_model, default_atrous_rates
from .heads import Decoder, FCNHead

__all__ = [
    "ASPP", "ASPPv2", "BACKBONES", "Decoder", "DeepLab", "DeepLabV1", "DeepLabV2", "DeepLabV3", "DeepLabV3Plus",
    "FCNHead", "ImagePooling", "MODELS", "OUTPUT_STRIDES", "SeparableConv2d", "at_output_stride", "atrous_rates_for",
    "build_backbone",
    "build_model", "default_atrous_rates", "set_recompute_depthwise",
]
