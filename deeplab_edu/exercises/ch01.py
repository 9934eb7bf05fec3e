"""Exercises of chapter 01 (atrous convolution): eq. (1), the effective kernel and output sizes."""

from __future__ import annotations

from typing import Any, Callable

import torch

from ..atrous import conv_output_size, dilate_kernel, effective_kernel_size, input_positions, same_padding
from ._core import exercise


def _number(answer: Any) -> str | None:
    if isinstance(answer, bool) or not isinstance(answer, (int, float)):
        return f"expected a number, got {type(answer).__name__}."
    if answer != int(answer):
        return f"{answer} is not a whole number; sizes count pixels."
    return None


@exercise(
    "01.1",
    "Effective kernel size of a 3x3 filter at rate 6 (a DeepLabv3 ASPP branch)",
    solution=lambda: effective_kernel_size(3, 6),
    wrong_answers=(18, 9, 3, 12),
    hint="the taps sit r pixels apart: k + (k - 1)(r - 1).",
)
def _effective(answer: Any) -> str | None:
    if (problem := _number(answer)) is not None:
        return problem
    right = effective_kernel_size(3, 6)
    if answer == 18:
        return "18 = k * r counts one gap too many: there are k - 1 gaps of r pixels, plus the first tap."
    if answer in (9, 3):
        return f"{answer} is the size at rate 1 (or its number of taps); the rate spreads the taps apart."
    if answer == 12:
        return "12 is the distance from the first to the last tap; count the pixels they span (one more)."
    if answer != right:
        return f"{answer} is not the span of three taps placed 6 pixels apart."
    return None


@exercise(
    "01.2",
    "Output length for i=13, k=3, rate 4, stride 2, padding 2",
    solution=lambda: conv_output_size(13, 3, stride=2, padding=2, dilation=4),
    wrong_answers=(8, 4, 9, 5.5),
    hint="relationship 15 of Dumoulin & Visin: floor((i + 2p - k - (k-1)(d-1)) / s) + 1.",
)
def _output_size(answer: Any) -> str | None:
    if isinstance(answer, float) and answer != int(answer):
        return f"{answer} is not a whole number: the division by the stride is floored."
    if (problem := _number(answer)) is not None:
        return problem
    right = conv_output_size(13, 3, stride=2, padding=2, dilation=4)
    if answer == conv_output_size(13, 3, stride=2, padding=2):
        return f"{answer} ignores the rate: use the effective kernel size {effective_kernel_size(3, 4)}, not 3."
    if answer == conv_output_size(13, 3, stride=1, padding=2, dilation=4):
        return f"{answer} is the size at stride 1; the stride divides the number of positions."
    if answer != right:
        return f"{answer} does not follow from floor((13 + 4 - 9) / 2) + 1."
    return None


@exercise(
    "01.3",
    "Input indices read by y[2] for k=3, rate 3, stride 1, padding 3",
    solution=lambda: input_positions(2, 3, rate=3, padding=3),
    wrong_answers=([2, 5, 8], [1, 2, 3], [-1, 0, 1], (5, 8, 11)),
    hint="eq. (1) with padding: y[i] reads x[s*i - p + r*k] for k = 0, 1, 2.",
)
def _positions(answer: Any) -> str | None:
    if not isinstance(answer, (list, tuple)) or not all(isinstance(a, int) and not isinstance(a, bool) for a in answer):
        return "answer with a list of integer indices, e.g. [0, 1, 2]."
    right = input_positions(2, 3, rate=3, padding=3)
    got = list(answer)
    if len(got) != 3:
        return f"a 3-tap filter reads 3 inputs, you listed {len(got)}."
    if got == input_positions(2, 3, rate=3):
        return "these are the indices without padding; the padding shifts every index by -p."
    if got == input_positions(2, 3, rate=1, padding=1):
        return "these taps are adjacent: at rate 3 they are 3 apart."
    if got != right:
        return f"{got} is not x[1*2 - 3 + 3k] for k = 0, 1, 2."
    return None


@exercise(
    "01.4",
    "Padding that keeps the size of a 3x3 conv at rate 12",
    solution=lambda: same_padding(3, 12),
    wrong_answers=(1, 24, 6, 13),
    hint="same padding is half of (effective kernel size - 1).",
)
def _padding(answer: Any) -> str | None:
    if (problem := _number(answer)) is not None:
        return problem
    if answer == 1:
        return "1 keeps the size only at rate 1; the effective kernel is now 25 pixels wide."
    if answer == 24:
        return "24 is the total padding needed; it is split between both sides."
    if answer != same_padding(3, 12):
        return f"with padding {answer} the output size changes: (i + 2p - 25) + 1 should equal i."
    return None


def _my_dilate(w: torch.Tensor, rate: int) -> torch.Tensor:
    out = torch.zeros((len(w) - 1) * rate + 1, dtype=w.dtype)
    for k in range(len(w)):
        out[k * rate] = w[k]
    return out


@exercise(
    "01.5",
    "Write dilate(w, rate) for a 1-D filter: the upsampled filter",
    solution=lambda: _my_dilate,
    wrong_answers=(lambda w, r: w, lambda w, r: w.repeat_interleave(r), lambda w, r: torch.cat([w, torch.zeros(r - 1)])),
    hint="the result has (k - 1) * rate + 1 entries; tap k goes to index k * rate, zeros elsewhere.",
)
def _dilate(answer: Any) -> str | None:
    if not callable(answer):
        return "answer with a function dilate(w, rate) that returns a 1-D tensor."
    fn: Callable[[torch.Tensor, int], Any] = answer
    for w, r in ((torch.tensor([1.0, 2.0, 3.0]), 2), (torch.tensor([4.0, -1.0]), 4), (torch.tensor([5.0]), 3),
                 (torch.tensor([1.0, 2.0, 3.0]), 1)):
        got = fn(w.clone(), r)
        want = dilate_kernel(w, r)
        if not isinstance(got, torch.Tensor):
            return f"dilate({w.tolist()}, {r}) returned a {type(got).__name__}, not a tensor."
        if got.shape != want.shape:
            return f"dilate({w.tolist()}, {r}) has shape {tuple(got.shape)}; it should have {len(want)} entries."
        if not torch.equal(got.to(want.dtype), want):
            return f"dilate({w.tolist()}, {r}) gave {got.tolist()}, expected the taps {r} apart with zeros between."
    return None
