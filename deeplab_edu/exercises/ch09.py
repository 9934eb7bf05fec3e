"""Exercises of chapter 09: DeepLabv3+'s decoder and separable convolutions, and its trained boundaries."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..data.classes import WIRE
from ._core import exercise, function_exercise, number_problem, shown, value_exercise


@exercise(
    "09.1",
    "Channels entering the decoder's first 3x3 conv",
    solution=lambda: 304,
    wrong_answers=(256, 48, 512, 2096),
    hint="the upsampled ASPP output (256) is concatenated with the reduced low-level features.",
)
def _decoder_in(answer: Any) -> str | None:
    if (problem := number_problem(answer, whole=True)) is not None:
        return problem
    if answer == 512:
        return "the low-level features are reduced to 48 channels before the concatenation (Table 1)."
    if answer in (256, 48):
        return "that is only one of the two concatenated inputs."
    if answer != 304:
        return f"{shown(answer)} is not 256 + 48."
    return None


@exercise(
    "09.2",
    "Weights of a depthwise-separable 3x3 conv from 256 to 256 channels (no bias, no BN)",
    solution=lambda: 3 * 3 * 256 + 256 * 256,
    wrong_answers=(3 * 3 * 256 * 256, 3 * 3 * 256, 256 * 256),
    hint="a depthwise 3x3 filter per input channel, then a 1x1 conv mixing the channels.",
)
def _separable(answer: Any) -> str | None:
    if (problem := number_problem(answer, whole=True)) is not None:
        return problem
    if answer == 9 * 256 * 256:
        return "that is a regular 3x3 conv; the separable one factorises it."
    if answer in (9 * 256, 256 * 256):
        return "that counts only one of the two parts (depthwise and pointwise)."
    if answer != 9 * 256 + 256 * 256:
        return f"{shown(answer)} is not 3 x 3 x 256 + 256 x 256."
    return None


def _fuse(encoder: torch.Tensor, low_level: torch.Tensor) -> torch.Tensor:
    """The decoder's fusion step (DeepLabv3+ sec. 3.1), as :class:`deeplab_edu.models.Decoder` does it."""
    up = F.interpolate(encoder, size=low_level.shape[-2:], mode="bilinear", align_corners=False)
    return torch.cat([up, low_level], dim=1)


def _fuse_inputs(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    side = int(torch.randint(5, 60, (1,), generator=gen))
    small = side
    for _ in range(2):  # the encoder map: two more stride-2 layers (stride 4 -> 16), rounding up
        small = (small + 1) // 2
    n = int(torch.randint(1, 3, (1,), generator=gen))
    return (torch.randn(n, 6, small, small, generator=gen), torch.randn(n, 3, side, side, generator=gen))


function_exercise(
    "09.3",
    "Write fuse(encoder, low_level): upsample the encoder output to the low-level map and concatenate",
    reference=_fuse,
    inputs=_fuse_inputs,
    cases=[(torch.ones(1, 2, 9, 9), torch.zeros(1, 3, 33, 33)), (torch.ones(1, 2, 8, 8), torch.zeros(1, 3, 32, 32))],
    mistakes=[
        (lambda e, l: torch.cat([F.interpolate(e, scale_factor=4, mode="bilinear", align_corners=False), l], 1),
         "a fixed factor 4 misses odd sizes: a 513 crop has a 33-cell encoder map and a 129-cell low-level map, "
         "and 33 x 4 = 132. Upsample to the low-level map's size."),
        (lambda e, l: torch.cat([F.interpolate(e, size=l.shape[-2:], mode="bilinear", align_corners=True), l], 1),
         "align_corners=True stretches the map corner to corner; DeepLab's models (and this course's) upsample "
         "with align_corners=False, as F.interpolate does by default for a given size."),
        (lambda e, l: torch.cat([F.interpolate(e, size=l.shape[-2:], mode="nearest"), l], 1),
         "nearest-neighbour upsampling copies each cell into blocks; the decoder interpolates bilinearly."),
        (lambda e, l: torch.cat([l, F.interpolate(e, size=l.shape[-2:], mode="bilinear", align_corners=False)], 1),
         "the order of the concatenation matters for the weights that follow: the encoder output comes first."),
    ],
    signature="fuse(encoder, low_level)",
    hint="F.interpolate(encoder, size=low_level.shape[-2:], mode='bilinear', align_corners=False), then torch.cat on dim 1.",
)


def _oracle_wire_iou(stride: int = 16) -> float:
    from ..data import ProceduralScenes
    from ..metrics import ConfusionMatrix
    from ..viz.decoder import stride_oracle

    scenes = ProceduralScenes(length=16, size=128, seed=0, difficulty="easy")
    cm = ConfusionMatrix(scenes.num_classes)
    for i in range(len(scenes)):
        _, mask = scenes[i]
        cm.update(stride_oracle(mask, stride, scenes.num_classes)[None], mask[None])
    return cm.compute()["iou"][WIRE]


value_exercise(
    "09.4",
    "Predict the wire IoU of the proportion prediction on a stride-16 grid",
    solution=_oracle_wire_iou,
    answer_type="fraction",
    kind="predict",
    abs_tol=0.005,
    mistakes=[
        (lambda a: a >= 0.2, "a 16 x 16 cell holds 256 pixels and a wire crossing it at most a few dozen: wire is "
                             "never the largest share of a cell, so the best label of a cell is never wire."),
        (lambda a: 0.005 < a < 0.2, "less than that: in no 16 x 16 cell does a 1-3 px wire cover the most pixels."),
    ],
    otherwise=lambda a: f"{a} is not it; think of the share of a 16 x 16 cell a wire can cover.",
    more_wrong=(0.25, 0.05, 1.0),
    hint="the oracle gives each cell the class proportions of its pixels, upsampled; when can wire win the arg-max?",
)
