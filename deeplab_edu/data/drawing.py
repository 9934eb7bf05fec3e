"""Drawing primitives of the procedural scenes: textures, shapes, wires, clutter, boundary bands.

Everything works on whole arrays (numpy), never pixel by pixel: a shape is a boolean mask computed
from the rotated, normalised coordinates of its bounding box. See
:mod:`deeplab_edu.data.procedural` for how a scene is composed from these parts.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from .classes import BOX, DISC, RING, TRIANGLE

__all__ = [
    "smooth_noise",
    "background",
    "shape_mask",
    "fill",
    "wire",
    "clutter",
    "boundary_band",
    "random_colour",
]


@functools.lru_cache(maxsize=64)
def _interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    """Bilinear interpolation as a matrix (n_out, n_in) (align_corners=False, edge clamped)."""
    pos = (np.arange(n_out, dtype=np.float64) + 0.5) * n_in / n_out - 0.5
    pos = np.clip(pos, 0, n_in - 1)
    i0 = np.floor(pos).astype(int)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w = pos - i0
    m = np.zeros((n_out, n_in), dtype=np.float32)
    m[np.arange(n_out), i0] += (1 - w).astype(np.float32)
    m[np.arange(n_out), i1] += w.astype(np.float32)
    return m


def smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Smooth random field (h, w): a ``cells``-per-side grid of normals, bilinearly upsampled."""
    gh = max(2, round(cells * h / max(h, w)))
    gw = max(2, round(cells * w / max(h, w)))
    low = rng.standard_normal((gh, gw), dtype=np.float32)
    return _interp_matrix(h, gh) @ low @ _interp_matrix(w, gw).T


@functools.lru_cache(maxsize=16)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    return (np.arange(h, dtype=np.float32)[:, None], np.arange(w, dtype=np.float32)[None, :])


def random_colour(rng: np.random.Generator) -> np.ndarray:
    """A saturated-ish random RGB colour in [0.05, 0.95]."""
    c = rng.uniform(0.05, 0.95, size=3).astype(np.float32)
    k = rng.integers(3)
    c[k] = 0.5 * c[k] + (0.5 if c[k] < 0.5 else 0.0)  # push one channel away from the others
    return c


def background(rng: np.random.Generator, h: int, w: int, scene: int) -> np.ndarray:
    """Textured background (3, h, w): blotches for land, horizontal waves for water."""
    yy, xx = _grid(h, w)
    s = max(h, w)
    if scene == 0:  # land: green-brown base, blotchy two-octave texture
        base = np.array([0.40, 0.45, 0.22], np.float32) + rng.uniform(-0.12, 0.12, 3).astype(np.float32)
        tex = 0.10 * smooth_noise(rng, h, w, 6) + 0.06 * smooth_noise(rng, h, w, 24)
        tint = np.array([1.0, 0.8, 1.2], np.float32)[:, None, None]
    else:  # water: blue-grey base, wavy stripes
        base = np.array([0.22, 0.36, 0.52], np.float32) + rng.uniform(-0.12, 0.12, 3).astype(np.float32)
        period = s * rng.uniform(0.02, 0.05)
        warp = smooth_noise(rng, h, w, 5) * rng.uniform(1.0, 3.0)
        tex = 0.09 * np.sin(yy * (2 * math.pi / period) + warp + 0.02 * xx)
        tint = np.array([0.8, 1.0, 1.2], np.float32)[:, None, None]
    return base[:, None, None] + tint * tex[None]


