"""Heads that turn features into class scores: the auxiliary FCN head and DeepLabv3+'s decoder.

- :class:`FCNHead`: the auxiliary classifier torchvision attaches to block 3 (3x3 conv to a quarter
  of the channels, BN, ReLU, dropout 0.1, 1x1 conv to the classes). Not part of the DeepLab papers;
  it adds a second loss during training.
- :class:`Decoder` (DeepLabv3+ sec. 3.1, Fig. 2): the encoder output (ASPP, output stride 16) is
  upsampled bilinearly to the low-level features (stride 4) of the backbone, which are first
  reduced to 48 channels by a 1x1 conv (so they do not outweigh the 256 encoder channels; Table 1);
  the concatenation is refined by two 3x3 convs with 256 filters (Table 2), depthwise-separable in
  the paper's best model (Table 5, "SC"), then classified by a 1x1 conv. Upsampling to the low-level
  map's *actual* size (not a fixed factor 4) keeps odd input sizes working.

  The same layers as the official code (tensorflow/models research/deeplab/model.py,
  ``refine_by_decoder``: ``feature_projection0`` 1x1 to 48 channels with batch norm and ReLU, then
  ``decoder_conv0`` and ``decoder_conv1``, two separable 3x3 convs with 256 filters, batch norm and
  ReLU after the depthwise and after the pointwise part). segmentation_models_pytorch's
  ``DeepLabV3PlusDecoder`` differs: one separable 3x3 conv after the concatenation (plus one on the
  ASPP output at stride 16) and no batch norm or ReLU between depthwise and pointwise; it is lighter
  for that reason, not by implementation (``deeplab-edu bench`` measures both).
  ReLUs run in place (batch norm's backward needs its input, not its output), and in training each
  separable conv recomputes its cheap depthwise half in the backward pass instead of keeping its
  two intermediate maps (:class:`~deeplab_edu.models.aspp.SeparableConv2d`): less memory, the same
  function. With both, a training step keeps less for the backward pass than smp's lighter decoder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .aspp import SeparableConv2d, _check_counts

__all__ = ["FCNHead", "Decoder"]


class FCNHead(nn.Sequential):
    """torchvision's auxiliary head (``torchvision.models.segmentation.fcn.FCNHead``): 3x3 conv
    (channels / 4), BN, ReLU, dropout 0.1, 1x1 classifier. (N, in_channels, h, w) features ->
    (N, num_classes, h, w) logits, at the features' resolution.

    Raises:
        ValueError: ``in_channels`` is not a whole number of at least 4 (its quarter is the hidden width), or
            ``num_classes`` not a positive whole number.
    """

    def __init__(self, in_channels: int, num_classes: int) -> None:
        _check_counts("FCNHead", {"in_channels": in_channels, "num_classes": num_classes})
        if in_channels < 4:  # an audit: in_channels // 4 = 0 channels, a RuntimeError at the first forward pass
            raise ValueError(f"FCNHead: in_channels must be at least 4 (its quarter is the hidden width), got {in_channels}")
        in_channels, num_classes = int(in_channels), int(num_classes)  # 8.0 passes the check: a whole number
        inter = in_channels // 4
        super().__init__(
            nn.Conv2d(in_channels, inter, 3, padding=1, bias=False),
            nn.BatchNorm2d(inter),
            nn.ReLU(inplace=True),
            nn.Dropout(0.1),
            nn.Conv2d(inter, num_classes, 1),
        )


def _conv3x3_bn_relu(in_channels: int, out_channels: int, separable: bool) -> nn.Sequential:
    if separable:
        return SeparableConv2d(in_channels, out_channels, rate=1)
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class Decoder(nn.Module):
    """DeepLabv3+'s decoder (sec. 3.1).

    Args:
        low_level_channels: channels of the stride-4 backbone features (256 for ResNet).
        encoder_channels: channels of the ASPP output (256).
        num_classes: classes to score.
        reduced_channels: the 1x1 reduction of the low-level features (48 in the paper).
        channels: filters of the two 3x3 refinement convs (256 in the paper).
        separable: depthwise-separable refinement convs (the paper's "SC" variant).

    Raises:
        ValueError: a channel count or ``num_classes`` is not a positive integer.
    """

    def __init__(
        self,
        low_level_channels: int,
        encoder_channels: int,
        num_classes: int,
        *,
        reduced_channels: int = 48,
        channels: int = 256,
        separable: bool = True,
    ) -> None:
        super().__init__()
        _check_counts("Decoder", {"low_level_channels": low_level_channels, "encoder_channels": encoder_channels,
                                  "num_classes": num_classes, "reduced_channels": reduced_channels, "channels": channels})
        low_level_channels, encoder_channels, num_classes, reduced_channels, channels = (
            int(v) for v in (low_level_channels, encoder_channels, num_classes, reduced_channels, channels))
        self.reduce = nn.Sequential(
            nn.Conv2d(low_level_channels, reduced_channels, 1, bias=False), nn.BatchNorm2d(reduced_channels),
            nn.ReLU(inplace=True),
        )
        self.refine = nn.Sequential(
            _conv3x3_bn_relu(encoder_channels + reduced_channels, channels, separable),
            _conv3x3_bn_relu(channels, channels, separable),
        )
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, encoder: torch.Tensor, low_level: torch.Tensor) -> torch.Tensor:
        """Fuse the encoder output with the low-level features; return logits at stride 4.

        ``encoder`` (N, encoder_channels, h, w) (the ASPP output, at the model's output stride: 16 in
        the paper, sec. 3.1) is upsampled bilinearly to
        ``low_level``'s (N, low_level_channels, H/4, W/4); the result is (N, num_classes, H/4, W/4).
        """
        up = F.interpolate(encoder, size=low_level.shape[-2:], mode="bilinear", align_corners=False)
        return self.classifier(self.refine(torch.cat([up, self.reduce(low_level)], dim=1)))
