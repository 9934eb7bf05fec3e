"""Exercises of chapter 00 (start here): warming up with the profiles and the checker."""

from __future__ import annotations

from typing import Any

from ._core import exercise


@exercise(
    "00.1",
    "Output stride of a network that halves the resolution three times",
    solution=lambda: 8,
    wrong_answers=(3, 6, 16),
    hint="output stride = input size / feature-map size; each halving doubles it.",
)
def _output_stride(answer: Any) -> str | None:
    if not isinstance(answer, (int, float)):
        return f"expected a number, got {type(answer).__name__}."
    if answer == 3:
        return "3 is the number of halvings; the output stride is the resolution ratio 2**3."
    if answer != 8:
        return f"{answer} is not the ratio between the input and the feature-map resolution."
    return None


@exercise(
    "00.2",
    "Which profile runs the notebooks in CI?",
    solution=lambda: "smoke",
    wrong_answers=("cpu", "gpu", "fast"),
)
def _ci_profile(answer: Any) -> str | None:
    if not isinstance(answer, str):
        return "answer with the profile's name, a string."
    name = answer.strip().lower()
    if name in ("cpu", "gpu"):
        return f"'{name}' is a real profile, but it takes minutes or hours; CI needs seconds."
    if name != "smoke":
        return f"'{answer}' is not a profile; see deeplab_edu.config.PROFILES."
    return None


@exercise(
    "00.3",
    "Feature-map size of a 513 x 513 input at output stride 16",
    solution=lambda: 33,
    wrong_answers=(32, 32.0625, 65),
    hint="DeepLab counts (513 - 1) / 16 + 1 because every stage is 'same'-padded with odd sizes.",
)
def _feature_size(answer: Any) -> str | None:
    if not isinstance(answer, (int, float)):
        return f"expected a number, got {type(answer).__name__}."
    if answer == 65:
        return "65 is the size at output stride 8."
    if answer != 33:
        return f"{answer} is not ceil(513 / 16) = 33; a stride-2 layer on an odd size rounds up."
    return None
