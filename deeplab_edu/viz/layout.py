"""Figure layout shared by the plots: panels in rows that fit the book's text column."""

from __future__ import annotations

from typing import Any, Sequence

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.container import BarContainer
from matplotlib.figure import Figure

__all__ = ["LINE_MARKERS", "LINE_STYLES", "grid_shape", "panel_grid", "label_bars", "text_colour_on"]

#: One marker per line of a plot, in order (``zip(lines, itertools.cycle(LINE_MARKERS))``): the marker tells the
#: lines apart where their colours do not (a colour-blind reader; matplotlib's default orange and green are
#: nearly one colour to a protanope), and the legend shows it.
LINE_MARKERS = "os^Dvp"
#: One dash pattern per curve drawn without markers (``zip(curves, itertools.cycle(LINE_STYLES))``), for the same
#: reason: solid, dashed, dotted, dash-dotted (the explorers' JavaScript figures dash their curves alike).
LINE_STYLES: tuple[Any, ...] = ("-", (0, (7, 3)), (0, (2, 3)), "-.")


def text_colour_on(colour: Any) -> str:
    """``"black"`` or ``"white"``, whichever contrasts more with ``colour`` (any matplotlib colour), by WCAG 2's
    relative luminance and contrast ratio: for numbers written on coloured cells."""
    from matplotlib.colors import to_rgb

    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in to_rgb(colour)]
    luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    return "black" if (luminance + 0.05) / 0.05 > 1.05 / (luminance + 0.05) else "white"


def grid_shape(n: int, max_cols: int) -> tuple[int, int]:
    """``(rows, columns)`` of a grid of ``n`` panels, at most ``max_cols`` a row, filled row by row.

    Raises:
        ValueError: ``n`` or ``max_cols`` below 1.
    """
    if n < 1 or max_cols < 1:
        raise ValueError(f"n and max_cols must be at least 1, got n={n}, max_cols={max_cols}")
    ncols = min(n, max_cols)
    return -(-n // ncols), ncols


def panel_grid(n: int, max_cols: int, panel_size: tuple[float, float], extra_height: float = 0.0,
               **subplots_kw: Any) -> tuple[Figure, list[Axes]]:
    """A figure with ``n`` panels, at most ``max_cols`` a row, and the panels' axes in reading order.

    The book's column is about 700 px wide: more panels in one row are shrunk until their text is
    unreadable. Cells of the last row beyond ``n`` are removed. ``panel_size`` is (width, height) in
    inches per panel; ``extra_height`` (inches) leaves room for a title; ``subplots_kw`` go to
    ``plt.subplots`` (e.g. ``layout="constrained"``).

    Raises:
        ValueError: ``n`` or ``max_cols`` below 1.
    """
    nrows, ncols = grid_shape(n, max_cols)
    fig, grid = plt.subplots(nrows, ncols, figsize=(panel_size[0] * ncols, panel_size[1] * nrows + extra_height),
                             squeeze=False, **subplots_kw)
    axes = list(grid.flat)
    for ax in axes[n:]:
        fig.delaxes(ax)
    return fig, axes[:n]


def label_bars(ax: Axes, bars: BarContainer, labels: Sequence[str], fontsize: float = 8) -> None:
    """Print ``labels`` (one per bar) just above the ``bars`` of ``ax`` and leave room for them under the top
    frame (15 % of the value axis's span above the tallest bar; on a log axis, of its decades).

    Raises:
        ValueError: ``labels`` has not one label per bar (matplotlib would leave bars unlabelled).
    """
    labels = list(labels)
    if len(labels) != len(bars):
        raise ValueError(f"labels has {len(labels)} labels for {len(bars)} bars: give one per bar")
    ax.bar_label(bars, labels=labels, padding=2, fontsize=fontsize)
    ax.margins(y=0.15)  # an audit: labels placed at the bar's top ran into the frame above the tallest bar
