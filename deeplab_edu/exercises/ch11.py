"""Exercises of chapter 11 (real data on a GPU, inference strategies, export)."""

from __future__ import annotations

import math
from typing import Any

from ._core import exercise


def _windows(h: int, w: int, crop: int, stride: int) -> int:
    rows = math.ceil(max(h - crop, 0) / stride) + 1
    cols = math.ceil(max(w - crop, 0) / stride) + 1
    return rows * cols


@exercise(
    "11.1",
    "Sliding windows for a 360 x 480 CamVid image, crop 256, stride 170",
    solution=lambda: _windows(360, 480, 256, 170),
    wrong_answers=(4, 2, 3, 8),
    hint="Per axis: ceil((size - crop) / stride) + 1 windows (the last one is shifted to end at the border).",
)
def _ex1(answer: Any) -> str | None:
    if not isinstance(answer, int):
        return f"expected a whole number, got {type(answer).__name__}."
    if answer == 4:
        return "4 would be (480*360)/(256*256) rounded: windows overlap, count them per axis instead."
    if answer in (2, 3):
        return "that is one axis only; the windows form a grid of rows x columns."
    if answer != _windows(360, 480, 256, 170):
        return f"{answer} is not rows x columns with ceil((size - 256) / 170) + 1 per axis."
    return None


@exercise(
    "11.2",
    "Which mixed-precision type needs a gradient scaler: 'bf16' or 'fp16'?",
    solution=lambda: "fp16",
    wrong_answers=("bf16", "both", "none"),
    hint="Compare the exponent bits: float16 has 5, bfloat16 has 8 like float32.",
)
def _ex2(answer: Any) -> str | None:
    if not isinstance(answer, str):
        return "answer with a string: 'bf16' or 'fp16'."
    a = answer.strip().lower()
    if a == "bf16":
        return "bfloat16 has float32's 8 exponent bits, so small gradients do not underflow; no scaler needed."
    if a != "fp16":
        return "exactly one of them needs it: the one with the narrow exponent range."
    return None


@exercise(
    "11.3",
    "Effective batch size of torchrun --nproc_per_node=4 with --batch-size 4 --grad-accum 2",
    solution=lambda: 32,
    wrong_answers=(4, 8, 16),
    hint="Every process sees its own batch; DDP averages the gradients over processes and accumulation adds steps.",
)
def _ex3(answer: Any) -> str | None:
    if not isinstance(answer, int):
        return f"expected a whole number, got {type(answer).__name__}."
    if answer == 16:
        return "16 forgets the gradient accumulation (2 micro-batches per optimiser step)."
    if answer == 8:
        return "8 forgets that each of the 4 processes has its own batch."
    if answer != 32:
        return f"{answer} is not processes x batch size x accumulation steps."
    return None
