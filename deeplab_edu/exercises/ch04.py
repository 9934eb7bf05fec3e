"""Exercises of chapter 04: boundary degeneration (DeepLabv3 Fig. 4) and image-level features."""

from __future__ import annotations

import numpy as np

from ..boundary import degeneration_rate, effective_kernel_shape, valid_tap_counts, valid_weight_fractions
from ._core import direction, not_judged, shown, value_exercise

def _last_whole_rate(side: int) -> int:
    """The largest rate at which some position of a side x side map still keeps all nine taps of a 3x3 filter."""
    return max(r for r in range(1, side + 1) if (valid_tap_counts(side, side, 3, r) == 9).any())


value_exercise(
    "04.1",
    "Smallest rate at which no position of a 33 x 33 map keeps all nine taps of a 3x3 filter",
    solution=lambda: _last_whole_rate(33) + 1,
    answer_type="whole",
    mistakes=[
        (degeneration_rate(33), "at rate 33 the filter is 1x1 everywhere, but it stopped being whole everywhere "
                                "long before: the question asks when the *last* position loses a tap."),
        (16, "too small: at rate 16 one position still keeps all nine taps. Which position has the most room on "
             "every side, and how far do its taps reach?"),
        (32, "at rate 32 only the border rows and columns keep an off-centre tap (the corners four taps), and "
             "none keeps all nine; the last position to keep all nine is the centre, which loses them much earlier."),
        (34, "34 is one past 33: the last position to keep all nine taps is the centre; how far is it from each "
             "edge?"),
    ],
    otherwise=lambda a: (f"at rate {shown(a)} some position (the centre, for one) still keeps all nine taps: the "
                         "rate must be larger." if a <= _last_whole_rate(33) else
                         f"at rate {shown(a)} no position keeps all nine taps, but a smaller rate already does "
                         "that: find the first one."),
    more_wrong=(9, 18, 20, 66),
    hint="which position keeps its nine taps longest? It has the most room on every side; how far is it from an edge?",
)

# 04.2: predict the valid-tap count map of a 5 x 8 map at rate 3, then measure it.
_H, _W, _RATE = 5, 8, 3


def _per_axis(n: int, rate: int, last: int | None = None) -> np.ndarray:
    """Valid taps along one axis; ``last`` is the largest index counted as inside (n - 1 is right)."""
    last = n - 1 if last is None else last
    i = np.arange(n)[:, None] + rate * np.array([-1, 0, 1])[None, :]
    return ((i >= 0) & (i <= last)).sum(1)


_ROWS, _COLS = _per_axis(_H, _RATE), _per_axis(_W, _RATE)


def _first_difference(answer: np.ndarray) -> str:
    want = valid_tap_counts(_H, _W, 3, _RATE)
    i, j = map(int, np.argwhere(~np.isclose(answer, want, rtol=0, atol=1e-9))[0])
    return (f"at position ({i}, {j}) you said {shown(answer[i, j])}, "
            f"{direction(answer[i, j], want[i, j], more='too many', less='too few')}: count the valid rows "
            f"(offsets -3, 0, +3 from row {i}) and the valid columns, then multiply.")


value_exercise(
    "04.2",
    "Predict the valid-tap count map of a 3x3 filter at rate 3 on a 5 x 8 map",
    solution=lambda: valid_tap_counts(_H, _W, 3, _RATE),
    answer_type="array",
    kind="predict",
    mistakes=[
        (lambda a: a.shape == (_W, _H), "rows and columns are swapped: the map has 5 rows and 8 columns, shape (5, 8)."),
        (lambda a: a.shape != (_H, _W), lambda a: not_judged(f"the map has 5 rows and 8 columns, shape (5, 8); yours "
                                                             f"has shape {a.shape}.")),  # a form, as in 07.4 and 08.4
        (valid_tap_counts(_H, _W, 3, _RATE) / 9, "these are fractions of the nine taps (counts / 9): the exercise "
                                                 "asks for the counts themselves, whole numbers 1 to 9."),
        (valid_tap_counts(_H, _W, 3, _RATE) - 1, "every count is one short: the centre tap always lands on the map."),
        (np.full((_H, _W), 9), "with rate 3 on a 5-row map, every position has at least one vertical tap on the "
                               "padding; no position keeps all nine."),
        (_ROWS[:, None] + _COLS[None, :], "a tap is valid when its row *and* its column are on the map: multiply "
                                          "the per-axis counts, do not add them."),
        (np.outer(_per_axis(_H, _RATE, _H), _per_axis(_W, _RATE, _W)),
         "a tap at index n is already outside an n-pixel axis: valid means 0 <= i + r k <= n - 1."),
    ],
    otherwise=_first_difference,
    more_wrong=(np.full((_H, _W), 4),),
    hint="per axis, count the offsets -3, 0, +3 that stay inside (v_r(i) in {1, 2, 3}); the 2-D count is the "
         "product of the row count and the column count, e.g. np.outer(rows, columns).",
)

