"""Exercises of chapter 06 (data): padding with the ignore label, the trainaug split, object scales."""

from __future__ import annotations

from typing import Any

from ..data.procedural import DIFFICULTIES
from ..data.stats import log_uniform_share
from ._core import direction, not_judged, shown, value_exercise

# 06.1: padded pixels carry the ignore label 255, so the mean loss runs over the labelled pixels
# only. The per-pixel cross-entropies the network would get if every pixel were scored, and the mask
# (one padded pixel), as in the chapter.
LOSSES_06_1 = ((0.2, 0.4), (9.0, 0.6))
MASK_06_1 = ((0, 1), (255, 1))
_SCORED = [loss for lrow, mrow in zip(LOSSES_06_1, MASK_06_1) for loss, m in zip(lrow, mrow) if m != 255]
_ALL = [loss for lrow in LOSSES_06_1 for loss in lrow]

value_exercise(
    "06.1",
    "Predict: CrossEntropyLoss(ignore_index=255) of a 2 x 2 crop with one padded pixel",
    solution=lambda: sum(_SCORED) / len(_SCORED),
    answer_type="number",
    rel_tol=1e-3,
    kind="predict",
    mistakes=[
        (sum(_ALL) / len(_ALL), "that averages over all four pixels: the padded pixel's 9.0 does not count at all."),
        (sum(_SCORED) / len(_ALL), "that leaves out the padded pixel's loss but still divides by four: the mean "
                                   "runs over the pixels that count."),
        (sum(_SCORED), "that is the sum; the default reduction is the mean over the pixels that count."),
        (sum(_ALL), "that is the sum over all four pixels; the padded one does not count, and the reduction is a mean."),
    ],
    otherwise=lambda a: (f"{shown(a)} is {direction(a, sum(_SCORED) / len(_SCORED))} for the loss: which pixels "
                         "does ignore_index leave out, and what does the mean divide by?"),
    more_wrong=(0.0, 9.0),
    hint="a pixel labelled 255 is left out of the sum and out of the count.",
)

# 06.2: a VOC image of 500 x 375 pixels (width x height), scaled by 0.5 and padded up to a 513 x 513 crop.
_SCALED = (round(375 * 0.5), round(500 * 0.5))
_PAD_FRACTION = 1 - _SCALED[0] * _SCALED[1] / 513**2

value_exercise(
    "06.2",
    "Fraction of a 513 x 513 crop that is padding after scaling a 500 x 375 (width x height) image by 0.5",
    solution=lambda: _PAD_FRACTION,
    answer_type="fraction",
    abs_tol=2e-3,
    mistakes=[(0.75, "0.75 is what halving *both sides of a crop-sized image* gives; the image here is smaller "
                     "than the crop."),
              (1 - 500 * 375 / 513**2, "that is the padding of the image at its own size: it is scaled by 0.5 "
                                       "first."),
              (1 - _PAD_FRACTION, "that is the share the scaled image covers; the question asks for the padding, "
                                  "the rest of the crop."),
              (1 - 0.5 * 500 * 375 / 513**2, "that halves the image's area; scaling by 0.5 halves each side, so "
                                             "the area shrinks more.")],
    otherwise=lambda a: (f"{shown(a)} is {direction(a, _PAD_FRACTION)} for the share of padding: the scaled image "
                         "covers part of the crop, and padding fills the rest."),
    more_wrong=(0.5, 100 * _PAD_FRACTION),
    hint=("the scaled image sits somewhere inside the crop, wherever the random crop puts it; the padding "
          "is the crop's area less the image's.",
          "scale each side by 0.5 and round it to whole pixels (375 / 2 = 187.5: either rounding is accepted); "
          "everything else in the 513 x 513 crop is padding."),
)

# 06.3: toy split lists.
TOY_VOC_TRAIN = ["a", "b", "c"]
TOY_VOC_VAL = ["d", "e"]
TOY_SBD_TRAIN = ["b", "d", "f", "g"]
TOY_SBD_VAL = ["e", "h"]
_TRAINAUG = sorted((set(TOY_SBD_TRAIN) | set(TOY_SBD_VAL) | set(TOY_VOC_TRAIN)) - set(TOY_VOC_VAL))
_TOY_IDS = sorted(set(TOY_VOC_TRAIN) | set(TOY_VOC_VAL) | set(TOY_SBD_TRAIN) | set(TOY_SBD_VAL))


def _ids(answer: Any) -> Any:
    """06.3 compares image ids whatever their order or container: ``["a", "b"]``, ``("b", "a")``,
    ``"a b"``, ``"a, b"`` or ``"['a', 'b']"`` all become ``"a b"`` (ids sorted); an id given twice stays twice (a list
    of training images names each image once, which the checker then says)."""
    if isinstance(answer, str):  # a list typed inside quotes ("['a', 'b']") too: its brackets and quotes dropped
        items = "".join(" " if c in ",;/|[](){}'\"" else c for c in answer).split()
    else:
        try:
            items = [str(v).strip() for v in answer]
        except TypeError:
            return answer
    return " ".join(sorted(i.lower() for i in items if i))


