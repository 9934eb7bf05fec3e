"""Exercises of chapter 09: DeepLabv3+'s decoder and separable convolutions, and its trained boundaries."""

from __future__ import annotations

from typing import Any

from ._core import exercise


@exercise(
    "09.1",
    "Channels entering the decoder's first 3x3 conv",
    solution=lambda: 304,
    wrong_answers=(256, 48, 512, 2096),
    hint="the upsampled ASPP output (256) is concatenated with the reduced low-level features.",
)
def _decoder_in(answer: Any) -> str | None:
    if not isinstance(answer, (int, float)):
        return f"expected a number, got {type(answer).__name__}."
    if answer == 512:
        return "the low-level features are reduced to 48 channels before the concatenation (Table 1)."
    if answer in (256, 48):
        return "that is only one of the two concatenated inputs."
    if answer != 304:
        return f"{answer} is not 256 + 48."
    return None


@exercise(
    "09.2",
    "Weights of a depthwise-separable 3x3 conv from 256 to 256 channels (no bias, no BN)",
    solution=lambda: 3 * 3 * 256 + 256 * 256,
    wrong_answers=(3 * 3 * 256 * 256, 3 * 3 * 256, 256 * 256),
    hint="a depthwise 3x3 filter per input channel, then a 1x1 conv mixing the channels.",
)
def _separable(answer: Any) -> str | None:
    if not isinstance(answer, (int, float)):
        return f"expected a number, got {type(answer).__name__}."
    if answer == 9 * 256 * 256:
        return "that is a regular 3x3 conv; the separable one factorises it."
    if answer in (9 * 256, 256 * 256):
        return "that counts only one of the two parts (depthwise and pointwise)."
    if answer != 9 * 256 + 256 * 256:
        return f"{answer} is not 3 x 3 x 256 + 256 x 256."
    return None


@exercise(
    "09.3",
    "Side of the low-level (stride 4) feature map for a 513 x 513 input",
    solution=lambda: 129,
    wrong_answers=(128, 128.25, 65, 257),
    hint="two stride-2 layers, rounding up on odd sizes.",
)
def _low_level(answer: Any) -> str | None:
    if not isinstance(answer, (int, float)):
        return f"expected a number, got {type(answer).__name__}."
    if answer == 65:
        return "65 is output stride 8; the decoder's low-level features are at stride 4."
    if answer == 257:
        return "257 is stride 2 (after the stem's first conv)."
    if answer != 129:
        return f"{answer} is not 513 -> 257 -> 129."
    return None


@exercise(
    "09.4",
    "How many times more prediction positions has the decoder's stride-4 grid than DeepLabv3's stride-16 grid (513 x 513)?",
    solution=lambda: 129**2 / 33**2,
    wrong_answers=(4, 16, 129 / 33),
    hint="the sides are 129 (stride 4) and 33 (stride 16); count positions, not sides.",
)
def _grid(answer: Any) -> str | None:
    import math

    if not isinstance(answer, (int, float)):
        return f"expected a number, got {type(answer).__name__}."
    target = 129**2 / 33**2
    if math.isclose(answer, 129 / 33, rel_tol=1e-3) or answer == 4:
        return "that is the ratio of the sides; the grid is two-dimensional."
    if answer == 16:
        return "16 would hold for exact division; 513 rounds up to 129 and 33, so the ratio is a little less."
    if not math.isclose(answer, target, rel_tol=1e-3):
        return f"{answer} is not (129 / 33) squared."
    return None
