"""The one pattern behind the course's interactive figures: sliders above a redrawn matplotlib figure."""

from __future__ import annotations

from typing import Any, Callable, Mapping

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

__all__ = ["figure_widget"]


def figure_widget(draw: Callable[..., Figure], controls: Mapping[str, Any]) -> Any:
    """An ipywidgets box: ``controls`` (name -> widget) above an output that shows ``draw(**values)``.

    The figure is redrawn whenever a control changes. Building the box needs no front end: without
    one the widgets simply are not displayed.
    """
    import ipywidgets as widgets
    from IPython.display import display

    out = widgets.Output()

    def redraw(*_: Any) -> None:
        with out:
            out.clear_output(wait=True)
            fig = draw(**{name: w.value for name, w in controls.items()})
            display(fig)
            plt.close(fig)

    for w in controls.values():
        w.observe(redraw, names="value")
    redraw()
    return widgets.VBox([widgets.HBox(list(controls.values())), out])
