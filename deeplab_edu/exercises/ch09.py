"""Exercises of chapter 09: DeepLabv3+'s decoder and separable convolutions, and its trained boundaries."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..data.classes import WIRE
from ._core import _normalise, direction, exercise, function_exercise, shown, value_exercise


#: Exercise 09.1's variant: the low-level features reduced to 64 channels (DeepLabv3+ Table 1 tried 8-64).
REDUCED_09_1 = 64
#: Exercise 09.2's separable convolution: kernel side, input and output channels.
KERNEL_09_2, IN_09_2, OUT_09_2 = 5, 128, 192


@exercise(
    "09.1",
    f"Predict the channels entering the first 3x3 conv of a decoder that reduces the low-level features "
    f"to {REDUCED_09_1} (ASPP output 256)",
    solution=lambda: 256 + REDUCED_09_1,
    wrong_answers=(304, 256, REDUCED_09_1, 512, 256 + 256),
    hint="the upsampled ASPP output is concatenated with the reduced low-level features.",
    kind="predict",
)
def _decoder_in(answer: Any) -> str | None:
    answer, problem = _normalise(answer, "whole", unit="channel")  # "320" is read as 320, as every value exercise reads it
    if problem is not None:
        return problem
    if answer == 304:
        return f"304 = 256 + 48 is the paper's decoder; this one reduces the low-level features to {REDUCED_09_1}."
    if answer == 512:
        return (f"the low-level features are reduced to {REDUCED_09_1} channels before the concatenation "
                "(that is what the 1x1 convolution is for).")
    if answer in (256, REDUCED_09_1):
        return "that is only one of the two concatenated inputs."
    if answer != 256 + REDUCED_09_1:
        return (f"{shown(answer)} is {direction(answer, 256 + REDUCED_09_1, more='too many', less='too few')} "
                "channels: the conv reads the concatenation of the upsampled ASPP output and the reduced "
                "low-level features; add the channels of both.")
    return None


_K2_09_2 = KERNEL_09_2 ** 2

value_exercise(
    "09.2",
    f"Predict the weights of a depthwise-separable {KERNEL_09_2}x{KERNEL_09_2} conv from {IN_09_2} to "
    f"{OUT_09_2} channels (no bias, no BN)",
    solution=lambda: _K2_09_2 * IN_09_2 + IN_09_2 * OUT_09_2,
    answer_type="whole",
    unit="parameter",
    kind="predict",
    mistakes=[
        (_K2_09_2 * IN_09_2 * OUT_09_2,
         f"that is a regular {KERNEL_09_2}x{KERNEL_09_2} conv; the separable one factorises it."),
        (_K2_09_2 * IN_09_2, "that counts only one of the two parts (depthwise and pointwise)."),
        (IN_09_2 * OUT_09_2, "that counts only one of the two parts (depthwise and pointwise)."),
        (9 * IN_09_2 + IN_09_2 * OUT_09_2, f"the depthwise filters are {KERNEL_09_2}x{KERNEL_09_2} here, not 3x3."),
        (_K2_09_2 * IN_09_2 + OUT_09_2 * OUT_09_2,
         f"the pointwise 1x1 conv maps the {IN_09_2} input channels to {OUT_09_2}, not {OUT_09_2} to {OUT_09_2}."),
    ],
    otherwise=lambda a: (f"{shown(a)} is {direction(a, _K2_09_2 * IN_09_2 + IN_09_2 * OUT_09_2)}: count the "
                         "depthwise part (one k x k filter per input channel) and the pointwise part (a 1x1 conv) "
                         "separately, then add them."),
    hint="a depthwise k x k filter per input channel, then a 1x1 conv from the input to the output channels.",
)


def _fuse(encoder: torch.Tensor, low_level: torch.Tensor) -> torch.Tensor:
    """The decoder's fusion step (DeepLabv3+ sec. 3.1), as :class:`deeplab_edu.models.Decoder` does it."""
    up = F.interpolate(encoder, size=low_level.shape[-2:], mode="bilinear", align_corners=False)
    return torch.cat([up, low_level], dim=1)


def _learner_fuse(encoder: torch.Tensor, low_level: torch.Tensor) -> torch.Tensor:
    """A learner-style solution: resize the encoder map to the low-level map's height and width, then concatenate."""
    height, width = low_level.shape[2], low_level.shape[3]
    return torch.cat((F.interpolate(encoder, size=(height, width), mode="bilinear"), low_level), dim=1)


