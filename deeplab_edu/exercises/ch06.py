"""Exercises of chapter 06 (data): padding with the ignore label, the trainaug split, object scales."""

from __future__ import annotations

from typing import Any

from ..data.stats import log_uniform_share
from ._core import shown, value_exercise

value_exercise(
    "06.1",
    "The label of mask pixels added by padding a crop",
    solution=lambda: 255,
    answer_type="whole",
    mistakes=[
        (0, "0 is 'background': the network would learn that the padding is background."),
        (-1, "-1 is no label of these data sets; the loaders and the loss use one ignore value for all of them."),
    ],
    otherwise=lambda a: f"{shown(a)} is not the ignore label of VOC, CamVid (after conversion) and Cityscapes.",
    more_wrong=(21,),
    hint="padded pixels are not background: they are not part of the image at all.",
)

# 06.2: a VOC image of 500 x 375 pixels, scaled by 0.5 and padded up to a 513 x 513 crop.
_SCALED = (round(375 * 0.5), round(500 * 0.5))
_PAD_FRACTION = 1 - _SCALED[0] * _SCALED[1] / 513**2

value_exercise(
    "06.2",
    "Fraction of a 513 x 513 crop that is padding after scaling a 500 x 375 image by 0.5",
    solution=lambda: _PAD_FRACTION,
    answer_type="fraction",
    abs_tol=2e-3,
    mistakes=[(0.75, "0.75 is what halving *both sides of a crop-sized image* gives; the image here is smaller "
                     "than the crop.")],
    otherwise=lambda a: f"{a:.4f} is not 1 - (scaled area) / 513**2.",
    more_wrong=(0.5, 100 * _PAD_FRACTION),
    hint="the scaled image is 250 x 188 pixels; everything else in the 513 x 513 crop is padding.",
)

# 06.3: toy split lists.
TOY_VOC_TRAIN = ["a", "b", "c"]
TOY_VOC_VAL = ["d", "e"]
TOY_SBD_TRAIN = ["b", "d", "f", "g"]
TOY_SBD_VAL = ["e", "h"]
_TRAINAUG = sorted((set(TOY_SBD_TRAIN) | set(TOY_SBD_VAL) | set(TOY_VOC_TRAIN)) - set(TOY_VOC_VAL))
_TOY_IDS = sorted(set(TOY_VOC_TRAIN) | set(TOY_VOC_VAL) | set(TOY_SBD_TRAIN) | set(TOY_SBD_VAL))


def _ids(answer: Any) -> Any:
    """06.3 compares *sets* of image ids, whatever their order or container: ``["a", "b"]``,
    ``("b", "a")``, ``"a b"`` or ``"a, b"`` all become ``"a b"`` (ids sorted, once each)."""
    if isinstance(answer, str):
        items = answer.replace(",", " ").split()
    else:
        try:
            items = [str(v).strip() for v in answer]
        except TypeError:
            return answer
    return " ".join(sorted({i.lower() for i in items if i}))


value_exercise(
    "06.3",
    "The trainaug list of toy splits",
    solution=lambda: " ".join(_TRAINAUG),
    answer_type="text",
    parse=_ids,
    mistakes=[
        (lambda a: bool(set(a.split()) - set(_TOY_IDS)),
         lambda a: f"{sorted(set(a.split()) - set(_TOY_IDS))}: not ids of these lists (they are "
                   f"{', '.join(_TOY_IDS)}). Answer with a list of ids, e.g. ['a', 'b']."),
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
    ),
    hint="train_aug = (SBD train ∪ SBD val ∪ VOC train) minus VOC val.",
)

# 06.4: the share of a log-uniform size law in one octave (the chapter's scenes: diameters from
# 2 % to 90 % of a 256-pixel side).
DRAWN_DIAMETERS = (0.02 * 256, 0.9 * 256)
_OCTAVE = (16, 32)

value_exercise(
    "06.4",
    "Predict: the share of the shapes whose diameter lies between 16 and 32 px (log-uniform, 5.12 to 230.4 px)",
    solution=lambda: log_uniform_share(*_OCTAVE, *DRAWN_DIAMETERS),
    answer_type="fraction",
    rel_tol=0.02,
    kind="predict",
    mistakes=[
        ((_OCTAVE[1] - _OCTAVE[0]) / (DRAWN_DIAMETERS[1] - DRAWN_DIAMETERS[0]),
         "that is the share for sizes drawn *uniformly*; log-uniform means every factor of 2 gets the same share."),
        (1 / 6, "1/6 counts six octaves from 4 to 256 px; the law spans 5.12 to 230.4 px: log2(45) = 5.49 octaves."),
        (1 / 7, "1/7 counts seven octaves; the law spans log2(230.4 / 5.12) = log2(45) = 5.49 octaves."),
        (1 / 5, "1/5 counts five octaves; the law spans log2(230.4 / 5.12) = log2(45) = 5.49 octaves."),
    ],
    otherwise=lambda a: f"{a:.3f} is not the share of one octave, log(32 / 16) / log(230.4 / 5.12).",
    more_wrong=(0.5,),
    hint="under a log-uniform law the share of [a, b) is log(b / a) / log(max / min), for a range inside [min, max].",
)