value_exercise(
    "06.3",
    "The trainaug list of toy splits",
    solution=lambda: " ".join(_TRAINAUG),
    answer_type="text",
    parse=_ids,
    form="a list of image ids, e.g. ['a', 'b']",
    mistakes=[
        (lambda a: len(a.split()) != len(set(a.split())),
         lambda a: f"{sorted({i for i in a.split() if a.split().count(i) > 1})} listed more than once: the list of "
                   "training images names each image once (a union of the lists, less VOC val)."),
        (lambda a: bool(set(a.split()) - set(_TOY_IDS)),
         lambda a: not_judged(f"{sorted(set(a.split()) - set(_TOY_IDS))}: not ids of these lists (they are "
                              f"{', '.join(_TOY_IDS)}). Answer with a list of ids, e.g. ['a', 'b'].")),  # a form
        (lambda a: bool(set(a.split()) & set(TOY_VOC_VAL)),
         lambda a: f"{sorted(set(a.split()) & set(TOY_VOC_VAL))} are VOC val images: training on them would leak "
                   "the test set into training."),
        (lambda a: set(_TRAINAUG) - set(a.split()) == set(TOY_SBD_VAL) - set(TOY_VOC_VAL),
         lambda a: f"missing {sorted(set(_TRAINAUG) - set(a.split()))}: SBD's *val* images are training images "
                   "for VOC."),
        (lambda a: bool(set(_TRAINAUG) - set(a.split())),
         lambda a: f"missing {sorted(set(_TRAINAUG) - set(a.split()))}: trainaug takes every image of SBD train, "
                   "SBD val and VOC train, except those in VOC val."),
    ],
    otherwise=lambda a: f"{sorted(set(a.split()) - set(_TRAINAUG))} are in none of the training lists.",
    more_wrong=(
        sorted(set(TOY_SBD_TRAIN) | set(TOY_SBD_VAL) | set(TOY_VOC_TRAIN)),
        sorted(set(TOY_SBD_TRAIN) | set(TOY_VOC_TRAIN)),
        sorted((set(TOY_SBD_TRAIN) | set(TOY_VOC_TRAIN)) - set(TOY_VOC_VAL)),
        ["a", "b", "c", "f", "g", "h", "z"],
        ["a", "b", "c", "f", "g", "h", "h"],  # a new learner's trial: accepted, the ids compared as a set
    ),
    hint="train_aug = (SBD train ∪ SBD val ∪ VOC train) minus VOC val.",
)

# 06.4: the share of a log-uniform size law in a range of two octaves (the chapter's scenes:
# diameters from 2 % to 90 % of a 256-pixel side, `SceneStyle.diameter_range`).
DRAWN_DIAMETERS = DIFFICULTIES["hard"].diameter_range(256)
RANGE_06_4 = (10, 40)

value_exercise(
    "06.4",
    "Predict: the share of the shapes whose diameter lies between 10 and 40 px (log-uniform, 5.12 to 230.4 px)",
    solution=lambda: log_uniform_share(*RANGE_06_4, *DRAWN_DIAMETERS),
    answer_type="fraction",
    rel_tol=0.02,
    kind="predict",
    mistakes=[
        (lambda a: abs(a / log_uniform_share(*RANGE_06_4, *DRAWN_DIAMETERS) - 1) < 0.06,
         "close, but not the law's share: a share measured on a sample of shapes scatters around it by a few per "
         "cent; predict what the log-uniform law itself gives."),
        ((RANGE_06_4[1] - RANGE_06_4[0]) / (DRAWN_DIAMETERS[1] - DRAWN_DIAMETERS[0]),
         "that is the share for sizes drawn *uniformly*; log-uniform means every factor of 2 gets the same share."),
        (log_uniform_share(16, 32, *DRAWN_DIAMETERS),
         "that is one octave's share; 10 to 40 px is two octaves (a factor of 4)."),
        (2 / 6, "2/6 counts six octaves from 4 to 256 px; the law spans 5.12 to 230.4 px, not a whole number of "
                "octaves: count them from those bounds."),
        (2 / 7, "2/7 counts seven octaves; the law spans 5.12 to 230.4 px, not a whole number of octaves: count them "
                "from those bounds."),
        (2 / 5, "2/5 counts five octaves; the law spans 5.12 to 230.4 px, not a whole number of octaves: count them "
                "from those bounds."),
    ],
    otherwise=lambda a: (f"{shown(a)} is {direction(a, log_uniform_share(*RANGE_06_4, *DRAWN_DIAMETERS))}: under a "
                         "log-uniform law every factor of 2 in size holds the same share of the shapes; how many "
                         "factors of 2 does 10 to 40 px span, and how many the whole law?"),
    more_wrong=(0.5, 30 / 256),
    hint=("log-uniform means equal ratios get equal shares: compare the ratio 40 / 10 with the ratio of the law's "
          "largest to its smallest diameter, on a log scale.",
          "under a log-uniform law the share of [a, b) is log(b / a) / log(max / min), for a range inside [min, max]."),
)
