"""The fully connected CRF of DeepLab v1/v2: mean-field inference in plain PyTorch.

DeepLab v1 (sec. 4.2, eqs. 1-2) and v2 (sec. 3.3, eqs. 2-3) refine the bilinearly upsampled
DCNN scores with the fully connected CRF of Krähenbühl & Koltun (2011). For labels
:math:`x_i \\in \\{1..L\\}` at pixels :math:`i` the energy is

.. math::  E(x) = \\sum_i \\theta_i(x_i) + \\sum_{i<j} \\mu(x_i, x_j)\\, k(i, j),
           \\qquad \\theta_i(x_i) = -\\log P(x_i),

with the Potts compatibility :math:`\\mu(a, b) = [a \\ne b]` and two Gaussian kernels,

.. math::  k(i, j) = w_1 \\exp\\Big(-\\frac{\\|p_i-p_j\\|^2}{2\\theta_\\alpha^2}
                              -\\frac{\\|I_i-I_j\\|^2}{2\\theta_\\beta^2}\\Big)
                    + w_2 \\exp\\Big(-\\frac{\\|p_i-p_j\\|^2}{2\\theta_\\gamma^2}\\Big),

the *appearance* (bilateral) kernel and the *smoothness* kernel (``p``: pixel position in
pixels, ``I``: RGB colour in 0-255 units, as in the released C++ code).

Mean-field inference approximates :math:`P(x) \\propto e^{-E(x)}` by a product
:math:`Q(x) = \\prod_i Q_i(x_i)` and iterates (all pixels in parallel)

.. math::  Q_i(l) \\propto \\exp\\Big(-\\theta_i(l) + \\sum_m w_m \\sum_{j} \\bar k^m(i, j)\\, Q_j(l)\\Big),

which is the general update :math:`-\\sum_{l'} \\mu(l, l') \\ldots` simplified for Potts:
:math:`\\sum_{l' \\ne l} M_i(l') = \\sum_{l'} M_i(l') - M_i(l)` and the first sum does not depend
on :math:`l`, so it cancels in the normalisation. :math:`\\bar k` is the kernel after the
*normalisation* used by the code (see :class:`CRFParams`).

Two ways to compute the messages :math:`\\sum_j \\bar k(i, j) Q_j(l)`:

* ``exact``: build the dense :math:`N \\times N` kernel matrices (:math:`O(N^2)` memory and time: two
  such matrices at the peak, see :data:`MAX_EXACT_PIXELS`) and multiply, all classes at once. For small
  images (a few thousand pixels).
* ``approx``: close to what the released C++ code does, which filters both kernels on the
  lattice. Here the smoothness kernel is a Gaussian blur (separable, truncated at 4 standard
  deviations: exact to about ``1e-3``); the bilateral kernel, a Gaussian in the 5-D space (x, y, r, g, b), is filtered with the *permutohedral
  lattice* (Adams, Baek & Davis 2010) in :math:`O(N)`: values are splatted onto the corners of
  a simplex lattice, blurred along its directions and sliced back. It is an approximation: its
  overall scale is off (so only normalised kernels are offered) and its shape is not exactly
  Gaussian. Measured against ``exact`` on 48-64 pixel scenes (a numerical audit, stop 68), normalised
  bilateral messages differ by 0.0003-0.002 on average on clean scenes, 0.004-0.005 with per-pixel colour
  noise of standard deviation 8 and 0.02-0.03 with 20, and by up to 0.35-0.41 at a few isolated pixels of
  noisy scenes; after 10 iterations the labels differ at 1.5-2.3 % of the pixels of such scenes. The
  lattice itself agrees with the released C++ lattice (pydensecrf) to 3e-6; the tests pin the agreement
  of the refined beliefs on a clean scene.

:func:`free_energy` gives the mean-field objective (KL divergence up to :math:`\\log Z`) so that
tests and the notebook can watch it fall iteration by iteration.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, replace
from functools import partial
from typing import Callable, Literal, Sequence, overload

import torch
import torch.nn.functional as F
from torch import nn

from .choices import is_whole
from .permutohedral import PermutohedralLattice

__all__ = [
    "CRFParams",
    "DEEPLAB_RELEASED",
    "DenseCRF",
    "dense_crf",
    "mean_field",
    "mean_field_update",
    "free_energy",
    "kernel_matrices",
    "message_passing_exact",
    "message_passing_approx",
    "unary_from_probs",
    "unary_from_logits",
    "MAX_EXACT_PIXELS",
    "kernel_maps",
]

Normalization = Literal["pixel", "symmetric", "none"]
Method = Literal["auto", "exact", "approx"]

#: Images with at most this many pixels use the exact O(N^2) messages under ``method="auto"``; ``method="exact"``
#: takes up to 4 times as many (128 x 128). The exact method holds two N x N matrices at the peak (N = H W pixels;
#: in float32 64 MiB each at 64 x 64, 1 GiB at 128 x 128, twice that in float64) while it builds the weights, and
#: one, the weights, during the iterations.
MAX_EXACT_PIXELS = 4096


#: Half-precision dtypes, which the CRF upcasts to float32: cdist is not implemented for them on CPU, and in them
#: the lattice, the normalisations and the iterations drift (bf16 scores labelled 0.5-10 % of pixels differently
#: from float32: an audit).
_HALF = (torch.float16, torch.bfloat16)


def _float32_if_half(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float32 if it is float16 or bfloat16, else ``t`` itself (float64 stays float64)."""
    return t.float() if t.dtype in _HALF else t


