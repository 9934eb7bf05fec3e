"""Exercises of chapter 07: DeepLab v1 LargeFOV, DeepLab v2 ASPP, and the dense CRF's mean field."""

from __future__ import annotations

from typing import Any, Callable

import torch

from ..atrous import effective_kernel_size
from ._core import exercise


def _number(answer: Any) -> str | None:
    if isinstance(answer, bool) or not isinstance(answer, (int, float)):
        return f"expected a number, got {type(answer).__name__}."
    return None


@exercise(
    "07.1",
    "Effective kernel size of LargeFOV's fc6 (3x3, rate 12)",
    solution=lambda: effective_kernel_size(3, 12),
    wrong_answers=(36, 24, 27, 13),
    hint="a k-tap filter at rate r spans k + (k - 1)(r - 1) positions.",
)
def _fc6_span(answer: Any) -> str | None:
    if (problem := _number(answer)) is not None:
        return problem
    if answer == 36:
        return "36 = 3 x 12 multiplies kernel and rate; the outer taps are (k - 1) r apart, plus the centre."
    if answer == 24:
        return "24 is the distance between the outer taps; count the positions they span (one more)."
    if answer != 25:
        return f"a 3x3 filter at rate 12 does not span {answer} positions per side."
    return None


@exercise(
    "07.2",
    "Parameters of LargeFOV's fc6 layer (3x3 conv, 512 -> 1024 channels, with biases)",
    solution=lambda: 3 * 3 * 512 * 1024 + 1024,
    wrong_answers=(3 * 3 * 512 * 1024, 3 * 3 * 512 * 4096 + 4096, 7 * 7 * 512 * 4096 + 4096),
    hint="weights: kernel height x width x input channels x output channels; then one bias per output channel.",
)
def _fc6_params(answer: Any) -> str | None:
    if (problem := _number(answer)) is not None:
        return problem
    if answer == 3 * 3 * 512 * 1024:
        return "that counts the weights only; each of the 1024 filters also has a bias."
    if answer == 3 * 3 * 512 * 4096 + 4096:
        return "LargeFOV keeps 1024 of VGG-16's 4096 fc6 filters, not all of them."
    if answer == 7 * 7 * 512 * 4096 + 4096:
        return "that is VGG-16's original fc6 (7x7, 4096 filters), the 'DeepLab-7x7' variant."
    if answer != 3 * 3 * 512 * 1024 + 1024:
        return f"{answer} is not the size of a 3x3 conv from 512 to 1024 channels with biases."
    return None


def _reference_update(unary: torch.Tensor, messages: torch.Tensor) -> torch.Tensor:
    return torch.softmax(-unary + messages, dim=0)


@exercise(
    "07.3",
    "One mean-field update with the Potts model",
    solution=lambda: _reference_update,
    wrong_answers=(
        lambda u, m: torch.softmax(-u - m, dim=0),
        lambda u, m: torch.exp(-u + m),
        lambda u, m: torch.softmax(u + m, dim=0),
        lambda u, m: torch.softmax(-u + m, dim=1),
        lambda u, m: None,
    ),
    hint="Q_i(l) is proportional to exp(-unary_i(l) + message_i(l)); normalise over the labels (dimension 0).",
)
def _update(answer: Any) -> str | None:
    if not callable(answer):
        return "answer with a function update(unary, messages) -> Q taking and returning (L, N) tensors."
    g = torch.Generator().manual_seed(7)
    unary = torch.rand(4, 6, generator=g) * 3
    messages = torch.rand(4, 6, generator=g) * 2
    got = answer(unary.clone(), messages.clone())
    if got is None:
        return "your function returned None: fill in its body and return Q."
    if not isinstance(got, torch.Tensor) or got.shape != unary.shape:
        return f"the update should return a tensor of shape {tuple(unary.shape)}, got {getattr(got, 'shape', type(got))}."
    if not torch.allclose(got.sum(0), torch.ones(6), atol=1e-5):
        return "each pixel's Q_i must sum to 1 over the labels (dimension 0): normalise."
    want = _reference_update(unary, messages)
    if torch.allclose(got, torch.softmax(-unary - messages, dim=0), atol=1e-5):
        return ("with Potts, a label that the neighbours believe in is *encouraged*: "
                "-sum_{l' != l} M(l') equals +M(l) up to a constant, so the message enters with a plus sign.")
    if torch.allclose(got, torch.softmax(unary + messages, dim=0), atol=1e-5):
        return "the unary is an energy, -log P: low energy means likely, so it enters as -unary."
    if not torch.allclose(got, want, atol=1e-5):
        return "the result differs from softmax over labels of (-unary + messages)."
    return None


@exercise(
    "07.4",
    "Which CRF parameter lets pixels of slightly different colour (sensor noise) support each other?",
    solution=lambda: "theta_beta",
    wrong_answers=("theta_alpha", "theta_gamma", "w_spatial", "iterations"),
    hint="the bilateral kernel has one bandwidth in space and one in colour.",
)
def _which_bandwidth(answer: Any) -> str | None:
    if not isinstance(answer, str):
        return "answer with a parameter name of CRFParams, a string such as 'w_bilateral'."
    name = answer.strip().lower().replace("θ", "theta_").replace("β", "beta").replace("α", "alpha").replace("γ", "gamma")
    name = name.replace("theta_theta_", "theta_")
    if name in ("theta_beta", "beta", "sigma_beta"):
        return None
    explanations: dict[str, Callable[[], str]] = {
        "theta_alpha": lambda: "theta_alpha is the bilateral kernel's reach in *space*; colour differences are governed by the other bandwidth.",
        "theta_gamma": lambda: "theta_gamma belongs to the smoothness kernel, which ignores colour altogether.",
        "w_spatial": lambda: "w_spatial weighs the colour-blind smoothness kernel.",
        "w_bilateral": lambda: "w_bilateral scales the whole appearance kernel but does not change which colours count as similar.",
        "iterations": lambda: "more iterations spread messages further but do not make two colours more alike.",
    }
    if name in explanations:
        return explanations[name]()
    return f"{answer!r} is not one of the CRF's parameters (see deeplab_edu.crf.CRFParams)."
