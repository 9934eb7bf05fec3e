"""Figures and widgets for chapter 04: boundary degeneration (DeepLabv3 sec. 3.3, Figure 4).

Every figure function returns a matplotlib ``Figure`` (drawn once, so the static book shows it);
:func:`tap_count_widget` wraps :func:`plot_tap_counts` in sliders for the interactive notebook.
The numbers come from :mod:`deeplab_edu.boundary`.
"""

from __future__ import annotations

import itertools
from typing import Any, Iterable, Mapping, Sequence, cast

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure

from ..boundary import (
    DegenerationReport,
    figure4_curves,
    mean_valid_fraction,
    possible_counts,
    valid_tap_counts,
)
from .layout import LINE_STYLES, grid_shape, text_colour_on
from .widgets import figure_widget

__all__ = [
    "count_colours",
    "plot_figure4",
    "plot_tap_counts",
    "plot_degeneration",
    "plot_footprints",
    "plot_mean_valid_fraction",
    "tap_count_widget",
]

# Okabe & Ito's colours, told apart with every common colour-vision deficiency: vermillion for the
# centre tap alone, bluish green for all nine
_COUNT_COLOURS = {1: "#D55E00", 2: "#0072B2", 3: "#F0E442", 4: "#CC79A7", 6: "#56B4E9", 9: "#009E73"}


def count_colours(kernel: int = 3) -> dict[int, str]:
    """The colour (``"#rrggbb"``) of each possible valid-tap count of a ``kernel`` x ``kernel`` filter,
    shared by the figures here and the JavaScript explorer of chapter 04: Okabe & Ito's colour-blind
    safe colours for 3 x 3 (red-orange for the centre tap alone, bluish green for all nine), steps of
    viridis for other sizes.

    Raises:
        ValueError: ``kernel`` is below 1 or even.
        TypeError: ``kernel`` is not an integer.
    """
    from matplotlib.colors import to_hex

    counts = possible_counts(kernel)
    if kernel == 3:
        return {c: _COUNT_COLOURS[c] for c in counts}
    return {c: to_hex(plt.get_cmap("viridis")(i / max(len(counts) - 1, 1))) for i, c in enumerate(counts)}


def _count_cmap(kernel: int) -> tuple[ListedColormap, BoundaryNorm, tuple[int, ...]]:
    colours_by_count = count_colours(kernel)
    counts = tuple(colours_by_count)
    colours = list(colours_by_count.values())
    bounds = [counts[0] - 0.5] + [(a + b) / 2 for a, b in zip(counts, counts[1:])] + [counts[-1] + 0.5]
    return ListedColormap(colours), BoundaryNorm(bounds, len(counts)), counts