def _real(value: object) -> bool:
    """A real number (Python's or NumPy's), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclass(frozen=True)
class CRFParams:
    """Parameters of the fully connected CRF (DeepLab v2 eq. 3) and of its inference.

    Defaults are the values of DeepLab's released post-processing script ``exper/run_densecrf.sh``
    (``Bi_W=4 Bi_X_STD=49 Bi_R_STD=5 POS_W=3 POS_X_STD=3 MAX_ITER=10``); the papers give only
    ``w2 = 3``, ``theta_gamma = 3`` and 10 mean-field iterations, and cross-validate ``w1``,
    ``theta_alpha`` and ``theta_beta`` on 100 val images (v1 sec. 5, v2 sec. 4.1.1).

    Attributes:
        w_bilateral: :math:`w_1`, weight of the appearance (bilateral) kernel.
        theta_alpha: spatial standard deviation of the bilateral kernel, in pixels.
        theta_beta: colour standard deviation of the bilateral kernel, in 0-255 RGB units.
        w_spatial: :math:`w_2`, weight of the smoothness kernel.
        theta_gamma: standard deviation of the smoothness kernel, in pixels.
        iterations: number of mean-field iterations.
        normalization: how each kernel is normalised before it is weighted. ``"pixel"`` (the
            2011 code DeepLab used): row ``i`` is divided by :math:`d_i = \\sum_j k(i, j)`, so
            a message is a weighted *average* of the neighbours' beliefs and ``w`` is its
            largest possible size. ``"symmetric"`` (the 2013 code's default):
            :math:`D^{-1/2} K D^{-1/2}`. ``"none"``: the raw kernels of the paper's equation
            (the weights then need to be far smaller).
        include_self: whether :math:`j = i` takes part in the sum. The released code's filter
            includes every pixel's own belief; the paper's sum is over :math:`j \\ne i`.

    Raises:
        ValueError: ``w_bilateral`` or ``w_spatial`` is not a finite number >= 0; ``theta_alpha``, ``theta_beta``
            or ``theta_gamma`` is not a finite number > 0; ``iterations`` is not an int >= 0; or ``normalization``
            is not ``"pixel"``, ``"symmetric"`` or ``"none"``.
        TypeError: ``include_self`` is not a bool.
    """

    w_bilateral: float = 4.0
    theta_alpha: float = 49.0
    theta_beta: float = 5.0
    w_spatial: float = 3.0
    theta_gamma: float = 3.0
    iterations: int = 10
    normalization: Normalization = "pixel"
    include_self: bool = True

    def __post_init__(self) -> None:
        for name in ("w_bilateral", "w_spatial"):
            value = getattr(self, name)
            if not _real(value) or not math.isfinite(value) or value < 0:
                raise ValueError(f"CRFParams.{name} must be a finite number >= 0, got {value!r}")
            object.__setattr__(self, name, float(value))  # NumPy's numbers too, kept as Python's (a review)
        for name in ("theta_alpha", "theta_beta", "theta_gamma"):
            value = getattr(self, name)
            if not _real(value) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"CRFParams.{name} must be a finite number > 0, got {value!r}")
            object.__setattr__(self, name, float(value))
        if not is_whole(self.iterations) or self.iterations < 0:
            raise ValueError(f"CRFParams.iterations must be an int >= 0, got {self.iterations!r}")
        object.__setattr__(self, "iterations", int(self.iterations))  # NumPy's integers too (an audit)
        if self.normalization not in ("pixel", "symmetric", "none"):
            raise ValueError(
                f"CRFParams.normalization must be 'pixel', 'symmetric' or 'none', got {self.normalization!r}"
            )
        import numpy as np

        if not isinstance(self.include_self, (bool, np.bool_)):  # "no" is truthy (a census), as Strategy.flip
            raise TypeError(f"CRFParams.include_self must be True or False, got {self.include_self!r}")
        object.__setattr__(self, "include_self", bool(self.include_self))

    def replace(self, **changes: object) -> "CRFParams":
        """A copy with some fields changed, e.g. ``params.replace(iterations=5)``."""
        return replace(self, **changes)  # type: ignore[arg-type]


#: The parameters of DeepLab's released ``run_densecrf.sh`` (see :class:`CRFParams`).
DEEPLAB_RELEASED = CRFParams()


# ----------------------------------------------------------------------------- input checks
def _one_image(owner: str, **tensors: torch.Tensor) -> None:
    """Raise a ValueError naming ``owner`` and the argument where one of ``tensors`` (a function of one
    image: ``q`` (L, H, W), ``image`` (3, H, W)) is not 3-dimensional (a batch, say); a TypeError
    where it is not a tensor."""
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{owner}: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 3:
            layout = "(3, H, W)" if name == "image" else "(L, H, W)"
            raise ValueError(f"{owner} takes one image: {name} must be {layout}, got {tuple(t.shape)}"
                             + ("; for a batch, call it per image or use mean_field" if t.dim() == 4 else ""))


def _check_inputs(unary: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Validate shapes and dtypes; return (unary (B, L, H, W), image (B, 3, H, W) in 0-255, batched?), both in
    float32 for a float16/bfloat16 ``unary`` (else in its dtype)."""
    if not isinstance(unary, torch.Tensor):
        raise TypeError(f"unary must be a torch.Tensor, got {type(unary).__name__}")
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"image must be a torch.Tensor, got {type(image).__name__}")
    if not unary.is_floating_point():
        raise TypeError(f"unary must be a floating-point tensor (B, L, H, W) or (L, H, W), got dtype {unary.dtype}")
    if unary.dim() not in (3, 4):
        raise ValueError(f"unary must have shape (B, L, H, W) or (L, H, W), got {tuple(unary.shape)}")
    if image.dim() != unary.dim():
        raise ValueError(
            f"image has {image.dim()} dimensions {tuple(image.shape)} but unary has {unary.dim()} "
            f"{tuple(unary.shape)}; pass image (B, 3, H, W) with unary (B, L, H, W), or (3, H, W) with (L, H, W)"
        )
    batched = unary.dim() == 4
    if not batched:
        unary, image = unary[None], image[None]
    if image.shape[1] != 3:
        raise ValueError(f"image must have 3 colour channels (RGB) in dimension 1, got shape {tuple(image.shape)}")
    if image.shape[0] != unary.shape[0]:
        raise ValueError(f"image batch size {image.shape[0]} differs from unary batch size {unary.shape[0]}")
    if image.shape[-2:] != unary.shape[-2:]:
        raise ValueError(
            f"image size {tuple(image.shape[-2:])} differs from unary size {tuple(unary.shape[-2:])}; "
            "upsample the scores to the image size first (DeepLab uses bilinear interpolation)"
        )
    if unary.shape[1] < 1:
        raise ValueError("unary must have at least one label channel")
    if not torch.isfinite(unary).all():
        raise ValueError("unary contains NaN or infinite values; use unary_from_probs / unary_from_logits")
    unary = _float32_if_half(unary)
    if image.dtype == torch.uint8:
        rgb = image.to(unary.dtype)
    elif image.is_floating_point():
        if image.numel() and (image.min() < -1e-3 or image.max() > 1 + 1e-3):
            raise ValueError(
                f"float image values must lie in [0, 1] (got {image.min().item():.3g} .. {image.max().item():.3g}); "
                "pass a uint8 tensor for 0-255 images, and undo any mean/std normalisation first"
            )
        rgb = image.to(unary.dtype) * 255.0
    else:
        raise TypeError(f"image must be float in [0, 1] or uint8 in 0-255, got dtype {image.dtype}")
    return unary, rgb.to(unary.device), batched


