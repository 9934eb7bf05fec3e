"""Exercises of chapter 01 (atrous convolution): eq. (1), the effective kernel and output sizes."""

from __future__ import annotations

import torch

from ..atrous import conv_output_size, dilate_kernel, effective_kernel_size, input_positions, same_padding
from ._core import direction, function_exercise, shown, value_exercise

value_exercise(
    "01.1",
    "Effective kernel size of a 3x3 filter at rate 6 (a DeepLabv3 ASPP branch)",
    solution=lambda: effective_kernel_size(3, 6),
    answer_type="whole",
    unit="pixel",
    mistakes=[
        (18, "18 = K * r counts one gap too many: there are K - 1 gaps of r positions, plus the first tap."),
        (9, "9 is the number of taps of a 3x3 filter; the rate spreads them apart."),
        (3, "3 is the size at rate 1; the rate spreads the taps apart."),
        (12, "12 is the distance from the first to the last tap; count the positions they span, both ends included."),
        (13 * 16, "208 = 13 x 16 is the span in input-image pixels at output stride 16; the question counts "
                  "positions of the feature map the branch convolves, where the taps sit 6 apart."),
        (12 * 16 + 1, "193 = 12 x 16 + 1 counts input-image pixels at output stride 16; the question counts "
                      "positions of the feature map the branch convolves, where the taps sit 6 apart."),
    ],
    otherwise=lambda a: (f"{shown(a)} is {direction(a, effective_kernel_size(3, 6))} for the span of three taps "
                         "placed 6 positions apart: count the positions from the first tap to the last, both "
                         "included."),
    hint="the K taps sit r positions apart: K + (K - 1)(r - 1).",
)

value_exercise(
    "01.2",
    "Output length for an input of 13, K=3 taps, rate 4, stride 2, padding 2",
    solution=lambda: conv_output_size(13, 3, stride=2, padding=2, dilation=4),
    unit="pixel",
    mistakes=[
        (lambda a: a != int(a), lambda a: f"{a} is not a whole number: the division by the stride is floored."),
        (conv_output_size(13, 3, stride=2, padding=2),
         "that ignores the rate: at rate 4 the filter spans its effective kernel size, not 3 positions."),
        (conv_output_size(13, 3, stride=1, padding=2, dilation=4),
         "that is the size at stride 1; the stride divides the number of positions."),
        (conv_output_size(13, 3, stride=2, padding=2, dilation=4) - 1,
         "one short: either the + 1 is missing (the first position counts before any stride), or the padding "
         "was added on one side only (it goes on both)."),
    ],
    otherwise=lambda a: (f"{shown(a)} is {direction(a, conv_output_size(13, 3, stride=2, padding=2, dilation=4))}: "
                         "count the positions where the dilated filter fits inside the padded input, moving 2 at "
                         "a time."),
    more_wrong=(5.5, 7),
    hint=("first the span of the dilated filter (its effective kernel size), then the length of the padded input; "
          "the first position fits, and each further one is a stride further on.",
          "relationship 15: floor((n + 2p - K - (K - 1)(r - 1)) / s) + 1 (Dumoulin & Visin write i, k, d for "
          "the input size n, the taps K and the rate r)."),
)

def _taps_feedback(a: tuple[int, ...]) -> str:
    """01.3's message for three indices that are not the taps: their spacing, or where they start."""
    want = input_positions(2, 3, rate=3, padding=3)
    gaps = {b - c for b, c in zip(a[1:], a)}
    if gaps != {3}:
        return (f"{list(a)} are not 3 apart: neighbouring taps of a rate-3 filter read inputs rate positions apart, "
                "in increasing order.")
    return (f"{list(a)} are spaced right but start too far {'right' if a[0] > want[0] else 'left'}: the first tap "
            "sits at the output index times the stride, shifted left by the padding.")


value_exercise(
    "01.3",
    "Input indices read by y[2] for K=3 taps, rate 3, stride 1, padding 3",
    solution=lambda: input_positions(2, 3, rate=3, padding=3),
    answer_type="ints",
    mistakes=[
        (lambda a: len(a) != 3, lambda a: f"a 3-tap filter reads 3 inputs, you listed {len(a)}."),
        (lambda a: sorted(a) == sorted(input_positions(2, 3, rate=3, padding=3)),
         "the right indices in another order: list them as k = 0, 1, 2 reads them, in increasing order."),
        (input_positions(2, 3, rate=3), "these are the indices without padding; the padding shifts every index by -p."),
        (input_positions(2, 3, rate=1, padding=1), "these taps are adjacent: at rate 3 they are 3 apart."),
    ],
    otherwise=lambda a: _taps_feedback(a),
    more_wrong=([-1, 0, 1], (5, 8, 11)),
    hint="eq. (1) with padding: `y[i]` reads `x[s*i - p + r*k]` for k = 0, 1, 2.",
)

