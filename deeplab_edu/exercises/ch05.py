"""Exercises of chapter 05: ASPP in DeepLab v2 and v3."""

from __future__ import annotations

from typing import Any

from ._core import exercise


def _as_int_tuple(answer: Any) -> tuple[int, ...] | None:
    try:
        values = tuple(answer)
    except TypeError:
        return None
    if not all(isinstance(v, (int, float)) and float(v).is_integer() for v in values):
        return None
    return tuple(int(v) for v in values)


@exercise(
    "05.1",
    "ASPP rates at output stride 8",
    solution=lambda: (12, 24, 36),
    wrong_answers=((6, 12, 18), (3, 6, 9), (12, 24), 12),
    hint="halving the output stride doubles the feature-map size; the rates must cover the same image area.",
)
def _rates(answer: Any) -> str | None:
    rates = _as_int_tuple(answer)
    if rates is None:
        return "answer with a tuple of three integer rates, e.g. (a, b, c)."
    if rates == (6, 12, 18):
        return "these are the rates at output stride 16; at 8 the feature map is twice as large."
    if rates == (3, 6, 9):
        return "that halves the rates; a denser map needs larger rates to reach as far in the image."
    if len(rates) != 3:
        return f"DeepLabv3's ASPP has three atrous branches, you gave {len(rates)} rates."
    if rates != (12, 24, 36):
        return f"{rates} is not (6, 12, 18) scaled by 16 / 8."
    return None


@exercise(
    "05.2",
    "Parameters of one 3x3 atrous ASPP branch (2048 -> 256, conv without bias, then BN)",
    solution=lambda: 2048 * 256 * 9 + 2 * 256,
    wrong_answers=(2048 * 256 * 9, 2048 * 256, 2048 * 256 * 9 * 6, 2048 * 256 * 9 + 4 * 256),
    hint="the rate spreads the 9 taps apart but adds no weights; BN learns a scale and a shift per channel.",
)
def _branch_params(answer: Any) -> str | None:
    if not isinstance(answer, (int, float)):
        return f"expected a number, got {type(answer).__name__}."
    conv = 2048 * 256 * 9
    if answer == conv:
        return "that is the convolution alone; the batch norm adds a weight and a bias per output channel."
    if answer == conv + 4 * 256:
        return "running mean and variance are buffers, not parameters; count only BN's weight and bias."
    if answer == 2048 * 256:
        return "a 3x3 filter has 9 taps per input channel, whatever the rate."
    if answer > conv + 512:
        return "the atrous rate does not add weights: a 3x3 filter at rate 6 still has 9 taps."
    if answer != conv + 512:
        return f"{answer} is not 2048 x 256 x 9 conv weights plus 2 x 256 BN parameters."
    return None


@exercise(
    "05.3",
    "Channels entering DeepLabv3's ASPP projection (with image pooling)",
    solution=lambda: 1280,
    wrong_answers=(256, 1024, 1536, 2048),
    hint="count the branches: one 1x1, three atrous, one image pooling; each gives 256 channels.",
)
def _concat_channels(answer: Any) -> str | None:
    if not isinstance(answer, (int, float)):
        return f"expected a number, got {type(answer).__name__}."
    if answer == 1024:
        return "that forgets one branch: the image-pooling branch is concatenated too."
    if answer == 256:
        return "256 is one branch (and the projection's output); the branches are concatenated, not summed."
    if answer == 2048:
        return "2048 is the backbone's output, the ASPP's *input*."
    if answer != 1280:
        return f"{answer} is not 5 branches x 256 channels."
    return None


@exercise(
    "05.4",
    "Side (in feature positions) spanned by a 3x3 filter at rate 18",
    solution=lambda: 37,
    wrong_answers=(3, 18, 36, 54),
    hint="the outer taps sit r positions either side of the centre.",
)
def _span(answer: Any) -> str | None:
    if not isinstance(answer, (int, float)):
        return f"expected a number, got {type(answer).__name__}."
    if answer == 3:
        return "3 is the number of taps per side, not the distance they span."
    if answer == 36:
        return "from -18 to +18 there are 37 positions, including the centre."
    if answer != 37:
        return f"{answer} is not 2 x 18 + 1."
    return None