value_exercise(
    "04.3",
    "Fraction of positions of a 65 x 65 map whose 3x3 filter keeps all 9 weights at rate 20",
    solution=lambda: valid_weight_fractions(65, 20)[9],
    answer_type="fraction",
    rel_tol=2e-2,  # 0.15, 0.148 or 0.1479 (the closest listed mistake, (26 / 65)**2, is 8 % away)
    abs_tol=1e-6,
    mistakes=[
        (lambda a: abs(a - 25 / 65) <= 1e-3,  # closer than rel_tol: (40 / 65) ** 2, 1.5 % away, is not it (a trial)
         "that is the 1-D fraction (one axis); a position needs both axes to keep all three taps."),
        ((45 / 65) ** 2, "45 rows have the *upper* neighbour inside; a row keeps both neighbours only when it is at "
                         "least 20 rows from either edge."),
        (lambda a: any(abs(a - (n / 65) ** 2) <= 1e-2 * (n / 65) ** 2 for n in (24, 26)),
         "one row off: count the rows that keep both neighbours from the first to the last, both included (and as "
         "many columns)."),
    ],
    otherwise=lambda a: (f"{shown(a)} is {direction(a, valid_weight_fractions(65, 20)[9])}: a position keeps all nine "
                         "weights only when its row and its column both have their neighbours 20 cells away on "
                         "the map; what share of rows does, and of positions?"),
    more_wrong=(0.5, 0.0, 1.0, 25 / 65),
    hint="per axis, both neighbours are inside when r <= i <= n - 1 - r; square the 1-D fraction.",
)


value_exercise(
    "04.4",
    "The largest filter any position applies (effective_kernel_shape) for a 3x3 atrous conv at rate 24 on a 17 x 65 map",
    solution=lambda: effective_kernel_shape((17, 65), 24),
    answer_type="ints",
    mistakes=[
        (lambda a: len(a) != 2, not_judged("answer with a shape (rows, columns): two numbers.")),
        ((3, 1), "rows and columns are swapped: the map is only 17 rows tall, so it is the vertical taps that die."),
        ((3, 3), "every vertical off-centre tap is 24 rows away, and the map has only 17 rows."),
        ((1, 1), "too small: the map is 65 columns wide. Do the horizontal taps at rate 24 miss it at every "
                 "position?"),
        ((1, 2), "1 x 2 is what most positions apply (one horizontal neighbour lands on the map); columns 24..40 "
                 "keep both, and the question asks for the largest filter any position applies."),
    ],
    otherwise=lambda a: f"{a} is not the largest filter any position applies (taps per column, taps per row).",
    more_wrong=("1x1", "3 x 3"),
    hint="rate 24 >= 17 rows, but < 65 columns.",
)

#: 04.5: the ASPP of the chapter without image pooling (1x1 and 3x3 at these rates), at the corner of a 33 x 33 map.
RATES_04_5, SIDE_04_5 = (6, 12, 18), 33


def _aspp_corner_taps(rates: tuple[int, ...] = RATES_04_5, side: int = SIDE_04_5) -> set[tuple[int, int]]:
    """The inputs the 1x1 branch and each 3x3 branch read from output (0, 0): the taps on the map."""
    taps = {(0, 0)}
    for r in rates:
        taps |= {(i, j) for i in (-r, 0, r) for j in (-r, 0, r) if 0 <= i < side and 0 <= j < side}
    return taps


value_exercise(
    "04.5",
    "Predict: how many inputs reach the corner output of an ASPP without image pooling (33 x 33 map)?",
    solution=lambda: len(_aspp_corner_taps()),
    answer_type="whole",
    unit="pixel",
    kind="predict",
    mistakes=[
        (SIDE_04_5 ** 2, "that is the footprint with image pooling, which reads every position; this ASPP has none."),
        (16, "16 pairs every row offset with every column offset (0, 6, 12, 18 each); a tap takes its row and "
             "column offsets from the same branch: (6, 12) is read by no branch."),
        (1 + 9 * len(RATES_04_5), "that counts every branch's nine taps; at the corner the taps at -r fall on the "
                                  "padding."),
        (1 + 4 * len(RATES_04_5), "the corner itself is counted once for each branch; it is one input."),
        (4, "that is one branch's taps on the map; the projection mixes all branches: count their union."),
    ],
    otherwise=lambda a: (f"{shown(a)} is {direction(a, len(_aspp_corner_taps()), more='too many', less='too few')}: "
                         "list the taps (0 or +r on each axis) of each branch that land on the map, and count the "
                         "positions in their union."),
    more_wrong=(1, 9, 12),
    hint="at the corner, which of each branch's taps at -r, 0 and +r (on each axis) land on the map? Count each "
         "position once.",
)
