"""Shared image helpers: the sample photograph, colouring label maps, overlays."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

__all__ = ["sample_photo", "colorize", "overlay", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def sample_photo(size: int | tuple[int, int] | None = None) -> torch.Tensor:
    """Grace Hopper's portrait from matplotlib's sample data, as a float RGB tensor (3, H, W) in [0, 1].

    It ships with matplotlib, so no download is needed. ``size`` resizes it (an int gives a
    square; ``(H, W)`` otherwise) with bilinear interpolation.
    """
    from matplotlib import cbook

    from ..data.io import load_image  # the package's one image reader

    x = load_image(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    if size is not None:
        hw = (size, size) if isinstance(size, int) else tuple(size)
        x = torch.nn.functional.interpolate(x[None], size=hw, mode="bilinear", align_corners=False)[0]
    return x


def colorize(mask: torch.Tensor | np.ndarray, palette: Sequence[Sequence[int]], ignore_index: int = 255) -> np.ndarray:
    """Colour a label map (H, W) with ``palette`` (one RGB triple per class, 0-255).

    Pixels equal to ``ignore_index`` are white, and so are labels outside ``[0, len(palette))`` (a
    palette shorter than the classes shows them as ignored: check the labels with ``deeplab-edu
    check-data``). Returns a uint8 array (H, W, 3).
    """
    m = mask.cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    pal = np.asarray(palette, dtype=np.uint8)
    out = np.full((*m.shape, 3), 255, dtype=np.uint8)
    valid = (m != ignore_index) & (m >= 0) & (m < len(pal))
    out[valid] = pal[m[valid]]
    return out


def overlay(image: torch.Tensor | np.ndarray, colored_mask: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend an RGB image ((3, H, W) tensor in [0, 1] or (H, W, 3) uint8) with a coloured mask.

    ``colored_mask`` is uint8 (H, W, 3), as :func:`colorize` gives it; ``alpha`` is the mask's weight in
    [0, 1] (0: the image alone). Returns a uint8 array (H, W, 3).
    """
    if isinstance(image, torch.Tensor):
        img = (image.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).astype(np.float32)
    else:
        img = np.asarray(image, dtype=np.float32)
    return (img * (1 - alpha) + colored_mask.astype(np.float32) * alpha).round().astype(np.uint8)
