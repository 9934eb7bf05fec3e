"""Procedural scenes: the course's offline, seeded segmentation data set.

No download, any image size, and item ``i`` is always the same image and mask. The scenes are
built to make the problems of the DeepLab papers visible on a laptop:

* **Objects at many scales in one image** (DeepLabv2 Sec. 3.2, DeepLabv3 Sec. 3.3, ASPP): object
  sizes are drawn log-uniformly from about 2 % to 90 % of the image side, so one image holds
  shapes a few pixels wide next to one that fills most of the frame. Objects overlap (painter's
  order, big ones first) so they are partly *occluded*.
* **Global context** (DeepLabv3 Sec. 3.3, image-level features; ParseNet): every scene is either
  ``land`` (blotchy background) or ``water`` (wavy, striped background). The same *vehicle*
  shape is class ``car`` on land and ``boat`` on water; nothing in the shape or colour of the
  object tells them apart. Inside a large vehicle the only evidence is the background far away,
  so a head that pools over the whole image (image pooling) can tell them apart where a
  fixed-size field of view cannot.
* **Thin structures and sharp boundaries** (DeepLabv3+ Sec. 3.1, the decoder; output stride):
  ``wire`` objects are 1-3 pixels wide lines across the image, and ``ring`` objects have thin
  walls. At output stride 16 a wire is far thinner than one feature-map cell.
* **Nuisances**: textured backgrounds, textured objects, per-image colour jitter (brightness,
  contrast, saturation) and sensor noise.

Ignore label (255): some scenes contain *clutter*, irregular blobs of random-coloured noise that
belong to no class (like VOC's "void" objects); their pixels are labelled 255. Optionally,
``boundary_ignore=k`` also marks the ``k`` pixels on each side of every object boundary with 255, as
PASCAL VOC annotates its boundaries (off by default: it would swallow the 1-pixel wires).

Determinism: item ``i`` is drawn from ``numpy.random.default_rng([seed, i])``, so it does not
depend on the order of access, on DataLoader workers or on anything drawn before.

Speed (one CPU thread: torch's and the BLAS / OpenMP pools numpy uses), measured on the course's
development machine (a 2-core AMD EPYC cloud VM, Python 3.11, numpy 2.4, torch 2.14, quiet) on
2026-11-30 with::

    python -m deeplab_edu.data --n 300

567 images per second at 256 x 256 and 144 at 513 x 513 (CPU time and wall clock agree: one
thread). Left to start one BLAS thread per core, the same loop (256 x 256, same hour) ran at 512
images/s wall clock on twice the CPU time (261 per CPU-second). Each DataLoader worker of the
engine runs one thread and adds about one core's rate; compare it with the images per second your
training run reports. The notebook ``06_data`` measures the figure live on your machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from ..choices import is_whole
from .classes import (
    BACKGROUND,
    BOAT,
    BOX,
    CAR,
    DISC,
    IGNORE_INDEX,
    PROCEDURAL,
    RING,
    SCENE_TYPES,
    TRIANGLE,
    WIRE,
)
from .drawing import background, boundary_band, clutter, fill, random_colour, shape_mask, wire
from .io import SegmentationDataset

__all__ = [
    "PROCEDURAL",
    "SCENE_TYPES",
    "BACKGROUND",
    "CAR",
    "BOAT",
    "WIRE",
    "ProceduralScenes",
    "SceneInfo",
    "SceneStyle",
    "DIFFICULTIES",
    "scene_style",
    "render_scene",
    "benchmark",
]

_SHAPES = (DISC, BOX, TRIANGLE, RING, "vehicle")
# Relative frequency of each shape; vehicles are common so the context pair is well sampled.
_SHAPE_P = np.array([0.18, 0.18, 0.18, 0.16, 0.30])

#: Colour families of the ``colour_cue`` settings (RGB in [0, 1]), keyed by shape. Vehicles have
#: one family whatever the scene, so a car and a boat still look the same: only context names them.
_CLASS_COLOURS = {
    DISC: (0.90, 0.15, 0.15), BOX: (0.95, 0.85, 0.10), TRIANGLE: (0.70, 0.20, 0.85),
    RING: (0.10, 0.85, 0.85), "vehicle": (0.95, 0.95, 0.95), "wire": (0.05, 0.05, 0.05),
}
#: ``colour_cue="pair"``: disc and ring share red, box and triangle share yellow (shape tells them apart).
_PAIR_COLOURS = {**_CLASS_COLOURS, RING: _CLASS_COLOURS[DISC], TRIANGLE: _CLASS_COLOURS[BOX]}


@dataclass(frozen=True)
class SceneStyle:
    """How hard the procedural scenes are; :data:`DIFFICULTIES` names the settings the course uses.

    Attributes:
        colour_cue: ``"none"``: every object gets a random colour (only its shape names its class);
            ``"pair"``: disc/ring and box/triangle share a colour family, so shape separates each
            pair; ``"class"``: every shape class has its own colour family. Vehicles (car and boat)
            always share one appearance: only the scene around them tells them apart.
        min_radius, max_radius: object radii, drawn log-uniformly, as fractions of the image side.
        max_objects: at most this many shapes (at least 2).
        noise: (low, high) range of the sensor-noise standard deviation.
        colour_jitter: half-width of the random offset added to a colour family's RGB.

    Raises:
        ValueError: ``colour_cue`` is not ``"none"``, ``"pair"`` or ``"class"``, or the radii do not satisfy
            ``0 < min_radius <= max_radius <= 1``.
    """

    colour_cue: str = "none"
    min_radius: float = 0.01
    max_radius: float = 0.45
    max_objects: int = 8
    noise: tuple[float, float] = (0.01, 0.05)
    colour_jitter: float = 0.08

    def __post_init__(self) -> None:
        if self.colour_cue not in ("none", "pair", "class"):
            raise ValueError(f"colour_cue must be 'none', 'pair' or 'class', got {self.colour_cue!r}")
        if not 0 < self.min_radius <= self.max_radius <= 1:
            raise ValueError(f"need 0 < min_radius <= max_radius <= 1, got {self.min_radius}, {self.max_radius}")

    def diameter_range(self, side: int) -> tuple[float, float]:
        """The (smallest, largest) shape diameter drawn in a scene whose longer side is ``side`` pixels.

        Diameters are drawn log-uniformly in this range (radii never below 1.5 px; the frame-filling
        "hero" vehicles are drawn apart, from 0.9 to 1.6 times the side).

        Raises:
            ValueError: ``side`` is not a positive int.
        """
        if not isinstance(side, int) or isinstance(side, bool) or side < 1:
            raise ValueError(f"side must be a positive int, got {side!r}")
        return 2 * self.min_radius * side, 2 * self.max_radius * side


#: The named difficulty settings. ``"hard"``: the original scenes (random colours, object radii from
#: 1 % of the side, strong noise): a GPU run of thousands of iterations learns them partly.
#: ``"easy"``: colour families per class, radii from 4 % of the side, mild noise: a small
#: DeepLab learns them in minutes on a laptop CPU, and the lessons stay (many scales in one image,
#: car/boat told apart only by context, 1-3 px wires, ignored clutter).
DIFFICULTIES: dict[str, SceneStyle] = {
    "hard": SceneStyle(),
    "medium": SceneStyle(colour_cue="pair", min_radius=0.03, max_objects=6, noise=(0.0, 0.03)),
    "easy": SceneStyle(colour_cue="class", min_radius=0.04, max_objects=6, noise=(0.0, 0.02)),
}


def scene_style(difficulty: str | SceneStyle) -> SceneStyle:
    """The :class:`SceneStyle` of a difficulty name (see :data:`DIFFICULTIES`), or ``difficulty`` itself.

    Raises:
        ValueError: ``difficulty`` is neither a :class:`SceneStyle` nor a name in :data:`DIFFICULTIES`.
    """
    if isinstance(difficulty, SceneStyle):
        return difficulty
    try:
        return DIFFICULTIES[difficulty]
    except (KeyError, TypeError):
        raise ValueError(f"difficulty must be one of {', '.join(DIFFICULTIES)} or a SceneStyle, got {difficulty!r}") from None


@dataclass
class SceneInfo:
    """What went into one scene: its type and, per drawn object, class, scale and visible area."""

    scene_type: str
    classes: list[int] = field(default_factory=list)
    sizes: list[float] = field(default_factory=list)  # object extent (diameter / length) in pixels
    visible_pixels: list[int] = field(default_factory=list)


# ----------------------------------------------------------------------------- helpers
# ----------------------------------------------------------------------------- the scene
def render_scene(
    seed: int,
    index: int,
    size: tuple[int, int],
    *,
    difficulty: str | SceneStyle = "hard",
    max_objects: int | None = None,
    max_wires: int = 3,
    clutter_prob: float = 0.3,
    boundary_ignore: int = 0,
    hero_prob: float = 0.3,
    with_visible: bool = True,
) -> tuple[np.ndarray, np.ndarray, SceneInfo]:
    """Draw scene ``index`` of generator ``seed`` at ``size = (H, W)``.

    ``difficulty`` names a :class:`SceneStyle` (:data:`DIFFICULTIES`); ``max_objects`` overrides
    its number of shapes. ``with_visible=False`` skips counting each object's visible pixels
    (``info.visible_pixels`` stays empty), which the data set's ``__getitem__`` does not need.

    Returns ``(image, mask, info)``: image float32 (3, H, W) in [0, 1], mask uint8 (H, W) with
    class ids and 255 for ignored pixels, and a :class:`SceneInfo`.
    """
    h, w = size
    style = scene_style(difficulty)
    max_objects = style.max_objects if max_objects is None else max_objects
    families = {"none": None, "pair": _PAIR_COLOURS, "class": _CLASS_COLOURS}[style.colour_cue]

    def family_colour(key: Any) -> np.ndarray:
        base = np.asarray(families[key], np.float32)  # type: ignore[index]
        jitter = rng.uniform(-style.colour_jitter, style.colour_jitter, 3).astype(np.float32)
        return np.clip(base + jitter, 0.0, 1.0)

    rng = np.random.default_rng([seed, index])
    scene = int(rng.integers(2))
    info = SceneInfo(SCENE_TYPES[scene])
    img = background(rng, h, w, scene)
    mask = np.zeros((h, w), np.uint8)
    inst = np.zeros((h, w) if with_visible else (1, 1), np.uint8)  # instance ids, for visible areas
    s = max(h, w)

    # objects: log-uniform size, drawn large to small (small ones stay visible, big ones occluded)
    n_obj = int(rng.integers(2, max_objects + 1))
    radii = np.exp(rng.uniform(math.log(style.min_radius * s), math.log(style.max_radius * s), n_obj))
    radii = np.maximum(np.sort(radii)[::-1], 1.5)
    items: list[tuple[str, Any, float]] = [("shape", rng.choice(len(_SHAPES), p=_SHAPE_P), r) for r in radii]
    if rng.random() < hero_prob:  # a vehicle filling most of the frame: only far context names it
        items.insert(0, ("hero", len(_SHAPES) - 1, float(s * rng.uniform(0.45, 0.8))))
    if rng.random() < clutter_prob:
        pos = int(rng.integers(0, len(items) + 1))
        items.insert(pos, ("clutter", None, float(s * rng.uniform(0.04, 0.2))))
    for _ in range(int(rng.integers(0, max_wires + 1))):
        pos = int(rng.integers(len(items) // 2, len(items) + 1))  # wires cross most objects
        items.insert(pos, ("wire", None, 0.0))

    for kind, shape_idx, radius in items:
        if kind == "wire":
            (ys, xs), m, length = wire(rng, h, w)
            cls = WIRE
            if families is None:
                colour = (random_colour(rng) * rng.uniform(0.3, 0.8))[:, None, None]
            else:
                colour = family_colour("wire")[:, None, None]
            look = np.broadcast_to(colour, (3, *m.shape))
            size_px = length
        else:
            if kind == "hero":
                cy, cx = h * rng.uniform(0.35, 0.65), w * rng.uniform(0.35, 0.65)
            else:
                cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            r = float(radius)
            ys = slice(max(0, int(cy - r)), min(h, int(math.ceil(cy + r)) + 1))
            xs = slice(max(0, int(cx - r)), min(w, int(math.ceil(cx + r)) + 1))
            if ys.start >= ys.stop or xs.start >= xs.stop:
                continue
            yy = (np.arange(ys.start, ys.stop, dtype=np.float32)[:, None] + 0.5 - cy) / r
            xx = (np.arange(xs.start, xs.stop, dtype=np.float32)[None, :] + 0.5 - cx) / r
            if kind == "clutter":
                m = clutter(rng, xx, yy)
                look = rng.uniform(0, 1, (3, *m.shape)).astype(np.float32)
                cls = IGNORE_INDEX
            else:
                shape = _SHAPES[int(shape_idx)]
                ang = rng.uniform(-0.3, 0.3) if shape == "vehicle" else rng.uniform(0, 2 * math.pi)
                ca, sa = math.cos(ang), math.sin(ang)
                u, v = xx * ca + yy * sa, -xx * sa + yy * ca
                if shape == "vehicle" and rng.random() < 0.5:
                    u = -u  # facing left or right
                m = shape_mask(shape, u, v, r, rng)
                look = fill(rng, u, v, None if families is None else family_colour(shape))
                cls = (CAR if scene == 0 else BOAT) if shape == "vehicle" else int(shape)
            size_px = 2 * r
        if m.size == 0 or not m.any():
            continue
        region = img[:, ys, xs]
        np.copyto(region, look, where=m[None])
        mask[ys, xs][m] = cls
        if cls != IGNORE_INDEX and len(info.classes) < 254:
            info.classes.append(cls)
            info.sizes.append(float(size_px))
            if with_visible:
                inst[ys, xs][m] = len(info.classes)

    # photometric nuisances: brightness b, contrast c (about the mean), saturation t, sensor noise;
    # written as few in-place passes over the image, since this part costs the most
    b, c, t = rng.uniform(0.75, 1.25), rng.uniform(0.7, 1.3), rng.uniform(0.6, 1.4)
    mean = float(img[:, ::4, ::4].mean())
    img *= np.float32(b * c)
    img += np.float32(b * mean * (1.0 - c))
    grey = img[0] + img[1]
    grey += img[2]
    grey *= np.float32((1.0 - t) / 3.0)
    noise = rng.standard_normal((h, w), dtype=np.float32)
    grey += np.float32(rng.uniform(*style.noise)) * noise
    img *= np.float32(t)
    img += grey[None]
    np.clip(img, 0.0, 1.0, out=img)

    if boundary_ignore > 0:
        mask[boundary_band(mask, boundary_ignore)] = IGNORE_INDEX
    if with_visible:
        counts = np.bincount(inst.ravel(), minlength=len(info.classes) + 1)
        info.visible_pixels = [int(k) for k in counts[1 : len(info.classes) + 1]]
    return img, mask, info


def _as_size(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        hw = (int(size), int(size))
    elif isinstance(size, (tuple, list)) and len(size) == 2 and all(isinstance(v, (int, np.integer)) for v in size):
        hw = (int(size[0]), int(size[1]))
    else:
        raise TypeError(f"size must be an int or a pair (H, W) of ints, got {size!r}")
    if min(hw) < 8:
        raise ValueError(f"size must be at least 8 pixels per side, got {hw}")
    return hw


class ProceduralScenes(SegmentationDataset):
    """The offline procedural segmentation data set (see the module docstring).

    Args:
        length: number of items (``len(dataset)``).
        size: image side (int) or ``(H, W)``.
        seed: generator seed; ``(seed, index)`` decides item ``index``.
        transform: optional joint transform ``(image, mask) -> (image, mask)``, e.g.
            :func:`deeplab_edu.data.transforms.train_transform`.
        difficulty: ``"easy"``, ``"medium"`` or ``"hard"`` (the default; see :data:`DIFFICULTIES`),
            or a :class:`SceneStyle`.
        max_objects: at most this many shapes per scene (at least 2 are drawn); default: the
            difficulty's.
        max_wires: at most this many wires per scene.
        clutter_prob: probability that a scene contains an ignored (255) clutter blob.
        hero_prob: probability that a scene contains a vehicle filling most of the frame.
        boundary_ignore: pixels ignored on each side of every label change (a band ``2k`` wide across it; 0 = none).

    Items are ``(image, mask)``: image float32 (3, H, W) in [0, 1], mask int64 (H, W), 255 = ignore.

    Raises:
        ValueError: ``length`` is not an int >= 1 or ``seed`` not an int >= 0 (bools are rejected); a side of
            ``size`` is below 8; ``difficulty`` is neither a :class:`SceneStyle` nor a name in
            :data:`DIFFICULTIES`; ``max_objects`` is not between 2 and 250; ``max_wires`` or ``boundary_ignore`` is
            negative; or ``clutter_prob`` or ``hero_prob`` is not in [0, 1].
        TypeError: ``transform`` is given and is not callable, or ``size`` is neither an int nor a pair of ints.
    """

    info = PROCEDURAL
    num_classes = PROCEDURAL.num_classes
    class_names = PROCEDURAL.class_names
    palette = PROCEDURAL.palette
    ignore_index = IGNORE_INDEX
    scene_types = SCENE_TYPES

    def __init__(
        self,
        length: int = 1000,
        size: int | tuple[int, int] = 256,
        seed: int = 0,
        transform: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
        *,
        difficulty: str | SceneStyle = "hard",
        max_objects: int | None = None,
        max_wires: int = 3,
        clutter_prob: float = 0.3,
        boundary_ignore: int = 0,
        hero_prob: float = 0.3,
    ) -> None:
        if not is_whole(length) or length < 1:
            raise ValueError(f"length must be a positive int, got {length!r}")
        if not is_whole(seed) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        style = scene_style(difficulty)
        max_objects = style.max_objects if max_objects is None else max_objects
        if not 2 <= int(max_objects) <= 250:
            raise ValueError(f"max_objects must be between 2 and 250, got {max_objects!r}")
        if int(max_wires) < 0:
            raise ValueError(f"max_wires must be >= 0, got {max_wires!r}")
        if not 0.0 <= float(clutter_prob) <= 1.0:
            raise ValueError(f"clutter_prob must be in [0, 1], got {clutter_prob!r}")
        if not 0.0 <= float(hero_prob) <= 1.0:
            raise ValueError(f"hero_prob must be in [0, 1], got {hero_prob!r}")
        if int(boundary_ignore) < 0:
            raise ValueError(f"boundary_ignore must be >= 0, got {boundary_ignore!r}")
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable (image, mask) -> (image, mask), got {transform!r}")
        self.length = int(length)
        self.size = _as_size(size)
        self.seed = int(seed)
        self.transform = transform
        self.difficulty = difficulty if isinstance(difficulty, str) else "custom"
        self.options: dict[str, Any] = dict(
            difficulty=style, max_objects=int(max_objects), max_wires=int(max_wires),
            clutter_prob=float(clutter_prob), boundary_ignore=int(boundary_ignore), hero_prob=float(hero_prob),
        )

    def __len__(self) -> int:
        return self.length

    def _check_index(self, index: int) -> int:
        if not is_whole(index):
            raise TypeError(f"index must be an int, got {type(index).__name__}")
        i = int(index)
        if i < 0:
            i += self.length
        if not 0 <= i < self.length:
            raise IndexError(f"index {index} out of range for ProceduralScenes of length {self.length}")
        return i

    def render(self, index: int) -> tuple[np.ndarray, np.ndarray, SceneInfo]:
        """Item ``index`` untransformed: the image, float32 (3, H, W) in [0, 1], the mask, uint8 (H, W)
        (255: ignored; ``__getitem__`` gives it as int64), and its :class:`SceneInfo`.

        Raises:
            TypeError: ``index`` is not an integer.
            IndexError: ``index`` is out of range (negative ones count from the end).
        """
        return render_scene(self.seed, self._check_index(index), self.size, **self.options)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        img, mask, _ = render_scene(self.seed, self._check_index(index), self.size, with_visible=False, **self.options)
        image = torch.from_numpy(img)
        target = torch.from_numpy(mask).long()
        if self.transform is not None:
            image, target = self.transform(image, target)
        return image, target

    def __repr__(self) -> str:
        h, w = self.size
        return (f"ProceduralScenes(length={self.length}, size=({h}, {w}), seed={self.seed}, "
                f"difficulty={self.difficulty!r}, classes={self.num_classes})")


def benchmark(size: int | tuple[int, int] = 256, n: int = 200, threads: int = 1) -> dict[str, float]:
    """Speed of ``ProceduralScenes(size=size)[i]`` for ``i < n`` on ``threads`` threads.

    Both torch's threads and the BLAS / OpenMP thread pools numpy uses are limited to ``threads``
    (threadpoolctl), as in the engine's DataLoader workers: left alone, numpy's OpenBLAS starts one
    thread per core, which made the generator slower and doubled its CPU time here.

    Returns ``{"images_per_s": wall-clock rate, "images_per_cpu_s": rate per second of this
    process's CPU time}``. On a machine shared with other jobs the wall-clock rate drops; the CPU
    rate is what ``threads`` free cores deliver.
    """
    import time

    from threadpoolctl import threadpool_limits

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            ds = ProceduralScenes(length=n, size=size)
            ds[0]
            c0, t0 = time.process_time(), time.perf_counter()
            for i in range(n):
                ds[i]
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        return {"images_per_s": n / wall, "images_per_cpu_s": n / max(cpu, 1e-9)}
    finally:
        torch.set_num_threads(old)


def main(argv: list[str] | None = None) -> None:
    """``python -m deeplab_edu.data``: print the generator's speed at 256 and 513 pixels."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m deeplab_edu.data",
                                description="Benchmark the procedural scene generator on one CPU thread.")
    p.add_argument("--n", type=int, default=300, help="images per size")
    args = p.parse_args(argv)
    for sz in (256, 513):
        r = benchmark(sz, args.n)
        print(f"{sz} x {sz}: {r['images_per_cpu_s']:.0f} images per CPU-second, "
              f"{r['images_per_s']:.0f} images/s wall clock (1 thread)")

