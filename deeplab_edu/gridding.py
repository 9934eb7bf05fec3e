"""Gridding: the holes in the receptive field of stacked atrous convolutions.

Stacking 3x3 convolutions at equal rates (e.g. 2, 2, 2) reads the input on a lattice: the output
never sees the pixels between the lattice points, although they lie inside its receptive field.
Wang et al. (2018, "Understanding Convolution for Semantic Segmentation") call this
*gridding* and propose hybrid dilated convolution (HDC): rates chosen so that the stack has no
holes, such as (1, 2, 5). No common factor is necessary but not sufficient ((1, 2, 9) reads 71 %
of its field: a rate may not jump further than the layers below can fill). DeepLabv3's multi-grid
also varies the rates within a block, but (1, 2, 4) at output stride 16 gives (2, 4, 8), which
share the factor 2.

* :func:`sampling_pattern`: how many paths connect each input pixel to one output.
* :func:`coverage`: the fraction of the receptive field that is read at all.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

__all__ = ["sampling_pattern", "coverage"]


def sampling_pattern(rates: Sequence[int], kernel_size: int = 3) -> torch.Tensor:
    """How many paths connect each input pixel to one output of a stack of atrous convs (the
    sampling pattern behind the gridding of Wang et al., "Understanding Convolution for Semantic
    Segmentation", 2018, in their section on hybrid dilated convolution).

    Stacking ``kernel_size`` convolutions at ``rates`` (stride 1) reads the input on a lattice:
    zeros are pixels the output never sees ("gridding"; e.g. rates (2, 2, 2) read only every
    other pixel, while (1, 2, 4) read all of them). Returns an int64 ``(r, r)`` map, ``r`` the
    receptive field.

    Raises:
        ValueError: ``rates`` is empty, or holds a value that is a bool or not an int of at least 1.
    """
    if not rates:
        raise ValueError("rates must name at least one layer")
    pattern = torch.ones(1, 1, 1, 1, dtype=torch.float64)
    ones = torch.ones(1, 1, kernel_size, kernel_size, dtype=torch.float64)
    for r in rates:
        if isinstance(r, bool) or not isinstance(r, int) or r < 1:
            raise ValueError(f"rates must be positive ints, got {r!r}")
        pattern = F.conv_transpose2d(pattern, ones, dilation=r)  # spread to the taps of this layer
    return pattern[0, 0].round().to(torch.int64)


def coverage(pattern: torch.Tensor) -> float:
    """Fraction of the receptive field's pixels that are actually read (no holes: 1.0): what
    Wang et al.'s hybrid dilated convolution makes 1.0 with rates like (1, 2, 5).

    Args:
        pattern: a :func:`sampling_pattern` map, any shape.
    """
    return float((pattern > 0).double().mean())
