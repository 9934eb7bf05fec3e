"""Joint image + mask transforms: the DeepLab training recipe with ``torchvision.transforms.v2``.

DeepLabv3 Sec. 4.1 augments by *random scaling* of the input by 0.5-2.0, random cropping (513 x 513
on VOC) and random left-right flipping (DeepLab v2 sec. 4.1 scales by 0.5-1.5). The details that matter:

* the mask is resized with **nearest neighbour** (interpolating labels invents classes);
* crops larger than the scaled image are **padded**: the image with the mean pixel (zero after
  normalisation), the mask with the **ignore label 255**, *not* 0, which would teach the network
  that the padding is "background". With ``pad_to_crop=False`` nothing is padded: a side shorter
  than the crop is kept whole, so such items are *smaller* than the crop (they can be batched
  only with items of the same size, see ``TrainConfig.pad_to_crop``);
* photometric jitter (optional) and ImageNet normalisation touch the image only.

The image is wrapped as ``tv_tensors.Image`` and the mask as ``tv_tensors.Mask`` so that every v2
transform knows which is which. Every transform here is a callable ``(image, mask) -> (image,
mask)`` taking a float (3, H, W) image in [0, 1] (uint8 and PIL are accepted too) and an
integer (H, W) mask, and returning plain tensors: a normalised float32 image and an int64 mask
(or, from ``train_transform(..., normalize=False, as_uint8=True)``, both uint8, augmented as uint8).
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from ..choices import require_tensor
from ..viz.images import IMAGENET_MEAN, IMAGENET_STD
from .io import HIGH_DEPTH_MODES, pil_image_tensor
from .classes import IGNORE_INDEX

__all__ = [
    "RandomScale",
    "PadTo",
    "RandomCropNoPad",
    "Resize",
    "train_transform",
    "eval_transform",
    "normalize",
    "denormalize",
    "to_uint8",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]

Pair = tuple[torch.Tensor, torch.Tensor]


def _pair_size(value: Any, name: str) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise ValueError(f"{name} must be a positive int or a pair (H, W) of positive ints, got {value!r}")
    return int(value[0]), int(value[1])


def _wrap(image: Any, mask: Any, as_uint8: bool = False) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
    """Check and wrap an (image, mask) pair: the image becomes float32 in [0, 1] and the mask int64,
    or, ``as_uint8``, both uint8 (:func:`_image_uint8`, :func:`_mask_uint8`)."""
    if not isinstance(image, torch.Tensor):
        if hasattr(image, "mode") and image.mode in HIGH_DEPTH_MODES:  # 32-bit "I" came out 2**31 times too dark
            image = pil_image_tensor(image)  # scaled by its mode, as load_image reads a file
        elif hasattr(image, "mode") and image.mode in _PIL_TO_RGB:  # a PIL image: as load_image reads a file
            image = image.convert("RGB")  # palette indices are not intensities; alpha is dropped
        # PIL or numpy HWC, copied as the mask is: a read-only array (np.asarray of a PIL image) made torch warn
        image = F.to_image(np.array(image) if isinstance(image, np.ndarray) else image)
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"image must have shape (3, H, W) (or (1, H, W)), got {tuple(image.shape)}")
    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    if not isinstance(mask, torch.Tensor):
        mask = torch.as_tensor(np.array(mask))  # numpy, a list, or a PIL index image (copied: writable)
    if mask.ndim == 3 and mask.shape[0] == 1:
        mask = mask[0]
    if mask.ndim != 2:
        raise ValueError(f"mask must have shape (H, W), got {tuple(mask.shape)}")
    if mask.is_floating_point():
        raise ValueError(f"mask must hold integer class indices, got dtype {mask.dtype}")
    if tuple(image.shape[-2:]) != tuple(mask.shape):
        raise ValueError(f"image is {tuple(image.shape[-2:])} (H, W) but mask is {tuple(mask.shape)}; they must match")
    image, mask = image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor)
    if as_uint8:
        return tv_tensors.Image(_image_uint8(image)), tv_tensors.Mask(_mask_uint8(mask))
    return tv_tensors.Image(F.to_dtype(image, torch.float32, scale=True)), tv_tensors.Mask(mask.long())


#: PIL modes converted to RGB before the transforms, as :func:`~deeplab_edu.data.io.load_image` does.
_PIL_TO_RGB = ("P", "PA", "RGBA", "LA", "CMYK", "YCbCr", "1", "RGBX", "La", "RGBa", "HSV", "LAB")


def _image_uint8(image: torch.Tensor) -> torch.Tensor:
    """A float image in [0, 1] rounded to uint8 0-255 (another integer type rescaled, uint8 kept)."""
    if not image.is_floating_point():
        return F.to_dtype(image, torch.uint8, scale=True)
    if image.numel():
        lo, hi = (float(v) for v in torch.aminmax(image))
        if lo != lo or hi != hi:
            raise ValueError("to_uint8: the image holds NaN values")
        if lo < -1e-3 or hi > 1 + 1e-3:
            advice = ("an image in 0-255: divide it by 255" if lo >= 0 and hi <= 255
                      else "a normalised image has no uint8 form (normalize=False)")
            raise ValueError(f"to_uint8: image values {lo:.3g}..{hi:.3g} are not in [0, 1]; {advice}")
    return image.mul(255).round_().clamp_(0, 255).to(torch.uint8)


def _mask_uint8(mask: torch.Tensor) -> torch.Tensor:
    """Integer class indices as uint8; a label outside 0-255 is refused, naming the range found."""
    if mask.dtype not in (torch.uint8, torch.bool) and mask.numel():
        lo, hi = (int(v) for v in torch.aminmax(mask))
        if lo < 0 or hi > 255:
            raise ValueError(f"labels {lo}..{hi} do not fit in uint8 (0-255, the ignore "
                             "label 255 included): the masks hold labels outside the data set's classes, or, for "
                             "more than 255 classes, train with uint8_batches (as_uint8) off")
    return mask.to(torch.uint8)


def _unwrap(image: torch.Tensor, mask: torch.Tensor) -> Pair:
    return image.as_subclass(torch.Tensor).contiguous(), mask.as_subclass(torch.Tensor).contiguous()


def _joint_step(fn: Callable[[Any, torch.Tensor, torch.Tensor], Pair]) -> Callable[[Any, Any, Any], Pair]:
    """Let a pipeline step also be called on its own with plain tensors (wrapped and unwrapped here)."""

    @functools.wraps(fn)
    def call(self: Any, image: Any, mask: Any) -> Pair:
        if isinstance(mask, tv_tensors.Mask) and isinstance(image, tv_tensors.Image):
            return fn(self, image, mask)
        return _unwrap(*fn(self, *_wrap(image, mask)))

    return call


def _resize_mask(mask: torch.Tensor, size: list[int]) -> torch.Tensor:
    """``mask`` resized to ``size`` with ``NEAREST_EXACT`` (labels sampled at pixel centres, as the bilinear
    image is). Resized as a plain tensor and wrapped again: torchvision 0.26 (the GPU machine's) resizes a
    ``tv_tensors.Mask`` with ``NEAREST`` whatever it is asked (``make test-compat`` found 0.69 % of the labels
    moved at scale 0.63), 0.29 as asked."""
    plain = mask.as_subclass(torch.Tensor)
    resized = F.resize(plain[None] if plain.ndim == 2 else plain, size, interpolation=v2.InterpolationMode.NEAREST_EXACT)
    resized = resized[0] if plain.ndim == 2 else resized
    return tv_tensors.wrap(resized, like=mask) if isinstance(mask, tv_tensors.TVTensor) else resized


class RandomScale:
    """Rescale image (bilinear) and mask (nearest) by a factor drawn uniformly from ``scale_range``.

    The mask's nearest neighbour is torchvision's ``NEAREST_EXACT``, which samples at pixel centres as the
    bilinear image does (its ``NEAREST`` put the labels about half a pixel down and right of the image:
    0.4-0.7 % of the pixels mislabelled at scales 0.63-1.3, in a numerical audit; now 0.1-0.2 %).

    Raises:
        ValueError: ``scale_range`` is not two finite numbers ``(low, high)`` with ``0 < low <= high``.
    """

    def __init__(self, scale_range: Sequence[float] = (0.5, 2.0)) -> None:
        try:  # an audit: a single 1.0 was "'float' object is not iterable", and (1, inf) failed at the first image
            lo, hi = (float(v) for v in scale_range)
        except (TypeError, ValueError):
            raise ValueError(f"scale_range must be two numbers (low, high), e.g. (0.5, 2.0), got {scale_range!r}") from None
        if not 0 < lo <= hi < math.inf:
            raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, both finite, got {tuple(scale_range)}")
        self.scale_range = (lo, hi)

    @_joint_step
    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> Pair:
        """Rescale ``image`` (3, H, W) and ``mask`` (H, W) by a random ``s`` to ``round(H * s) x round(W * s)``."""
        lo, hi = self.scale_range
        s = lo if lo == hi else float(torch.empty(()).uniform_(lo, hi))
        h, w = image.shape[-2:]
        size = [max(1, round(h * s)), max(1, round(w * s))]
        return _resize_image(image, size), _resize_mask(mask, size)

    def __repr__(self) -> str:
        return f"RandomScale(scale_range={self.scale_range})"


def _resize_image(image: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``image`` (3, H, W) resized bilinearly, antialiased, to ``size`` (h, w). A uint8 image resized to 1 x 1
    goes through float32 and is rounded back: PyTorch 2.14's uint8 antialiased kernel fails an internal assert
    for that one output size (an audit: a 2 x 2 image at scale 0.5 with ``as_uint8``)."""
    if image.dtype == torch.uint8 and tuple(size) == (1, 1):
        small = F.resize(image.float(), list(size), interpolation=v2.InterpolationMode.BILINEAR, antialias=True)
        return small.round().clamp(0, 255).to(torch.uint8)
    return F.resize(image, list(size), interpolation=v2.InterpolationMode.BILINEAR, antialias=True)


class Resize:
    """Resize image (bilinear, antialiased) and mask (nearest, aligned with the image: see :class:`RandomScale`)
    to ``size``.

    Raises:
        ValueError: ``size`` is not a positive int or a pair ``(H, W)`` of positive ints.
    """

    def __init__(self, size: int | Sequence[int]) -> None:
        self.size = list(_pair_size(size, "size"))

    @_joint_step
    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> Pair:
        """Resize ``image`` (3, H, W) and ``mask`` (H, W) to ``size``: (3, h, w) and (h, w)."""
        return _resize_image(image, self.size), _resize_mask(mask, self.size)

    def __repr__(self) -> str:
        return f"Resize(size={tuple(self.size)})"


class PadTo:
    """Pad bottom/right up to at least ``size``: the image with ``fill``, the mask with the ignore label.

    Raises:
        ValueError: ``size`` is not a positive int or a pair ``(H, W)`` of positive ints.
    """

    def __init__(self, size: int | Sequence[int], fill: Sequence[float] = IMAGENET_MEAN,
                 ignore_index: int = IGNORE_INDEX) -> None:
        self.size = _pair_size(size, "size")
        self.fill = [float(v) for v in fill]
        self.ignore_index = int(ignore_index)

    @_joint_step
    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> Pair:
        """Pad ``image`` (3, H, W) and ``mask`` (H, W) at the bottom/right to at least ``size`` (longer sides kept)."""
        h, w = image.shape[-2:]
        ph, pw = max(0, self.size[0] - h), max(0, self.size[1] - w)
        if ph or pw:
            image = F.pad(image, [0, 0, pw, ph], fill=self.fill)
            mask = F.pad(mask, [0, 0, pw, ph], fill=self.ignore_index)
        return image, mask

    def __repr__(self) -> str:
        return f"PadTo(size={self.size}, ignore_index={self.ignore_index})"


class RandomCropNoPad:
    """Random crop of at most ``size`` (H, W) that never pads: a side shorter than the crop is kept whole.

    The item is then ``min(H, crop_h) x min(W, crop_w)``; the window's position is drawn with
    ``torch.randint`` (so it follows ``torch.manual_seed``).

    Raises:
        ValueError: ``size`` is not a positive int or a pair ``(H, W)`` of positive ints.
    """

    def __init__(self, size: int | Sequence[int]) -> None:
        self.size = _pair_size(size, "size")

    @_joint_step
    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> Pair:
        """Crop ``image`` (3, H, W) and ``mask`` (H, W) at one random window of ``min(H, crop_h) x min(W, crop_w)``."""
        h, w = image.shape[-2:]
        ch, cw = min(h, self.size[0]), min(w, self.size[1])
        top = int(torch.randint(0, h - ch + 1, ()))
        left = int(torch.randint(0, w - cw + 1, ()))
        return F.crop(image, top, left, ch, cw), F.crop(mask, top, left, ch, cw)

    def __repr__(self) -> str:
        return f"RandomCropNoPad(size={self.size})"


def to_uint8(image: torch.Tensor, mask: torch.Tensor) -> Pair:
    """An augmented pair in its compact form: image (3, H, W) float in [0, 1] to uint8 0-255
    (rounded: the quantisation of the source pictures), mask (H, W) to uint8.

    A quarter of the image's bytes and an eighth of the mask's pass from the loader's workers to the
    training process; :func:`normalize` (or the engine's ``Trainer.to_device``) makes the float
    image on the device.

    Raises:
        TypeError: ``image`` is not a floating-point tensor or ``mask`` not an integer (or bool) one (a
            PIL image or a uint8 tensor goes through :func:`train_transform` with ``as_uint8=True``).
        ValueError: the image holds NaN, or a value outside [0, 1] (an image in 0-255: divide it by
            255; a normalised image: build the transform with ``normalize=False``), or a label outside
            0-255 (the ignore label 255 included), naming the range found; or the image's (H, W)
            differs from the mask's.
    """
    if not isinstance(image, torch.Tensor) or not image.is_floating_point():
        raise TypeError(f"to_uint8: image must be a float tensor in [0, 1], got "
                        f"{image.dtype if isinstance(image, torch.Tensor) else type(image).__name__}; "
                        "train_transform(..., normalize=False, as_uint8=True) converts PIL and uint8 images")
    if not isinstance(mask, torch.Tensor) or mask.is_floating_point():
        raise TypeError(f"to_uint8: mask must be an integer tensor of class indices, got "
                        f"{mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__}")
    if tuple(image.shape[-2:]) != tuple(mask.shape[-2:]):
        raise ValueError(f"to_uint8: image is {tuple(image.shape[-2:])} (H, W) but mask is {tuple(mask.shape[-2:])}; "
                         "they must match")
    return _image_uint8(image), _mask_uint8(mask)


class _Joint:
    """Wrap, apply the v2 pipeline, unwrap: a picklable ``(image, mask) -> (image, mask)`` callable.

    With ``as_uint8`` the pair is made uint8 first and the pipeline runs on uint8 pixels and labels
    (torchvision resizes uint8 images with its own integer kernels, faster than its float32 ones:
    ``benchmarks/uint8_batches.py`` times both transforms), so the items leave the loader's workers
    as uint8 without a float copy.
    """

    def __init__(self, steps: list[Callable[..., Any]], as_uint8: bool = False) -> None:
        self.pipeline = v2.Compose(steps)
        self.as_uint8 = as_uint8

    def __call__(self, image: Any, mask: Any) -> Pair:
        img, m = _wrap(image, mask, as_uint8=self.as_uint8)
        return _unwrap(*self.pipeline(img, m))

    def __repr__(self) -> str:
        return f"JointTransform({self.pipeline}{', as_uint8=True' if self.as_uint8 else ''})"


def train_transform(
    crop_size: int | Sequence[int],
    scale_range: Sequence[float] | None = (0.5, 2.0),
    *,
    hflip: float = 0.5,
    jitter: float | None = None,
    normalize: bool = True,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    ignore_index: int = IGNORE_INDEX,
    pad_to_crop: bool = True,
    as_uint8: bool = False,
) -> Callable[[Any, Any], Pair]:
    """The DeepLab training augmentation as one joint callable.

    Args:
        crop_size: side (int) or ``(H, W)`` of the random crop (513 for VOC in the papers).
        scale_range: random scale factor range; ``None`` skips scaling.
        hflip: probability of a horizontal flip.
        jitter: strength of brightness/contrast/saturation jitter (e.g. 0.3), ``None`` for none.
        normalize: subtract ``mean`` and divide by ``std`` (ImageNet statistics by default).
        mean, std: per-channel statistics of images in [0, 1]; ``mean`` is also the colour of padding.
        ignore_index: the label written into padded mask pixels.
        pad_to_crop: pad images smaller than the crop (image: ``mean``, mask: ``ignore_index``), as
            DeepLab does, so every item is ``crop_size``; ``False``: never pad
            (:class:`RandomCropNoPad`), items of smaller images are smaller.
        as_uint8: make image and mask uint8 first (a float image rounded to 0-255, as
            :func:`to_uint8`) and augment them as uint8 (padding with the mean pixel rounded to 0-255),
            for a loader that does less work, sends fewer bytes, and a device that normalises (needs
            ``normalize=False``). The image then differs from the float path's rounded result by the
            rounding before resizing (one level of 255; a few with ``jitter``); the mask is the same.
            A source with more than 256 levels (16-bit) keeps only 256: leave it off for such data.

    Returns:
        A picklable callable ``(image, mask) -> (image, mask)``. It takes an image (3, H, W) float in [0, 1] or
        uint8, or a PIL image, and a mask (H, W) of integer class indices, and returns float32 (3, crop_h, crop_w)
        and int64 (crop_h, crop_w) (smaller where a scaled image is smaller than the crop and
        ``pad_to_crop`` is false), or both uint8 with ``as_uint8``. DeepLabv3 sec. 4.1 (random scale 0.5-2, crop, flip). The
        callable raises ValueError for an image that is not (3, H, W) or (1, H, W), a mask that is
        not (H, W) integers, or sizes that differ (naming the shapes).

    Raises:
        ValueError: ``crop_size`` is neither a positive int nor a pair of positive ints; ``hflip`` is not in
            [0, 1]; ``scale_range`` is given and is not two numbers ``(low, high)`` with ``0 < low <= high``;
            or ``as_uint8`` with ``normalize`` (a normalised image has no uint8 form) or with an
            ``ignore_index`` outside 0-255.
    """
    crop = _pair_size(crop_size, "crop_size")
    if as_uint8 and normalize:
        raise ValueError("as_uint8=True needs normalize=False: the device normalises the uint8 image")
    if as_uint8 and not 0 <= ignore_index <= 255:
        raise ValueError(f"as_uint8=True needs an ignore_index in 0-255 (a uint8 mask holds it), got {ignore_index}")
    if not 0.0 <= hflip <= 1.0:
        raise ValueError(f"hflip is a probability in [0, 1], got {hflip!r}")
    pad_colour = [float(round(255 * v)) if as_uint8 else float(v) for v in mean]
    steps: list[Callable[..., Any]] = []
    if scale_range is not None:
        steps.append(RandomScale(scale_range))
    if pad_to_crop:
        steps.append(
            # the mean pixel: in [0, 1], or in 0-255 (rounded) for a uint8 image
            v2.RandomCrop(crop, pad_if_needed=True, fill={tv_tensors.Image: pad_colour, tv_tensors.Mask: ignore_index})
        )
    else:
        steps.append(RandomCropNoPad(crop))
    if hflip > 0:
        steps.append(v2.RandomHorizontalFlip(p=hflip))
    if jitter:
        steps.append(v2.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter))
    if normalize:
        steps.append(v2.Normalize(mean=list(mean), std=list(std)))
    return _Joint(steps, as_uint8=as_uint8)