def plot_figure4(
    size: int = 65,
    rates: Iterable[int] | None = None,
    counts: Sequence[int] = (1, 4, 9),
    kernel: int = 3,
    ax: plt.Axes | None = None,
) -> Figure:
    """DeepLabv3 Figure 4: normalised count of positions with 1, 4 and 9 valid weights vs the rate.

    Args:
        size: feature-map side (65 in the paper: a 513 crop at output stride 8).
        rates: the rates on the x axis (default every rate from 1 to ``size``).
        counts: which curves to draw; ``possible_counts(kernel)`` draws all of them.
        kernel: the filter's side (3 in the paper).
        ax: the axes to draw on (default: a new figure).

    Returns:
        The figure, with one curve per count, the fraction of the ``size`` x ``size`` positions (0-1)
        against the rate.

    Raises:
        ValueError: a count in ``counts`` cannot occur for a ``kernel`` x ``kernel`` filter, or
            ``size``, ``kernel`` or a rate is invalid (:func:`~deeplab_edu.boundary.figure4_curves`).
        TypeError: ``size``, ``kernel`` or a rate is not an integer (as there).
    """
    rates = list(range(1, size + 1)) if rates is None else list(rates)
    curves = figure4_curves(size, rates, kernel)  # keys: "rates" and the int counts
    unknown = [c for c in counts if c not in curves]
    if unknown:
        raise ValueError(f"counts {unknown} cannot occur for a {kernel}x{kernel} filter; use {possible_counts(kernel)}")
    fig, ax = _fig_ax(ax, (6.4, 4.0))
    colours = count_colours(kernel)
    for c, style in zip(counts, itertools.cycle(LINE_STYLES)):  # a dash per curve: not told apart by colour alone
        ax.plot(curves["rates"], curves[c], label=f"{c} valid weight{'s' if c > 1 else ''}",
                color=colours.get(c), lw=2, linestyle=style)
    ax.set_xlabel("atrous rate")
    ax.set_ylabel("normalised count (fraction of positions)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"{kernel}x{kernel} filter on a {size} x {size} feature map")
    ax.axvline(size, color="grey", ls=":", lw=1)
    ax.text(size, 0.5, f" rate = {size}\n (map size)", color="grey", va="center", ha="right", fontsize=8)
    ax.legend(loc="upper right", bbox_to_anchor=(0.87, 1.0), fontsize=8)  # between the 4-valid peak and the rising 1-valid curve
    ax.grid(alpha=0.3)
    return fig


def plot_tap_counts(
    height: int, width: int, rate: int, kernel: int = 3, ax: plt.Axes | None = None, annotate: bool | None = None
) -> Figure:
    """Heatmap of the number of valid taps at every output position of a "same" atrous convolution."""
    counts_map = valid_tap_counts(height, width, kernel, rate)
    cmap, norm, counts = _count_cmap(kernel)
    fig, ax = _fig_ax(ax, (4.6, 4.0))
    im = ax.imshow(counts_map, cmap=cmap, norm=norm, interpolation="nearest")
    if annotate is None:
        annotate = max(height, width) <= 17
    if annotate:  # black on the light tiles, white on the dark (an audit: white on yellow was 1.3:1)
        for (i, j), v in np.ndenumerate(counts_map):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=8, color=text_colour_on(cmap(norm(v))))
    cbar = fig.colorbar(im, ax=ax, ticks=counts, fraction=0.046, pad=0.04)
    cbar.set_label("valid taps")
    full = float((counts_map == kernel * kernel).mean())
    only = float((counts_map == 1).mean())
    ax.set_title(
        f"{height} x {width} map, rate {rate}\nall {kernel * kernel} taps: {full:.0%} of positions, "
        f"centre only: {only:.0%}",
        fontsize=9,
    )
    ax.set_xticks([])
    ax.set_yticks([])
    return fig


