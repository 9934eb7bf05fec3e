"""Exercises of chapter 03: output stride, dilated backbones, multi-grid and going deeper."""

from __future__ import annotations

import math
from typing import Any

from ..viz.output_stride import expected_feature_size
from ._core import exercise


def _number(answer: Any) -> str | None:
    if isinstance(answer, bool) or not isinstance(answer, (int, float)):
        return f"expected a number, got {type(answer).__name__}."
    return None


def _rates(answer: Any) -> tuple[int, ...] | str:
    if not isinstance(answer, (tuple, list)) or not all(isinstance(r, int) and not isinstance(r, bool) for r in answer):
        return "answer with the three rates as a tuple of integers, e.g. (1, 1, 1)."
    if len(answer) != 3:
        return f"block 4 has three units (three 3x3 convs); you gave {len(answer)} rates."
    return tuple(answer)


@exercise(
    "03.1",
    "Feature-map side of a 321 x 321 crop at output stride 8",
    solution=lambda: expected_feature_size(321, 8),
    wrong_answers=(40, 40.125, 21, 81),
    hint="apply n -> ceil(n / 2) once per stride-2 layer: three times for output stride 8.",
)
def _size_321(answer: Any) -> str | None:
    if (problem := _number(answer)) is not None:
        return problem
    if answer in (40, 40.125):
        return "321 / 8 rounded down (or not at all); every stride-2 layer rounds an odd size *up*: 321 -> 161 -> 81 -> 41."
    if answer == 21:
        return "21 is the size at output stride 16."
    if answer == 81:
        return "81 is the size after the stem (output stride 4)."
    if answer != 41:
        return f"{answer} is not the feature-map side at output stride 8."
    return None


@exercise(
    "03.2",
    "Rates of the three 3x3 convs of block 4 at output stride 16 with multi-grid (1, 2, 4)",
    solution=lambda: (2, 4, 8),
    wrong_answers=((1, 2, 4), (2, 2, 2), (4, 8, 16)),
    hint="DeepLabv3 sec. 3.2.1: rate = (unit rate) x (the block's rate); block 4 has rate 2 at output stride 16.",
)
def _multi_grid(answer: Any) -> str | None:
    rates = _rates(answer)
    if isinstance(rates, str):
        return rates
    if rates == (1, 2, 4):
        return "those are the unit rates; multiply them by block 4's rate at output stride 16."
    if rates == (2, 2, 2):
        return "that is block 4 without multi-grid; the unit rates (1, 2, 4) multiply it."
    if rates == (4, 8, 16):
        return "that is output stride 8 (block rate 4); at output stride 16 block 4's rate is 2."
    if rates != (2, 4, 8):
        return f"{rates} are not the rates of block 4."
    return None


@exercise(
    "03.3",
    "How many parameters does a ResNet-50 gain when its output stride goes from 32 to 8?",
    solution=lambda: 0,
    wrong_answers=(16, 4, 23_508_032),
    hint="atrous convolution spreads the same 3x3 weights further apart.",
)
def _no_new_parameters(answer: Any) -> str | None:
    if (problem := _number(answer)) is not None:
        return problem
    if answer == 16:
        return "the feature map has 16 times more positions, but positions are not parameters."
    if answer != 0:
        return f"{answer} is not the number of new weights: which layer would hold them?"
    return None


@exercise(
    "03.4",
    "Rates of block 6 at output stride 16 (going deeper, multi-grid (1, 2, 1))",
    solution=lambda: (8, 16, 8),
    wrong_answers=((4, 8, 4), (16, 32, 16), (1, 2, 1), (8, 8, 8)),
    hint="DeepLabv3 Fig. 3(b): blocks 4, 5, 6, 7 have rates 2, 4, 8, 16 at output stride 16.",
)
def _block6(answer: Any) -> str | None:
    rates = _rates(answer)
    if isinstance(rates, str):
        return rates
    if rates == (4, 8, 4):
        return "that is block 5 (rate 4); each extra block doubles the rate once more."
    if rates == (16, 32, 16):
        return "that is block 7 (rate 16)."
    if rates == (8, 8, 8):
        return "block 6's rate is 8, but multi-grid multiplies it by the unit rates (1, 2, 1)."
    if rates != (8, 16, 8):
        return f"{rates} are not block 6's rates."
    return None


@exercise(
    "03.5",
    "For a 513 input, how many times more positions has the OS 8 feature map than the OS 16 one?",
    solution=lambda: (expected_feature_size(513, 8) / expected_feature_size(513, 16)) ** 2,
    wrong_answers=(4, 2, 65 / 33),
    hint="the maps are 65 x 65 and 33 x 33, not exactly twice as wide.",
)
def _positions_ratio(answer: Any) -> str | None:
    if (problem := _number(answer)) is not None:
        return problem
    right = (65 / 33) ** 2
    if answer == 4:
        return "4 would hold if the sides were exactly 2:1; with odd sizes they are 65 and 33."
    if math.isclose(answer, 65 / 33, rel_tol=1e-3) or answer == 2:
        return "that is the ratio of the sides; the number of positions is height x width."
    if not math.isclose(answer, right, rel_tol=1e-3):
        return f"{answer:.4g} is not the ratio of the numbers of positions."
    return None
