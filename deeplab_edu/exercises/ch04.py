"""Exercises of chapter 04: boundary degeneration (DeepLabv3 Fig. 4) and image-level features."""

from __future__ import annotations

import math
from typing import Any

from ..boundary import degeneration_rate, effective_kernel_shape, valid_tap_counts, valid_weight_fractions
from ._core import exercise


def _number(answer: Any) -> str | None:
    if isinstance(answer, bool) or not isinstance(answer, (int, float)):
        return f"expected a number, got {type(answer).__name__}."
    return None


@exercise(
    "04.1",
    "Smallest rate at which a 3x3 filter is a 1x1 filter everywhere on a 33 x 33 map",
    solution=lambda: degeneration_rate(33),
    wrong_answers=(17, 16, 32, 34, 66),
    hint="the nearest off-centre tap is `rate` pixels away; when does it miss the map from every position?",
)
def _degeneration_rate(answer: Any) -> str | None:
    if (problem := _number(answer)) is not None:
        return problem
    if answer in (16, 17):
        return (f"at rate {answer} the middle rows already see only the centre, but positions near the "
                "border still reach across the map to the other side.")
    if answer == 32:
        return "at rate 32 the corner (0, 0) still reaches (32, 32), which is inside a 33 x 33 map."
    if answer != 33:
        return f"{answer} is not the smallest such rate."
    return None


@exercise(
    "04.2",
    "Valid taps of a 3x3 filter at the corner (0, 0) of a 65 x 65 map, rate 12",
    solution=lambda: int(valid_tap_counts(65, 65, 3, 12)[0, 0]),
    wrong_answers=(9, 1, 2, 3, 6),
    hint="count the valid row offsets (-12, 0, +12) and the valid column offsets, then multiply.",
)
def _corner(answer: Any) -> str | None:
    if (problem := _number(answer)) is not None:
        return problem
    if answer == 9:
        return "the taps at offset -12 fall above and left of the map: they are padding."
    if answer in (2, 3):
        return "the count is (valid rows) x (valid columns), not one of the factors alone."
    if answer != 4:
        return f"a corner position does not see {answer} valid taps at rate 12."
    return None


@exercise(
    "04.3",
    "Fraction of positions of a 65 x 65 map whose 3x3 filter keeps all 9 weights at rate 24",
    solution=lambda: valid_weight_fractions(65, 24)[9],
    wrong_answers=(17 / 65, 0.5, 0.0, 1.0, (41 / 65) ** 2),
    hint="per axis, both neighbours are inside when r <= i <= n - 1 - r; square the 1-D fraction.",
)
def _nine_valid(answer: Any) -> str | None:
    if (problem := _number(answer)) is not None:
        return problem
    right = (17 / 65) ** 2
    if math.isclose(answer, 17 / 65, rel_tol=1e-3):
        return "that is the 1-D fraction (one axis); a position needs both axes to keep all three taps."
    if math.isclose(answer, (41 / 65) ** 2, rel_tol=1e-3):
        return "41 rows have the *upper* neighbour inside; both neighbours are inside only for rows 24..40."
    if not math.isclose(answer, right, rel_tol=1e-3, abs_tol=1e-6):
        return f"{answer:.4g} is not the fraction; check it against valid_weight_fractions(65, 24)."
    return None


@exercise(
    "04.4",
    "Which filter does a 3x3 atrous conv with rate 24 act as on a 17 x 65 map (rows x columns)?",
    solution=lambda: effective_kernel_shape((17, 65), 24),
    wrong_answers=((3, 3), (1, 1), (3, 1), "1x1"),
    hint="rate 24 >= 17 rows, but < 65 columns.",
)
def _shape(answer: Any) -> str | None:
    if isinstance(answer, str):
        parts = answer.lower().replace(" ", "").split("x")
        try:
            answer = tuple(int(p) for p in parts)
        except ValueError:
            return f"could not read {answer!r} as a shape; answer like (rows, columns) or '1x3'."
    if not (isinstance(answer, (tuple, list)) and len(answer) == 2):
        return "answer with a shape (rows, columns), e.g. (3, 3)."
    answer = tuple(answer)
    if answer == (3, 1):
        return "rows and columns are swapped: the map is only 17 rows tall, so it is the vertical taps that die."
    if answer == (3, 3):
        return "every vertical off-centre tap is 24 rows away, and the map has only 17 rows."
    if answer == (1, 1):
        return "the horizontal taps still land on the map for columns 24..40 (65 columns wide)."
    if answer != (1, 3):
        return f"{answer} is not the effective filter shape."
    return None


@exercise(
    "04.5",
    "How many input positions influence one output of the image-pooling branch on a 33 x 33 map?",
    solution=lambda: 33 * 33,
    wrong_answers=(1, 9, 33, 65),
    hint="global average pooling averages over every position.",
)
def _pooling_footprint(answer: Any) -> str | None:
    if (problem := _number(answer)) is not None:
        return problem
    if answer == 1:
        return "one input is the footprint of a degenerate 3x3 atrous conv, not of image pooling."
    if answer == 9:
        return "nine inputs is a 3x3 filter that is still whole; pooling sees the whole map."
    if answer != 33 * 33:
        return f"{answer} is not the number of positions of a 33 x 33 map."
    return None
