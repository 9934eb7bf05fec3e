"""Exercises of chapter 08: assembling DeepLabv3 (architecture half) and its training recipe (training half)."""

from __future__ import annotations

import math
from typing import Any

from ._core import exercise


@exercise(
    "08.1",
    "Feature-map side of a 513 x 513 input at output stride 8",
    solution=lambda: 65,
    wrong_answers=(64, 64.125, 33, 129),
    hint="each stride-2 layer maps an odd side n to (n + 1) / 2; output stride 8 means three of them.",
)
def _size(answer: Any) -> str | None:
    if not isinstance(answer, (int, float)):
        return f"expected a number, got {type(answer).__name__}."
    if answer == 33:
        return "33 is the side at output stride 16."
    if answer == 129:
        return "129 is the side at stride 4 (the low-level features of chapter 09)."
    if answer != 65:
        return f"{answer} is not 513 -> 257 -> 129 -> 65."
    return None


@exercise(
    "08.2",
    "How many times more feature positions at output stride 8 than at 16 (513 x 513 input)?",
    solution=lambda: 65**2 / 33**2,
    wrong_answers=(2, 4, 65 / 33),
    hint="count positions: side squared, with the real sides 65 and 33.",
)
def _ratio(answer: Any) -> str | None:
    if not isinstance(answer, (int, float)):
        return f"expected a number, got {type(answer).__name__}."
    target = 65**2 / 33**2
    if math.isclose(answer, 65 / 33, rel_tol=1e-3):
        return "that is the ratio of the sides; the map is two-dimensional."
    if answer == 4:
        return "4 would hold for exact halving; 513 rounds up to 65 and 33, so the ratio is a little less."
    if not math.isclose(answer, target, rel_tol=1e-3):
        return f"{answer} is not (65 / 33) squared."
    return None


@exercise(
    "08.3",
    "How many parameters change when you call model.set_output_stride(8)?",
    solution=lambda: 0,
    wrong_answers=(256, 2048, -1),
    hint="atrous convolution changes where the taps read, not what they weigh.",
)
def _no_params(answer: Any) -> str | None:
    if not isinstance(answer, (int, float)):
        return f"expected a number, got {type(answer).__name__}."
    if answer != 0:
        return (
            "strides and dilations are settings of the convolutions, not weights: the same state dict "
            "serves output stride 16 and 8."
        )
    return None


@exercise(
    "08.4",
    "Learning rate of the poly policy halfway through DeepLabv3's phase 1 (lr0 = 0.007, 30K iterations)",
    solution=lambda: 0.007 * 0.5**0.9,
    wrong_answers=(0.0035, 0.007, 0.001, 0.007 * 0.5**2),
    hint="lr(t) = lr0 * (1 - t / T) ** 0.9 with t = 15000 and T = 30000.",
)
def _poly(answer: Any) -> str | None:
    if not isinstance(answer, (int, float)):
        return f"expected a number, got {type(answer).__name__}."
    target = 0.007 * 0.5**0.9
    if math.isclose(answer, 0.0035, rel_tol=1e-3):
        return "that is a linear decay; the poly policy raises (1 - t/T) to the power 0.9, which keeps it higher."
    if math.isclose(answer, 0.007, rel_tol=1e-3):
        return "the rate is not constant: it decays to zero at the last iteration."
    if math.isclose(answer, 0.001, rel_tol=1e-3):
        return "0.001 is the base learning rate of phase 2, not the phase-1 rate halfway."
    if not math.isclose(answer, target, rel_tol=1e-3):
        return f"{answer} is not 0.007 * 0.5 ** 0.9."
    return None
