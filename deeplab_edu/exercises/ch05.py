"""Exercises of chapter 05: ASPP in DeepLab v2 and v3."""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence, cast

import torch
import torch.nn.functional as F

from ..models.aspp import ASPPv2
from ._core import direction, function_exercise, shown, value_exercise

# 05.1: DeepLab v2's ASPP-L rates (6, 12, 18, 24) are set at output stride 8; the same reach in the
# image at output stride 16.
def _reach_feedback(a: tuple[int, ...]) -> str:
    """05.1's message: which of the rates reach too far or not far enough in the image."""
    far = [r for r, w in zip(a, (3, 6, 9, 12)) if r > w]
    near = [r for r, w in zip(a, (3, 6, 9, 12)) if r < w]
    parts = ([f"{', '.join(map(str, far))} reach{'es' if len(far) == 1 else ''} too far"] if far else []) + (
        [f"{', '.join(map(str, near))} {'does' if len(near) == 1 else 'do'} not reach far enough"] if near else [])
    return (f"{a}: {' and '.join(parts)}. A rate counts feature cells: at output stride 16 each must reach as many "
            "image pixels as the paper's rate in its place did at output stride 8.")


value_exercise(
    "05.1",
    "DeepLab v2's ASPP-L rates (6, 12, 18, 24) at output stride 8, moved to output stride 16",
    solution=lambda: (3, 6, 9, 12),
    answer_type="ints",
    mistakes=[
        ((12, 24, 36, 48), "that moves them the wrong way: does a rate count image pixels or feature cells, and how "
                           "wide is a feature cell at output stride 16?"),
        ((6, 12, 18, 24), "these are the rates at output stride 8; at 16 each feature cell covers twice as many pixels."),
        ((6, 12, 18), "these are DeepLabv3's rates at output stride 16: they reach twice as far as v2's first three."),
        (lambda a: len(a) != 4, lambda a: f"ASPP-L has four branches, one per rate; you gave {len(a)} rates."),
        (lambda a: tuple(sorted(a)) == (3, 6, 9, 12),
         "the right rates, in another order: list them from the smallest, as the paper does."),
    ],
    otherwise=lambda a: _reach_feedback(a),
    more_wrong=((3, 6, 9), 3),
    hint="a rate counts feature cells; at output stride 16 a cell is 16 pixels wide instead of 8.",
)

_CHANNELS_05_2 = 960  # MobileNetV3-Large's last stage, the input of torchvision's mobile DeepLabv3 ASPP
_CONV, _BN = _CHANNELS_05_2 * 256 * 9, 2 * 256
# torchvision's whole mobile ASPP: a 1x1 branch, three atrous ones, image pooling, the projection of 1280 channels
_MOBILE_ASPP_05_2 = (_CHANNELS_05_2 * 256 + _BN) + 3 * (_CONV + _BN) + (_CHANNELS_05_2 * 256 + _BN) + (1280 * 256 + _BN)

value_exercise(
    "05.2",
    "Parameters of one 3x3 atrous ASPP branch of torchvision's deeplabv3_mobilenet_v3_large (960 -> 256, "
    "conv without bias, then BN)",
    solution=lambda: _CONV + _BN,
    answer_type="whole",
    unit="parameter",
    mistakes=[
        (_CONV, "that is the convolution alone; the batch norm adds a weight and a bias per output channel."),
        (_CONV + 4 * 256, "running mean and variance are buffers, not parameters; count only BN's weight and bias."),
        (_CHANNELS_05_2 * 256 + _BN, "a 3x3 filter has 9 taps per input channel, whatever the rate."),
        (_CONV + _BN + 256, "the conv has no bias here (the batch norm's shift does its job): count only its weights."),
        (2048 * 256 * 9 + _BN, "that is a branch on ResNet's 2048 channels; MobileNetV3-Large gives 960."),
        (_MOBILE_ASPP_05_2, "that is the whole ASPP (every branch and the projection); the question asks for one "
                            "3x3 atrous branch, `model.classifier[0].convs[1]`."),
        (lambda a: a >= 2 * _CONV, "the atrous rate does not add weights: a 3x3 filter at rate 12 still has 9 taps."),
    ],
    otherwise=lambda a: (f"{shown(a)} is {direction(a, _CONV + _BN)} for one branch: count the conv's weights (a 3x3 "
                         "filter for every pair of input and output channels, no bias) and what the batch norm "
                         "learns per output channel."),
    more_wrong=(_CONV * 12,),
    hint="the rate spreads the 9 taps apart but adds no weights; BN learns a scale and a shift per channel.",
)

