"""Text alternatives for the course's figures: what a screen reader says in place of a plot.

The book shows each figure as an image, and an image needs a text alternative (WCAG 2.1, success
criterion 1.1.1 "Non-text content"). :func:`describe_figure` writes one from what the figure says
about itself: its title, each panel's title, axis labels and legend entries, and the figure's own legend
(a class legend under the panels); colour bars and hidden panels are left out, and untitled image
panels are counted, not listed one by one. :func:`register_alt_text` makes that description the plain-text form
of every matplotlib figure a notebook shows (``text/plain`` beside the ``image/png``), and the book
puts it in the image's ``alt`` attribute (:func:`deeplab_edu.book_pages.for_the_page`). JupyterLab shows a
figure's ``image/png`` in an ``<img>`` without ``alt`` (its image renderer sets none), so the figure also gets a
``text/html`` form, the same PNG in an ``<img>`` with the description as ``alt``, which JupyterLab prefers; the
book drops it (:data:`HTML_MARK`) and keeps its own image. Importing ``deeplab_edu.viz`` in IPython or Jupyter
registers both.
"""

from __future__ import annotations

import base64
import functools
import html
import re
import sys
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["FIGURE_PREFIX", "HTML_MARK", "describe_figure", "register_alt_text"]

#: Every description starts with it (the book tells a description from matplotlib's own
#: ``<Figure size 640x480 with 1 Axes>`` by it).
FIGURE_PREFIX = "Figure"
#: The class of the ``<img>`` of a figure's ``text/html`` form (for JupyterLab), by which the book drops it.
HTML_MARK = "deeplab-edu-figure"


def _clean(text: str) -> str:
    """One line, without TeX's dollar signs, braces and backslashes (a screen reader spells them out):
    ``"$3 \\times 3$, rate $r_{1}$"`` -> ``"3 times 3, rate r_1"``; a title's lines are joined with
    commas."""
    text = re.sub(r"\\([A-Za-z]+)", r"\1", text)
    text = re.sub(r"([:;,.])?\s*\n\s*", lambda m: (m.group(1) or ",") + " ", text.strip())  # a title's lines
    return " ".join(text.replace("$", "").replace("{", "").replace("}", "").replace("\\", "").split())


def _panel(ax: Axes) -> str:
    """``"title; x: label; y: label; legend: a, b"``, the parts the panel has."""
    parts = [_clean(t) for t in (ax.get_title("left"), ax.get_title(), ax.get_title("right")) if _clean(t)]
    for axis, label in (("x", _clean(ax.get_xlabel())), ("y", _clean(ax.get_ylabel()))):
        named = _named_ticks(ax, axis)
        if label or named:  # "x: class (road, car)", "x: class" or "x: road, car"
            parts.append(f"{axis}: {label} ({named})" if label and named else f"{axis}: {label or named}")
    legend = ax.get_legend()
    if legend is not None and (entries := _legend_entries(legend)):
        parts.append("legend: " + ", ".join(entries))
    return "; ".join(parts)


def _named_ticks(ax: Axes, axis: str, most: int = 12) -> str:
    """The tick labels of ``axis`` (``"x"`` or ``"y"``) when they are names, not numbers (a bar per class):
    ``"road, car, sky"``, at most ``most`` of them (an audit: chapter 11's IoU per class was described as
    "y: IoU (%)", its classes left out); ``""`` for numeric ticks."""
    labels = [t.get_text() for t in (ax.get_xticklabels() if axis == "x" else ax.get_yticklabels())]
    names = [name for text in labels if (name := _clean(text))]
    # words outside mathtext: a log axis's ticks are "$\\mathdefault{10^{1}}$", numbers (a review: they were read
    # out as "mathdefault10^1")
    if not any(re.search(r"[A-Za-z]{2}", re.sub(r"\$[^$]*\$", "", text)) for text in labels):
        return ""
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def _legend_entries(legend: Any) -> list[str]:
    return [text for t in legend.get_texts() if (text := _clean(t.get_text()))]


def describe_figure(fig: Figure, max_chars: int = 800) -> str:
    """A one-paragraph text alternative of ``fig`` from its own text, e.g. ``"Figure: Receptive
    field. 2 panels. 1: rate 1; x: column; y: row. 2: rate 2; x: column; y: row."``

    Args:
        fig: a matplotlib figure.
        max_chars: the longest description, in characters; a longer one is cut at a word and ends
            with an ellipsis.

    Returns:
        The description; it starts with :data:`FIGURE_PREFIX`.

    Raises:
        ValueError: ``max_chars`` is less than 40.
    """
    if max_chars < 40:
        raise ValueError(f"max_chars must be at least 40, got {max_chars!r}")
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]
    title = _clean(fig.get_suptitle())
    text = FIGURE_PREFIX + (f": {title}." if title else ".")
    described = [_panel(ax) for ax in panels]
    # an audit: "5: an image. 6: an image. ..." eight times told a screen-reader user nothing
    untitled = sum(1 for ax, d in zip(panels, described) if not d and ax.images)
    if len(panels) == 1:
        text += f" {described[0]}." if described[0] else (" An image." if untitled else "")
    elif panels:
        text += f" {len(panels)} panels" + (f", {untitled} of them untitled images" if untitled else "") + "."
        text += "".join(f" {i}: {d}." for i, d in enumerate(described, 1) if d)
    entries = [e for legend in fig.legends for e in _legend_entries(legend)]
    if entries:  # the figure's own legend (the class colours under a gallery)
        text += " Legend: " + ", ".join(entries) + "."
    if len(text) > max_chars:
        text = text[: max_chars - 1].rsplit(" ", 1)[0] + "…"
    return text


