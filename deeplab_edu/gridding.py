"""Gridding: the holes in the receptive field of stacked atrous convolutions.

Stacking 3x3 convolutions at equal rates (e.g. 2, 2, 2) reads the input on a lattice: the output
never sees the pixels between the lattice points, although they lie inside its receptive field.
Wang et al. (2018, "Understanding Convolution for Semantic Segmentation") call this
*gridding* and propose hybrid dilated convolution (HDC): rates chosen so that the stack has no
holes, such as (1, 2, 5). No common factor is necessary but not sufficient ((1, 2, 9) reads 71 %
of its field: a rate may not jump further than the layers below can fill). DeepLabv3's multi-grid
also varies the rates within a block, but (1, 2, 4) at output stride 16 gives (2, 4, 8), which
share the factor 2.

* :func:`path_counts`: along one axis, how many paths connect each input pixel to one output unit
  of any stack of convolutions and poolings (strides, padding and the image's edges included).
* :func:`sampling_pattern`: the same count in 2-D for a stack of atrous convolutions, over its
  receptive field.
* :func:`coverage`: the fraction of the receptive field that is read at all.

The path count is also Luo et al.'s effective receptive field in the simplest case they analyse
(every weight 1, no nonlinearity): ``d y / d x`` is then the number of paths. Chapter 02's
JavaScript explorer draws it over the photograph.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .atrous import conv_output_size
from .choices import is_whole, require_tensor
from .receptive_field import LayerSpec, receptive_field

__all__ = ["path_counts", "sampling_pattern", "coverage"]


def path_counts(specs: Sequence[LayerSpec], input_size: int, index: int) -> np.ndarray:
    """Along one axis, the number of paths from each input pixel to output unit ``index`` of a layer stack.

    Each layer's output ``o`` reads inputs ``o s - p + t d`` for ``t = 0 .. k-1``
    (eq. (1) of DeepLabv3 with stride ``s`` and padding ``p``); padded positions are zeros and carry
    no path. A zero inside the receptive field is a pixel the unit never reads (gridding, or a
    stride that skips pixels). This is also ``d y[index] / d x`` when every weight is 1 and nothing
    is nonlinear, the simplest case of Luo et al.'s effective receptive field (NeurIPS 2016), which
    approaches a Gaussian. A pooling layer counts as a uniform window (average pooling up to a
    constant factor; max pooling routes the gradient to one pixel of each window instead). With
    square kernels the 2-D count of unit ``(i, j)`` is ``np.outer(path_counts(.., i), path_counts(.., j))``.

    Args:
        specs: the layers along one axis, first to last (:class:`~deeplab_edu.receptive_field.LayerSpec`).
        input_size: the input's length in pixels.
        index: the output unit, ``0 <= index <`` the stack's output length.

    Returns:
        An array of float64, shape ``(input_size,)``, holding whole numbers (exact below 2**53).

    Raises:
        ValueError: the stack has no output on ``input_size``
            (:func:`~deeplab_edu.atrous.conv_output_size`), or ``index`` lies outside the output.
    """
    sizes = [input_size]
    for spec in specs:
        sizes.append(conv_output_size(sizes[-1], spec.kernel, spec.stride, spec.padding, spec.dilation))
    if not is_whole(index) or not 0 <= index < sizes[-1]:
        raise ValueError(f"index must be an output unit in 0..{sizes[-1] - 1}, got {index!r}")
    paths = np.zeros(sizes[-1])
    paths[index] = 1.0
    for spec, n_in in zip(reversed(specs), reversed(sizes[:-1])):
        back = np.zeros(n_in)
        outputs = np.arange(len(paths)) * spec.stride - spec.padding
        for t in range(spec.kernel):
            taps = outputs + t * spec.dilation
            inside = (taps >= 0) & (taps < n_in)
            np.add.at(back, taps[inside], paths[inside])
        paths = back
    return paths


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
    rates = tuple(rates)  # an audit: an iterator was used up by the checks, and the pattern drawn of no layer
    if not rates:
        raise ValueError("rates must name at least one layer")
    for r in rates:
        if not is_whole(r) or r < 1:  # NumPy's integers too (an audit)
            raise ValueError(f"rates must be positive ints, got {r!r}")
    specs = [LayerSpec(kernel_size, dilation=r) for r in rates]
    size = receptive_field(specs).size  # no padding: the one output unit sees exactly its field
    line = torch.from_numpy(path_counts(specs, size, 0))
    return torch.outer(line, line).round().to(torch.int64)


def coverage(pattern: torch.Tensor) -> float:
    """Fraction of the receptive field's pixels that are actually read (no holes: 1.0): what
    Wang et al.'s hybrid dilated convolution makes 1.0 with rates like (1, 2, 5).

    Args:
        pattern: a :func:`sampling_pattern` map, any shape.

    Raises:
        TypeError: ``pattern`` is not a tensor (a NumPy array: ``torch.from_numpy``).
    """
    require_tensor(pattern, "pattern", "(any shape)")  # an audit: a NumPy array was an AttributeError
    return float((pattern > 0).double().mean())
