"""Exercises of chapter 07: DeepLab v1 LargeFOV, DeepLab v2 ASPP, and the dense CRF's mean field."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..atrous import effective_kernel_size
from ..crf import DEEPLAB_RELEASED, mean_field_update
from ._core import direction, function_exercise, not_judged, shown, value_exercise


# 07.1: the field of view of v1 Table 2, for an fc6 variant the paper did not try.
_OS, _POOL5 = 8, 32  # DeepLab v1's output stride; VGG-16's pool5 cell (its original output stride)
_K_E = effective_kernel_size(3, 8)

value_exercise(
    "07.1",
    "Field of view of a 3x3 fc6 at rate 8, by the rule that reproduces DeepLab v1 Table 2",
    solution=lambda: _OS * (_K_E - 1) + _POOL5,
    answer_type="whole",
    unit="pixel",
    mistakes=[
        (_OS * (_K_E - 1), "that is the distance between the first and the last tap centres; the rule that gives "
                           "Table 2's values adds one 32-pixel pool5 cell."),
        (_OS * _K_E, "8 x 17 counts every one of the 17 positions as 8 pixels; Table 2's rule takes the distance "
                     "between the outer tap centres, plus one pool5 cell."),
        (_OS * _K_E + _POOL5, "that counts one tap spacing too many: the outer tap centres are 8 (k_e - 1) pixels "
                              "apart."),
        (_K_E, "17 is the span in feature cells; at output stride 8 each cell is 8 input pixels."),
        (224, "224 is the field of Table 2's rows at rate 12 (DeepLab-LargeFOV) or with larger kernels; this filter "
              "is 3x3 at rate 8, so its taps sit closer together."),
        (3 * _OS * 8, "3 taps x 64 pixels counts one gap too many: 3 taps have 2 gaps between them, and the rule "
                      "then adds one pool5 cell."),
    ],
    otherwise=lambda a: (f"{shown(a)} is {direction(a, _OS * (_K_E - 1) + _POOL5)} for the field of view: Table 2's "
                         "rule measures the distance between the outer tap centres in input pixels, then adds one "
                         "pool5 cell."),
    hint=("work in feature cells first: how far apart are the outer taps of a 3x3 filter at rate 8? Then turn "
          "cells into input pixels (output stride 8) and ask what one pool5 cell adds.",
          "Table 2's four values are all 8 (k_e - 1) + 32, with k_e = k + (k - 1)(r - 1)."),
)

# 07.2: LargeFOV keeps 1024 of VGG-16's 4096 filters in fc6 and fc7; what that saves in fc7 alone.
_FC7_FULL, _FC7_LARGEFOV = 4096 * 4096 + 4096, 1024 * 1024 + 1024

value_exercise(
    "07.2",
    "Parameters LargeFOV saves in fc7 (1x1 conv with biases) by keeping 1024 of the 4096 filters in fc6 and fc7",
    solution=lambda: _FC7_FULL - _FC7_LARGEFOV,
    answer_type="whole",
    unit="parameter",
    mistakes=[
        (_FC7_FULL, "that is fc7 with 4096 filters; subtract what LargeFOV's fc7 keeps."),
        (_FC7_LARGEFOV, "that is LargeFOV's fc7 itself, not what it saves."),
        (4096 * 4096 - 1024 * 1024, "that counts the weights only: each filter also has a bias, and the two fc7s "
                                    "have different numbers of filters, so their biases differ too."),
        (1024 * 4096 + 4096 - _FC7_LARGEFOV, "in VGG-16, fc7 reads fc6's 4096 channels: both its input and its output "
                                              "shrink to 1024."),
        (4096 * 1024 + 1024 - _FC7_LARGEFOV, "its output shrinks too: LargeFOV's fc7 has 1024 filters, VGG-16's 4096."),
        (4096 * 4096 + 4096 - (4096 * 1024 + 1024), "fc7's input shrinks too: fc6 also keeps 1024 filters."),
    ],
    otherwise=lambda a: (f"{shown(a)} is {direction(a, _FC7_FULL - _FC7_LARGEFOV)} for what fc7 saves: count fc7's "
                         "weights and biases at VGG-16's width and at LargeFOV's, and take the difference."),
    more_wrong=(3 * 3 * 512 * 1024 + 1024,),
    hint="a 1x1 conv from C_in to C_out channels has C_in x C_out weights and C_out biases; fc7 reads fc6.",
)


def _learner_update(unary: torch.Tensor, messages: torch.Tensor) -> torch.Tensor:
    """A learner-style solution: softmax over the labels of (-unary + messages)."""
    scores = -unary + messages
    return torch.exp(scores) / torch.exp(scores).sum(dim=0, keepdim=True)


def _beliefs(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    labels, pixels = (int(torch.randint(lo, hi, (1,), generator=g)) for lo, hi in ((2, 6), (3, 11)))
    return torch.rand(labels, pixels, generator=g) * 3, torch.rand(labels, pixels, generator=g) * 2


_G7 = torch.Generator().manual_seed(7)

function_exercise(
    "07.3",
    "Write update(unary, messages): one mean-field update with the Potts model",
    reference=mean_field_update,
    packaged=(mean_field_update,),
    solution=_learner_update,
    inputs=_beliefs,
    cases=[(torch.rand(4, 6, generator=_G7) * 3, torch.rand(4, 6, generator=_G7) * 2)],
    mistakes=[
        (lambda u, m: torch.softmax(-u - m, dim=0),
         "with Potts, a label that the neighbours believe in is *encouraged*: -sum_{l' != l} M(l') equals +M(l) up "
         "to a constant, so the message enters with a plus sign."),
        (lambda u, m: torch.softmax(u + m, dim=0), "the unary is an energy, -log P: low energy means likely, so it "
                                                   "enters as -unary."),
        (lambda u, m: torch.exp(-u + m), "each pixel's Q_i must sum to 1 over the labels (dimension 0): normalise."),
        (lambda u, m: torch.softmax(-u + m, dim=1), "it normalises over the pixels (dimension 1); each pixel's Q_i "
                                                    "is a distribution over the labels, dimension 0."),
        (lambda u, m: torch.softmax(-u, dim=0), "the messages are missing: without them this is Q^0, the network's "
                                                "own prediction."),
    ],
    signature="update(unary, messages)",
    hint="Q_i(l) grows with the exponential of the message minus the unary; normalise each pixel's values so that "
         "they sum to 1 over the labels (which dimension holds the labels?).",
)


#: 07.4: two neighbouring pixels (1 pixel apart) whose colours differ by sensor noise of this many
#: 0-255 units (Euclidean distance in RGB).
NOISE_07_4 = 10.0


_TA, _TB = DEEPLAB_RELEASED.theta_alpha, DEEPLAB_RELEASED.theta_beta


def _appearance(theta_beta: float, distance: float = 1.0, colour: float = NOISE_07_4) -> float:
    """The appearance (bilateral) kernel of v2 eq. 3 between two pixels, with the released theta_alpha."""
    return math.exp(-distance**2 / (2 * _TA**2) - colour**2 / (2 * theta_beta**2))


def _appearance_pair(kernel: Any = _appearance) -> tuple[float, float]:
    """07.4's answer: the kernel at the released theta_beta and at twice it."""
    return kernel(_TB), kernel(2 * _TB)


