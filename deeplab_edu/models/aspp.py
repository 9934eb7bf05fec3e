"""Atrous Spatial Pyramid Pooling (ASPP), one module per paper.

- :class:`ASPPv2` (DeepLab v2 sec. 3.2, Fig. 4): parallel 3x3 atrous branches at rates
  (6, 12, 18, 24), each ending in its *own classifier*; the class scores are **summed**.
  On ResNet each branch is one 3x3 atrous conv to the classes; on VGG (v2 Fig. 7) each branch is
  fc6 (3x3, rate r, 1024) -> fc7 (1x1, 1024) -> fc8 (1x1, classes). ("ASPP-L" names the rates
  (6, 12, 18, 24), v2 Table 3; "ASPP-S" is (2, 4, 8, 12).)
- :class:`ASPP` (DeepLabv3 sec. 3.3, Fig. 5): a 1x1 conv, three 3x3 atrous convs at (6, 12, 18)
  for output stride 16 (doubled at 8), and :class:`ImagePooling` (global average pooling, 1x1
  conv, BN, ReLU, bilinear upsampling); every branch has 256 filters and batch norm; the branches
  are **concatenated** and projected by a 1x1 conv (256, BN). The paper names batch norm only;
  the ReLU after each BN is the released code's (and torchvision's).
- DeepLabv3+ (sec. 3.1, Fig. 3): the same ASPP with depthwise-separable atrous convs
  (:class:`SeparableConv2d`, ``separable=True``).

The parameter names follow torchvision's ``ASPP`` (``convs.i``, ``project``) so that its weights
load directly (see :mod:`deeplab_edu.models.interop`).

**Batch size 1 in training mode.** The image-pooling branch has one value per channel per image,
so batch norm over a batch of one would normalise each value by itself (the output would be
exactly zero) and PyTorch refuses it. Our choice: with a batch of one in training mode, that one
batch-norm layer normalises with its *running statistics* (as in evaluation) and does not update
them; the rest of the network trains normally. When the whole feature map is 1 x 1 (a tiny
input) every branch has that problem, and :class:`ASPP` raises a ValueError that says so; the
DeepLab models check it before the backbone runs (whose batch norm layers meet it first) and name
the input size, the output stride and the smallest input that works
(:meth:`deeplab_edu.models.deeplab.DeepLab.check_input_size`).
"""

from __future__ import annotations

import contextlib
import math
import numbers
from typing import Any, Mapping, Sequence, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from ..choices import is_whole

__all__ = ["atrous_rates_for", "feature_map_side", "fit_atrous_rates", "degenerate_rates", "degenerate_branches", "ASPPv2", "ASPP",
           "ASPPConv", "ImagePooling", "SeparableConv2d", "set_conv_rate", "atrous_conv", "set_recompute_depthwise"]

#: The feature-map side the papers' rates were chosen for: a 513-pixel crop at output stride 16
#: (DeepLabv3 sec. 3.3: "(6, 12, 18) ... when output stride = 16") has 33 x 33 cells.
PAPER_MAP_SIDE = 33


def atrous_rates_for(output_stride: int, base: Sequence[int] = (6, 12, 18), base_output_stride: int = 16) -> tuple[int, ...]:
    """The ASPP rates at ``output_stride``, given ``base`` rates at ``base_output_stride``.

    Halving the output stride doubles the feature-map size, so the rates double to cover the same
    part of the image (DeepLabv3 sec. 3.3: (6, 12, 18) at 16 becomes (12, 24, 36) at 8).

    Raises:
        ValueError: ``output_stride`` or ``base_output_stride`` is not 1, 2, 4, 8, 16 or 32 (the strides a
            backbone can have), or a rate of ``base`` times ``base_output_stride / output_stride`` is below 1
            or not an integer.
    """
    for name, stride in (("output_stride", output_stride), ("base_output_stride", base_output_stride)):
        if isinstance(stride, bool) or stride not in (1, 2, 4, 8, 16, 32):
            raise ValueError(f"{name} must be 1, 2, 4, 8, 16 or 32 (a backbone's stride), got {stride!r}")
    rates = []
    for r in base:
        scaled = r * base_output_stride / output_stride
        if scaled != int(scaled) or scaled < 1:
            raise ValueError(
                f"atrous rate {r} at output stride {base_output_stride} does not scale to an integer rate at "
                f"output stride {output_stride} ({r} x {base_output_stride}/{output_stride} = {scaled:g}): pass "
                f"atrous_rates for output stride {output_stride} yourself (build_model(..., atrous_rates=...), "
                "--atrous-rates)"
            )
        rates.append(int(scaled))
    return tuple(rates)