def _fuse_inputs(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Maps of a crop that need not be square (CamVid's are 360 x 480): a function that swaps height and
    width, or resizes to a square, passed while every input was square (a trial)."""
    height, width = (int(v) for v in torch.randint(5, 60, (2,), generator=gen))
    small_h, small_w = height, width
    for _ in range(2):  # the encoder map: two more stride-2 layers (stride 4 -> 16), rounding up
        small_h, small_w = (small_h + 1) // 2, (small_w + 1) // 2
    n = int(torch.randint(1, 3, (1,), generator=gen))
    return (torch.randn(n, 6, small_h, small_w, generator=gen), torch.randn(n, 3, height, width, generator=gen))


def _four_then_crop(encoder: torch.Tensor, low_level: torch.Tensor) -> torch.Tensor:
    """A typical mistake: upsample by the stride ratio 4, then cut off what overhangs the low-level map."""
    up = F.interpolate(encoder, scale_factor=4, mode="bilinear", align_corners=False)
    return torch.cat([up[..., : low_level.shape[-2], : low_level.shape[-1]], low_level], dim=1)


_CROPPED = ("upsampling by 4 and then cropping gives the right size but wrong values whenever the low-level side is "
            "not exactly 4 times the encoder's (129 and 33): the encoder map is stretched over 4 times its side "
            "instead of over the low-level map, so every pixel reads it at a slightly wrong place, and the crop cuts "
            "off part of its last row and column. Resize to the low-level map's size instead.")


function_exercise(
    "09.3",
    "Write fuse(encoder, low_level): upsample the encoder output to the low-level map and concatenate",
    reference=_fuse,
    solution=_learner_fuse,
    inputs=_fuse_inputs,
    cases=[(torch.ones(1, 2, 9, 9), torch.zeros(1, 3, 33, 33)), (torch.ones(1, 2, 8, 8), torch.zeros(1, 3, 32, 32)),
           (torch.randn(1, 2, 23, 30, generator=torch.Generator().manual_seed(0)), torch.zeros(1, 3, 90, 120))],
    mistakes=[
        (lambda e, l: torch.cat([F.interpolate(e, scale_factor=4, mode="bilinear", align_corners=False), l], 1),
         "a fixed factor 4 misses odd sizes: a 513 crop has a 33-cell encoder map and a 129-cell low-level map, "
         "and 33 x 4 = 132. Upsample to the low-level map's size."),
        (lambda e, l: torch.cat([F.interpolate(e, size=l.shape[-2:], mode="bilinear", align_corners=True), l], 1),
         "align_corners=True stretches the map corner to corner; this course's decoder, like torchvision's models, "
         "upsamples with align_corners=False, as F.interpolate does by default for a given size (the official "
         "TensorFlow DeepLab resizes with align_corners=True, which is why its crops are 513 = 32 x 16 + 1)."),
        (lambda e, l: torch.cat([F.interpolate(e, size=l.shape[-2:], mode="nearest"), l], 1),
         "nearest-neighbour upsampling copies each cell into blocks; the decoder interpolates bilinearly."),
        (_four_then_crop, _CROPPED),
        (lambda e, l: torch.cat([l, F.interpolate(e, size=l.shape[-2:], mode="bilinear", align_corners=False)], 1),
         "the order of the concatenation matters for the weights that follow: the encoder output comes first."),
    ],
    signature="fuse(encoder, low_level)",
    errors=[(r"Sizes of tensors must match", "concatenating along the channels needs the two maps' other sizes "
             "equal: resize the encoder map to the low-level map's height and width (in that order), whatever "
             "their shapes, square or not.")],
    hint="F.interpolate can resize to a given size instead of by a factor: which size, and which mode does the "
         "decoder use? Then concatenate along the channels, the encoder output first.",
)


def _oracle_wire_iou(stride: int = 8) -> float:
    from ..data import ProceduralScenes
    from ..viz.decoder import stride_oracle_scores

    scenes = ProceduralScenes(length=16, size=128, seed=0, difficulty="easy")
    return stride_oracle_scores((scenes[i][1] for i in range(len(scenes))), stride, scenes.num_classes)["iou"][WIRE]


value_exercise(
    "09.4",
    "Predict the wire IoU of the proportion prediction on a stride-8 grid (DeepLabv3's at output stride 8)",
    solution=_oracle_wire_iou,
    answer_type="fraction",
    kind="predict",
    abs_tol=0.02,  # "about zero" is the prediction: these 16 scenes measure 0.01 (stride 16: 0, stride 4: 0.24)
    mistakes=[
        (lambda a: a >= 0.2, "too large: an 8 x 8 cell holds 64 pixels; how many of them can a 1-3 px wire that "
                             "crosses the cell cover, and which class then holds the largest share of the cell?"),
        (lambda a: 0.03 < a < 0.2, "less than that: the wire's share of an 8 x 8 cell is rarely the largest, and the "
                                    "upsampling only blends the cells' shares."),
    ],
    otherwise=lambda a: f"{a} is not it; think of the share of an 8 x 8 cell a 1-3 px wire can cover.",
    more_wrong=(0.25, 0.05, 1.0),
    hint=("the oracle gives each cell the class proportions of its pixels, upsampled; when can wire win the arg-max?",
          "a wire crossing an 8 x 8 cell covers under half of its 64 pixels (a third when straight), spread over the "
          "cells it crosses, so another class holds the largest share of almost every cell, and the bilinear "
          "upsampling only blends such shares; halving the stride of 16 is not enough: measure stride 4 too."),
)