def _plain_text(fig: Any, printer: Any, cycle: bool) -> None:
    """IPython's pretty-printer hook (``text/plain``) for a matplotlib figure."""
    printer.text(describe_figure(fig))


class _SharedPng:
    """The inline backend's PNG formatter for figures, wrapped so that a figure shown once is drawn once: IPython
    asks for ``text/html`` before ``image/png``, and the HTML form keeps the PNG it drew for the PNG form."""

    def __init__(self, draw: Callable[[Any], Any]) -> None:
        self.draw = draw
        self.kept: dict[int, Any] = {}

    def __call__(self, fig: Any) -> Any:
        kept = self.kept.pop(id(fig), None)
        return kept if kept is not None else self.draw(fig)

    def for_html(self, fig: Any) -> Any:
        self.kept[id(fig)] = result = self.draw(fig)
        return result


def _html_image(fig: Any, png: _SharedPng) -> str:
    """``text/html`` for a figure: its PNG in an ``<img>`` with :func:`describe_figure` as ``alt`` (an accessibility
    audit: in JupyterLab, a screen reader met every figure as an unnamed image), at the PNG's display size."""
    result = png.for_html(fig)
    data, metadata = result if isinstance(result, tuple) else (result, {})
    if isinstance(data, bytes):
        data = base64.b64encode(data).decode("ascii")
    size = "".join(f' {key}="{int(metadata[key])}"' for key in ("width", "height") if key in (metadata or {}))
    return (f'<img src="data:image/png;base64,{data}" alt="{html.escape(describe_figure(fig), quote=True)}"'
            f'{size} class="{HTML_MARK}">')


def _figure_html(ipython: Any) -> None:
    """Register :func:`_html_image` for figures where the inline backend draws PNGs (not where a learner chose
    SVG, say: then no HTML form), wrapping the backend's PNG formatter in :class:`_SharedPng`."""
    figure = sys.modules.get("matplotlib.figure")
    if figure is None:  # matplotlib not imported: no figure shown yet, and no backend formatter to wrap
        return
    formatters = ipython.display_formatter.formatters
    try:
        draw = formatters["image/png"].lookup_by_type(figure.Figure)
    except KeyError:
        formatters["text/html"].pop(figure.Figure, None)
        return
    if not isinstance(draw, _SharedPng):
        draw = _SharedPng(draw)
        formatters["image/png"].for_type(figure.Figure, draw)
    formatters["text/html"].for_type(figure.Figure, functools.partial(_html_image, png=draw))


def _sharp_figures(ipython: Any) -> None:
    """Show the inline backend's figures as "retina" PNGs: twice the pixels, displayed at the figure's own
    size (the PNG's ``width`` and ``height`` metadata, which JupyterLab and the book's images follow). An
    accessibility audit: 100-dpi figures shrunk into the book's column left 7-point labels blurred on a
    laptop's HiDPI screen. The backend's settings object keeps the choice when the backend restarts
    (``%matplotlib inline``); that restart removes every formatter of Figure, which the registration
    below renews. A learner's own choice (``%config InlineBackend.figure_formats = {'svg'}``) is kept: only
    the default, ``{'png'}``, is changed."""
    from matplotlib_inline.config import InlineBackend

    backend = InlineBackend.instance(parent=ipython)
    if set(backend.figure_formats) == {"png"}:
        backend.figure_formats = {"retina"}


def register_alt_text(ipython: Any = None) -> bool:
    """Make :func:`describe_figure` the ``text/plain`` form of every matplotlib figure that ``ipython``
    (default: the running IPython, if any) displays, and the ``alt`` of its ``text/html`` form where the backend
    draws PNGs (the module's docstring says why). In a Jupyter kernel (whose backend is the inline
    one) this starts that backend, which imports matplotlib, and has it draw "retina" PNGs (twice the
    pixels, shown at the figure's size); elsewhere matplotlib is not imported for it.

    Returns:
        ``True`` when registered, ``False`` outside IPython.
    """
    if ipython is None:
        try:
            from IPython import get_ipython
        except ImportError:
            return False
        ipython = get_ipython()
    if ipython is None:
        return False
    # Jupyter's inline backend, when it starts (at a session's first figure, or again on
    # ``%matplotlib inline``), removes every formatter of Figure (IPython's ``select_figure_formats``).
    # So it is started now, when it is the backend (Jupyter's default), and the registration is renewed
    # before and after every cell (after: ahead of the backend's own post_execute callback, which shows
    # the cell's figures, when this runs first; callbacks run in the order they were registered).
    import importlib
    import os

    if os.environ.get("MPLBACKEND", "") in ("inline", "module://matplotlib_inline.backend_inline"):
        try:
            importlib.import_module("matplotlib_inline.backend_inline")  # starts it (its import does)
            _sharp_figures(ipython)
        except ImportError:
            pass

    def register(*args: Any) -> None:
        ipython.display_formatter.formatters["text/plain"].for_type_by_name("matplotlib.figure", "Figure",
                                                                            _plain_text)
        _figure_html(ipython)

    register()
    events = getattr(ipython, "events", None)
    if events is not None and not getattr(ipython, "_deeplab_edu_alt_text", False):
        events.register("pre_execute", register)
        events.register("post_execute", register)
        ipython._deeplab_edu_alt_text = True
    return True