def feature_map_side(input_side: int, output_stride: int) -> int:
    """Side of the feature map of an ``input_side``-pixel input at ``output_stride`` (a power of 2 up to
    32; the backbones take 8, 16 or 32).

    Every stride-2 layer of the backbones (3x3 or 1x1 with "same" padding) maps ``n`` to
    ``ceil(n / 2)``, so 513 gives 257, 129, 65, 33, 17.

    Raises:
        ValueError: ``input_side`` is not a whole number of at least 1, or ``output_stride`` is not 1, 2, 4, 8,
            16 or 32 (``True`` is not 1: an audit).
    """
    if not _positive_int(input_side) or not _positive_int(output_stride) or output_stride not in (1, 2, 4, 8, 16, 32):
        raise ValueError(f"need input_side >= 1 and output_stride in 1..32 (a power of 2), got {input_side!r}, {output_stride!r}")
    side = int(input_side)
    for _ in range(int(output_stride).bit_length() - 1):
        side = (side + 1) // 2
    return side


def _positive_int(v: Any) -> bool:
    """A whole number of at least 1 (``6``, ``6.0``, ``np.int64(6)``; not ``True``, ``1.5`` or ``"6"``)."""
    if not isinstance(v, numbers.Real) or isinstance(v, bool):
        return False
    x = float(v)
    return math.isfinite(x) and x >= 1 and x.is_integer()


def fit_atrous_rates(map_side: int, paper_rates: Sequence[int] = (6, 12, 18),
                     paper_map_side: int = PAPER_MAP_SIDE, kernel: int = 3) -> tuple[int, ...]:
    """Rates that use a ``map_side``-cell feature map the way the paper's rates use theirs.

    DeepLabv3 chose (6, 12, 18) for the 33 x 33 map of a 513 crop at output stride 16; on a map of
    a few cells those rates read only padding off the centre (sec. 3.3, Fig. 4: the filter
    degenerates to 1 x 1). For each paper rate this returns the *largest* rate whose mean share of
    valid weights on ``map_side`` (:func:`deeplab_edu.boundary.mean_valid_fraction`) is still at
    least the paper rate's share on ``paper_map_side`` (1 if none is). On 33 cells (6, 12, 18) use
    77 %, 57 % and 41 % of their weights; on 6 cells (1, 2, 3) use 79 %, 60 % and 44 %; on 16
    cells (2, 5, 8) use 84 %, 63 % and 44 % (rates 3 and 6 would use 77 % and 56 %, less than the
    paper's 77.2 % and 57.4 %).

    Raises:
        ValueError: if ``map_side`` or a rate is not a positive integer.
    """
    from ..boundary import mean_valid_fraction

    if not is_whole(map_side) or map_side < 1:
        raise ValueError(f"map_side must be a positive integer, got {map_side!r}")
    map_side = int(map_side)  # NumPy's integers too (an audit)
    rates = []
    for r in paper_rates:
        if not _positive_int(r):
            raise ValueError(f"paper_rates must be positive integers, got {tuple(paper_rates)}")
        target = mean_valid_fraction(paper_map_side, int(r), kernel) - 1e-9
        fitting = [c for c in range(1, map_side + 1) if mean_valid_fraction(map_side, c, kernel) >= target]
        rates.append(max(fitting, default=1))
    return tuple(rates)


def degenerate_rates(map_side: int, rates: Sequence[int]) -> tuple[int, ...]:
    """The rates that make a 3x3 atrous filter *exactly* 1x1 on a ``map_side``-cell map.

    A rate ``r >= map_side`` puts every off-centre tap of every position on the padding, so only
    the centre weight is ever used (DeepLabv3 sec. 3.3; :func:`deeplab_edu.boundary.degeneration_rate`).

    Raises:
        ValueError: ``map_side`` or a rate is not a whole number of at least 1 (an audit: 6.9 was cut to 6).
    """
    if not _positive_int(map_side):
        raise ValueError(f"map_side must be a whole number of cells, at least 1, got {map_side!r}")
    given = tuple(rates) if not isinstance(rates, (str, bytes)) else (rates,)
    if not all(_positive_int(r) for r in given):
        raise ValueError(f"degenerate_rates: rates must be positive whole numbers, got {rates!r}")
    return tuple(int(r) for r in given if int(r) >= map_side)


def degenerate_branches(flat: Sequence[int], rates: Sequence[int]) -> str:
    """How a warning names the ASPP branches :func:`degenerate_rates` found flat: ``"all the ASPP branches
    (rates (12, 24, 36))"`` when every rate is, else ``"the ASPP branches at rates (24, 36) of (12, 24, 36)"``."""
    flat, rates = tuple(int(r) for r in flat), tuple(int(r) for r in rates)
    return f"all the ASPP branches (rates {rates})" if flat == rates else f"the ASPP branches at rates {flat} of {rates}"


