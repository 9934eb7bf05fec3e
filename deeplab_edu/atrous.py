"""Atrous (dilated) convolution, written out: DeepLabv3 eq. (1) and its arithmetic.

DeepLabv3 (Chen et al., 2017, Sec. 3.1, eq. (1)) defines atrous convolution of a signal ``x``
with a filter ``w`` at rate ``r`` as

    y[i] = sum_k x[i + r * k] * w[k],

so the filter taps are read ``r`` samples apart; ``r = 1`` is ordinary convolution (the
cross-correlation that deep-learning libraries call convolution). This module gives

* :func:`atrous_conv1d` and :func:`atrous_conv2d`: reference implementations with plain
  indexing, slow but readable, which agree with ``torch.nn.functional.conv1d/conv2d(...,
  dilation=rate)`` (the tests check it over a property-based sweep);
* :func:`dilate_kernel`: the "upsampled filter" view of DeepLab v2 (Sec. 3.1): insert
  ``rate - 1`` zeros between taps and run an ordinary convolution;
* :func:`effective_kernel_size`, :func:`conv_output_size` (Dumoulin & Visin, *A guide to
  convolution arithmetic for deep learning*, 2016, relationship 15) and :func:`same_padding`;
* :func:`input_positions`: which input indices eq. (1) reads for one output;
* :func:`cost_vs_rate`: parameters and multiply-adds of a dilated conv *measured* with
  :mod:`deeplab_edu.complexity` (they do not depend on the rate);
* :func:`edge_and_line_response`: a horizontal-derivative (Sobel) filter at rate ``r`` on a test
  pattern with a step edge and a one-pixel line: the step gives a band ``2r`` pixels wide, the
  line shows up twice, ``r`` pixels either side of it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .choices import require_tensor, whole_number

__all__ = [
    "atrous_conv1d",
    "atrous_conv2d",
    "dilate_kernel",
    "effective_kernel_size",
    "conv_output_size",
    "same_padding",
    "input_positions",
    "cost_vs_rate",
    "SOBEL_X",
    "EdgeResponse",
    "edge_and_line_response",
]

IntOrPair = int | tuple[int, int]


def _pair(value: IntOrPair, name: str, *, minimum: int = 1) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair (height, width), got {value!r}")
        return (whole_number(value[0], name, minimum=minimum), whole_number(value[1], name, minimum=minimum))
    v = whole_number(value, name, minimum=minimum)
    return (v, v)


def effective_kernel_size(kernel_size: int, rate: int = 1) -> int:
    """Span, in input pixels, of a ``kernel_size``-tap filter read at ``rate``: ``k + (k - 1)(r - 1)``
    (DeepLab v2 sec. 3.1; Dumoulin & Visin 2016 write it ``k^ = k + (k - 1)(d - 1)`` beside relationship 15).

    >>> effective_kernel_size(3, 6)
    13

    Raises:
        TypeError: ``kernel_size`` or ``rate`` is not an int.
        ValueError: ``kernel_size`` or ``rate`` is below 1.
    """
    k = whole_number(kernel_size, "kernel_size")
    r = whole_number(rate, "rate")
    return k + (k - 1) * (r - 1)


def conv_output_size(input_size: int, kernel_size: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Output length of a convolution (Dumoulin & Visin 2016, relationship 15).

    ``o = floor((i + 2p - k - (k - 1)(d - 1)) / s) + 1``.

    >>> conv_output_size(513, 3, stride=2, padding=1)
    257

    Raises:
        TypeError: an argument is not an int.
        ValueError: a size, stride or dilation below 1, a negative padding, or a padded input
            shorter than the effective kernel (no output exists).
    """
    i = whole_number(input_size, "input_size")
    p = whole_number(padding, "padding", minimum=0)
    s = whole_number(stride, "stride")
    span = effective_kernel_size(kernel_size, dilation)
    if i + 2 * p < span:
        raise ValueError(
            f"input_size + 2 * padding = {i + 2 * p} is smaller than the effective kernel size {span} "
            f"(kernel_size={kernel_size}, dilation={dilation}): the convolution has no output"
        )
    return (i + 2 * p - span) // s + 1


def same_padding(kernel_size: int, rate: int = 1) -> int:
    """Padding that keeps the size at stride 1: ``(k_eff - 1) / 2 = r (k - 1) / 2``.

    This is the padding DeepLab uses for its 3x3 atrous convolutions (``padding = rate``).

    Raises:
        TypeError: ``kernel_size`` or ``rate`` is not an int.
        ValueError: either is below 1, or ``r (k - 1)`` is odd: then no symmetric padding keeps the size.
    """
    total = effective_kernel_size(kernel_size, rate) - 1
    if total % 2:
        raise ValueError(
            f"kernel_size={kernel_size} at rate={rate} has an even effective size {total + 1}: "
            "no symmetric padding keeps the size (use an odd kernel size)"
        )
    return total // 2