def eval_transform(
    *,
    resize: int | Sequence[int] | None = None,
    pad_to: int | Sequence[int] | None = None,
    normalize: bool = True,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    ignore_index: int = IGNORE_INDEX,
) -> Callable[[Any, Any], Pair]:
    """The evaluation transform: normalise only (the default), optionally resize or pad.

    Args:
        resize: resize image (bilinear) and mask (nearest) to this size (e.g. for quick CPU runs;
            the papers evaluate at full resolution).
        pad_to: pad bottom/right to at least this size with the mean pixel / ignore label (DeepLab
            evaluates VOC padded to 513 x 513).
        normalize: subtract ``mean`` and divide by ``std`` (ImageNet statistics by default).
        mean, std: per-channel statistics of images in [0, 1]; ``mean`` is also the colour of padding.
        ignore_index: the label written into padded mask pixels.

    Returns:
        A picklable callable ``(image, mask) -> (image, mask)`` with the inputs and outputs of
        :func:`train_transform`'s (at the image's own size unless ``resize``/``pad_to``), raising
        as it does.

    Raises:
        ValueError: ``resize`` or ``pad_to`` is neither a positive int nor a pair of positive ints.
    """
    steps: list[Callable[..., Any]] = []
    if resize is not None:
        steps.append(Resize(resize))
    if pad_to is not None:
        steps.append(PadTo(pad_to, fill=mean, ignore_index=ignore_index))
    if normalize:
        steps.append(v2.Normalize(mean=list(mean), std=list(std)))
    if not steps:
        steps.append(v2.Identity())
    return _Joint(steps)


