"""Exercises of chapter 08: DeepLabv3 trained on a laptop, with ASPP rates that fit the feature map."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..boundary import mean_valid_fraction
from ..models.aspp import degenerate_rates, feature_map_side, fit_atrous_rates
from ._core import direction, function_exercise, normalise_text, not_judged, parse_ints, shown, value_exercise


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
    otherwise=lambda a: (f"{shown(a)} is {direction(a, mean_valid_fraction(7, 4))}: count the valid taps per axis "
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
        ((3, 6, 9), "(3, 6, 9) is (6, 12, 18) scaled by 16/33 and rounded, and also the rates whose share of valid "
                    "weights on 16 cells comes closest to each paper rate's share on 33 cells; but the fit keeps the "
                    "largest rate whose share is at least the paper rate's, and each of these three uses a little "
                    "less: compare the shares, and keep only rates that reach the paper's."),
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


#: Exercise 08.4's input: height and width of an image of odd, unequal sides.
INPUT_08_4 = (97, 129)


def _shapes_08_4(halvings: tuple[int, int] = (4, 3)) -> list[list[tuple[int, ...]]]:
    """Per output stride (16, then 8): the (height, width) of the backbone output, the ASPP output and the logits;
    ``halvings``: the stride-2 layers counted at each stride (a learner who forgets the stem's counts fewer)."""
    rows = []
    for times in halvings:
        feature = tuple(feature_map_side(n, 2 ** times) for n in INPUT_08_4)  # each halving rounds an odd side up
        rows.append([feature, feature, INPUT_08_4])
    return rows


def _column(a: np.ndarray, k: int, rows: Any) -> bool:
    """Column ``k`` of answer ``a`` (0: backbone, 1: ASPP, 2: logits) equals that column of ``rows``."""
    return bool(np.array_equal(a[:, k], np.asarray(rows, dtype=float)[:, k]))


def _floor_08_4() -> list[list[tuple[int, ...]]]:
    """08.4's answer with the sides divided by the output stride, rounding down."""
    return [[tuple(n // s for n in INPUT_08_4)] * 2 + [INPUT_08_4] for s in (16, 8)]


def _logits_at_feature_size() -> list[list[tuple[int, ...]]]:
    """08.4's answer with the logits left at the feature map's size."""
    return [[feature, feature, feature] for feature, _, _ in _shapes_08_4()]


def _logits_map_times_stride() -> list[list[tuple[int, ...]]]:
    """08.4's answer with the logits as the feature map's side times the output stride."""
    return [[feature, feature, tuple(n * s for n in feature)] for (feature, _, _), s in zip(_shapes_08_4(), (16, 8))]


def _logits_times_stride(a: np.ndarray) -> bool:
    """08.4's answer gives the logits, at either stride, as the feature map's side times the output stride
    (and not the input's size)."""
    return any(np.array_equal(a[row, 2], a[row, 0] * stride) and not np.array_equal(a[row, 2], INPUT_08_4)
               for row, stride in enumerate((16, 8)))


def _wrong_pairs_08_4(a: np.ndarray) -> str:
    """08.4's message: which of the six (height, width) pairs are wrong."""
    stages = ("the backbone output", "the ASPP output", "the logits")
    wrong = [f"{stage} at output stride {stride}" for row, stride in enumerate((16, 8))
             for k, stage in enumerate(stages) if not np.array_equal(a[row, k], np.asarray(_shapes_08_4())[row, k])]
    return (f"{'; '.join(wrong)}: not the size the model gives. Count the stride-2 layers from the input to each "
            "stage, halving the side each time and rounding an odd side up; then ask what ASPP and the final "
            "upsampling do to that size.")


value_exercise(
    "08.4",
    f"Predict the (height, width) of the backbone output, the ASPP output and the logits of DeepLabv3 for a "
    f"{INPUT_08_4[0]} x {INPUT_08_4[1]} input, at output stride 16 and then 8",
    solution=_shapes_08_4,
    answer_type="array",
    kind="predict",
    mistakes=[
        (lambda a: a.shape != (2, 3, 2), not_judged(
            "answer with two rows, output stride 16 first and 8 second, each of three (height, width) pairs: the "
            "backbone output, the ASPP output and the logits.")),
        (lambda a: bool(np.array_equal(a[..., ::-1], np.asarray(_shapes_08_4(), dtype=float))),
         "height and width are swapped: PyTorch orders an image (C, H, W), and the input is "
         f"{INPUT_08_4[0]} pixels high and {INPUT_08_4[1]} wide."),
        (lambda a: _column(a, 0, _floor_08_4()),
         "dividing by the output stride and rounding down loses a row: every stride-2 layer (a 3x3 convolution "
         "padded by 1) rounds an odd side *up*, so the side is halved rounding up, once per factor 2 of the stride."),
        (lambda a: _column(a, 0, _shapes_08_4((3, 2))),
         "one halving too few: the stem's stride counts too. Output stride 16 means the input side halved four "
         "times from the input, the stem's stride-2 layer included, and output stride 8 three times."),
        (lambda a: _column(a, 0, _shapes_08_4((2, 1))),
         "two halvings too few: the stem halves the image too (in a ResNet a stride-2 convolution and a stride-2 "
         "max-pool), and the output stride counts every stride-2 layer from the input."),
        (lambda a: _column(a, 0, _shapes_08_4()) and _column(a, 1, _shapes_08_4())
         and _column(a, 2, _logits_at_feature_size()),
         "the logits are computed at the feature map's size, but DeepLabv3 upsamples them bilinearly to the input's "
         "exact size, whatever the output stride: what the model returns is one score per input pixel."),
        (_logits_times_stride,
         "the logits are not the feature map's side times the output stride: the final upsampling is bilinear "
         "interpolation to the input's exact size, not by a fixed factor s (section 1). Every halving rounded an "
         "odd side up, so the map times the stride can overshoot the input; the model returns one score per input "
         "pixel."),
        (lambda a: _column(a, 0, _shapes_08_4()) and not _column(a, 1, _shapes_08_4()),
         "the backbone is right, but ASPP keeps the size of the map it reads: every branch pads its atrous "
         "convolution, and image pooling's vector is upsampled back to the map."),
        (lambda a: bool(np.array_equal(a[1], a[0])),
         "the same at both strides: output stride 8 removes block 3's stride (a dilation replaces it), so the "
         "backbone's map is denser than at 16."),
        (lambda a: bool(np.array_equal(a[0, 0], _shapes_08_4()[0][0]) and np.array_equal(a[1, 0], 2 * a[0, 0])),
         "twice the output-stride-16 side overshoots for an odd input: at output stride 8 halve the input side "
         "three times, rounding up each time, rather than doubling the map of output stride 16."),
    ],
    otherwise=_wrong_pairs_08_4,
    more_wrong=(_floor_08_4(), _shapes_08_4((3, 2)), _logits_at_feature_size(), _logits_map_times_stride()),
    form="two rows, output stride 16 then 8, each of three (height, width) pairs: e.g. "
         "[[(1, 2), (1, 2), (3, 4)], [(5, 6), (5, 6), (3, 4)]]",
    hint=("count the stride-2 layers from the input to the backbone's output (the stem's too), each rounding an odd "
          "side up; ASPP pads every branch, and the logits go back to the input's size.",
          "at output stride s the backbone halves each side log2(s) times, rounding up each time; ASPP keeps that "
          "size, and the logits are upsampled to the input's height and width."),
)


#: Exercise 08.5's rows: section 10's first table (the mIoU of each model and evaluation stride), in its order.
ROWS_08_5 = ("phase 1, eval OS 16", "phase 1, eval OS 8", "control (phase 2 at OS 16), eval OS 16",
             "control (phase 2 at OS 16), eval OS 8", "phase 2, eval OS 8")


def _row_numbers(answer: Any) -> Any:
    """:data:`ROWS_08_5`'s labels (``evaluations``' keys) in an answer as their row numbers, 1 to 5, beside any
    row numbers given as such (``("phase 2, eval OS 8", 4)``, ``"4"`` too); a :func:`not_judged` message naming
    the texts that are no label (a typo) and listing the labels; else unchanged."""
    if not isinstance(answer, (tuple, list)) or not any(isinstance(a, str) for a in answer):
        return answer
    labels = [normalise_text(r) for r in ROWS_08_5]

    def row(a: Any) -> Any:
        if not isinstance(a, str):
            return a
        if normalise_text(a) in labels:
            return labels.index(normalise_text(a)) + 1
        number = parse_ints(a)
        return number[0] if number is not None and len(number) == 1 else a

    rows = tuple(row(a) for a in answer)
    unknown = [r for r in rows if isinstance(r, str) and parse_ints(r) is None]  # neither a label nor numbers
    if unknown:
        verb = "is not a row" if len(unknown) == 1 else "are not rows"
        return not_judged(f"{' and '.join(map(repr, unknown))} {verb} of section 10's table: its rows, 1 to "
                          f"{len(ROWS_08_5)}, are {', '.join(map(repr, ROWS_08_5))}. Answer with two of these labels, "
                          "or with two row numbers.")
    return rows


value_exercise(
    "08.5",
    "Which difference of section 10's mIoUs, row a minus row b, isolates what fine-tuning at output stride 8 adds "
    "beyond fine-tuning as long at 16?",
    solution=lambda: (ROWS_08_5.index("phase 2, eval OS 8") + 1,
                      ROWS_08_5.index("control (phase 2 at OS 16), eval OS 8") + 1),
    answer_type="ints",
    parse=_row_numbers,
    mistakes=[
        (lambda a: len(a) != 2, not_judged("answer with two row numbers, (a, b) for row a minus row b.")),
        (lambda a: not all(1 <= r <= len(ROWS_08_5) for r in a),
         not_judged(f"the table has rows 1 to {len(ROWS_08_5)}: answer with two of them.")),
        (lambda a: a[0] == a[1], "a row minus itself is zero: take two models that differ in one thing."),
        ((5, 2), "phase 2 against phase 1, both at 8, is phase 2's whole gain: it holds what any such fine-tuning "
                 "gives (more iterations, frozen batch norm, a restarted learning rate) as well as the stride. The "
                 "control was trained to take that part away."),
        ((4, 2), "the control against phase 1, both at 8, is what the fine-tuning gives by itself at output stride "
                 "16: the part to take away, not the part asked for."),
        ((5, 3), "phase 2 at 8 against its control at 16 compares each at the stride it trained at (chapter 10's "
                 "finding g2): the two rows differ in the evaluation stride too, so the difference also holds what "
                 "evaluating at 8 instead of 16 changes. Compare two rows evaluated at the same stride."),
        ((5, 1), "phase 2 at 8 against phase 1 at 16 mixes three changes: the fine-tuning, the stride it trained "
                 "at and the stride of the evaluation."),
        ((2, 1), "phase 1 at 8 against phase 1 at 16 is what evaluating at 8 changes for a model that never trained "
                 "at 8: no fine-tuning is in it."),
        ((4, 3), "the control at 8 against the control at 16 is what evaluating at 8 changes for the model "
                 "fine-tuned at 16: phase 2, which trained at 8, is not in it."),
        ((4, 5), "the right two rows, the wrong sign: the question asks what fine-tuning at 8 adds, so phase 2's "
                 "row comes first."),
    ],
    otherwise=lambda a: (f"{a} does not isolate it: the two rows should differ in one thing only, the stride the "
                         "fine-tuning trained at, and share the fine-tuning itself and the evaluation stride."),
    hint="which two models had the same fine-tuning (iterations, frozen batch norm, learning rate) from the same "
         "checkpoint, and at which stride are both evaluated in the table?",
)
