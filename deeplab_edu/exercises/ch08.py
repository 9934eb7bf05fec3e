"""Exercises of chapter 08: DeepLabv3 trained on a laptop, with ASPP rates that fit the feature map."""

from __future__ import annotations

import math
from typing import Any

import torch

from ..boundary import mean_valid_fraction
from ..models.aspp import degenerate_rates, feature_map_side, fit_atrous_rates
from ._core import direction, function_exercise, not_judged, value_exercise


def _degenerate_branches(crop_size: int, output_stride: int, rates: tuple[int, ...]) -> tuple[int, ...]:
    return degenerate_rates(feature_map_side(crop_size, output_stride), rates)


def _learner(crop_size: int, output_stride: int, rates: tuple[int, ...]) -> tuple[int, ...]:
    """A learner-style solution: halve the side, rounding up, once per factor 2 of the stride; then rate >= side."""
    side, stride = crop_size, output_stride
    while stride > 1:
        side, stride = math.ceil(side / 2), stride // 2
    return tuple(r for r in rates if r >= side)


def _inputs(gen: torch.Generator) -> tuple[Any, ...]:
    crop = int(torch.randint(16, 600, (1,), generator=gen))
    stride = (8, 16, 32)[int(torch.randint(0, 3, (1,), generator=gen))]
    rates = tuple(int(r) for r in torch.randint(1, 40, (3,), generator=gen))  # in any order: the answer keeps it
    return crop, stride, rates


function_exercise(
    "08.1",
    "Write degenerate_branches(crop_size, output_stride, rates): the rates whose 3x3 branch is exactly 1x1",
    reference=_degenerate_branches,
    packaged=(degenerate_rates,),
    solution=_learner,
    inputs=_inputs,
    cases=[(96, 16, (6, 12, 18)), (96, 16, (1, 2, 3)), (513, 16, (6, 12, 18)), (97, 16, (6, 7, 12)),
           (321, 32, (6, 10, 12)), (200, 8, (12, 24, 36)), (97, 16, (18, 3, 7, 12))],
    mistakes=[
        (lambda c, s, r: tuple(x for x in r if x >= c // s),
         "crop_size // output_stride rounds down, but every stride-2 layer rounds an odd side up "
         "(97 px at output stride 16: 49, 25, 13, 7 cells, not 6)."),
        (lambda c, s, r: tuple(x for x in r if x > feature_map_side(c, s)),
         "a rate equal to the map side already degenerates: from every position the nearest off-centre tap "
         "is `rate` cells away, off an axis of `rate` cells."),
        (lambda c, s, r: tuple(x for x in r if 2 * x >= feature_map_side(c, s)),
         "rate >= side / 2 only makes *some* positions lose both side taps; exactly 1x1 everywhere needs "
         "rate >= side."),
        (lambda c, s, r: tuple(x for x in r if x >= c),
         "compare the rate with the feature map, not with the crop: rates count feature-map cells."),
        (lambda c, s, r: tuple(sorted(_learner(c, s, r))),
         "the right rates, sorted: keep them in the order given (a branch's place in ASPP is its order)."),
    ],
    signature="degenerate_branches(crop_size, output_stride, rates)",
    hint="the side is the crop halved log2(output_stride) times, rounding up; a branch is 1x1 when rate >= side.",
)

value_exercise(
    "08.2",
    "Predict the mean share of valid weights of a rate-4 filter on the 7 x 7 map of a 97-pixel crop",
    solution=lambda: mean_valid_fraction(7, 4),
    answer_type="fraction",
    kind="predict",
    abs_tol=0.005,
    mistakes=[
        (1 / 9, "1/9 is a 1x1 filter, but rate 4 is smaller than the 7-cell map: most positions keep a side tap."),
        (13 / 21, "13/21 is one axis (13 valid taps of 21); the two axes multiply."),
        (4 / 9, "4/9 is section 6's rate 3 on 6 cells, where every position keeps 2 of 3 taps per axis; on 7 cells "
                "at rate 4 the middle position keeps only its centre."),
        (1.0, "near the border some taps land on the padding: on a 7-cell axis, i - 4 or i + 4 can fall outside."),
        (lambda a: 0.005 < abs(a - mean_valid_fraction(7, 4)) < 0.06,
         "close, but count exactly: per axis, which of i - 4, i, i + 4 are in 0..6?"),
    ],
    otherwise=lambda a: (f"{a:.3f} is {direction(a, mean_valid_fraction(7, 4))}: count the valid taps per axis "
                         "(position i uses i - 4, i, i + 4 when they are in 0..6), then multiply the axes."),
    hint="per axis, which of i - 4, i, i + 4 lie in 0..6 (the middle position is the exception)? The 2-D share "
         "is the product of the axes' shares.",
)


value_exercise(
    "08.3",
    "Predict the rates fit_atrous_rates chooses for the 16 x 16 map of a 256 crop at output stride 16",
    solution=lambda: fit_atrous_rates(16),
    answer_type="ints",
    kind="predict",
    mistakes=[
        ((3, 6, 9), "(3, 6, 9) scales (6, 12, 18) by 16/33 and rounds; but the share of valid weights does not "
                    "scale with the rate: compare each of your rates' share on 16 cells with its paper rate's share "
                    "on 33 cells."),
        ((6, 12, 18), "on a 16-cell map rate 18 is exactly 1x1 (18 >= 16) and rate 12 reads mostly padding: "
                      "these are the rates the fit replaces."),
        ((2, 4, 8), "close, but the middle rate can grow: a larger rate on 16 cells still uses at least the share "
                    "of its weights that rate 12 uses on 33 cells."),
        (lambda a: len(a) != 3, not_judged("one rate per paper rate: three numbers.")),
    ],
    otherwise=lambda a: f"{a} is not it: check each of your rates against its paper rate's share of valid weights "
                        "on 33 cells, from both sides (is one more still enough?).",
    hint=("the fit keeps what each paper rate does on 33 cells, the share of its weights that land on the map, not "
          "the rate's size relative to the map: find that share for 6, 12 and 18 first.",
          "for each paper rate p in (6, 12, 18), compare deeplab_edu.boundary.mean_valid_fraction(16, r) with "
          "mean_valid_fraction(33, p), for whole rates r."),
)