def shape_mask(kind: Any, u: np.ndarray, v: np.ndarray, radius: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of a shape in normalised, rotated coordinates (u, v in units of ``radius``).

    Raises:
        ValueError: ``kind`` is none of ``DISC``, ``BOX``, ``TRIANGLE``, ``RING`` and ``"vehicle"``.
    """
    if kind == DISC:
        return u * u + v * v <= 1.0
    if kind == BOX:
        a = rng.uniform(0.55, 0.8)
        b = rng.uniform(0.55, 0.8)
        return (np.abs(u) <= a) & (np.abs(v) <= b)
    if kind == TRIANGLE:  # equilateral, inscribed in the unit circle (inradius 0.5)
        m = v <= 0.5
        for ang in (math.radians(210), math.radians(330)):
            m &= u * math.cos(ang) + v * math.sin(ang) <= 0.5
        return m
    if kind == RING:
        d2 = u * u + v * v
        wall = max(rng.uniform(0.15, 0.35), 1.5 / max(radius, 1e-6))
        inner = max(0.0, 1.0 - wall)
        return (d2 <= 1.0) & (d2 >= inner * inner)
    if kind == "vehicle":  # a hull (capsule) with a cabin on top: same shape for car and boat
        uc = np.clip(u, -0.55, 0.55)
        body = (u - uc) ** 2 + (v - 0.15) ** 2 <= 0.42**2
        cabin = (np.abs(u + 0.1) <= 0.3 + 0.5 * (v + 0.6)) & (v >= -0.6) & (v <= -0.2)
        return body | cabin
    raise ValueError(f"unknown shape {kind!r}")


def fill(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, colour: np.ndarray | None = None) -> np.ndarray:
    """Object appearance (3, h, w): ``colour`` (default: a random one) with flat, striped or shaded texture."""
    c = (random_colour(rng) if colour is None else np.asarray(colour, np.float32))[:, None, None]
    style = rng.integers(3)
    if style == 0:
        return np.broadcast_to(c, (3, *u.shape))
    if style == 1:
        f = rng.uniform(4, 12)
        return c * (1.0 + 0.25 * np.sin(f * u))[None]
    return c * (1.0 - 0.3 * v)[None]


def wire(rng: np.random.Generator, h: int, w: int) -> tuple[tuple[slice, slice], np.ndarray, float]:
    """A long straight line on an ``h`` x ``w`` scene: ``(bbox, mask inside bbox, length in pixels)``.

    Its width is drawn from 1-3 px, times ``sqrt(max(h, w) / 256)`` on scenes larger than 256 px (so
    that it stays thin relative to the scene without vanishing when the scene is resized).
    """
    s = max(h, w)
    y0, x0 = rng.uniform(0, h), rng.uniform(0, w)
    ang = rng.uniform(0, math.pi)
    length = s * rng.uniform(0.3, 1.2)
    dy, dx = math.sin(ang), math.cos(ang)
    y1, x1 = y0 + dy * length, x0 + dx * length
    width = rng.uniform(1.0, 3.0) * max(1.0, s / 256) ** 0.5
    pad = width
    ys = slice(max(0, int(min(y0, y1) - pad)), min(h, int(math.ceil(max(y0, y1) + pad)) + 1))
    xs = slice(max(0, int(min(x0, x1) - pad)), min(w, int(math.ceil(max(x0, x1) + pad)) + 1))
    if ys.start >= ys.stop or xs.start >= xs.stop:
        return (ys, xs), np.zeros((0, 0), bool), length
    yy = np.arange(ys.start, ys.stop, dtype=np.float32)[:, None] + 0.5 - y0
    xx = np.arange(xs.start, xs.stop, dtype=np.float32)[None, :] + 0.5 - x0
    along = xx * dx + yy * dy
    across = np.abs(-xx * dy + yy * dx)
    m = (across <= width / 2) & (along >= 0) & (along <= length)
    return (ys, xs), m, length


def clutter(rng: np.random.Generator, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """An irregular blob (radius modulated by a few harmonics of the angle)."""
    theta = np.arctan2(v, u)
    r = 0.7 + sum(rng.uniform(-0.12, 0.12) * np.cos(k * theta + rng.uniform(0, 6.3)) for k in (2, 3, 5))
    return u * u + v * v <= r * r


def boundary_band(mask: np.ndarray, width: int) -> np.ndarray:
    """The ``width`` pixels on each side of every label change of ``mask`` (H, W): a bool (H, W) array.

    Width 1 marks the pixels that touch a change (both sides of it); each further step grows the band
    by one pixel (city-block), so the band is ``2 * width`` pixels across a straight boundary. A width
    below 1 marks what 1 marks. (:func:`deeplab_edu.metrics.boundary_band` measures the band of the
    boundary *metrics* instead: chessboard distance, ``width + 1`` pixels on each side.)
    """
    edge = np.zeros(mask.shape, bool)
    dh = mask[1:, :] != mask[:-1, :]
    dw = mask[:, 1:] != mask[:, :-1]
    edge[1:, :] |= dh
    edge[:-1, :] |= dh
    edge[:, 1:] |= dw
    edge[:, :-1] |= dw
    for _ in range(width - 1):
        grown = edge.copy()
        grown[1:, :] |= edge[:-1, :]
        grown[:-1, :] |= edge[1:, :]
        grown[:, 1:] |= edge[:, :-1]
        grown[:, :-1] |= edge[:, 1:]
        edge = grown
    return edge
