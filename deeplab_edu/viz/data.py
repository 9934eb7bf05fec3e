"""Figures and the explorer widget of chapter 06 (data): samples, statistics, joint transforms.

Every widget function only *builds* ipywidgets (no front end needed); the notebook also draws the
same figure once for the default values so that the static book shows it.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..choices import is_whole
from ..data.classes import IGNORE_INDEX
from ..data.procedural import ProceduralScenes
from .images import colorize, display_rgb
from .layout import LINE_MARKERS, label_bars
from .widgets import figure_widget, slider

__all__ = [
    "class_legend",
    "show_pairs",
    "show_samples",
    "show_sizes",
    "show_difficulties",
    "plot_class_frequencies",
    "plot_object_sizes",
    "plot_context_free",
    "plot_stride_oracle",
    "show_transform_samples",
    "procedural_explorer",
]


def class_legend(fig: Figure, class_names: Sequence[str], palette: Sequence[Sequence[int]],
                 ignore: bool = True) -> float:
    """A legend at the bottom of ``fig``: one coloured patch per class (``palette``: RGB 0-255, in
    the order of ``class_names``) and, with ``ignore``, the white of ignored pixels. As many entries a
    row as the figure's width holds (at most 6). A legend that would take more than a third of the
    figure's height (many classes: 150 take 26 rows) makes the figure taller by its own height, so the
    axes keep their room instead of being drawn under it. Returns the share of the (new) figure's height
    the legend takes, to leave free below the axes (``tight_layout(rect=(0, share, 1, 1))``)."""
    # matplotlib takes an RGB array as a colour; its ColorType stub does not list arrays
    handles = [Patch(color=np.asarray(c) / 255, label=n)  # type: ignore[arg-type]
               for n, c in zip(class_names, palette)]
    if ignore:
        handles.append(Patch(facecolor="white", edgecolor="0.5", label=f"ignore ({IGNORE_INDEX})"))
    per_row = max(1, min(6, int(fig.get_figwidth() / 1.2)))  # about 1.2 inch an entry at font size 8
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), per_row), fontsize=8, frameon=False)
    rows = -(-len(handles) // per_row)
    height = 0.1 + 0.2 * rows  # inches: about 0.2 a row at font size 8
    if height > fig.get_figheight() / 3:
        fig.set_figheight(fig.get_figheight() + height)
    return height / fig.get_figheight()


def show_pairs(
    pairs: Sequence[tuple[torch.Tensor, torch.Tensor]],
    class_names: Sequence[str],
    palette: Sequence[Sequence[int]],
    *,
    titles: Sequence[str] | None = None,
    ncols: int = 4,
    size: float = 2.4,
) -> Figure:
    """Image above its coloured mask (white = ignored) for each ``(image, mask)`` pair. Each mask has a grey
    frame: ignored pixels at its border (the padding of a crop) would otherwise merge with the white page.

    Raises:
        ValueError: ``pairs`` is empty, or ``titles`` has fewer titles than ``pairs`` has pairs.
    """
    n = len(pairs)
    if n == 0:
        raise ValueError("pairs is empty: give at least one (image, mask) pair")
    if titles is not None and len(titles) < n:
        raise ValueError(f"titles has {len(titles)} titles for {n} pairs: give one per pair (or None)")
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(2 * nrows, ncols, figsize=(size * ncols, 2 * size * nrows + 0.6), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for k, (image, mask) in enumerate(pairs):
        r, c = divmod(k, ncols)
        axes[2 * r, c].imshow(display_rgb(image))
        mask_ax = axes[2 * r + 1, c]
        mask_ax.imshow(colorize(mask, palette), interpolation="nearest")
        mask_ax.axis("on")
        mask_ax.set_xticks([]), mask_ax.set_yticks([])
        for spine in mask_ax.spines.values():
            spine.set_edgecolor("0.5")
        if titles is not None:
            axes[2 * r, c].set_title(titles[k], fontsize=9)
    fig.tight_layout(rect=(0, class_legend(fig, class_names, palette), 1, 1))
    return fig


def show_samples(dataset: Any, indices: Sequence[int] = range(8), *, ncols: int = 4) -> Figure:
    """Items ``indices`` of ``dataset`` (procedural scenes are titled with their scene type)."""
    pairs = [dataset[i] for i in indices]
    titles = None
    if isinstance(dataset, ProceduralScenes):
        titles = [f"#{i} ({dataset.render(i)[2].scene_type})" for i in indices]
    return show_pairs(pairs, dataset.class_names, dataset.palette, titles=titles, ncols=ncols)


def show_sizes(index: int = 0, sizes: Sequence[int] = (48, 96, 256, 513), seed: int = 0, **options: Any) -> Figure:
    """The same procedural scene rendered at several sizes, one (image, mask) column each.

    Each size is drawn anew (not downsampled): wires 1-3 px wide up to 256 px and shape radii at least 1.5 px,
    so at low resolution thin structures take a larger share of the scene, unlike a network's downsampling
    of one fixed image (chapter 09's :func:`~deeplab_edu.viz.decoder.stride_oracle`).
    """
    pairs, titles = [], []
    for s in sizes:
        ds = ProceduralScenes(length=index + 1, size=s, seed=seed, **options)
        pairs.append(ds[index])
        titles.append(f"{s} x {s}")
    return show_pairs(pairs, ProceduralScenes.class_names, ProceduralScenes.palette, titles=titles, ncols=len(sizes))


def show_difficulties(indices: Sequence[int] = (1, 2), size: int = 128, seed: int = 0) -> Figure:
    """Procedural scenes of the same seeds at each difficulty, one column per difficulty in the order of
    :data:`deeplab_edu.data.procedural.DIFFICULTIES` (``hard``, ``medium``, ``easy``).

    ``medium`` and ``easy`` draw the same number of objects from the same seed, so they share a layout
    (other colours, smallest objects and noise); ``hard`` allows more and smaller objects, so the same
    seed gives it another layout.
    """
    from ..data.procedural import DIFFICULTIES

    pairs, titles = [], []
    for i in indices:
        for name in DIFFICULTIES:
            ds = ProceduralScenes(length=max(indices) + 1, size=size, seed=seed, difficulty=name)
            pairs.append(ds[i])
            titles.append(f"#{i} {name}")
    return show_pairs(pairs, ProceduralScenes.class_names, ProceduralScenes.palette, titles=titles,
                      ncols=len(DIFFICULTIES))


def plot_class_frequencies(freqs: np.ndarray, class_names: Sequence[str], palette: Sequence[Sequence[int]]) -> Figure:
    """Bar chart of pixel frequencies, log scale: ``freqs`` are fractions (0-1) of length ``len(class_names) + 1``,
    the last the ignore label's (:func:`deeplab_edu.data.stats.class_pixel_frequencies`); drawn in per cent."""
    names = [*class_names, "ignore"]
    colours = [np.asarray(c) / 255 for c in palette] + [(0.85, 0.85, 0.85)]
    fig, ax = plt.subplots(figsize=(7, 3))
    bars = ax.bar(range(len(names)), np.asarray(freqs) * 100, color=colours, edgecolor="0.3")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("% of pixels")
    ax.set_title("Pixel frequency per class")
    label_bars(ax, bars, [f"{100 * f:.2g}" for f in freqs], fontsize=7)
    fig.tight_layout()
    return fig


def plot_object_sizes(sizes: np.ndarray, image_size: int, classes: np.ndarray | None = None,
                      class_names: Sequence[str] | None = None,
                      palette: Sequence[Sequence[int]] | None = None) -> Figure:
    """Histogram of object extents in pixels (log-spaced bins; ``sizes`` > 0, one per object), with the
    image's side ``image_size`` (pixels) marked; ``classes`` (one index per object) splits the bars by class."""
    sizes = np.asarray(sizes, float)
    fig, ax = plt.subplots(figsize=(7, 3))
    bins = np.geomspace(max(1.0, sizes.min() * 0.9), sizes.max() * 1.1, 30)
    if classes is not None and class_names is not None:
        groups = [(class_names[c], sizes[classes == c]) for c in np.unique(classes)]
        colours = None if palette is None else [np.asarray(palette[c]) / 255 for c in np.unique(classes)]
        # matplotlib takes arrays as bins and colours; its stubs want Sequence[float] and ColorType
        ax.hist([g for _, g in groups], bins=bins, stacked=True, label=[n for n, _ in groups],  # type: ignore[arg-type]
                color=colours)  # type: ignore[arg-type]
        ax.legend(fontsize=7, ncol=2)
    else:
        ax.hist(sizes, bins=bins)  # type: ignore[arg-type]  # bins: an array (the stub wants Sequence[float])
    ax.set_xscale("log")
    ax.axvline(image_size, color="k", ls="--", lw=1)
    ax.text(image_size, ax.get_ylim()[1] * 0.9, " image side", fontsize=8)
    ax.set_xlabel("object extent (pixels, log scale)")
    ax.set_ylabel("objects")
    ax.set_title(f"Object sizes in {image_size} x {image_size} scenes")
    fig.tight_layout()
    return fig


def plot_context_free(radii: Sequence[int], fractions: Sequence[float], image_size: int) -> Figure:
    """Fraction of car/boat pixels with no background within a window, against the window radius:
    ``radii`` in pixels, ``fractions`` 0-1 (drawn in per cent), ``image_size`` the scenes' side in pixels."""
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot(radii, np.asarray(fractions) * 100, "o-")
    ax.set_xscale("log", base=2)
    ax.set_xticks(radii, [str(r) for r in radii])
    ax.set_xlabel("field-of-view radius (pixels)")
    ax.set_ylabel("% of car/boat pixels")
    ax.set_title(f"Car/boat pixels that see no background ({image_size} px scenes)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_stride_oracle(strides: Sequence[int], ious: Sequence[Sequence[float]], class_names: Sequence[str],
                       palette: Sequence[Sequence[int]]) -> Figure:
    """Per-class IoU of a perfect classifier that predicts one label per stride cell: ``ious`` is
    (len(strides), C), fractions 0-1 (drawn in per cent), each stride's ``iou`` of
    :func:`deeplab_edu.viz.decoder.stride_oracle_scores`."""
    fig, ax = plt.subplots(figsize=(7, 3.2))
    arr = np.asarray(ious)  # (len(strides), C)
    for c, name in enumerate(class_names):  # a marker per class: box and wire, car and boat are near in colour
        ax.plot(strides, arr[:, c] * 100, marker=LINE_MARKERS[c % len(LINE_MARKERS)], color=np.asarray(palette[c]) / 255,
                label=name, lw=2.5 if name == "wire" else 1.2)  # to a colour-blind reader (an accessibility audit)
    ax.set_xscale("log", base=2)
    ax.set_xticks(strides, [str(s) for s in strides])
    ax.set_xlabel("output stride (labels predicted per stride x stride cell)")
    ax.set_ylabel("oracle IoU (%)")
    ax.set_title("One true label per stride x stride cell: a baseline, not a ceiling")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def show_transform_samples(
    dataset: Any,
    index: int,
    transform: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    n: int = 3,
    seed: int = 0,
) -> Figure:
    """The raw item ``index`` and ``n`` draws of ``transform`` (white mask pixels: ignore, incl. padding)."""
    load = getattr(dataset, "load", None)
    image, mask = load(index) if callable(load) else dataset[index]
    pairs, titles = [(image, mask)], ["original"]
    gen_state = torch.get_rng_state()
    torch.manual_seed(seed)
    try:
        for k in range(n):
            pairs.append(transform(image, mask))
            titles.append(f"augmented #{k + 1}")
    finally:
        torch.set_rng_state(gen_state)
    return show_pairs(pairs, dataset.class_names, dataset.palette, titles=titles, ncols=n + 1)


def procedural_explorer(seed: int = 0, size: int = 256, index: int = 0, count: int = 4) -> Any:
    """Sliders for the generator's seed (0-50), image size (32-513 pixels) and first index (0-999), above
    ``count`` scenes.

    Raises:
        TypeError: a start value is not a whole number.
        ValueError: a start value lies outside its slider (:func:`~deeplab_edu.viz.widgets.slider`), or
            ``count`` is not a whole number of scenes from 1.
    """
    if not is_whole(count) or count < 1:
        raise ValueError(f"count is the number of scenes shown, a whole number from 1, got {count!r}")
    common: dict[str, Any] = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {
        "seed": slider("seed", seed, 0, 50, **common),
        "size": slider("size", size, 32, 513, **common),
        "index": slider("index", index, 0, 999, description="first index", **common),
    }

    def draw(seed: int, size: int, index: int) -> Figure:
        ds = ProceduralScenes(length=index + count, size=size, seed=seed)
        return show_samples(ds, range(index, index + count), ncols=count)

    return figure_widget(draw, controls)