def input_positions(output_index: int, kernel_size: int, rate: int = 1, stride: int = 1, padding: int = 0) -> list[int]:
    """The input indices eq. (1) reads for ``y[output_index]``, in tap order.

    With stride ``s`` and padding ``p`` the output ``i`` reads ``x[s*i - p + r*k]`` for
    ``k = 0 .. kernel_size-1``; indices below 0 (or past the end) fall on the zero padding.

    >>> input_positions(2, 3, rate=2)
    [2, 4, 6]

    Raises:
        TypeError: an argument is not an int.
        ValueError: ``kernel_size``, ``rate`` or ``stride`` is below 1, or ``output_index`` or
            ``padding`` is negative.
    """
    i = whole_number(output_index, "output_index", minimum=0)
    k = whole_number(kernel_size, "kernel_size")
    r = whole_number(rate, "rate")
    s = whole_number(stride, "stride")
    p = whole_number(padding, "padding", minimum=0)
    return [s * i - p + r * t for t in range(k)]


def _check_layout(value: torch.Tensor, name: str, dims: int, form: str) -> None:
    """Refuse ``value`` (the argument ``name``) unless it is a tensor of ``dims`` dimensions, laid out as ``form``
    (``"(N, C_in, H, W)"``): a TypeError for no tensor (:func:`~deeplab_edu.choices.require_tensor`, a NumPy
    array say), a ValueError naming the form and the shape given."""
    require_tensor(value, name, form)
    if value.dim() != dims:
        raise ValueError(f"{name} must be a {dims}-D tensor {form}, got {tuple(value.shape)}")


def atrous_conv1d(x: torch.Tensor, w: torch.Tensor, rate: int = 1, padding: int = 0, stride: int = 1) -> torch.Tensor:
    """Eq. (1) in one dimension: ``y[i] = sum_k x[s*i - p + r*k] w[k]``, with plain indexing.

    Args:
        x: the signal, shape ``(L,)``.
        w: the filter, shape ``(K,)``.
        rate: the atrous rate ``r`` (``dilation`` in PyTorch); 1 is ordinary convolution.
        padding: zeros added at both ends.
        stride: step between consecutive outputs.

    Returns:
        ``y`` of shape ``(conv_output_size(L, K, stride, padding, rate),)``.

    Raises:
        ValueError: ``x`` or ``w`` is not 1-D; ``rate`` or ``stride`` is below 1 or ``padding`` is
            negative; ``x`` or ``w`` is empty; or the padded signal is shorter than the effective kernel (no
            output).
        TypeError: ``x`` or ``w`` is not a torch tensor (a NumPy array: ``torch.from_numpy``); ``rate``,
            ``padding`` or ``stride`` is not an int.
    """
    _check_layout(x, "x", 1, "(L,)")  # an audit: a NumPy array was told "must be a 1-D tensor (L,), got (5,)"
    _check_layout(w, "w", 1, "(K,)")
    n_out = conv_output_size(x.shape[0], w.shape[0], stride, padding, rate)
    y = torch.zeros(n_out, dtype=torch.result_type(x, w), device=x.device)
    for i in range(n_out):
        for k in range(w.shape[0]):
            j = stride * i - padding + rate * k  # the input index eq. (1) reads
            if 0 <= j < x.shape[0]:  # outside: a padding zero, contributes nothing
                y[i] += x[j] * w[k]
    return y


