"""Boundary degeneration of atrous convolution: DeepLabv3 sec. 3.3 and Figure 4.

A k x k atrous convolution with rate ``r`` and "same" zero padding (padding ``r (k-1)/2``)
reads, for output position ``i``, the inputs ``x[i + r k]`` of eq. (1) of DeepLabv3 (Chen et
al., 2017). Near the border some of those taps land on the zero padding instead of the feature
map; their weights multiply zeros and are wasted. DeepLabv3 counts, over every
output position of a 65 x 65 feature map, how many of the nine weights of a 3 x 3 filter still
see the map (its *valid weights*), and plots the normalised count of positions with 1, 4 and 9
valid weights against the rate (Figure 4). Once the rate reaches the feature-map size only the
centre tap is valid anywhere, and the 3 x 3 filter *is* a 1 x 1 filter with its centre weight.
The paper's remedy is image-level pooling (ParseNet-style global context, Liu et al., 2015),
which became the fifth branch of ASPP.

This module computes the counts in closed form (the count separates into a per-row and a
per-column factor), checks them against the brute-force count (a ones kernel convolved with an
all-ones map), and measures the degeneration on real convolutions.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from itertools import product
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .choices import is_whole, whole_number
from .inference import unwrap_out

__all__ = [
    "possible_counts",
    "valid_tap_counts_1d",
    "valid_tap_counts",
    "tap_counts_by_convolution",
    "valid_weight_fractions",
    "figure4_curves",
    "mean_valid_fraction",
    "degeneration_rate",
    "effective_kernel_shape",
    "centre_weight",
    "DegenerationReport",
    "compare_with_centre_tap",
    "input_footprint",
    "rate_usage_table",
]


# --------------------------------------------------------------------------- checks
def _odd_kernel(kernel: object) -> int:
    k = whole_number(kernel, "kernel")
    if k % 2 == 0:
        raise ValueError(
            f"kernel must be odd (got {k}): 'same' zero padding is symmetric only for odd kernels"
        )
    return k


def _size_pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        s = whole_number(size, "size")
        return s, s
    if isinstance(size, Sequence) and len(size) == 2:
        return whole_number(size[0], "size[0] (height)"), whole_number(size[1], "size[1] (width)")
    raise TypeError(f"size must be an int or a (height, width) pair, got {size!r}")


# --------------------------------------------------------------------------- counting
def possible_counts(kernel: int = 3) -> tuple[int, ...]:
    """Every number of valid taps a k x k filter can have: products ``a * b`` with ``1 <= a, b <= k``.

    For a 3 x 3 filter that is ``(1, 2, 3, 4, 6, 9)``: the row factor and the column factor are
    each 1, 2 or 3, and the count is their product (5, 7 and 8 cannot happen).

    Raises:
        TypeError: ``kernel`` is not an integer.
        ValueError: ``kernel`` is below 1 or even.
    """
    k = _odd_kernel(kernel)
    return tuple(sorted({a * b for a, b in product(range(1, k + 1), repeat=2)}))


def valid_tap_counts_1d(length: int, kernel: int = 3, rate: int = 1) -> np.ndarray:
    """Per position of a 1-D signal of ``length``, how many of the ``kernel`` taps fall inside it.

    The taps of output ``i`` sit at ``i + rate * j`` for ``j = -(k-1)/2 .. (k-1)/2``; a tap is
    valid when ``0 <= i + rate * j < length``.

    Returns:
        an int64 array (length,) with values in ``1 .. kernel``.

    Raises:
        TypeError: ``length``, ``kernel`` or ``rate`` is not an integer.
        ValueError: ``length`` or ``rate`` is below 1, or ``kernel`` is below 1 or even.
    """
    n = whole_number(length, "length")
    k = _odd_kernel(kernel)
    r = whole_number(rate, "rate")
    half = (k - 1) // 2
    i = np.arange(n)[:, None]
    offsets = r * np.arange(-half, half + 1)[None, :]
    taps = i + offsets
    return ((taps >= 0) & (taps < n)).sum(axis=1).astype(np.int64)


def valid_tap_counts(height: int, width: int, kernel: int = 3, rate: int = 1) -> np.ndarray:
    """Valid taps per output position of a "same" k x k atrous convolution on an H x W map: the
    count behind DeepLabv3's Fig. 4 (sec. 3.3: as the rate grows, fewer taps fall on the map).

    Tap ``(a, b)`` of output ``(i, j)`` reads ``x[i + r a, j + r b]``; it is valid when both the
    row and the column land inside the map, so the count is the product of the row count and the
    column count (:func:`valid_tap_counts_1d`).

    Returns:
        an int64 array (height, width) with values in :func:`possible_counts`.

    Raises:
        TypeError: ``height``, ``width``, ``kernel`` or ``rate`` is not an integer.
        ValueError: ``height``, ``width`` or ``rate`` is below 1, or ``kernel`` is not odd and positive.
    """
    rows = valid_tap_counts_1d(whole_number(height, "height"), kernel, rate)
    cols = valid_tap_counts_1d(whole_number(width, "width"), kernel, rate)
    return np.outer(rows, cols)


def tap_counts_by_convolution(height: int, width: int, kernel: int = 3, rate: int = 1) -> np.ndarray:
    """The brute-force count: a k x k kernel of ones, convolved ("same", dilated) with a map of ones.

    Every valid tap adds 1 and every padded tap adds 0, so the output *is* the valid-tap count.
    Used to check :func:`valid_tap_counts`.

    Returns:
        an int64 array (height, width), equal to :func:`valid_tap_counts`.

    Raises:
        TypeError: ``height``, ``width``, ``kernel`` or ``rate`` is not an integer.
        ValueError: ``height``, ``width`` or ``rate`` is below 1, or ``kernel`` is below 1 or even.
    """
    h, w = whole_number(height, "height"), whole_number(width, "width")
    k, r = _odd_kernel(kernel), whole_number(rate, "rate")
    ones = torch.ones(1, 1, h, w, dtype=torch.float64)
    weight = torch.ones(1, 1, k, k, dtype=torch.float64)
    out = F.conv2d(ones, weight, padding=r * (k - 1) // 2, dilation=r)
    return out[0, 0].round().to(torch.int64).numpy()


def valid_weight_fractions(size: int | Sequence[int], rate: int, kernel: int = 3) -> dict[int, float]:
    """Fraction of output positions that see each possible number of valid weights.

    Args:
        size: the feature map, an int (square) or ``(height, width)``.
        rate: the atrous rate.
        kernel: the (odd) filter size; 3 gives the keys 1, 2, 3, 4, 6, 9.

    Returns:
        ``{count: fraction}`` for every count in :func:`possible_counts` (zeros included); the
        fractions sum to 1. DeepLabv3 Figure 4 plots the values for 1, 4 and 9 on a 65 x 65 map.

    Raises:
        TypeError: ``size`` is neither an integer nor a ``(height, width)`` pair of integers, or
            ``rate`` or ``kernel`` is not an integer.
        ValueError: a side of ``size`` or ``rate`` is below 1, or ``kernel`` is below 1 or even.
    """
    h, w = _size_pair(size)
    k = _odd_kernel(kernel)
    # The count is row_count * col_count, so its histogram is the product of two 1-D histograms.
    rows = np.bincount(valid_tap_counts_1d(h, k, rate), minlength=k + 1) / h
    cols = np.bincount(valid_tap_counts_1d(w, k, rate), minlength=k + 1) / w
    out = {c: 0.0 for c in possible_counts(k)}
    for a in range(1, k + 1):
        for b in range(1, k + 1):
            out[a * b] += float(rows[a] * cols[b])
    return out


def figure4_curves(
    size: int | Sequence[int] = 65, rates: Iterable[int] = range(1, 66), kernel: int = 3
) -> dict[str | int, np.ndarray]:
    """The data of DeepLabv3 Figure 4: normalised counts of valid weights against the rate.

    Returns:
        ``{"rates": array, 1: array, 2: array, ...}``: for each possible count, the fraction of
        output positions with that many valid weights at each rate.

    Raises:
        ValueError: ``rates`` is empty or holds a value below 1, ``size`` (or a side of it) is below 1, or
            ``kernel`` is below 1 or even.
        TypeError: a rate or ``kernel`` is not an integer, or ``size`` is neither an integer nor a
            ``(height, width)`` pair of integers.
    """
    rate_list = [whole_number(r, "rates[...]") for r in rates]
    if not rate_list:
        raise ValueError("rates is empty; give at least one atrous rate")
    rows = [valid_weight_fractions(size, r, kernel) for r in rate_list]
    curves: dict[str | int, np.ndarray] = {"rates": np.asarray(rate_list)}
    for c in possible_counts(kernel):
        curves[c] = np.asarray([row[c] for row in rows])
    return curves


def mean_valid_fraction(size: int | Sequence[int], rate: int, kernel: int = 3) -> float:
    """Average share of the k x k weights that land inside the map, over all output positions.

    A one-number summary of the counts behind DeepLabv3 Fig. 4 (sec. 3.3), which plots the share of
    positions with 1, 4 and 9 valid weights (:func:`figure4_curves`): a "same" atrous convolution zero-pads the map, so a
    tap that falls outside it multiplies padding; as ``rate`` approaches the map's side the share
    falls towards ``1 / k**2`` (only the centre tap is valid: the filter has become 1 x 1).

    Args:
        size: the map's side, or its ``(height, width)``, in feature-map positions.
        rate: the atrous rate (1: an ordinary convolution).
        kernel: the odd kernel size ``k``.

    Returns:
        a fraction in ``[1 / k**2, 1]`` (:func:`valid_tap_counts` averaged, divided by ``k**2``).

    Raises:
        TypeError: ``size`` is neither an integer nor a ``(height, width)`` pair of integers, or
            ``rate`` or ``kernel`` is not an integer.
        ValueError: a side of ``size`` or ``rate`` is below 1, or ``kernel`` is below 1 or even.
    """
    h, w = _size_pair(size)
    return float(valid_tap_counts(h, w, kernel, rate).mean() / kernel**2)


def degeneration_rate(size: int | Sequence[int], kernel: int = 3) -> int:
    """Smallest rate at which every output position sees only the centre tap: ``max(H, W)``.

    The nearest off-centre tap is ``rate`` away; it misses a map of length ``n`` from every
    position exactly when ``rate >= n``. (The kernel size does not matter.)

    Raises:
        TypeError: ``size`` is neither an integer nor a ``(height, width)`` pair of integers, or
            ``kernel`` is not an integer.
        ValueError: a side of ``size`` is below 1, or ``kernel`` is below 1 or even.
    """
    _odd_kernel(kernel)
    h, w = _size_pair(size)
    return max(h, w)


def effective_kernel_shape(size: int | Sequence[int], rate: int, kernel: int = 3) -> tuple[int, int]:
    """The largest number of taps per row and per column any position still uses.

    ``(k, k)`` while the filter is intact somewhere, ``(1, 1)`` once it has become 1 x 1; on a
    non-square map it can be ``(1, k)``: a k x k filter acting as a 1 x k filter.

    Raises:
        TypeError: ``size`` is neither an integer nor a ``(height, width)`` pair of integers, or
            ``rate`` or ``kernel`` is not an integer.
        ValueError: a side of ``size`` or ``rate`` is below 1, or ``kernel`` is below 1 or even.
    """
    h, w = _size_pair(size)
    return (
        int(valid_tap_counts_1d(h, kernel, rate).max()),
        int(valid_tap_counts_1d(w, kernel, rate).max()),
    )


# --------------------------------------------------------------------------- real convolutions
def centre_weight(weight: torch.Tensor) -> torch.Tensor:
    """The centre tap of a (C_out, C_in, k, k) weight, as a 1 x 1 weight (C_out, C_in, 1, 1).

    Raises:
        ValueError: ``weight`` is not 4-D, its last two dimensions differ, or its kernel size is even.
    """
    if weight.ndim != 4 or weight.shape[-1] != weight.shape[-2] or weight.shape[-1] % 2 == 0:
        raise ValueError(f"weight must be (C_out, C_in, k, k) with odd k, got shape {tuple(weight.shape)}")
    c = weight.shape[-1] // 2
    return weight[:, :, c : c + 1, c : c + 1]


@dataclass(frozen=True)
class DegenerationReport:
    """How far a "same" k x k atrous convolution is from the 1 x 1 convolution with its centre weight.

    Attributes:
        rate: the atrous rate.
        max_abs_diff: largest absolute difference over the whole output.
        diff_map: (H, W) array, largest absolute difference over batch and channels per position.
        differs: (H, W) bool array, positions where the two outputs are not identical.
        tap_counts: (H, W) array of valid taps (:func:`valid_tap_counts`) for comparison.
    """

    rate: int
    max_abs_diff: float
    diff_map: np.ndarray
    differs: np.ndarray
    tap_counts: np.ndarray

    @property
    def identical(self) -> bool:
        """True when the two outputs are bit-for-bit equal (no position differs)."""
        return not bool(self.differs.any())

    @property
    def fraction_differing(self) -> float:
        """Fraction of the (H, W) positions where the two outputs differ, in [0, 1]."""
        return float(self.differs.mean())


def compare_with_centre_tap(x: torch.Tensor, weight: torch.Tensor, rate: int) -> DegenerationReport:
    """Run ``x`` through a "same" atrous conv with ``weight`` and through the 1 x 1 centre-weight conv.

    Args:
        x: input (N, C_in, H, W).
        weight: (C_out, C_in, k, k), k odd.
        rate: atrous rate.

    With ``rate >= max(H, W)`` the outputs are mathematically equal. To see them *bit-for-bit*
    equal use small integers stored as float64 (every product and partial sum is then exact, so
    the order in which the library adds channels cannot matter); with arbitrary floats the two
    agree up to rounding.

    Raises:
        ValueError: ``rate`` is below 1, ``x`` is not 4-D, ``weight`` is not ``(C_out, C_in, k, k)`` with odd
            ``k``, or ``x``'s channels differ from ``weight``'s ``C_in``.
        TypeError: ``rate`` is not an integer.
    """
    r = whole_number(rate, "rate")
    if x.ndim != 4:
        raise ValueError(f"x must be (N, C, H, W), got shape {tuple(x.shape)}")
    w1 = centre_weight(weight)
    if x.shape[1] != weight.shape[1]:
        raise ValueError(f"x has {x.shape[1]} channels but weight expects {weight.shape[1]}")
    k = weight.shape[-1]
    with torch.no_grad():
        y_atrous = F.conv2d(x, weight, padding=r * (k - 1) // 2, dilation=r)
        y_centre = F.conv2d(x, w1)
    diff = (y_atrous - y_centre).abs()
    diff_map = diff.amax(dim=(0, 1)).cpu().numpy()
    differs = (y_atrous != y_centre).any(dim=0).any(dim=0).cpu().numpy()
    return DegenerationReport(
        rate=r,
        max_abs_diff=float(diff.max()),
        diff_map=diff_map,
        differs=differs,
        tap_counts=valid_tap_counts(x.shape[-2], x.shape[-1], k, r),
    )


#: Activations whose gradient is zero on part of their input (:func:`input_footprint` replaces them).
FLAT_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.Hardsigmoid, nn.Hardswish, nn.Threshold)


def _without_flat_activations(module: nn.Module) -> nn.Module:
    """``module`` with every :data:`FLAT_ACTIVATIONS` submodule replaced by ``nn.Identity`` (in place)."""
    for name, child in list(module.named_children()):
        if isinstance(child, FLAT_ACTIVATIONS):
            setattr(module, name, nn.Identity())
        else:
            _without_flat_activations(child)
    return module


def input_footprint(
    module: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    height: int,
    width: int,
    position: tuple[int, int] | None = None,
    channels: int = 1,
    seed: int = 0,
) -> np.ndarray:
    """Which input positions influence one output position of ``module`` (a bool (H, W) map).

    The output at ``position`` (default: the centre) is back-propagated to a random input; every
    input position with a non-zero gradient is in the footprint (of ``"out"`` for a model that returns
    ``{"out": ...}``, as this package's and torchvision's segmentation models do). A degenerate 3 x 3 atrous
    convolution has a footprint of one pixel; image-level pooling has the whole map.
    A float64 copy of the module is measured in eval mode (batch norm uses running statistics),
    with its ReLU-like activations (:data:`FLAT_ACTIVATIONS`) replaced by the identity: the footprint
    is the structural one, every input some path reaches, and does not depend on which units the
    random input happens to switch off (a ReLU would hide a whole branch for some inputs). Max
    pooling passes the gradient to one input of its window only: measure modules without it.

    Raises:
        ValueError: ``height``, ``width`` or ``channels`` is below 1, ``position`` lies outside the ``height`` x
            ``width`` map, or the module's output is not ``height`` x ``width`` (or is a mapping without ``"out"``).
        TypeError: ``height``, ``width`` or ``channels`` is not an integer, or ``position`` is not two whole numbers.
    """
    h, w = whole_number(height, "height"), whole_number(width, "width")
    c = whole_number(channels, "channels")
    where: Any = position if position is not None else (h // 2, w // 2)
    if (not isinstance(where, (tuple, list)) or len(where) != 2
            or not all(is_whole(v) for v in where)):
        raise TypeError(f"position must be two whole numbers (row, column), got {position!r}")
    i, j = where
    if not (0 <= i < h and 0 <= j < w):
        raise ValueError(f"position {(i, j)} is outside the {h} x {w} map")
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, c, h, w, generator=gen, dtype=torch.float64).requires_grad_(True)
    if isinstance(module, nn.Module):
        # A float64 copy in eval mode: the caller's module is left untouched.
        module = _without_flat_activations(copy.deepcopy(module).double().eval())
    out: Any = module(x)
    if isinstance(out, Mapping) and "out" not in out:
        raise ValueError(f"the module returns a mapping without 'out' (keys: {', '.join(map(str, out))}); measure a "
                         "module that returns the map, or {'out': map} as segmentation models do")
    y = unwrap_out(out)  # a segmentation model's {"out": ...} (an audit: 'dict' object has no attribute 'shape')
    if y.shape[-2:] != (h, w):
        raise ValueError(f"module output is {tuple(y.shape[-2:])}, expected the input size {(h, w)}")
    y[0, :, i, j].sum().backward()
    assert x.grad is not None
    return (x.grad[0] != 0).any(dim=0).numpy()


def rate_usage_table(
    cases: Iterable[tuple[str, int | Sequence[int]]], rates: Sequence[int], kernel: int = 3
) -> list[dict[str, Any]]:
    """For each (label, feature-map size) and rate: share of positions with all k*k taps valid, and
    the mean share of valid weights (both fractions, 0-1; DeepLabv3 sec. 3.3, Fig. 4). Rows are dicts
    ready for a table; a size is a side or a ``(height, width)`` pair, in feature-map positions.

    Example: ``rate_usage_table([("513 crop, OS 16", 33), ("321 crop, OS 16", 21)], (6, 12, 18))``.

    Raises:
        TypeError: a case's size is neither an integer nor a ``(height, width)`` pair of integers, or
            a rate of ``rates`` or ``kernel`` is not an integer.
        ValueError: a side of a case's size or a rate is below 1, or ``kernel`` is below 1 or even.
    """
    k = _odd_kernel(kernel)
    rows: list[dict[str, Any]] = []
    for label, size in cases:
        for r in rates:
            fr = valid_weight_fractions(size, r, k)
            rows.append(
                {
                    "case": label,
                    "feature map": " x ".join(map(str, _size_pair(size))),
                    "rate": int(r),
                    f"positions with all {k * k} taps": fr[k * k],
                    "mean valid weights": mean_valid_fraction(size, r, k),
                    "only centre tap": fr[1],
                }
            )
    return rows
