"""Exercises of chapter 10 (reproducing the papers' findings): mIoU, the poly schedule, Table 5's cost."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._core import exercise

#: The confusion matrix of exercise 10.1 (rows: truth, columns: prediction).
CONFUSION_10_1 = np.array([[50, 10, 0], [5, 20, 5], [0, 0, 10]])


def _miou(m: np.ndarray) -> float:
    tp = np.diag(m).astype(float)
    union = m.sum(0) + m.sum(1) - tp
    return float(np.mean(tp / union))


@exercise(
    "10.1",
    "mIoU of a 3-class confusion matrix",
    solution=lambda: _miou(CONFUSION_10_1),
    wrong_answers=(90 / 100, 80 / 100, float(np.mean([50 / 60, 20 / 30, 10 / 10]))),
    hint="IoU_c = TP_c / (TP_c + FP_c + FN_c): the diagonal over row sum + column sum - diagonal.",
)
def _ex1(answer: Any) -> str | None:
    if not isinstance(answer, (int, float, np.floating)):
        return f"expected a number between 0 and 1, got {type(answer).__name__}."
    if answer > 1:
        return "give the mIoU as a fraction in [0, 1], not a percentage."
    if math.isclose(answer, 80 / 100):
        return "80/100 is the pixel accuracy (diagonal over all pixels), not the mean IoU."
    if math.isclose(answer, float(np.mean([50 / 60, 20 / 30, 10 / 10]))):
        return "that is the mean per-class *accuracy* (TP over the row); IoU also counts false positives."
    if not math.isclose(answer, _miou(CONFUSION_10_1), abs_tol=1e-3):
        return f"{answer:.4f} is not the mean over classes of TP / (TP + FP + FN)."
    return None


@exercise(
    "10.2",
    "Learning rate of the poly schedule half-way through DeepLabv3's 30K iterations",
    solution=lambda: 0.007 * (1 - 15_000 / 30_000) ** 0.9,
    wrong_answers=(0.0035, 0.007, 0.007 * 0.5**2),
    hint="lr = lr0 * (1 - iter / max_iter) ** 0.9 with lr0 = 0.007.",
)
def _ex2(answer: Any) -> str | None:
    if not isinstance(answer, (int, float)):
        return f"expected a number, got {type(answer).__name__}."
    right = 0.007 * 0.5**0.9
    if math.isclose(answer, 0.0035):
        return "0.0035 is a linear decay (power 1); the poly policy uses power 0.9, which decays a little slower."
    if math.isclose(answer, 0.007):
        return "0.007 is the initial rate; the poly schedule has decayed it by iteration 15 000."
    if not math.isclose(answer, right, rel_tol=1e-3):
        return f"{answer} is not 0.007 * (1 - 15000/30000) ** 0.9."
    return None


@exercise(
    "10.3",
    "Forward passes per image for DeepLabv3's 'OS 8 + MS + Flip' inference",
    solution=lambda: 12,
    wrong_answers=(6, 7, 2),
    hint="Six scales (0.5 ... 1.75), each with the image and its mirror.",
)
def _ex3(answer: Any) -> str | None:
    if not isinstance(answer, int):
        return f"expected a whole number, got {type(answer).__name__}."
    if answer == 6:
        return "6 counts the scales but forgets the flipped copy of each."
    if answer == 7:
        return "the flip is applied at every scale, not once."
    if answer != 12:
        return f"{answer} is not scales x (1 + flip)."
    return None
