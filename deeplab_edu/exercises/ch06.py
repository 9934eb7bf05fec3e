"""Exercises of chapter 06 (data): padding with the ignore label, the trainaug split, context."""

from __future__ import annotations

import math
from typing import Any

from ._core import exercise

# 06.2: a VOC image of 500 x 375 pixels, scaled by 0.5 and padded up to a 513 x 513 crop.
_SCALED = (round(375 * 0.5), round(500 * 0.5))
_PAD_FRACTION = 1 - _SCALED[0] * _SCALED[1] / 513**2

# 06.3: toy split lists.
TOY_VOC_TRAIN = ["a", "b", "c"]
TOY_VOC_VAL = ["d", "e"]
TOY_SBD_TRAIN = ["b", "d", "f", "g"]
TOY_SBD_VAL = ["e", "h"]


def _trainaug_solution() -> list[str]:
    return sorted((set(TOY_SBD_TRAIN) | set(TOY_SBD_VAL) | set(TOY_VOC_TRAIN)) - set(TOY_VOC_VAL))


# 06.4: the data set and field of view of the question.
CONTEXT_QUESTION = dict(length=24, size=128, seed=0, radius=16)


def _context_solution() -> float:
    from ..data import ProceduralScenes
    from ..data.stats import context_free_fraction

    q = CONTEXT_QUESTION
    ds = ProceduralScenes(length=q["length"], size=q["size"], seed=q["seed"])
    return context_free_fraction((ds.render(i)[1] for i in range(len(ds))), q["radius"])


@exercise(
    "06.1",
    "The label of mask pixels added by padding a crop",
    solution=lambda: 255,
    wrong_answers=(0, -1, 21),
    hint="padded pixels are not background: they are not part of the image at all.",
)
def _pad_label(answer: Any) -> str | None:
    if not isinstance(answer, (int, float)) or isinstance(answer, bool):
        return f"expected a label value (a number), got {type(answer).__name__}."
    if answer == 0:
        return "0 is 'background': the network would learn that the padding is background."
    if answer != 255:
        return f"{answer} is not the ignore label of VOC, CamVid (after conversion) and Cityscapes."
    return None


@exercise(
    "06.2",
    "Fraction of a 513 x 513 crop that is padding after scaling a 500 x 375 image by 0.5",
    solution=lambda: _PAD_FRACTION,
    wrong_answers=(0.5, 0.75, 100 * _PAD_FRACTION),
    hint="the scaled image is 250 x 188 pixels; everything else in the 513 x 513 crop is padding.",
)
def _pad_fraction(answer: Any) -> str | None:
    if not isinstance(answer, (int, float)) or isinstance(answer, bool):
        return f"expected a fraction (a number between 0 and 1), got {type(answer).__name__}."
    if answer > 1:
        return "a fraction lies between 0 and 1 (did you give a percentage or a pixel count?)."
    if math.isclose(answer, 0.75, abs_tol=1e-3):
        return "0.75 is what halving *both sides of a crop-sized image* gives; the image here is smaller than the crop."
    if not math.isclose(answer, _PAD_FRACTION, abs_tol=2e-3):
        return f"{answer:.4f} is not 1 - (scaled area) / 513**2."
    return None


@exercise(
    "06.3",
    "The trainaug list of toy splits",
    solution=_trainaug_solution,
    wrong_answers=(
        sorted(set(TOY_SBD_TRAIN) | set(TOY_SBD_VAL) | set(TOY_VOC_TRAIN)),
        sorted(set(TOY_SBD_TRAIN) | set(TOY_VOC_TRAIN)),
        sorted((set(TOY_SBD_TRAIN) | set(TOY_VOC_TRAIN)) - set(TOY_VOC_VAL)),
    ),
    hint="train_aug = (SBD train ∪ SBD val ∪ VOC train) minus VOC val.",
)
def _trainaug(answer: Any) -> str | None:
    try:
        got = sorted(set(answer))
    except TypeError:
        return f"expected a list of image ids, got {type(answer).__name__}."
    want = _trainaug_solution()
    leaked = sorted(set(got) & set(TOY_VOC_VAL))
    if leaked:
        return f"{leaked} are VOC val images: training on them would leak the test set into training."
    missing = sorted(set(want) - set(got))
    if missing:
        return f"missing {missing}: SBD's *val* images are training images for VOC."
    extra = sorted(set(got) - set(want))
    if extra:
        return f"{extra} are in none of the training lists."
    return None


@exercise(
    "06.4",
    "Share of car/boat pixels with no background within 16 px (24 scenes of 128 px, seed 0)",
    solution=_context_solution,
    wrong_answers=(0.0, 1.0, -0.1),
    hint="use deeplab_edu.data.stats.context_free_fraction on the masks of ProceduralScenes(length=24, size=128).",
)
def _context(answer: Any) -> str | None:
    if not isinstance(answer, (int, float)) or isinstance(answer, bool):
        return f"expected a fraction (a number), got {type(answer).__name__}."
    if not 0 <= answer <= 1:
        return "a fraction lies between 0 and 1."
    want = _context_solution()
    if not math.isclose(answer, want, abs_tol=0.01):
        return f"{answer:.3f} is not what context_free_fraction gives for radius 16 on these scenes."
    return None