def atrous_conv2d(
    x: torch.Tensor,
    w: torch.Tensor,
    rate: IntOrPair = 1,
    padding: IntOrPair = 0,
    stride: IntOrPair = 1,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Eq. (1) in two dimensions, batched and multi-channel, with plain indexing.

    ``y[n, o, i, j] = sum_{c, k, l} x[n, c, s_h*i - p_h + r_h*k, s_w*j - p_w + r_w*l] w[o, c, k, l]``

    The loops run over output positions and filter taps; the sum over input channels is a
    matrix product. Same arguments and result as ``F.conv2d(x, w, bias, stride, padding,
    dilation=rate)``.

    Args:
        x: input ``(N, C_in, H, W)``.
        w: filters ``(C_out, C_in, K_h, K_w)``.
        rate, padding, stride: an int or an ``(h, w)`` pair each.
        bias: optional ``(C_out,)``.

    Raises:
        ValueError: ``x`` or ``w`` is not 4-D; ``w``'s input channels differ from ``x``'s channels;
            ``bias`` is given and its shape is not ``(C_out,)``; ``rate``, ``padding`` or ``stride`` is a sequence
            whose length is not 2; ``rate`` or ``stride`` is below 1 or ``padding`` is negative; or the padded
            input is smaller than the effective kernel in either dimension (no output).
        TypeError: ``x`` or ``w`` is not a torch tensor (a NumPy array: ``torch.from_numpy``); ``x``, ``w`` and
            ``bias`` differ in dtype; a value of ``rate``, ``padding`` or ``stride`` is not an int.
    """
    _check_layout(x, "x", 4, "(N, C_in, H, W)")  # an audit: a NumPy array was told "must be a 4-D tensor"
    _check_layout(w, "w", 4, "(C_out, C_in, K_h, K_w)")
    if w.shape[1] != x.shape[1]:
        raise ValueError(f"w has {w.shape[1]} input channels but x has {x.shape[1]} channels")
    if x.dtype != w.dtype or (bias is not None and bias.dtype != x.dtype):  # a census: torch's matmul error, mid-loop
        of_bias = "" if bias is None else f" and bias {bias.dtype}"
        raise TypeError(f"x is {x.dtype} but w {w.dtype}{of_bias}: convert them to one dtype (w.to(x.dtype))")
    if bias is not None and bias.shape != (w.shape[0],):
        raise ValueError(f"bias must have shape ({w.shape[0]},), got {tuple(bias.shape)}")
    rh, rw = _pair(rate, "rate")
    ph, pw = _pair(padding, "padding", minimum=0)
    sh, sw = _pair(stride, "stride")
    n, _, height, width = x.shape
    c_out, _, kh, kw = w.shape
    out_h = conv_output_size(height, kh, sh, ph, rh)
    out_w = conv_output_size(width, kw, sw, pw, rw)
    y = torch.zeros(n, c_out, out_h, out_w, dtype=torch.result_type(x, w), device=x.device)
    for i in range(out_h):
        for j in range(out_w):
            for k in range(kh):
                for m in range(kw):
                    row = sh * i - ph + rh * k
                    col = sw * j - pw + rw * m
                    if 0 <= row < height and 0 <= col < width:
                        # (N, C_in) @ (C_in, C_out): one tap, all channels at once
                        y[:, :, i, j] += x[:, :, row, col] @ w[:, :, k, m].T
    if bias is not None:
        y += bias.view(1, -1, 1, 1)
    return y


def dilate_kernel(w: torch.Tensor, rate: IntOrPair, spatial_dims: int | None = None) -> torch.Tensor:
    """The "upsampled filter": insert ``rate - 1`` zeros between neighbouring taps.

    An ordinary convolution (dilation 1) with the dilated kernel equals the atrous
    convolution with the original one. The last ``spatial_dims`` axes are dilated; by default
    1 for a 1-D or 3-D ``w`` (conv1d weights) and 2 for a 2-D or 4-D ``w`` (conv2d weights).

    >>> dilate_kernel(torch.tensor([1., 2., 3.]), 2)
    tensor([1., 0., 2., 0., 3.])

    Raises:
        ValueError: ``w`` has no dimension; ``spatial_dims`` is not 1 or 2 or exceeds
            ``w.dim()``; ``rate`` is below 1 (or, with two spatial dims, a sequence whose length is not 2); or a
            dilated axis of ``w`` is empty.
        TypeError: ``w`` is not a torch tensor (a NumPy array: ``torch.from_numpy``); a value of ``rate`` is not
            an int.
    """
    require_tensor(w, "w", "(K,), (K_h, K_w) or a convolution's weights")  # an audit: "must be a tensor" for NumPy
    if w.dim() == 0:
        raise ValueError("w must be a tensor with at least one dimension (the taps)")
    if spatial_dims is None:
        spatial_dims = 1 if w.dim() in (1, 3) else 2
    if spatial_dims not in (1, 2) or spatial_dims > w.dim():
        raise ValueError(f"spatial_dims must be 1 or 2 and at most w.dim()={w.dim()}, got {spatial_dims}")
    rates: tuple[int, ...] = _pair(rate, "rate") if spatial_dims == 2 else (whole_number(rate, "rate"),)
    taps = w.shape[-spatial_dims:]
    size = tuple(effective_kernel_size(k, r) for k, r in zip(taps, rates))
    out = w.new_zeros(*w.shape[: w.dim() - spatial_dims], *size)
    if spatial_dims == 1:
        out[..., :: rates[0]] = w
    else:
        out[..., :: rates[0], :: rates[1]] = w
    return out


def cost_vs_rate(
    rates: Sequence[int] = (1, 2, 4, 8, 12),
    *,
    channels: int = 64,
    size: int = 65,
    kernel_size: int = 3,
    time_it: bool = False,
) -> list[dict[str, float]]:
    """Measure a ``kernel_size`` conv (``channels -> channels``, same padding) at each rate.

    Parameters and multiply-adds come from :mod:`deeplab_edu.complexity` (multiply-adds are
    counted from a real forward pass on a ``(1, channels, size, size)`` input), so the table
    shows, rather than asserts, that the cost does not depend on the rate.

    Returns:
        One row per rate, with ``rate``, ``effective kernel``, ``params``, ``MACs`` and, with
        ``time_it``, the median ``forward (ms)`` on this machine (the rates timed in interleaved
        rounds, :func:`~deeplab_edu.complexity.time_interleaved`: timed one after the other, the first
        rate paid the process's warm-up and looked many times slower).

    Raises:
        ValueError: a rate at which ``kernel_size`` has no symmetric "same" padding (an odd
            ``rate * (kernel_size - 1)``, :func:`same_padding`), or a rate below 1.
    """
    from .complexity import count_macs, count_parameters, time_interleaved

    rows: list[dict[str, float]] = []
    x = torch.randn(1, channels, size, size)
    convs = {r: nn.Conv2d(channels, channels, kernel_size, padding=same_padding(kernel_size, r), dilation=r)
             for r in rates}
    for r in rates:
        rows.append({
            "rate": r,
            "effective kernel": effective_kernel_size(kernel_size, r),
            "params": count_parameters(convs[r]),
            "MACs": count_macs(convs[r], x),
        })
    if time_it:
        seconds = time_interleaved({r: functools.partial(conv, x) for r, conv in convs.items()}, repeats=5, warmup=2)
        for row, r in zip(rows, rates):
            row["forward (ms)"] = 1e3 * seconds[r]
    return rows


#: The 3x3 Sobel filter for horizontal intensity changes (responds to vertical edges).
SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


@dataclass(frozen=True)
class EdgeResponse:
    """What :func:`edge_and_line_response` measured.

    ``image`` and ``response`` are ``(size, size)`` tensors (``response`` is the absolute filter
    output); ``step_at`` is the first bright column of the step, ``line_at`` the line's column;
    ``step_columns`` and ``line_columns`` are the columns of the middle row where the response is
    non-zero, on the step's side and on the line's side of the pattern.
    """

    rate: int
    image: torch.Tensor
    response: torch.Tensor
    step_at: int
    line_at: int
    step_columns: list[int]
    line_columns: list[int]


def edge_and_line_response(rate: int, size: int = 128, step_at: int = 40, line_at: int = 88) -> EdgeResponse:
    """Run :data:`SOBEL_X` at ``rate`` on a test pattern: a step edge and a one-pixel dark line.

    The pattern is 0 left of column ``step_at`` and 1 from there on, except column ``line_at``,
    which is 0 again. Along a row the filter computes ``4 * (x[j + r] - x[j - r])``, so the step
    answers wherever it lies between the two outer taps, ``step_at - r <= j < step_at + r``: a band
    ``2r`` columns wide; the line answers only where one outer tap lands on it, at
    ``line_at - r`` and ``line_at + r``: it shows up twice. The borders are padded by repeating
    the edge pixels, so that only the step and the line respond.

    Raises:
        ValueError: the step and the line are closer than ``2 * rate`` to each other, or either is
            closer than ``rate`` to the border (their responses would overlap or be cut off), or
            ``rate`` is below 1.
        TypeError: ``rate`` is not an integer.
    """
    r = whole_number(rate, "rate")
    if not (r <= step_at and step_at + 2 * r <= line_at and line_at + r < size):
        raise ValueError(f"edge_and_line_response: step_at={step_at}, line_at={line_at} and size={size} need "
                         f"r <= step_at, step_at + 2r <= line_at and line_at + r < size for rate {r}")
    image = torch.zeros(size, size)
    image[:, step_at:] = 1.0
    image[:, line_at] = 0.0
    padded = F.pad(image[None, None], (r, r, r, r), mode="replicate")
    response = F.conv2d(padded, SOBEL_X.view(1, 1, 3, 3), dilation=r)[0, 0].abs()
    row = response[size // 2]
    middle = (step_at + line_at) // 2
    nonzero = [int(j) for j in torch.nonzero(row > 0).flatten()]
    return EdgeResponse(r, image, response, step_at, line_at,
                        [j for j in nonzero if j < middle], [j for j in nonzero if j >= middle])