value_exercise(
    "01.4",
    "Padding that keeps the size of a 5x5 conv at rate 3",
    solution=lambda: same_padding(5, 3),
    answer_type="whole",
    unit="pixel",
    mistakes=[
        (3, "padding = rate holds for 3x3 filters only, whose outer taps sit one tap spacing from the centre; a 5x5 "
            "filter reaches further on each side."),
        (13, "13 is the span of the dilated filter (its effective kernel size); the padding supplies only what hangs "
             "over one edge when the filter is centred on the first pixel."),
        (2, "2 keeps the size of a 5x5 filter at rate 1; at rate 3 its taps spread apart, so it spans more pixels."),
        (12, "12 is the total padding needed; it is split between both sides."),
    ],
    otherwise=lambda a: (f"with padding {shown(a)} the output "
                         f"{'grows' if a > same_padding(5, 3) else 'shrinks'}: 'same' padding on each side gives "
                         "back exactly half of what the dilated filter's span trims off the input."),
    more_wrong=(1,),
    hint=("draw the filter centred on the first pixel: how many of its taps' pixels hang over the edge? The padding "
          "must supply them, on each side.",
          "same padding is half of (effective kernel size - 1), and the effective kernel is K + (K - 1)(r - 1)."),
)


def _my_dilate(w: torch.Tensor, rate: int) -> torch.Tensor:
    """A learner-style solution: taps at 0, rate, 2 rate, ..., zeros between."""
    out = torch.zeros((len(w) - 1) * rate + 1, dtype=w.dtype)
    out[::rate] = w
    return out


def _one_too_long(w: torch.Tensor, rate: int) -> torch.Tensor:
    out = torch.zeros(len(w) * rate, dtype=w.dtype)
    out[::rate] = w
    return out


def _filter_and_rate(g: torch.Generator) -> tuple[torch.Tensor, int]:
    taps = int(torch.randint(1, 6, (1,), generator=g))
    return torch.randn(taps, generator=g), int(torch.randint(1, 7, (1,), generator=g))


function_exercise(
    "01.5",
    "Write dilate(w, rate) for a 1-D filter: the upsampled filter",
    reference=dilate_kernel,
    packaged=(dilate_kernel,),
    solution=_my_dilate,
    inputs=_filter_and_rate,
    cases=[(torch.tensor([1.0, 2.0, 3.0]), 2), (torch.tensor([4.0, -1.0]), 4), (torch.tensor([5.0]), 3)],
    mistakes=[
        (lambda w, r: w, "it returns the filter unchanged: insert rate - 1 zeros between neighbouring taps."),
        (lambda w, r: w.repeat_interleave(r), "it repeats every tap rate times; the holes hold zeros, not copies."),
        (lambda w, r: torch.cat([w, torch.zeros(r - 1, dtype=w.dtype)]),
         "it appends the zeros after the filter; they go *between* neighbouring taps."),
        (_one_too_long, "it is one hole too long: the filter ends at its last tap, (K - 1) * rate + 1 entries "
                        "for K taps."),
    ],
    signature="dilate(w, rate)",
    hint="start from zeros as long as the dilated filter (K taps, rate - 1 holes between neighbours), then place "
         "the taps rate entries apart.",
)


def _macs_01_6(taps: int = 9, side: int | None = None) -> int:
    """Multiply-adds of exercise 01.6's convolution (256 -> 256 channels, a 33 x 33 map, padding 12, rate 12) with
    ``taps`` multiplications per input channel and output value, on a ``side`` x ``side`` output (the padded
    one's by default)."""
    side = conv_output_size(33, 3, stride=1, padding=12, dilation=12) if side is None else side
    return side * side * 256 * 256 * taps


#: Exercise 01.6's message for a count that grows with the rate (times r, or times r squared).
_RATE_COSTS_NOTHING = "the rate moves where the taps read, not how many there are: nothing in the count grows with it."

value_exercise(
    "01.6",
    "Predict, then measure: the multiply-adds of a 256 -> 256 channel 3x3 convolution at rate 12 on a 33x33 map "
    "(padding 12, no bias, one image)",
    solution=_macs_01_6,
    answer_type="whole",
    kind="predict",
    mistakes=[
        (_macs_01_6(taps=25 * 25), "625 = 25 x 25 is the span of the dilated filter, holes included; the holes are "
                                   "never multiplied: each output value still reads K x K taps per input channel."),
        (_macs_01_6() * 12, _RATE_COSTS_NOTHING),
        (_macs_01_6() * 12 * 12, _RATE_COSTS_NOTHING),
        (_macs_01_6(side=9), "9 x 9 is the output without padding (33 - 24); padding 12 = rate keeps the map "
                             "33 x 33, and every one of those positions is computed."),
        (2 * _macs_01_6(), "that counts a multiply and an add as two operations (FLOPs, count_macs's count times "
                           "2); a multiply-add is one of each, counted once."),
        (33 * 33 * 256 * 9, "each output channel reads all 256 input channels, not one: count the input channels "
                            "too."),
        (33 * 33 * 9, "that is one input channel into one output channel; there are 256 of each."),
        (256 * 256 * 9, "256 x 256 x 9 is the parameter count; each weight is used once per output position."),
        (65 * 65 * 64 * 64 * 9, "that is the convolution of the cost table above at the cpu profile (64 channels on "
                                "a 65 x 65 map); this one has 256 channels on a 33 x 33 map."),
    ],
    otherwise=lambda a: (f"{shown(a)} is {direction(a, _macs_01_6())}: count the output positions, the output "
                         "channels, the input channels and the taps each output value multiplies, and nothing else."),
    more_wrong=(_macs_01_6(side=17),),
    hint=("count per output value first: how many taps does it multiply, in each input channel? Then count the output "
          "values: positions times output channels.",
          "positions x output channels x input channels x taps, with the output size from the padding "
          "(conv_output_size); measure it with count_macs on an nn.Conv2d(..., dilation=12, bias=False)."),
)