# 05.3: what a fourth atrous branch (rate 24) adds to DeepLabv3's ASPP on ResNet's 2048 channels: the
# branch (3x3 conv without bias, BN) and the projection's 256 more input channels (1x1, no bias).
_BRANCH_05_3 = 2048 * 256 * 9 + _BN
_PROJECTION_05_3 = 256 * 256
# the whole ASPP (section 4's table adds it up): a 1x1 branch, the atrous ones, image pooling, the projection
_ASPP_3_RATES = (2048 * 256 + _BN) + 3 * _BRANCH_05_3 + (2048 * 256 + _BN) + (1280 * 256 + _BN)
_ASPP_4_RATES = _ASPP_3_RATES + _BRANCH_05_3 + _PROJECTION_05_3

value_exercise(
    "05.3",
    "Predict: parameters a fourth atrous branch (rate 24) adds to DeepLabv3's ASPP on 2048 channels (the branch "
    "and everything else that grows)",
    solution=lambda: _BRANCH_05_3 + _PROJECTION_05_3,
    answer_type="whole",
    unit="parameter",
    kind="predict",
    mistakes=[
        (_BRANCH_05_3, "that is the new branch alone (as in 05.2); its 256 channels are concatenated with the "
                       "others, so the 1x1 projection after them reads 256 more input channels."),
        (2048 * 256 * 9, "that is the branch's convolution alone: its batch norm learns a scale and a shift per "
                         "channel, and the projection after the concatenation grows too."),
        (2048 * 256 * 9 + _PROJECTION_05_3, "the branch's batch norm learns a scale and a shift per channel too."),
        (_PROJECTION_05_3, "that is the projection's growth alone; the new branch itself has a 3x3 convolution "
                           "(2048 -> 256) and a batch norm."),
        (_BRANCH_05_3 + _PROJECTION_05_3 + _BN, "running mean and variance are buffers, not parameters (the batch "
                                                "norm learns only a scale and a shift per channel), and neither "
                                                "the branch's convolution nor the projection has a bias."),
        (2048 * 256 * 9 + 4 * 256, "running mean and variance are buffers, not parameters; and the projection "
                                   "after the concatenation grows too."),
        (_BRANCH_05_3 + _PROJECTION_05_3 + 256, "neither the branch's convolution nor the projection has a bias (the "
                                                "batch norm after each shifts it)."),
        (_BRANCH_05_3 + 1536 * 256, "only the projection's growth counts (256 more input channels), not the whole "
                                    "projection: it was there before."),
        (_BRANCH_05_3 + 1536 * 256 + _BN, "only the projection's growth counts (256 more input channels), not the "
                                          "whole projection and its batch norm: they were there before."),
        (1536, "1536 is the number of channels the projection reads now, not a count of parameters."),
        (_ASPP_4_RATES, "that is the whole ASPP with four rates; the question asks what the fourth branch *adds* "
                        "(the difference)."),
        (_ASPP_3_RATES, "that is DeepLabv3's whole ASPP (three rates); the question asks what a fourth branch *adds*."),
        (lambda a: a >= 4 * (_BRANCH_05_3 + _PROJECTION_05_3) and a % (2048 * 256) == 0,
         "the atrous rate does not add weights: a 3x3 filter at rate 24 still has 9 taps."),
    ],
    otherwise=lambda a: (f"{shown(a)} is {direction(a, _BRANCH_05_3 + _PROJECTION_05_3)}: count the new branch "
                         "(its 3x3 convolution without bias and its batch norm) and what grows after the "
                         "concatenation."),
    hint="the branch is a 3x3 convolution (2048 -> 256, no bias) and a batch norm, as in 05.2; and the 1x1 "
         "projection (no bias) after the concatenation now reads one more branch's 256 channels.",
)


# 05.4: DeepLab v2's ASPP written with F.conv2d, checked against the package's ASPPv2 module.
Args = tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor], tuple[int, ...]]


@lru_cache(maxsize=64)
def _module(channels: int, classes: int, rates: tuple[int, ...]) -> ASPPv2:
    return ASPPv2(channels, classes, rates).eval()  # built once per shape: initialising costs more than running