#: How :func:`normalize` and :func:`denormalize` say to make their tensor of a PIL image or a NumPy array.
_TO_TENSOR = ("from a PIL image: deeplab_edu.data.io.pil_image_tensor(image); from a NumPy (H, W, 3) array: "
              "torch.from_numpy(a).permute(2, 0, 1)")


def normalize(image: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """``(image - mean) / std`` per channel, as the models expect: (3, H, W) or (N, 3, H, W) in [0, 1].

    The tensor form of the transforms' ``Normalize`` step (ImageNet statistics by default), for a
    picture that does not come through a data set; :func:`denormalize` undoes it. A uint8 image
    (0-255, as ``torchvision.io.read_image`` gives) is scaled to [0, 1] first; the result is float.

    Raises:
        TypeError: ``image`` is not a tensor (a PIL image or a NumPy array: the message says how to convert it), or
            has an integer dtype other than uint8 (scale it to [0, 1] first).
        ValueError: ``image`` is not (3, H, W) or (N, 3, H, W) (e.g. RGBA or grey: convert it to RGB).
    """
    require_tensor(image, "image", "(3, H, W) or (N, 3, H, W)", _TO_TENSOR)  # an audit: an AttributeError
    if image.dtype == torch.uint8:
        image = image.float() / 255
    elif not image.is_floating_point():
        raise TypeError(f"normalize: image has dtype {image.dtype}; give a float image in [0, 1] (or uint8 0-255)")
    if image.ndim not in (3, 4) or image.shape[-3] != len(mean):
        raise ValueError(f"normalize: image of shape {tuple(image.shape)}; expected (3, H, W) or (N, 3, H, W) "
                         "(an RGBA or grey image: convert it to RGB, e.g. deeplab_edu.data.io.load_image)")
    m = torch.tensor(mean, dtype=image.dtype, device=image.device).view(-1, 1, 1)
    s = torch.tensor(std, dtype=image.dtype, device=image.device).view(-1, 1, 1)
    return (image - m) / s


def denormalize(image: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """Undo ImageNet normalisation for display: (3, H, W) or (N, 3, H, W), clamped to [0, 1].

    Raises:
        TypeError: ``image`` is not a tensor (a NumPy array: the message says how to convert it), or not floating
            point (a normalised image is; uint8 pixels need no undoing).
        ValueError: ``image`` is not (3, H, W) or (N, 3, H, W) (a grey (H, W) one was broadcast to three
            channels without a word: an audit).
    """
    require_tensor(image, "image", "(3, H, W) or (N, 3, H, W)", _TO_TENSOR)  # an audit: an AttributeError
    if not image.is_floating_point():
        raise TypeError(f"denormalize: image has dtype {image.dtype}; it undoes normalize, whose images are float")
    if image.ndim not in (3, 4) or image.shape[-3] != len(mean):
        raise ValueError(f"denormalize: image of shape {tuple(image.shape)}; expected (3, H, W) or (N, 3, H, W), as "
                         "normalize returns")
    m = torch.tensor(mean, dtype=image.dtype, device=image.device).view(-1, 1, 1)
    s = torch.tensor(std, dtype=image.dtype, device=image.device).view(-1, 1, 1)
    return (image * s + m).clamp(0, 1)