def set_conv_rate(conv: nn.Conv2d, rate: int) -> None:
    """Set a conv's dilation to ``rate`` with 'same' padding, in place.

    Raises:
        ValueError: ``rate`` is not an int (a bool is not one; NumPy's integers are) or is below 1.
    """
    if not is_whole(rate) or rate < 1:  # an audit: True was a rate
        raise ValueError(f"atrous rate must be a positive integer, got {rate!r}")
    rate = int(rate)
    conv.dilation = (rate, rate)
    conv.padding = ((conv.kernel_size[0] - 1) // 2 * rate,) * 2


class _ChannelScale(torch.autograd.Function):
    """``x * w`` per channel (x: (N, C, H, W), w: (C,)), the weight gradient summed in float32.

    Summing ``grad * x`` in bfloat16 (what autograd of a plain multiplication does under autocast)
    loses the precision a convolution's float32 accumulation keeps; this keeps it.
    """

    @staticmethod
    def forward(ctx: object, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, w)  # type: ignore[attr-defined]
        return x * w.reshape(1, -1, 1, 1)

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        x, w = ctx.saved_tensors  # type: ignore[attr-defined]
        grad_w = (grad.float() * x.float()).sum(dim=(0, 2, 3)).to(w.dtype)
        return grad * w.reshape(1, -1, 1, 1), grad_w


def _autocast_dtype(device_type: str) -> torch.dtype | None:
    """The autocast dtype active for ``device_type``, or ``None`` (also for devices autocast does not know)."""
    try:
        return torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None
    except RuntimeError:  # e.g. "meta": no autocast
        return None


def atrous_conv(conv: nn.Conv2d, x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """``conv(x)`` for a 3x3 atrous conv, computed as the 1x1 conv it reduces to on a small map.

    ``x`` (N, C_in, H, W); returns (N, C_out, H, W) ("same" padding: padding = rate), eq. (1) of
    DeepLabv3 (sec. 3.1) at every position.

    When the rate is at least the feature map's height and width, every off-centre tap of every
    position reads the zero padding (DeepLabv3 sec. 3.3, Fig. 4), so only the centre weights
    ``conv.weight[:, :, 1, 1]`` act and only they get gradient. For a *depthwise* conv that is one
    multiplication per value, channel ``c`` times its centre weight: computed so (in the autocast
    dtype under autocast, as the conv would be, which leaves float64 tensors as they are), its output
    and input gradient are the same bits as the full conv's, whose zero taps add exact zeros; the
    centre weights' gradient sums the same products in another order (equal up to rounding). It is
    taken for depthwise convs only (a regular conv would sum its channels in another order). Any other
    conv, and any conv traced with symbolic shapes or compiled, runs as is. ``weight`` (default
    ``conv.weight``) replaces the conv's weight, e.g. by a detached copy when the backward pass
    recomputes the conv.
    """
    if weight is None:
        weight = conv.weight
    rate_h, rate_w = conv.dilation
    if (conv.groups == conv.in_channels == conv.out_channels and conv.groups > 1
            and conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.padding == (rate_h, rate_w)
            and conv.padding_mode == "zeros" and isinstance(x.shape[-2], int) and isinstance(x.shape[-1], int)
            and rate_h >= x.shape[-2] and rate_w >= x.shape[-1]
            and not torch.compiler.is_compiling() and not torch.jit.is_tracing()):
        centre = weight[:, 0, 1, 1]
        dtype = _autocast_dtype(x.device.type)
        if dtype is not None:  # autocast's rule: it casts floating-point tensors but float64 (an audit: doubles raised)
            x, centre = (t.to(dtype) if t.is_floating_point() and t.dtype != torch.float64 else t for t in (x, centre))
        y = _ChannelScale.apply(x, centre)
        return y if conv.bias is None else y + conv.bias.to(y.dtype).reshape(1, -1, 1, 1)
    return conv(x) if weight is conv.weight else conv._conv_forward(x, weight, conv.bias)


def set_recompute_depthwise(model: nn.Module, enabled: bool) -> int:
    """Turn the depthwise recomputation of every separable conv in ``model`` on or off.

    With it (the default) training keeps two maps less per separable conv for the backward pass
    and spends one more depthwise conv, plus a multiply-add and a ReLU per value, per step
    (:class:`_RecomputedDepthwise`); without it, autograd keeps them. Off is also what
    differentiating twice needs. Returns the number of atrous blocks set (regular, non-separable
    ones ignore the flag).
    """
    count = 0
    for module in model.modules():
        if isinstance(module, _AtrousSequential):
            module.recompute_depthwise = bool(enabled)
            count += 1
    return count


def _batch_norm_train(bn: nn.BatchNorm2d, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``bn(x)`` in training mode, also returning the batch mean and 1/std it normalised with.

    The running statistics are updated as ``nn.BatchNorm2d`` does (``momentum``, or the cumulative
    average when it is ``None``). Raises ValueError, as batch norm does, for one value per channel.
    """
    if x.numel() == x.shape[1]:
        raise ValueError(f"Expected more than 1 value per channel when training, got input size {x.size()}")
    factor = 0.0 if bn.momentum is None else bn.momentum
    if bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    mean, var = (bn.running_mean, bn.running_var) if bn.track_running_stats else (None, None)
    return torch.native_batch_norm(x, bn.weight, bn.bias, mean, var, True, factor, bn.eps)


class _RecomputedDepthwise(torch.autograd.Function):
    """``pointwise(relu(bn(depthwise(x))))`` that keeps only ``x``, the weights and the batch
    statistics for the backward pass.

    The depthwise half of a separable conv with batch norm between (:class:`SeparableConv2d`) is
    cheap to compute (9 multiply-adds per value; one on a small map, :func:`atrous_conv`) but its
    two outputs (the batch norm's input and the ReLU's output, which is the pointwise conv's input)
    are each as large as ``x``. Autograd would keep both until the backward pass; this keeps neither
    and recomputes them there: the depthwise conv again, the batch norm as the multiply-add
    ``d * alpha + beta`` with the statistics of the forward pass (the running statistics are
    updated once). Activation checkpointing of the cheap half only: the pointwise conv, which holds
    nearly all the multiply-adds, is not run again. Outputs and gradients equal the plain layers'
    up to rounding (the tests check outputs and running statistics bit for bit and gradients to
    rounding; on the course's CPU the gradients were bit for bit too in every case compared).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, dw_weight: torch.Tensor, bn_weight: torch.Tensor | None,  # type: ignore[override]
                bn_bias: torch.Tensor | None, pw_weight: torch.Tensor,
                layers: tuple[nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Conv2d]) -> torch.Tensor:
        depthwise, bn, relu, pointwise = layers
        z, mean, invstd = _batch_norm_train(bn, atrous_conv(depthwise, x))
        ctx.layers, ctx.autocast = layers, _autocast_dtype(x.device.type)
        ctx.save_for_backward(x, dw_weight, bn_weight, bn_bias, pw_weight, mean, invstd)
        return pointwise(relu(z))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        x, dw_weight, bn_weight, bn_bias, pw_weight, mean, invstd = ctx.saved_tensors
        depthwise, bn, _, pointwise = ctx.layers
        need_x, need_dw, need_g, need_b, need_pw = ctx.needs_input_grad[:5]
        dw_x, dw_w = x.detach().requires_grad_(need_x), dw_weight.detach().requires_grad_(need_dw)
        with torch.enable_grad(), (contextlib.nullcontext() if ctx.autocast is None
                                   else torch.autocast(x.device.type, dtype=ctx.autocast)):
            d = atrous_conv(depthwise, dw_x, dw_w)
        # batch norm's output from the saved statistics, as its CPU kernel computes it (fused multiply-adds)
        alpha = invstd if bn_weight is None else invstd * bn_weight
        beta = -mean * alpha if bn_bias is None else torch.addcmul(bn_bias, mean, alpha, value=-1)
        shape = (1, -1) + (1,) * (d.dim() - 2)
        y = torch.addcmul(beta.view(shape), d.detach().to(alpha.dtype), alpha.view(shape)).to(d.dtype).relu_()
        grad_y, grad_pw = torch.ops.aten.convolution_backward(
            grad.to(y.dtype), y, pw_weight.to(y.dtype), None, pointwise.stride, pointwise.padding,
            pointwise.dilation, False, [0, 0], pointwise.groups, [True, need_pw, False])[:2]
        grad_d, grad_g, grad_b = torch.ops.aten.native_batch_norm_backward(
            torch.ops.aten.threshold_backward(grad_y, y, 0), d.detach(), bn_weight, None, None, mean, invstd,
            True, bn.eps, [need_x or need_dw, need_g, need_b])
        grad_x = grad_dw = None
        if need_x or need_dw:
            found = iter(torch.autograd.grad(d, [t for t in (dw_x, dw_w) if t.requires_grad], grad_d))
            grad_x = next(found) if need_x else None
            grad_dw = next(found) if need_dw else None
        return grad_x, grad_dw, grad_g, grad_b, None if grad_pw is None else grad_pw.to(pw_weight.dtype), None


def _hooked(module: nn.Module) -> bool:
    return bool(module._forward_hooks or module._forward_pre_hooks or module._backward_hooks
                or getattr(module, "_backward_pre_hooks", None))


def _global_hooks() -> bool:
    m = nn.modules.module
    return any(getattr(m, name, None) for name in ("_global_forward_hooks", "_global_forward_pre_hooks",
                                                    "_global_backward_hooks", "_global_backward_pre_hooks"))


class _AtrousSequential(nn.Sequential):
    """A Sequential whose first module is a 3x3 atrous conv, run through :func:`atrous_conv`.

    In training with gradients, a separable one (depthwise 3x3 without bias, ``BatchNorm2d``,
    ``ReLU``, pointwise 1x1 without bias, ...: exactly these classes) keeps less for the backward
    pass: :class:`_RecomputedDepthwise`. Everything else takes the plain layers: subclasses and
    parametrized layers, hooks (also global ones), other batch norms (``SyncBatchNorm``: their
    statistics are not local), empty batches, forward-mode AD, compiled or traced runs, and any
    module whose ``recompute_depthwise`` is set to False. Set it to False to differentiate twice
    (the recomputation supports one backward pass, as activation checkpointing does):
    :func:`set_recompute_depthwise` ``(model, False)``.
    """

    recompute_depthwise: bool = True

    def _recompute_depthwise(self, x: torch.Tensor) -> bool:
        if (not self.recompute_depthwise or len(self) < 4 or not (self.training and torch.is_grad_enabled())
                or not isinstance(x, torch.Tensor)  # e.g. a torch.fx Proxy
                or torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.jit.is_scripting()
                or getattr(torch.autograd.forward_ad, "_current_level", -1) >= 0 or _global_hooks()):
            return False
        depthwise, bn, relu, pointwise = list(self)[:4]
        return (type(depthwise) is nn.Conv2d and depthwise.groups == depthwise.in_channels == depthwise.out_channels > 1
                and depthwise.bias is None and type(bn) is nn.BatchNorm2d and bn.training and type(relu) is nn.ReLU
                and type(pointwise) is nn.Conv2d and pointwise.kernel_size == (1, 1) and pointwise.bias is None
                and pointwise.padding_mode == "zeros" and not isinstance(pointwise.padding, str) and x.numel() > 0
                and (x.requires_grad or any(p.requires_grad for m in (depthwise, bn, pointwise) for p in m.parameters()))
                and not any(_hooked(m) for m in (depthwise, bn, relu, pointwise)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._recompute_depthwise(x):
            depthwise, bn, relu, pointwise = list(self)[:4]
            x = _RecomputedDepthwise.apply(x, depthwise.weight, bn.weight, bn.bias, pointwise.weight,
                                           (depthwise, bn, relu, pointwise))
            rest = list(self)[4:]
        else:
            x = atrous_conv(cast(nn.Conv2d, self[0]), x)
            rest = list(self)[1:]
        for module in rest:
            x = module(x)
        return x


class SeparableConv2d(_AtrousSequential):
    """Depthwise-separable atrous conv (DeepLabv3+ sec. 3.1, Fig. 3): depthwise 3x3 at ``rate``,
    BN, ReLU, then pointwise 1x1, BN, ReLU.

    The BN and ReLU *between* the depthwise and the pointwise conv follow the official code
    (tensorflow/models research/deeplab/model.py, ``_split_separable_conv2d``: "applies activation
    function between depthwise and pointwise conv2d", inside an ``arg_scope`` that gives every conv
    batch norm and ReLU), like the paper's modified Xception (sec. 3.2: "extra batch normalization
    and ReLU activation are added after each 3 x 3 depthwise convolution"). The ReLUs run in place
    (batch norm's backward needs its input, not its output), which saves one activation-sized
    buffer each. By default in training the depthwise half's two intermediate maps are not kept
    for the backward pass but recomputed there (:class:`_RecomputedDepthwise`: the same outputs,
    gradients to rounding, two maps of the input's size less memory, one more depthwise conv and
    multiply-add per value and step; :func:`set_recompute_depthwise` turns it off, as the ``cpu``
    and ``smoke`` presets do).
    Input (N, in_channels, H, W) -> (N, out_channels, H, W).

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output.
        rate: the depthwise convolution's atrous rate (dilation), a whole number of at least 1.
        kernel_size: the depthwise filter's side, odd (3 in the papers), so that "same" padding keeps
            the size.

    Raises:
        ValueError: a channel count or ``rate`` is not a positive integer, or ``kernel_size`` is not a
            positive odd integer.
    """

    def __init__(self, in_channels: int, out_channels: int, rate: int = 1, kernel_size: int = 3) -> None:
        _check_counts("SeparableConv2d", {"in_channels": in_channels, "out_channels": out_channels, "rate": rate})
        if not _positive_int(kernel_size) or int(kernel_size) % 2 == 0:
            raise ValueError(f"SeparableConv2d: kernel_size must be a positive odd integer (an even filter has no "
                             f"centre, so no padding keeps the map's size), got {kernel_size!r}")
        in_channels, out_channels, rate, kernel_size = int(in_channels), int(out_channels), int(rate), int(kernel_size)
        pad = (kernel_size - 1) // 2 * rate
        super().__init__(
            nn.Conv2d(in_channels, in_channels, kernel_size, padding=pad, dilation=rate, groups=in_channels, bias=False),
            nn.BatchNorm2d(in_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class ASPPConv(_AtrousSequential):
    """One atrous branch of DeepLabv3's ASPP (sec. 3.3): 3x3 conv at ``rate`` (or separable), BN, ReLU;
    (N, in_channels, h, w) -> (N, out_channels, h, w) ("same" padding: ``padding = rate``).

    With ``separable``, a rate at least as large as the feature map is computed as the 1x1 conv it
    reduces to (:func:`atrous_conv`, which takes that path for depthwise convs only); a regular 3x3
    conv runs whole, its off-centre taps reading zeros.

    Raises:
        ValueError: a channel count or ``rate`` is not a positive integer.
    """

    def __init__(self, in_channels: int, out_channels: int, rate: int, separable: bool = False) -> None:
        _check_counts("ASPPConv", {"in_channels": in_channels, "out_channels": out_channels, "rate": rate})
        in_channels, out_channels, rate = int(in_channels), int(out_channels), int(rate)
        if separable:
            super().__init__(*SeparableConv2d(in_channels, out_channels, rate))
        else:
            super().__init__(
                nn.Conv2d(in_channels, out_channels, 3, padding=rate, dilation=rate, bias=False),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(inplace=True),
            )

    @property
    def rate(self) -> int:
        """The atrous rate of the 3x3 conv; setting it changes dilation and padding (same weights).

        Raises:
            ValueError: on setting, the rate is not a positive integer.
        """
        return cast(nn.Conv2d, self[0]).dilation[0]

    @rate.setter
    def rate(self, value: int) -> None:
        set_conv_rate(cast(nn.Conv2d, self[0]), value)


class ImagePooling(nn.Sequential):
    """Image-level features (DeepLabv3 sec. 3.3, after ParseNet): global average pooling, 1x1 conv,
    BN, ReLU, bilinear upsampling back to the feature-map size.


    With a batch of one in training mode the BN uses its running statistics (see the module
    docstring for why); otherwise it is an ordinary batch norm. A ``torch.fx`` trace keeps the
    ordinary one (the choice is a Python branch on the batch size): a traced model trains on
    batches of 2 or more.

    Raises:
        ValueError: a channel count is not a positive integer.
    """

    def __init__(self, in_channels: int, out_channels: int = 256) -> None:
        _check_counts("ImagePooling", {"in_channels": in_channels, "out_channels": out_channels})
        in_channels, out_channels = int(in_channels), int(out_channels)
        super().__init__(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, H, W) -> (N, out_channels, H, W): the pooled vector at every position."""
        size = x.shape[-2:]
        y = self[1](self[0](x))
        bn = cast(nn.BatchNorm2d, self[2])
        if bn.training and not isinstance(y, fx.Proxy) and y.shape[0] == 1:
            y = F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
        else:
            y = bn(y)
        y = self[3](y)
        return F.interpolate(y, size=size, mode="bilinear", align_corners=False)


def _check_rates(owner: str, atrous_rates: Any) -> tuple[int, ...]:
    """``atrous_rates`` (a sequence, NumPy array or tensor of positive whole numbers) as a tuple of ints,
    else a ValueError naming ``owner``."""
    if isinstance(atrous_rates, (np.ndarray, torch.Tensor)) and atrous_rates.ndim == 1:
        atrous_rates = atrous_rates.tolist()  # as build_model takes them
    if isinstance(atrous_rates, (str, bytes)) or not isinstance(atrous_rates, Sequence):
        raise ValueError(f"{owner}: atrous_rates is a sequence of rates, e.g. (6, 12, 18), got {atrous_rates!r}")
    if not all(_positive_int(r) for r in atrous_rates):
        raise ValueError(f"{owner}: atrous_rates must be positive integers (1 is an ordinary 3x3 conv), got "
                         f"{tuple(atrous_rates)}")
    return tuple(int(r) for r in atrous_rates)


def _check_counts(owner: str, counts: Mapping[str, int | None]) -> None:
    """Raise a ValueError naming ``owner`` and the argument where one of ``counts`` (channels, classes, a rate;
    ``None``: not given) is not a positive whole number: what a module would otherwise build and fail on, or
    build empty, at its first forward pass."""
    for name, value in counts.items():
        if value is not None and not _positive_int(value):
            raise ValueError(f"{owner}: {name} must be a positive integer, got {value!r}")


def _check_branches(owner: str, channels: Mapping[str, int | None], atrous_rates: Sequence[int],
                    dropout: float) -> tuple[int, ...]:
    """Fail at construction, naming the argument, on what would otherwise fail (or quietly build an
    empty layer) at the first forward pass: channels below 1 (:func:`_check_counts`), a rate that is not a
    positive integer, no branch at all, a dropout probability outside [0, 1)."""
    _check_counts(owner, channels)
    rates = _check_rates(owner, atrous_rates)
    if not 0 <= dropout < 1:
        raise ValueError(f"{owner}: dropout is a probability in [0, 1), got {dropout!r}")
    return rates


class ASPP(nn.Module):
    """DeepLabv3's ASPP (sec. 3.3): 1x1 + three atrous 3x3 + image pooling, concatenated, projected.

    (N, in_channels, h, w) -> (N, out_channels, h, w) for a feature map of any size (``"same"``
    padding in every branch).

    Args:
        in_channels: channels of the backbone's features (2048 for ResNet).
        atrous_rates: rates of the 3x3 branches ((6, 12, 18) at output stride 16, doubled at 8); empty:
            the 1x1 branch (and image pooling) alone, an ablation.
        out_channels: filters per branch and after the projection (256 in the paper).
        image_pooling: include the image-level branch.
        separable: depthwise-separable atrous convs (DeepLabv3+ sec. 3.1, Fig. 3; "SC" in Table 5).
        dropout: dropout after the projection (torchvision uses 0.5; DeepLabv3+'s code 0.1).

    Raises:
        ValueError: ``in_channels`` or ``out_channels`` is not a positive integer, a rate is not a
            positive integer, or ``dropout`` is not in [0, 1).
    """

    def __init__(
        self,
        in_channels: int,
        atrous_rates: Sequence[int] = (6, 12, 18),
        out_channels: int = 256,
        *,
        image_pooling: bool = True,
        separable: bool = False,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        atrous_rates = _check_branches("ASPP", {"in_channels": in_channels, "out_channels": out_channels},
                                       atrous_rates, dropout)
        branches: list[nn.Module] = [
            nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels),
                          nn.ReLU(inplace=True))
        ]
        for rate in atrous_rates:
            branches.append(ASPPConv(in_channels, out_channels, int(rate), separable))
        if image_pooling:
            branches.append(ImagePooling(in_channels, out_channels))
        self.convs = nn.ModuleList(branches)
        self.image_pooling = image_pooling
        self.project = nn.Sequential(
            nn.Conv2d(len(branches) * out_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        )
        self.out_channels = out_channels

    @property
    def atrous_rates(self) -> tuple[int, ...]:
        """The rates of the 3x3 branches; setting them re-dilates the branches (same weights).

        Raises:
            ValueError: on setting, the number of rates differs from the number of 3x3 branches, or a rate
                is below 1.
        """
        return tuple(b.rate for b in self.convs if isinstance(b, ASPPConv))

    @atrous_rates.setter
    def atrous_rates(self, rates: Sequence[int]) -> None:
        rates = _check_rates("ASPP", rates)
        atrous = [b for b in self.convs if isinstance(b, ASPPConv)]
        if len(rates) != len(atrous):
            raise ValueError(f"atrous_rates needs {len(atrous)} rates, got {tuple(rates)}")
        for branch, rate in zip(atrous, rates):
            branch.rate = int(rate)

    def branch_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """What each branch computes (1x1, atrous..., image pooling), before concatenation: one
        (N, out_channels, H, W) map per branch for an (N, in_channels, H, W) input.

        Raises:
            ValueError: a 1 x 1 map with batch size 1 in training mode (batch norm needs 2+ values); not
                checked in a ``torch.fx`` trace (a ``Proxy`` has no shape to test).
        """
        if self.training and not isinstance(x, fx.Proxy) and x.shape[0] * x.shape[-1] * x.shape[-2] == 1:
            raise ValueError(
                "ASPP got a 1 x 1 feature map with batch size 1 in training mode: batch norm cannot normalise a "
                "single value. Use a larger input (at least output_stride + 1 pixels per side) or a batch of 2+."
            )
        return [branch(x) for branch in self.convs]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, H, W) -> (N, out_channels, H, W): the branches concatenated, then projected
        (DeepLabv3 sec. 3.3, Fig. 5).

        Raises:
            ValueError: a 1 x 1 feature map with a batch of one in training mode (batch norm cannot
                normalise a single value).
        """
        return self.project(torch.cat(self.branch_outputs(x), dim=1))


class ASPPv2(nn.Module):
    """DeepLab v2's ASPP (sec. 3.2, Fig. 4): one classifier per rate, scores summed (the text says "fused",
    Fig. 7 "Sum-Fusion"; the released model adds the branches' scores, an element-wise sum).

    Args:
        in_channels: backbone channels (2048 for ResNet-101, 512 for VGG-16 after pool5).
        num_classes: classes to score.
        atrous_rates: one branch per rate ((6, 12, 18, 24): "ASPP-L"; (2, 4, 8, 12): "ASPP-S").
        hidden_channels: ``None``: each branch is a single 3x3 atrous conv to the classes (ResNet);
            an int (1024 in the paper): fc6 (3x3 atrous) -> fc7 (1x1) -> fc8 (1x1) with ReLU and
            dropout (VGG-16).
        dropout: dropout inside the VGG-style branches.

    (N, in_channels, h, w) -> (N, num_classes, h, w), the sum of the branches' scores.

    Raises:
        ValueError: ``in_channels``, ``num_classes`` or ``hidden_channels`` is not a positive
            integer, ``atrous_rates`` is empty or holds a rate that is not a positive integer, or
            ``dropout`` is not in [0, 1).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        atrous_rates: Sequence[int] = (6, 12, 18, 24),
        *,
        hidden_channels: int | None = None,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        atrous_rates = _check_branches("ASPPv2", {"in_channels": in_channels, "num_classes": num_classes,
                                                  "hidden_channels": hidden_channels}, atrous_rates, dropout)
        if not atrous_rates:
            raise ValueError("ASPPv2: atrous_rates is empty: its scores are the sum of one branch per rate")
        branches = []
        for r in atrous_rates:
            r = int(r)
            if hidden_channels is None:
                branches.append(nn.Sequential(nn.Conv2d(in_channels, num_classes, 3, padding=r, dilation=r)))
            else:
                branches.append(
                    nn.Sequential(
                        nn.Conv2d(in_channels, hidden_channels, 3, padding=r, dilation=r),
                        nn.ReLU(),
                        nn.Dropout2d(dropout),
                        nn.Conv2d(hidden_channels, hidden_channels, 1),
                        nn.ReLU(),
                        nn.Dropout2d(dropout),
                        nn.Conv2d(hidden_channels, num_classes, 1),
                    )
                )
        self.branches = nn.ModuleList(branches)
        if hidden_channels is None:
            for conv in self.branch_convs(0):  # DeepLab v2 initialises its classifiers with N(0, 0.01)
                nn.init.normal_(conv.weight, std=0.01)
                nn.init.zeros_(cast(torch.Tensor, conv.bias))

    def branch_convs(self, index: int = 0) -> list[nn.Conv2d]:
        """Convolution ``index`` of every branch (0: the atrous one, fc6 in a VGG-style branch; 3: fc7)."""
        return [cast(nn.Conv2d, cast(nn.Sequential, b)[index]) for b in self.branches]

    def load_fc_weights(self, fc: Mapping[str, torch.Tensor]) -> None:
        """Initialise every VGG-style branch's fc6/fc7 from ImageNet's decimated fc layers
        (:func:`deeplab_edu.models.vgg.decimated_fc_weights`), as DeepLab v2 does for ASPP-L.

        Raises:
            ValueError: the branches are single convolutions (ResNet-style), not fc6-fc7-fc8 stacks.
        """
        if len(cast(nn.Sequential, self.branches[0])) == 1:
            raise ValueError("load_fc_weights needs VGG-style branches (hidden_channels=1024)")
        with torch.no_grad():
            for fc6, fc7 in zip(self.branch_convs(0), self.branch_convs(3)):
                fc6.weight.copy_(fc["fc6.weight"])
                cast(torch.Tensor, fc6.bias).copy_(fc["fc6.bias"])
                fc7.weight.copy_(fc["fc7.weight"])
                cast(torch.Tensor, fc7.bias).copy_(fc["fc7.bias"])

    @property
    def atrous_rates(self) -> tuple[int, ...]:
        """The branches' rates; setting them re-dilates the branches (same weights).

        Raises:
            ValueError: on setting, the number of rates differs from the number of branches, or a rate is not a
                positive whole number.
        """
        return tuple(conv.dilation[0] for conv in self.branch_convs(0))

    @atrous_rates.setter
    def atrous_rates(self, rates: Sequence[int]) -> None:
        rates = _check_rates("ASPPv2", rates)  # 2.7 was cut to 2 without a word, as ASPP's setter refuses it
        if len(rates) != len(self.branches):
            raise ValueError(f"atrous_rates needs {len(self.branches)} rates, got {tuple(rates)}")
        for conv, r in zip(self.branch_convs(0), rates):
            set_conv_rate(conv, r)

    def branch_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each branch's class scores, (N, num_classes, H, W) each, before summation."""
        return [b(x) for b in self.branches]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, H, W) features -> (N, num_classes, H, W) class scores, summed over the rates."""
        outs = self.branch_outputs(x)
        total = outs[0]
        for o in outs[1:]:
            total = total + o
        return total
