"""DeepLab models: dense backbones, ASPP, DeepLab v1 (LargeFOV), v2, v3 and v3+.

>>> from deeplab_edu.models import build_backbone
>>> backbone = build_backbone("resnet50", output_stride=16)   # doctest: +SKIP
"""

from .backbones import BACKBONES, OUTPUT_STRIDES, build_backbone

__all__ = ["BACKBONES", "OUTPUT_STRIDES", "build_backbone"]