def _kernel_feedback(a: Any) -> str:
    """07.4's message: which of the two values is too large or too small."""
    parts = []
    for value, want, beta in zip(a, _appearance_pair(), (_TB, 2 * _TB)):
        if abs(value - want) > 0.01:
            parts.append(f"at theta_beta = {beta:g}, {shown(value)} is {direction(value, want)}")
    return (f"{'; '.join(parts)}. The kernel is a Gaussian of the pixel distance (over theta_alpha) and of the "
            "colour distance (over theta_beta): both distances enter squared, over twice the squared bandwidth.")


value_exercise(
    "07.4",
    f"Predict the appearance kernel between two neighbours {NOISE_07_4:g} colour units apart, at theta_beta "
    f"{_TB:g} and at {2 * _TB:g}",
    solution=_appearance_pair,
    answer_type="array",
    abs_tol=0.01,
    kind="predict",
    mistakes=[
        (lambda a: a.shape != (2,), not_judged(f"answer with two numbers: the kernel at theta_beta = {_TB:g}, then at "
                                               f"{2 * _TB:g}.")),
        (lambda a: bool((a < 0).any() or (a > 1).any()), "a Gaussian kernel lies between 0 and 1 (1 for two pixels "
                                                       "of the same colour at the same place)."),
        (_appearance_pair()[::-1], f"the order is swapped: the released theta_beta = {_TB:g} first, then {2 * _TB:g}."),
        (lambda a: bool(np.allclose(a, np.round(_appearance_pair(), 1), atol=1e-9)),  # (0.1, 0.6): a trial
         "close, but rounded to one decimal: give each value to two decimals or more (within 0.01)."),
        (_appearance_pair(lambda tb: math.exp(-NOISE_07_4**2 / tb**2)),
         "the Gaussian divides by 2 theta_beta^2, not by theta_beta^2."),
        (_appearance_pair(lambda tb: math.exp(-NOISE_07_4 / (2 * tb**2))),
         f"the colour distance enters squared: ||I_i - I_j||^2 = {NOISE_07_4**2:g}."),
        (_appearance_pair(lambda tb: math.exp(-NOISE_07_4**2 / (2 * tb))),
         f"the bandwidth enters squared: 2 theta_beta^2 = {2 * _TB**2:g} at theta_beta = {_TB:g}."),
    ],
    otherwise=_kernel_feedback,
    form=f"two numbers: the kernel at theta_beta = {_TB:g}, then at {2 * _TB:g}",
    more_wrong=((1.0, 1.0), (0.0, 0.0), (0.5, 1.0)),
    hint=f"the position term is tiny (1 pixel against theta_alpha = {_TA:g}); doubling theta_beta divides the "
         "colour term by four.",
)