def plot_degeneration(reports: Sequence[DegenerationReport], max_cols: int = 3) -> Figure:
    """Per rate, a pair of panels one above the other: valid taps per position, and
    ``|3x3 atrous - 1x1 centre|`` per position; at most ``max_cols`` rates a row (the book's
    column makes the text of more unreadable), each kind of panel with one colour bar.

    Raises:
        ValueError: ``reports`` is empty, or ``max_cols`` is below 1.
    """
    if not reports:
        raise ValueError("reports is empty; pass the DegenerationReport of at least one rate")
    cmap, norm, counts = _count_cmap(3)
    blocks, ncols = grid_shape(len(reports), max_cols)  # a block: one row of rates, two rows of panels
    fig, axes = plt.subplots(2 * blocks, ncols, figsize=(2.6 * ncols + 1.0, 2.9 * 2 * blocks), squeeze=False,
                             layout="constrained")
    vmax = max(max(float(r.diff_map.max()) for r in reports), 1e-12)
    for i, rep in enumerate(reports):
        top, bottom = axes[2 * (i // ncols), i % ncols], axes[2 * (i // ncols) + 1, i % ncols]
        counts_im = top.imshow(rep.tap_counts, cmap=cmap, norm=norm, interpolation="nearest")
        top.set_title(f"rate {rep.rate}: valid taps", fontsize=10)
        im = bottom.imshow(rep.diff_map, cmap="magma", vmin=0, vmax=vmax, interpolation="nearest")
        verdict = "identical" if rep.identical else f"differs at {rep.fraction_differing:.1%}"  # 99.7 %, not a rounded 100 %
        bottom.set_title(f"max |diff| = {rep.max_abs_diff:.3g}\n{verdict}", fontsize=10)
        for a in (top, bottom):
            a.set_xticks([])
            a.set_yticks([])
    for ax in axes.flat:
        if not ax.images:  # the unused cells of the last block stay empty, so every row keeps its width
            ax.axis("off")
    for row in range(0, 2 * blocks, 2):  # a colour bar beside each row (the diff scale is shared)
        fig.colorbar(counts_im, ax=axes[row].tolist(), ticks=counts, shrink=0.9, label="valid taps")
        fig.colorbar(im, ax=axes[row + 1].tolist(), shrink=0.9, label="|3x3 - 1x1 centre|")
    return fig


def plot_footprints(footprints: Mapping[str, np.ndarray], position: tuple[int, int] | None = None) -> Figure:
    """Side-by-side bool maps of the input positions that influence one output position (green), with
    that ``position`` (row, column) circled when given (a legend under the panels says so).

    Raises:
        ValueError: ``footprints`` is empty.
    """
    if not footprints:
        raise ValueError("footprints is empty")
    fig, axes = plt.subplots(1, len(footprints), figsize=(2.8 * len(footprints), 3.1), squeeze=False)
    for ax, (label, fp) in zip(axes[0], footprints.items()):
        ax.imshow(fp, cmap="Greens", vmin=0, vmax=1, interpolation="nearest")
        if position is not None:  # a white rim: red alone was 2.9:1 on the dark green
            ax.plot(position[1], position[0], "o", mfc="none", mec="white", ms=13, mew=3.5)
            circle, = ax.plot(position[1], position[0], "o", mfc="none", mec="red", ms=11, mew=1.5)
        ax.set_title(f"{label}\n{int(fp.sum())} of {fp.size} inputs", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if position is not None:
        fig.legend([circle], ["the output position"], loc="lower center", fontsize=8, frameon=False)
        fig.subplots_adjust(bottom=0.12)
    return fig


def plot_mean_valid_fraction(
    sizes: Mapping[str, int], max_rate: int = 40, marked_rates: Sequence[int] = (6, 12, 18), kernel: int = 3,
    ax: plt.Axes | None = None,
) -> Figure:
    """Mean share of valid weights against the rate, one curve per feature-map size (ASPP rates marked)."""
    fig, ax = _fig_ax(ax, (6.4, 3.8))
    rates = np.arange(1, max_rate + 1)
    for (label, size), style in zip(sizes.items(), itertools.cycle(("-", "--", ":", "-."))):  # not colour alone
        ys = [mean_valid_fraction(size, int(r), kernel) for r in rates]
        ax.plot(rates, ys, label=f"{label} ({size} x {size})", lw=2, linestyle=style)
    for r in marked_rates:
        ax.axvline(r, color="grey", ls=":", lw=1)
        ax.text(r, 1.0, f"r={r}", rotation=90, va="top", ha="right", fontsize=8, color="grey")
    ax.set_xlabel("atrous rate")
    ax.set_ylabel(f"mean share of the {kernel * kernel} weights in use")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    return fig


# --------------------------------------------------------------------------- widgets
def _fig_ax(ax: plt.Axes | None, figsize: tuple[float, float]) -> tuple[Figure, plt.Axes]:
    if ax is not None:
        return cast(Figure, ax.figure), ax  # (a SubFigure if ``ax`` lies in one; matplotlib types it as either)
    fig, ax = plt.subplots(figsize=figsize)
    return fig, ax


def tap_count_widget(
    height: int = 33, width: int = 33, rate: int = 12, max_size: int = 97, max_rate: int = 100, kernel: int = 3
) -> Any:
    """Sliders for the feature-map height and width and the rate, above :func:`plot_tap_counts`.

    Raises:
        ValueError: a starting value lies outside its slider's range, or ``kernel`` is below 1 or even.
        TypeError: ``kernel`` is not an integer.
    """
    import ipywidgets as widgets

    possible_counts(kernel)  # its check of the kernel, before the first drawing (which would fail there)

    for name, value, top in (("height", height, max_size), ("width", width, max_size), ("rate", rate, max_rate)):
        if not 1 <= value <= top:
            raise ValueError(f"{name}={value} must lie in 1..{top}")
    slider = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {
        "height": widgets.IntSlider(value=height, min=1, max=max_size, description="map height", **slider),
        "width": widgets.IntSlider(value=width, min=1, max=max_size, description="map width", **slider),
        "rate": widgets.IntSlider(value=rate, min=1, max=max_rate, description="atrous rate", **slider),
    }

    def draw(height: int, width: int, rate: int) -> Figure:
        return plot_tap_counts(height, width, rate, kernel)

    return figure_widget(draw, controls)
