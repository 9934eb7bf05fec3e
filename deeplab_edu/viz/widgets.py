"""The one pattern behind the course's interactive figures: sliders above a redrawn matplotlib figure."""

from __future__ import annotations

import base64
import io
from typing import Any, Callable, Mapping

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

__all__ = ["figure_widget", "show_figure"]


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
    """
    import ipywidgets as widgets

    out = widgets.Output()

    def redraw(*_: Any) -> None:
        show_figure(out, draw(**{name: w.value for name, w in controls.items()}))

    for w in controls.values():
        w.observe(redraw, names="value")
    redraw()
    return widgets.VBox([widgets.HBox(list(controls.values())), out])
