"""Shared image helpers: the sample photograph, colouring label maps, overlays."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

__all__ = ["sample_photo", "colorize", "overlay", "display_rgb", "require_rgb", "IMAGENET_MEAN", "IMAGENET_STD",
           "NORMALISED_MAX"]

#: ImageNet's mean of each channel (R, G, B) of images in [0, 1]: the pretrained backbones' inputs are
#: normalised with it and :data:`IMAGENET_STD`.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
#: ImageNet's standard deviation of each channel (R, G, B) of images in [0, 1].
IMAGENET_STD = (0.229, 0.224, 0.225)
NORMALISED_MAX = max((1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD))
"""The largest value a pixel in [0, 1] takes once normalised with ImageNet's statistics (blue's: 2.64)."""


def sample_photo(size: int | tuple[int, int] | None = None) -> torch.Tensor:
    """Grace Hopper's portrait from matplotlib's sample data, as a float RGB tensor (3, H, W) in [0, 1].

    It ships with matplotlib, so no download is needed. ``size`` (pixels) resizes it (an int gives a
    square; ``(H, W)`` otherwise) with bilinear interpolation.

    Raises:
        ValueError: ``size`` is not a whole number of at least 1 pixel, nor a pair of them.
    """
    from matplotlib import cbook

    from ..choices import is_whole
    from ..data.io import load_image  # the package's one image reader

    if size is not None:  # checked first: 0 or (-5, 4) was torch's raw error (a census)
        hw = (size, size) if is_whole(size) else tuple(size) if isinstance(size, (tuple, list)) else ()
        if len(hw) != 2 or not all(is_whole(s) and s >= 1 for s in hw):
            raise ValueError(f"size must be a whole number of pixels, at least 1, or a pair (H, W) of them; "
                             f"got {size!r}")
    x = load_image(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    if size is not None:
        x = torch.nn.functional.interpolate(x[None], size=tuple(int(s) for s in hw), mode="bilinear",
                                            align_corners=False)[0]
    return x


def colorize(mask: torch.Tensor | np.ndarray, palette: Sequence[Sequence[int]], ignore_index: int = 255) -> np.ndarray:
    """Colour a label map (H, W) with ``palette`` (one RGB triple per class, 0-255).

    Pixels equal to ``ignore_index`` are white, and so are labels outside ``[0, len(palette))`` (a
    palette shorter than the classes shows them as ignored: check the labels with ``deeplab-edu
    check-data``). Returns a uint8 array (H, W, 3).

    Raises:
        ValueError: ``mask`` holds values that are not whole numbers (probabilities, say: take their argmax), or is
            an (H, W, 3) colour image; ``palette`` is not one RGB triple per class, or holds a value outside 0-255.
    """
    m = mask.cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if m.ndim == 3 and m.shape[-1] == 3 and m.dtype == np.uint8:  # an audit: an (H, W, 3, 3) array came back
        raise ValueError(f"colorize colours a label map (H, W); this mask {m.shape} looks like a colour image already")
    if m.dtype == np.bool_:  # an audit: an IndexError (True/False are labels 1 and 0)
        m = m.astype(np.int64)
    if np.issubdtype(m.dtype, np.floating):
        if not np.all(np.isfinite(m) & (m == np.round(m))):
            raise ValueError("colorize needs integer labels (H, W); this mask holds fractions: take the argmax of "
                             "the scores first")
        m = m.astype(np.int64)
    pal = np.asarray(palette)
    if pal.size and not np.issubdtype(pal.dtype, np.number):
        raise ValueError(f"palette must be one RGB triple (0-255) per class, got {pal.dtype} values")
    if pal.size and not 0 <= pal.min() <= pal.max() <= 255:  # checked first: 300 was an OverflowError (a census)
        raise ValueError(f"palette must be one RGB triple (0-255) per class, got values from {pal.min()} to "
                         f"{pal.max()}")
    pal = pal.astype(np.uint8)
    if pal.ndim != 2 or pal.shape[1] != 3:  # an audit: an RGBA palette was a broadcast error
        raise ValueError(f"palette must be one RGB triple (0-255) per class, got shape {pal.shape}")
    out = np.full((*m.shape, 3), 255, dtype=np.uint8)
    valid = (m != ignore_index) & (m >= 0) & (m < len(pal))
    out[valid] = pal[m[valid]]
    return out


def require_rgb(image: torch.Tensor) -> torch.Tensor:
    """``image`` itself when it is an RGB tensor (3, H, W), the form every figure here takes.

    Raises:
        ValueError: ``image`` is not (3, H, W) (a batch, a grey map, colours last as NumPy and PIL give them).
    """
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be an RGB tensor (3, H, W), got shape {tuple(image.shape)}")
    return image


def display_rgb(image: torch.Tensor) -> np.ndarray:
    """An image tensor (3, H, W) as ``imshow`` shows it: float32 (H, W, 3) in [0, 1].

    uint8 pixels are divided by 255; a float image with values outside [0, 1] is taken as normalised
    with ImageNet's statistics (as the data sets' transforms give it) and denormalised, unless it has no
    negative value and one above :data:`NORMALISED_MAX` (no normalised pixel reaches it): then it holds
    0-255 values in floats (``np.asarray(photo).astype(float)``) and is divided by 255; a float image in
    [0, 1] is shown as it is. The package's figures show the images they are given through it.

    Raises:
        ValueError: ``image`` is not (3, H, W).
    """
    img = require_rgb(image).detach().cpu()
    if img.dtype == torch.uint8:
        img = img.float() / 255
    elif img.min() >= 0 and img.max() > NORMALISED_MAX:  # 0-255 in floats (a review: it was drawn white)
        img = img.float() / 255
    elif img.min() < -0.01 or img.max() > 1.01:  # normalised: undo it for display
        from ..data.transforms import denormalize

        img = denormalize(img.float())
    return img.float().clamp(0, 1).permute(1, 2, 0).numpy()


def overlay(image: torch.Tensor | np.ndarray, colored_mask: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend an RGB image with a coloured mask.

    ``image`` is a tensor (3, H, W) as :func:`display_rgb` takes it (float in [0, 1], uint8, or
    normalised) or an array (H, W, 3): uint8 0-255, or float read by the tensor's rule (in [0, 1], as
    :func:`display_rgb` returns it, or normalised); ``colored_mask`` is uint8 (H, W, 3), as :func:`colorize`
    gives it; ``alpha`` is the mask's weight in [0, 1] (0: the image alone). Returns a uint8 array (H, W, 3).

    Raises:
        ValueError: a tensor ``image`` is not (3, H, W) (:func:`display_rgb`), ``alpha`` is not in [0, 1], or the
            image and ``colored_mask`` are not both (H, W, 3) of one size.
    """
    if not 0 <= alpha <= 1:  # an audit: 1.5 wrapped around in uint8
        raise ValueError(f"alpha is the mask's weight in [0, 1], got {alpha!r}")
    if isinstance(image, torch.Tensor):
        img = display_rgb(image) * 255
    else:
        img = np.asarray(image)
        if np.issubdtype(img.dtype, np.floating) and img.ndim == 3 and img.shape[-1] == 3:
            # an audit: a float array in [0, 1] (display_rgb's own) was read as 0-255 and drawn black
            img = display_rgb(torch.from_numpy(np.array(img)).permute(2, 0, 1)) * 255
        img = img.astype(np.float32)
    if img.shape != np.shape(colored_mask) or img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"image {img.shape} and colored_mask {np.shape(colored_mask)} must both be (H, W, 3) of one "
                         "size (colorize a mask of the image's size)")
    return (img * (1 - alpha) + colored_mask.astype(np.float32) * alpha).round().astype(np.uint8)