def _reference(x: torch.Tensor, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor],
               rates: Sequence[int]) -> torch.Tensor:
    module = _module(x.shape[1], weights[0].shape[0], tuple(rates))
    with torch.no_grad():
        for conv, w, b in zip(module.branch_convs(0), weights, biases):
            conv.weight.copy_(w)
            cast(torch.Tensor, conv.bias).copy_(b)
        return module(x)


def _learner(x: torch.Tensor, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor],
             rates: Sequence[int]) -> torch.Tensor:
    """A learner-style solution: one 'same' atrous conv per rate, class scores summed."""
    # a Tensor: the exercise always passes at least one rate (sum of nothing would be 0)
    return cast(torch.Tensor, sum(F.conv2d(x, w, b, padding=r, dilation=r) for w, b, r in zip(weights, biases, rates)))


def _branches(x, weights, biases, rates, *, padding=None, dilate=True, bias=True, lazy=False):  # type: ignore[no-untyped-def]
    """The branches' outputs, as a list (every branch runs before they are added) or, ``lazy``, as a
    generator (a ``sum(... for ...)`` or a loop adds each as it runs: with the wrong padding it fails at
    the first addition of two sizes instead of at the first branch whose filter outgrows the input)."""
    outputs = (F.conv2d(x, w, b if bias else None, padding=r if padding is None else padding, dilation=r if dilate else 1)
               for w, b, r in zip(weights, biases, rates))
    return outputs if lazy else list(outputs)


_PADDING_1 = "with padding 1 a rate-r 3x3 conv shrinks the map by 2 (r - 1) pixels; 'same' padding for a 3x3 filter at rate r is r."
_SIZES_DIFFER = ("the branches' outputs have different sizes: every branch must keep the input's height and width so "
                 "that their class scores can be added, so each branch's padding must match its dilation.")
#: What PyTorch says when maps of different sizes meet (added, stacked, concatenated) or a dilated filter outgrows
#: its unpadded input: a padding that does not match the rate, however the branches are combined.
_SIZE_ERRORS = (r"must match the size of tensor|stack expects each tensor to be equal size|Sizes of tensors must match"
                r"|Kernel size can't be greater than actual input size")


def _inputs(g: torch.Generator) -> Args:
    draw = lambda lo, hi: int(torch.randint(lo, hi + 1, (1,), generator=g))  # noqa: E731
    channels, classes, n_rates = draw(1, 4), draw(2, 3), draw(2, 4)
    rates = tuple(sorted({draw(2, 6) for _ in range(n_rates)} | {1}))
    x = torch.randn(draw(1, 2), channels, draw(6, 13), draw(6, 13), generator=g)
    weights = [torch.randn(classes, channels, 3, 3, generator=g) for _ in rates]
    biases = [torch.randn(classes, generator=g) for _ in rates]
    return x, weights, biases, rates


function_exercise(
    "05.4",
    "Write summed_aspp(x, weights, biases, rates): DeepLab v2's ASPP with F.conv2d",
    reference=_reference,
    packaged=(ASPPv2,),
    solution=_learner,
    inputs=_inputs,
    trials=12,
    atol=1e-4,
    mistakes=[
        (lambda *a: sum(_branches(*a, padding=1)), _PADDING_1),
        (lambda *a: sum(_branches(*a, padding=1, lazy=True)), _PADDING_1),
        (lambda *a: sum(_branches(*a, padding=0, lazy=True)), _SIZES_DIFFER),
        (lambda *a: sum(_branches(*a, padding=1, dilate=False)), "it ignores the rates: every branch is an ordinary "
                                                                 "3x3 conv; pass dilation=r (and padding=r)."),
        (lambda *a: torch.cat(_branches(*a), dim=1), "it concatenates the branches; DeepLab v2 *sums* their class "
                                                     "scores (concatenation is DeepLabv3's fusion of features)."),
        (lambda *a: sum(_branches(*a)) / len(a[3]), "it averages the branches; DeepLab v2 sums their class scores."),
        (lambda *a: sum(_branches(*a, bias=False)), "the biases are missing: each branch is W_r * x + b_r."),
    ],
    signature="summed_aspp(x, weights, biases, rates)",
    errors=[(_SIZE_ERRORS, _SIZES_DIFFER)],
    hint="one F.conv2d per rate, with that branch's weights and bias: which of its keyword arguments makes the "
         "filter atrous, and which keeps the map's size? Then combine the branches' scores as DeepLab v2 does.",
)
