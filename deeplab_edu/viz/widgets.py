"""The one pattern behind the course's interactive figures: sliders above a redrawn matplotlib figure."""

from __future__ import annotations

import base64
import io
from typing import Any, Callable, Mapping

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from ..choices import is_whole

__all__ = ["figure_widget", "show_figure", "slider", "positive_ints"]


def show_figure(out: Any, fig: Figure) -> None:
    """Make the ipywidgets ``Output`` ``out`` show ``fig`` (replacing what it showed), then close ``fig``.

    The picture is formatted in the kernel (as IPython displays any figure; a PNG when IPython has
    no image format for it, e.g. outside a kernel) and set as the widget's ``outputs`` in one state
    update, instead of being captured with ``with out: display(fig)``. The capture works in
    JupyterLab, but a headless executor built on nbclient (``jupyter nbconvert --execute``,
    papermill) answers every captured output by sending the widget's state back to the kernel on
    the shell channel, and that send can strand the cell's reply: the run then waits a whole cell
    timeout (seen with chapter 06's explorer in about one run in three;
    ``deeplab_edu.book.reliable_client`` guards ``make book`` against the same race).
    """
    from IPython import get_ipython

    shell = get_ipython()
    data, metadata = shell.display_formatter.format(fig) if shell is not None else ({}, {})
    if not any(mime.startswith("image/") for mime in data):
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", bbox_inches="tight")
        data, metadata = {"image/png": base64.b64encode(buffer.getvalue()).decode("ascii"), "text/plain": repr(fig)}, {}
    out.outputs = ({"output_type": "display_data", "data": data, "metadata": metadata},)
    plt.close(fig)


def figure_widget(draw: Callable[..., Figure], controls: Mapping[str, Any]) -> Any:
    """An ipywidgets box: ``controls`` (name -> widget) above an output that shows ``draw(**values)``.

    The figure is redrawn (:func:`show_figure`) whenever a control changes. Building the box needs
    no front end: without one the widgets simply are not displayed.

    Args:
        draw: called with each control's name as a keyword and its widget's value; returns a
            matplotlib ``Figure`` (which the widget closes once shown).
        controls: name -> ipywidgets control (a :func:`slider`, a dropdown...), shown in a row.

    Raises:
        TypeError: ``draw`` returns something other than a ``Figure`` (at the first draw, which runs here).
    """
    import ipywidgets as widgets

    out = widgets.Output()

    def redraw(*_: Any) -> None:
        fig = draw(**{name: w.value for name, w in controls.items()})
        if not isinstance(fig, Figure):
            raise TypeError(f"figure_widget's draw function must return a matplotlib Figure, got "
                            f"{type(fig).__name__} (end it with `return fig`)")
        show_figure(out, fig)

    for w in controls.values():
        w.observe(redraw, names="value")
    redraw()
    return widgets.VBox([widgets.HBox(list(controls.values())), out])


def slider(name: str, value: float, low: float, high: float, *, integer: bool = True, **kwargs: Any) -> Any:
    """An ipywidgets ``IntSlider`` (``FloatSlider`` when ``integer`` is false) from ``low`` to ``high``
    starting at ``value``, described as ``name`` unless ``description`` is given. ipywidgets would clamp
    a value outside the range without a word (``rate=12`` on a slider to 6 showed 6), so it is checked.

    Raises:
        TypeError: ``value`` is not a number (not a whole number, for an integer slider), or an integer
            slider's ``low`` or ``high`` is not a whole number.
        ValueError: ``low`` is above ``high``, or ``value`` lies outside ``[low, high]``; the message names
            ``name`` and the range.
    """
    import numbers

    import ipywidgets as widgets

    if low > high:  # the range is at fault, not the value
        raise ValueError(f"the {name} slider's range is empty: low={low:g} is above high={high:g}")
    if integer and not all(float(b).is_integer() for b in (low, high)):
        raise TypeError(f"the {name} slider counts whole numbers: its range {low:g} to {high:g} must too")
    wanted = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, wanted):
        raise TypeError(f"{name}={value!r}: give {'a whole number' if integer else 'a number'} "
                        f"from {low:g} to {high:g}")
    if not low <= value <= high:
        raise ValueError(f"{name}={value!r} is outside this slider's range, {low:g} to {high:g}")
    kwargs.setdefault("description", name)
    if integer:
        return widgets.IntSlider(value=int(value), min=int(low), max=int(high), **kwargs)
    return widgets.FloatSlider(value=float(value), min=low, max=high, **kwargs)


def positive_ints(name: str, values: Any, what: str, example: str) -> tuple[int, ...]:
    """``values`` as a tuple, checked to hold at least one positive whole number and nothing else (the
    options of a selection slider, which fails deep inside ipywidgets on none).

    NumPy integers count as whole numbers (``np.array([6, 12])`` gives ``(6, 12)``, plain ints).

    Raises:
        ValueError: ``values`` is empty or holds something else; the message says ``name`` must be
            ``what`` and gives ``example``.
        TypeError: ``values`` is not a sequence (one number, e.g. ``6`` for ``(6,)``), naming ``name``.
    """
    try:
        values = tuple(values)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of {what}, e.g. {example}; got {values!r}") from None
    if not values or not all(is_whole(v) and int(v) > 0 for v in values):
        raise ValueError(f"{name} must be {what}, at least one, e.g. {example}; got {values!r}")
    return tuple(int(v) for v in values)
