"""Exercises of chapter 00 (start here): warming up with the profiles and the checker."""

from __future__ import annotations

import math

import torch

from ..viz.output_stride import expected_feature_size
from ._core import direction, function_exercise, shown, value_exercise

value_exercise(
    "00.1",
    "Output stride of a network that halves the resolution three times",
    solution=lambda: 8,
    mistakes=[(3, "3 is the number of halvings; the output stride is the ratio of the resolutions, and each "
                  "halving doubles it.")],
    otherwise=lambda a: (f"{shown(a)} is {direction(a, 8)} for the ratio between the input and the feature-map "
                         "resolution: how much does each halving change it?"),
    more_wrong=(6, 16),
    hint="output stride = input size / feature-map size; each halving doubles it.",
)


def _automatic_iterations() -> int:
    """What ``config.choose(smoke=3, cpu=300, gpu=30_000)`` gives on this machine with the profile unset."""
    import torch

    return 30_000 if torch.cuda.is_available() else 300


value_exercise(
    "00.2",
    "Predict: the iterations choose(smoke=3, cpu=300, gpu=30_000) asks for here, with the profile unset",
    solution=_automatic_iterations,
    answer_type="whole",
    unit="step",
    kind="predict",
    mistakes=[
        (3, "3 is the smoke profile's; smoke is never chosen automatically: CI sets it explicitly."),
        (lambda a: a in (300, 30_000), lambda a: (
            f"{a} is what a machine {'with' if a == 30_000 else 'without'} a CUDA GPU gets; does PyTorch see one "
            "here? torch.cuda.is_available() says.")),
    ],
    otherwise=lambda a: f"{shown(a)} is none of the three values choose() picks from.",
    hint="unset, the profile is gpu when PyTorch sees a CUDA device and cpu otherwise.",
    key_note="this machine's answer: 300 where PyTorch sees no CUDA device, 30000 where it sees one",
)


def _feature_size(n: int, output_stride: int) -> int:
    """A learner-style solution: one ceil(n / 2) per stride-2 layer."""
    for _ in range(int(math.log2(output_stride))):
        n = (n + 1) // 2
    return n


def _halve_os_times(n: int, output_stride: int) -> int:
    for _ in range(output_stride):
        n = (n + 1) // 2
    return n


def _sizes(g: torch.Generator) -> tuple[int, int]:
    n = int(torch.randint(1, 1100, (1,), generator=g))
    return n, (4, 8, 16, 32)[int(torch.randint(0, 4, (1,), generator=g))]


function_exercise(
    "00.3",
    "Write feature_size(n, output_stride): the feature-map side of an n x n input",
    reference=expected_feature_size,
    packaged=(expected_feature_size,),
    solution=_feature_size,
    inputs=_sizes,
    cases=[(513, 16), (512, 32), (321, 8), (1, 32)],
    mistakes=[
        (lambda n, s: n // s, "this rounds an odd side down. Follow a 513 input through the four stride-2 layers "
                              "of output stride 16: what does each one do to an odd side?"),
        (lambda n, s: n / s, "n / output_stride is not a whole number of positions: each stride-2 layer "
                             "maps n to ceil(n / 2)."),
        (lambda n, s: round(n / s), "rounding n / output_stride to the nearest integer is not what the layers do: "
                                    "each one rounds an odd side up."),
        (_halve_os_times, "you halved output_stride times; the network halves log2(output_stride) times "
                          "(4 times for output stride 16)."),
    ],
    signature="feature_size(n, output_stride)",
    hint="each stride-2 layer maps a side n to ceil(n / 2) (an odd side rounds up); apply that once per "
         "stride-2 layer: how many of them give a given output stride?",
)
