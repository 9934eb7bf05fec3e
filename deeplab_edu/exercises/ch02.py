"""Exercises of chapter 02 (receptive fields): the recurrences, gridding, and dilated ResNet-50."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from ..gridding import sampling_pattern
from ..receptive_field import LayerSpec, receptive_field, receptive_field_of
from ._core import exercise


def _whole(answer: Any) -> str | None:
    if isinstance(answer, bool) or not isinstance(answer, (int, float)) or answer != int(answer):
        return f"expected a whole number of pixels, got {answer!r}."
    return None


@exercise(
    "02.1",
    "Receptive field of three stacked 3x3 convolutions (stride 1)",
    solution=lambda: receptive_field([LayerSpec(3)] * 3).size,
    wrong_answers=(9, 27, 3),
    hint="each stride-1 3x3 layer adds k - 1 = 2 pixels.",
)
def _three_convs(answer: Any) -> str | None:
    if (problem := _whole(answer)) is not None:
        return problem
    if answer == 9:
        return "9 = 3 * 3 adds the kernel sizes; neighbouring windows overlap, so each layer adds only k - 1."
    if answer == 27:
        return "27 = 3**3 counts paths, not pixels."
    if answer != receptive_field([LayerSpec(3)] * 3).size:
        return f"{answer} is not 1 + 3 * (3 - 1)."
    return None


_STACK = [LayerSpec(3, 2, 1), LayerSpec(3, 2, 1), LayerSpec(3, 1, 1)]


@exercise(
    "02.2",
    "(receptive field, effective stride) of conv3x3/s2, conv3x3/s2, conv3x3/s1",
    solution=lambda: (receptive_field(_STACK).size, receptive_field(_STACK).stride),
    wrong_answers=((7, 4), (15, 8), (7, 2), 15),
    hint="r grows by (k - 1) times the product of the strides *before* the layer; S is the product of all strides.",
)
def _strided(answer: Any) -> str | None:
    if not isinstance(answer, (tuple, list)) or len(answer) != 2:
        return "answer with a pair (receptive_field, effective_stride)."
    r, s = answer
    rf = receptive_field(_STACK)
    if s != rf.stride:
        return f"effective stride {s} is wrong: it is the product of the layers' strides, 2 * 2 * 1."
    if r == 7:
        return "7 treats every layer as if it were at stride 1; a layer after a stride-2 layer adds (k - 1) * 2."
    if r != rf.size:
        return f"receptive field {r} is wrong: 1 + 2*1 + 2*2 + 2*4 (each layer's k - 1 times the stride before it)."
    return None


@exercise(
    "02.3",
    "How many pixels of its 13x13 receptive field does a stack of 3x3 convs at rates (2, 2, 2) read?",
    solution=lambda: int((sampling_pattern((2, 2, 2)) > 0).sum()),
    wrong_answers=(169, 27, 729, 13),
    hint="along one axis the offsets are sums of three numbers from {-2, 0, 2}: only even offsets.",
)
def _gridding(answer: Any) -> str | None:
    if (problem := _whole(answer)) is not None:
        return problem
    right = int((sampling_pattern((2, 2, 2)) > 0).sum())
    if answer == 169:
        return "169 is the whole square; with equal even rates the odd offsets are never reached (gridding)."
    if answer == 729:
        return "729 = 9**3 counts paths through the stack; several paths land on the same pixel."
    if answer != right:
        return f"{answer} is not the number of pixels with a non-zero count in sampling_pattern((2, 2, 2))."
    return None


@lru_cache(maxsize=1)
def _resnet50_os8() -> int:
    import torchvision

    return receptive_field_of(torchvision.models.resnet50(replace_stride_with_dilation=[False, True, True])).size


@exercise(
    "02.4",
    "Receptive field of torchvision's ResNet-50 at output stride 8 (dilated layer3 and layer4)",
    solution=_resnet50_os8,
    wrong_answers=(107, 1708, 8, 2000),
    hint="dilation replaces the stride's growth: compare with receptive_field_of(resnet50()).",
)
def _os8(answer: Any) -> str | None:
    if (problem := _whole(answer)) is not None:
        return problem
    right = _resnet50_os8()
    if answer == 8:
        return "8 is the output stride (the effective stride), not the receptive field."
    if answer < right:
        return f"{answer} is too small: without dilation, removing the strides would shrink the field; dilation keeps it."
    if answer > right:
        return f"{answer} is too large: dilation restores the field the strides gave, it does not enlarge it further."
    return None