def unary_from_probs(probs: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Unary potentials :math:`-\\log P` from class probabilities (clamped at ``eps``), of the shape of
    ``probs``: (L, H, W) or (B, L, H, W), L classes (the unary term of DeepLab v2 sec. 3.3, eq. 2). In ``probs``'
    dtype, except float16/bfloat16, which give float32 (``eps`` would round to 0 in float16).

    Raises:
        TypeError: ``probs`` is not a floating-point tensor.
        ValueError: a value of ``probs`` lies outside [0, 1] (by more than 1e-6).
    """
    if not isinstance(probs, torch.Tensor) or not probs.is_floating_point():
        raise TypeError("probs must be a floating-point tensor of class probabilities")
    if probs.numel() and (probs.min() < -1e-6 or probs.max() > 1 + 1e-6):
        raise ValueError("probs must lie in [0, 1]; for network outputs use unary_from_logits")
    return -_float32_if_half(probs).clamp_min(eps).log()


def unary_from_logits(logits: torch.Tensor, dim: int = -3) -> torch.Tensor:
    """Unary potentials :math:`-\\log \\mathrm{softmax}` of logits (classes in dimension ``dim``), of the
    shape of ``logits``: (L, H, W) or (B, L, H, W) with the default ``dim=-3``. In ``logits``' dtype, except
    float16/bfloat16, whose log-softmax is computed in and returned as float32.

    Raises:
        TypeError: ``logits`` is not a floating-point tensor.
    """
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        raise TypeError("logits must be a floating-point tensor")
    return -F.log_softmax(_float32_if_half(logits), dim=dim)


# ----------------------------------------------------------------------------- features
def _positions(h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Pixel coordinates (N, 2) as (y, x), row-major like ``tensor.flatten()``."""
    ys = torch.arange(h, device=device, dtype=dtype)
    xs = torch.arange(w, device=device, dtype=dtype)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([yy.reshape(-1), xx.reshape(-1)], dim=1)


def _bilateral_features(rgb: torch.Tensor, params: CRFParams) -> torch.Tensor:
    """Features (N, 5) = (y/theta_alpha, x/theta_alpha, RGB/theta_beta) for one image (3, H, W)."""
    h, w = rgb.shape[-2:]
    pos = _positions(h, w, rgb.device, rgb.dtype) / params.theta_alpha
    col = rgb.reshape(3, -1).T / params.theta_beta
    return torch.cat([pos, col], dim=1)


def _log_gaussian(fa: torch.Tensor, fb: torch.Tensor) -> torch.Tensor:
    """-||fa_i - fb_j||^2 / 2 for all pairs, (Na, Nb): the log of the Gaussian kernel, computed in place in the
    distance matrix (one (Na, Nb) matrix at the peak, not three)."""
    k = torch.cdist(fa, fb, compute_mode="donot_use_mm_for_euclid_dist")  # ||fa_i - fb_j||
    if k.requires_grad:  # a gradient with respect to the image: autograd keeps each step's input, so no in-place
        return -0.5 * k.square()
    return k.square_().mul_(-0.5)


def _gaussian(fa: torch.Tensor, fb: torch.Tensor) -> torch.Tensor:
    """exp(-||fa_i - fb_j||^2 / 2) for all pairs, (Na, Nb), in place as :func:`_log_gaussian`."""
    log_k = _log_gaussian(fa, fb)
    return log_k.exp() if log_k.requires_grad else log_k.exp_()


def kernel_matrices(image: torch.Tensor, params: CRFParams = DEEPLAB_RELEASED) -> torch.Tensor:
    """The combined, normalised and weighted kernel :math:`W = \\sum_m w_m \\bar K^m` of one image.

    Args:
        image: (3, H, W), float in [0, 1] or uint8.
        params: kernel parameters.

    Returns:
        The matrix W, (N, N) with N = H * W. ``W[i, j]`` is the weight of pixel j's belief in pixel i's message
        (row-major pixel order). Dense: use only for small images (N x N floats: 64 MiB at 64 x 64 in float32;
        two such matrices at the peak while it is built). float32 for a uint8, float16 or bfloat16 ``image``, else
        in its dtype.

    Raises:
        ValueError: ``image`` is not (3, H, W) (a batch, say), a float ``image`` has values outside [0, 1], or
            it has more than ``4 * MAX_EXACT_PIXELS`` pixels (the dense matrix would not fit).
        TypeError: ``image`` is not a tensor, or neither floating point nor uint8.
    """
    _one_image("kernel_matrices", image=image)
    dummy = torch.zeros(1, *image.shape[-2:], dtype=torch.float32 if image.dtype == torch.uint8 else image.dtype)
    _, rgb, _ = _check_inputs(dummy, image)
    return _dense_weights(rgb[0], params)


def _normalised_kernel_(log_k: torch.Tensor, params: CRFParams) -> torch.Tensor:
    """The kernel matrix ``exp(log_k)`` (N, N), normalised as ``params`` says (see :class:`CRFParams`), computed
    *in place* in ``log_k`` (returned) because it is large: each ``k / d`` would make another N x N matrix.

    Every row is shifted by its largest log first, so that its largest weight is 1 and its sum
    :math:`s_i \\ge 1`: the row sum is :math:`d_i = e^{m_i} s_i` with :math:`m_i = \\max_j \\log k(i, j)`. Without
    ``include_self``, a pixel whose neighbours all differ in colour by more than about 13 ``theta_beta`` has a row
    whose every float32 ``k(i, j)`` underflows; divided by its float32 sum, that row lost its message (sum 0) or
    made the gradient with respect to the image NaN (a sum of 1e-38, whose square underflows). A floor of 1e-20
    on the sum lost it too (an audit). Symmetric normalisation, :math:`k(i, j) / \\sqrt{d_i d_j}`, is then taken
    in log space: without a gradient, from the log of the shifted kernel, so a weight below float32's range
    relative to its row's largest (about 1e-38) is 0 there; with one, out of place from ``log_k`` itself.
    """
    grad = log_k.requires_grad  # a gradient with respect to the image: autograd keeps exp's output, so no in-place
    if not params.include_self:
        if log_k.shape[0] == 1:  # one pixel without itself: no term at all, no message (a zero in the graph)
            return log_k * 0.0
        log_k = log_k.clone() if grad else log_k
        log_k.fill_diagonal_(float("-inf"))
    if params.normalization == "none":
        return log_k.exp() if grad else log_k.exp_()
    m = log_k.amax(dim=1, keepdim=True)  # (N, 1)
    k = (log_k - m).exp() if grad else log_k.sub_(m).exp_()  # k(i, j) / max_j k(i, j)
    s = k.sum(dim=1, keepdim=True)  # >= 1
    if params.normalization == "pixel":
        return k / s if grad else k.div_(s)
    log_d = m + s.log()  # symmetric: exp(log k(i, j) - log d_i / 2 - log d_j / 2)
    if grad:
        return (log_k - log_d / 2 - log_d.T / 2).exp()
    return k.log_().add_(m - log_d / 2).sub_(log_d.T / 2).exp_()  # log k(i, j) again (-inf where k underflowed)


def _dense_weights(rgb: torch.Tensor, params: CRFParams) -> torch.Tensor:
    """Dense (N, N) weights for one image given as 0-255 RGB (3, H, W).

    Two N x N matrices at the peak (the bilateral kernel, which becomes the weights, and the smoothness
    kernel while it is added into them): every step works in place.
    """
    h, w = rgb.shape[-2:]
    if h * w > 4 * MAX_EXACT_PIXELS:
        raise ValueError(
            f"an image of {h}x{w} = {h * w} pixels is too large for dense O(N^2) kernels "
            f"(limit {4 * MAX_EXACT_PIXELS} pixels); use method='approx'"
        )
    feats = _bilateral_features(rgb, params)
    weights = _normalised_kernel_(_log_gaussian(feats, feats), params)
    weights = weights * params.w_bilateral if weights.requires_grad else weights.mul_(params.w_bilateral)
    pos = _positions(h, w, rgb.device, rgb.dtype) / params.theta_gamma
    return weights.add_(_normalised_kernel_(_log_gaussian(pos, pos), params).mul_(params.w_spatial))


# ----------------------------------------------------------------------------- messages
def message_passing_exact(q: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Messages :math:`M_i(l) = \\sum_j W_{ij} Q_j(l)` for one image (Krähenbühl & Koltun 2011, sec. 3,
    the message-passing step of Algorithm 1, by brute force): ``q`` (L, H, W) label distributions,
    ``weights`` (N, N) with N = H W, as :func:`kernel_matrices` gives them for the same image. Returns (L, H, W).

    Raises:
        ValueError: ``q`` is not (L, H, W), or ``weights`` is not (H W, H W) for its H and W.
    """
    if q.dim() != 3 or weights.shape != (q.shape[1] * q.shape[2],) * 2:
        raise ValueError(f"q must be (L, H, W) and weights (H*W, H*W) of the same image (kernel_matrices); got q "
                         f"{tuple(q.shape)} and weights {tuple(weights.shape)}")
    L, h, w = q.shape
    return (weights @ q.reshape(L, h * w).T).T.reshape(L, h, w)


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur (unnormalised taps exp(-d^2/2 sigma^2), zero padding) of x (C, H, W).

    Equals :math:`\\sum_j \\exp(-\\|p_i-p_j\\|^2 / 2\\sigma^2) x_j` over pixels within 4 sigma
    (per axis) of pixel i; farther pixels contribute less than exp(-8) each.
    """
    radius = max(1, int(math.ceil(4 * sigma)))
    c, h, w = x.shape
    taps = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    g = torch.exp(-0.5 * (taps / sigma) ** 2)
    rh, rw = min(radius, h - 1), min(radius, w - 1)  # taps beyond the image see only zeros
    gh, gw = g[radius - rh : radius + rh + 1], g[radius - rw : radius + rw + 1]
    y = F.conv2d(x[:, None], gh.view(1, 1, -1, 1), padding=(rh, 0))
    y = F.conv2d(y, gw.view(1, 1, 1, -1), padding=(0, rw))
    return y[:, 0]


class _ApproxFilter:
    """Fast messages of one image: lattice for the bilateral kernel, exact blur for the smoothness kernel."""

    def __init__(self, rgb: torch.Tensor, params: CRFParams) -> None:
        if not params.include_self or params.normalization == "none":
            raise ValueError(
                "method='approx' needs include_self=True and a normalised kernel ('pixel' or 'symmetric'), "
                "as in the released code: the lattice always includes a pixel's own belief and only its "
                "ratios are accurate. Use method='exact' for other settings."
            )
        self.params = params
        self.h, self.w = rgb.shape[-2:]
        self.lattice = PermutohedralLattice(_bilateral_features(rgb, params))
        ones = torch.ones(1, self.h, self.w, device=rgb.device, dtype=rgb.dtype)
        self.d_bil = self.bilateral(ones).clamp_min(1e-20)
        self.d_sp = _gaussian_blur(ones, params.theta_gamma)

    def bilateral(self, v: torch.Tensor) -> torch.Tensor:
        c = v.shape[0]
        return self.lattice.filter(v.reshape(c, -1).T).T.reshape(c, self.h, self.w)

    def messages(self, q: torch.Tensor) -> torch.Tensor:
        p = self.params
        blur = lambda v: _gaussian_blur(v, p.theta_gamma)  # noqa: E731
        if p.normalization == "pixel":
            return p.w_bilateral * self.bilateral(q) / self.d_bil + p.w_spatial * blur(q) / self.d_sp
        s_bil, s_sp = self.d_bil.rsqrt(), self.d_sp.rsqrt()
        return p.w_bilateral * s_bil * self.bilateral(q * s_bil) + p.w_spatial * s_sp * blur(q * s_sp)


def message_passing_approx(q: torch.Tensor, image: torch.Tensor, params: CRFParams = DEEPLAB_RELEASED) -> torch.Tensor:
    """Approximate messages for one image: q (L, H, W), image (3, H, W) float in [0, 1] or uint8; returns
    the messages (L, H, W), in float32 for a float16/bfloat16 ``q`` (computed in float32), else in its dtype.

    Builds the lattice on every call; :func:`mean_field` builds it once per image.

    Raises:
        ValueError: ``params`` has ``include_self=False`` or ``normalization="none"`` (the lattice
            needs both; use the exact messages), ``q`` or ``image`` is not one image's (3-dimensional), or
            their shapes do not agree (the messages of :func:`mean_field`'s input checks, which name its
            ``unary``).
        TypeError: ``q`` or ``image`` is not a tensor of a supported dtype.
    """
    _one_image("message_passing_approx", q=q, image=image)  # an audit: a batch failed inside the lattice
    _, rgb, _ = _check_inputs(q.unsqueeze(0), image.unsqueeze(0))
    return _ApproxFilter(rgb[0], params).messages(_float32_if_half(q))


# ----------------------------------------------------------------------------- inference
def mean_field_update(unary: torch.Tensor, messages: torch.Tensor) -> torch.Tensor:
    """One parallel mean-field update with the Potts model: :math:`Q_i(l) \\propto \\exp(-\\theta_i(l) + M_i(l))`.

    With Potts, :math:`-\\sum_{l' \\ne l} M_i(l') = M_i(l) - \\sum_{l'} M_i(l')`, and the sum over all
    labels cancels in the normalisation: each label gains what similar pixels believe in it
    (the mean-field update of Krähenbühl & Koltun 2011, sec. 3, with the Potts compatibility).

    Args:
        unary: :math:`\\theta = -\\log P`, labels in dimension 0: (L, ...).
        messages: :math:`M_i(l) = \\sum_m w_m \\sum_j k^m(f_i, f_j) Q_j(l)`, same shape.

    Returns:
        Q, same shape, summing to 1 over dimension 0.

    Raises:
        ValueError: the shapes differ.
    """
    if unary.shape != messages.shape:
        raise ValueError(f"unary {tuple(unary.shape)} and messages {tuple(messages.shape)} must have the same shape")
    return torch.softmax(-unary + messages, dim=0)


@overload
def mean_field(
    unary: torch.Tensor,
    image: torch.Tensor,
    params: CRFParams = ...,
    *,
    method: Method = ...,
    return_history: Literal[False] = ...,
) -> torch.Tensor: ...


@overload
def mean_field(
    unary: torch.Tensor,
    image: torch.Tensor,
    params: CRFParams = ...,
    *,
    method: Method = ...,
    return_history: Literal[True],
) -> tuple[torch.Tensor, list[torch.Tensor]]: ...


@overload
def mean_field(
    unary: torch.Tensor,
    image: torch.Tensor,
    params: CRFParams = ...,
    *,
    method: Method = ...,
    return_history: bool = ...,
) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]: ...


def mean_field(
    unary: torch.Tensor,
    image: torch.Tensor,
    params: CRFParams = DEEPLAB_RELEASED,
    *,
    method: Method = "auto",
    return_history: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
    """Mean-field inference in the fully connected CRF (parallel updates, Potts compatibility):
    Krähenbühl & Koltun 2011, sec. 3, Algorithm 1, as DeepLab v1 sec. 4 and v2 sec. 3.3 apply it.

    Args:
        unary: :math:`\\theta_i(l) = -\\log P_i(l)`, (B, L, H, W) or (L, H, W), floating point
            (see :func:`unary_from_logits`, :func:`unary_from_probs`).
        image: the RGB image, same batch and size: (B, 3, H, W) or (3, H, W), float in [0, 1]
            or uint8 in 0-255.
        params: kernel weights and bandwidths, iterations, normalisation.
        method: ``"exact"`` (dense O(N^2): two N x N matrices at the peak, see :data:`MAX_EXACT_PIXELS`),
            ``"approx"`` (permutohedral lattice), or ``"auto"``: exact up to :data:`MAX_EXACT_PIXELS` pixels, else
            approx.
        return_history: also return the beliefs after every iteration (the first is
            :math:`Q^0 = \\mathrm{softmax}(-\\theta)`).

    Returns:
        Q, (B, L, H, W) (or (L, H, W)) class probabilities that sum to 1 over L; with
        ``return_history`` a pair ``(Q, [Q^0, Q^1, ...])``. In ``unary``'s dtype, except float16/bfloat16: the
        inference runs in float32 and Q stays float32 (``.to(dtype)`` casts it back if needed).

    Raises:
        ValueError: ``method`` is not ``"auto"``, ``"exact"`` or ``"approx"``; or ``unary`` is not 3- or 4-D;
            ``image`` has a different number of dimensions, not 3 channels, or another batch size or height and
            width than ``unary``; ``unary`` has no label channel or holds NaN or infinite values; a float
            ``image`` has values outside [0, 1]; ``method="exact"`` on more than ``4 * MAX_EXACT_PIXELS``
            pixels (dense kernels); or ``method="approx"`` (also ``"auto"`` above ``MAX_EXACT_PIXELS``)
            with ``params.include_self=False`` or ``normalization="none"``, which the lattice cannot give.
        TypeError: ``unary`` or ``image`` is not a tensor, ``unary`` is not floating point, or ``image`` is neither
            floating point nor uint8.
    """
    u, rgb, batched = _check_inputs(unary, image)
    if method not in ("auto", "exact", "approx"):
        raise ValueError(f"method must be 'auto', 'exact' or 'approx', got {method!r}")
    h, w = u.shape[-2:]
    if method == "auto":
        method = "exact" if h * w <= MAX_EXACT_PIXELS else "approx"
    results, histories = [], []
    for b in range(u.shape[0]):
        neg_u = -u[b]
        q = torch.softmax(neg_u, dim=0)
        history = [q]
        step: Callable[[torch.Tensor], torch.Tensor]  # beliefs (L, H, W) -> messages (L, H, W)
        if method == "exact":
            step = partial(message_passing_exact, weights=_dense_weights(rgb[b], params))
        else:
            step = _ApproxFilter(rgb[b], params).messages
        for _ in range(params.iterations):
            q = mean_field_update(u[b], step(q))
            history.append(q)
        del step  # frees this image's (N, N) weights before the next image's are built
        results.append(q)
        histories.append(history)
    out = torch.stack(results)
    if not batched:
        out = out[0]
    if not return_history:
        return out
    steps = [torch.stack([hist[t] for hist in histories]) for t in range(params.iterations + 1)]
    return out, (steps if batched else [s[0] for s in steps])


def _expected_potts(weights: torch.Tensor, qf: torch.Tensor, rows: int = 64) -> torch.Tensor:
    """The pairwise term of :func:`free_energy`, :math:`\\tfrac12 \\sum_{i,j} W_{ij} (1 - \\langle Q_i, Q_j
    \\rangle)`, for weights (N, N) and beliefs ``qf`` (L, N), ``rows`` rows of W at a time: no N x N temporary
    beside W (the whole sum at once made two more)."""
    total = weights.new_zeros(())
    for start in range(0, weights.shape[0], rows):
        block = weights[start:start + rows]  # (rows, N); qf[:, rows].T @ qf: <Q_i, Q_j> for these rows i
        total = total + (block * (1.0 - qf[:, start:start + rows].T @ qf)).sum()
    return 0.5 * total


def free_energy(
    unary: torch.Tensor,
    q: torch.Tensor | Sequence[torch.Tensor],
    image: torch.Tensor,
    params: CRFParams = DEEPLAB_RELEASED,
) -> torch.Tensor:
    """Mean-field free energy :math:`F(Q) = \\mathrm{KL}(Q \\| P) - \\log Z` per image (exact, dense).

    .. math::  F(Q) = \\sum_i \\langle \\theta_i, Q_i \\rangle
                 + \\tfrac12 \\sum_{i,j} W_{ij} \\big(1 - \\langle Q_i, Q_j \\rangle\\big)
                 + \\sum_i \\langle Q_i, \\log Q_i \\rangle

    The middle term is :math:`E_Q` of the Potts pairwise energy with the symmetric weights
    :math:`W` (the diagonal counts only when ``include_self``). For ``normalization="pixel"``
    the weights :math:`K_{ij}/d_i` are not symmetric, so no energy has exactly that update; the
    energy of the symmetrised weights :math:`(W + W^T)/2` is returned, an approximation. Dense: two N x N
    matrices at the peak (N = H W; see :data:`MAX_EXACT_PIXELS`), as :func:`mean_field`'s exact method.

    Args:
        unary: unary potentials :math:`\\theta_i` (B, L, H, W) or (L, H, W), e.g.
            :func:`unary_from_logits` (finite, floating point).
        q: beliefs shaped like ``unary``, or a list of them (e.g. the history returned by
            :func:`mean_field`); the kernels are then built once for all.
        image: the image the kernels compare, (B, 3, H, W) or (3, H, W), float in [0, 1] or uint8.
        params: kernel parameters (weights, widths, normalisation).

    Returns:
        (B,) or a scalar for unbatched inputs; with a list, a tensor with one more leading
        dimension (one entry per element of the list). float32 for a float16/bfloat16 ``unary`` (computed in
        float32), else in its dtype.

    Raises:
        ValueError: ``q`` (or an element of the list) does not have the shape of ``unary``; or ``unary`` is not
            3- or 4-D; ``image`` has a different number of dimensions, not 3 channels, or another batch size or height
            and width than ``unary``; ``unary`` has no label channel or holds NaN or infinite values; or a float
            ``image`` has values outside [0, 1]; or the image has more than ``4 * MAX_EXACT_PIXELS`` pixels
            (the energy needs the dense kernel matrix).
        TypeError: ``unary`` or ``image`` is not a tensor, ``unary`` is not floating point, or ``image`` is neither
            floating point nor uint8.
    """
    u, rgb, batched = _check_inputs(unary, image)
    qs = [q] if isinstance(q, torch.Tensor) else list(q)
    for qi in qs:
        if qi.shape != unary.shape:
            raise ValueError(f"q has shape {tuple(qi.shape)} but unary has {tuple(unary.shape)}")
    L = u.shape[1]
    out = torch.zeros(len(qs), u.shape[0], dtype=u.dtype, device=u.device)
    for b in range(u.shape[0]):
        wts = _dense_weights(rgb[b], params)
        if params.normalization == "pixel":  # K_ij / d_i: symmetrised (the other normalisations are symmetric)
            wts = (wts + wts.T).mul_(0.5)
        for t, qi in enumerate(qs):
            qf = _float32_if_half((qi if batched else qi[None])[b]).reshape(L, -1)  # (L, N)
            unary_term = (qf * u[b].reshape(L, -1)).sum()
            out[t, b] = unary_term + _expected_potts(wts, qf) + torch.xlogy(qf, qf).sum()
        del wts  # freed before the next image's are built
    if not batched:
        out = out[:, 0]
    return out[0] if isinstance(q, torch.Tensor) else out


def dense_crf(
    logits: torch.Tensor,
    image: torch.Tensor,
    params: CRFParams = DEEPLAB_RELEASED,
    *,
    method: Method = "auto",
) -> torch.Tensor:
    """Refine network logits with the dense CRF: ``mean_field(unary_from_logits(logits), image)``.

    The post-processing of DeepLab v1 (sec. 4.2) and v2 (sec. 3.3): the network's scores become the
    unary term :math:`-\\log P(x_i)` and mean-field inference (:func:`mean_field`, Krähenbühl and
    Koltun 2011) smooths them with the appearance and smoothness kernels.

    Args:
        logits: class scores (B, L, H, W) or (L, H, W) at the image's resolution (upsample first).
        image: the input image (B, 3, H, W) or (3, H, W), float in [0, 1] or uint8 (not normalised).
        params: kernel parameters (default: DeepLab's released ones, :data:`DEEPLAB_RELEASED`).
        method: ``"exact"`` (dense kernels), ``"approx"`` (permutohedral lattice) or ``"auto"``.

    Returns:
        Probabilities shaped like ``logits``, summing to 1 over the label dimension; float32 for float16/bfloat16
        ``logits`` (the CRF runs in float32: in half precision it labelled pixels differently), else their dtype.

    Raises:
        TypeError, ValueError: as :func:`mean_field` (a non-tensor or non-float ``logits`` raises
            TypeError from :func:`unary_from_logits`).
    """
    return mean_field(unary_from_logits(logits), image, params, method=method)


class DenseCRF(nn.Module):
    """The CRF as a post-processing module: ``DenseCRF()(logits, image)`` gives probabilities.

    It has no trainable parameters (DeepLab v1 sec. 5 and v2 sec. 4.1.1 cross-validate them) and
    runs without gradients.

    Raises:
        ValueError: ``method`` is not ``"auto"``, ``"exact"`` or ``"approx"`` (when the module is made, not
            at its first call).
    """

    def __init__(self, params: CRFParams = DEEPLAB_RELEASED, *, method: Method = "auto") -> None:
        super().__init__()
        if method not in ("auto", "exact", "approx"):
            raise ValueError(f"method must be 'auto', 'exact' or 'approx', got {method!r}")
        self.params, self.method = params, method

    @torch.no_grad()
    def forward(self, logits: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Refined class probabilities for ``logits`` (B, L, H, W) and the RGB ``image`` (B, 3, H, W).

        Unbatched (L, H, W) with (3, H, W) works too; ``image`` is float in [0, 1] or uint8 in 0-255. The
        result has the shape of ``logits`` and sums to 1 over L, float32 for float16/bfloat16 ``logits`` (see
        :func:`mean_field`, which also lists the errors).
        """
        return dense_crf(logits, image, self.params, method=self.method)

    def extra_repr(self) -> str:
        """The CRF parameters and ``method``, shown in the module's repr."""
        return f"{self.params}, method={self.method!r}"


# ----------------------------------------------------------------------------- for the chapter
def kernel_maps(image: torch.Tensor, pixel: tuple[int, int], params: CRFParams = DEEPLAB_RELEASED) -> dict[str, torch.Tensor]:
    """The two raw kernels between one pixel ``(row, col)`` and every pixel: what it "talks to".

    Returns ``{"bilateral": (H, W), "spatial": (H, W)}``, unweighted and unnormalised (1 at the pixel).

    Raises:
        ValueError: ``image`` is not ``(3, H, W)``, a float ``image`` has values outside [0, 1], or ``pixel`` lies
            outside the image.
        TypeError: ``image`` is not a tensor, or neither floating point nor uint8.
    """
    _one_image("kernel_maps", image=image)
    dummy = torch.zeros(1, *image.shape[-2:])
    _, rgb, _ = _check_inputs(dummy, image.float() if image.is_floating_point() else image)
    h, w = rgb.shape[-2:]
    r, c = pixel
    if not (0 <= r < h and 0 <= c < w):
        raise ValueError(f"pixel {pixel} lies outside the {h}x{w} image")
    feats = _bilateral_features(rgb[0], params)
    pos = _positions(h, w, rgb.device, rgb.dtype) / params.theta_gamma
    i = r * w + c
    return {
        "bilateral": _gaussian(feats, feats[i : i + 1])[:, 0].view(h, w),
        "spatial": _gaussian(pos, pos[i : i + 1])[:, 0].view(h, w),
    }
