"""Figures and widgets for chapter 08: what output stride and input size cost a DeepLab model.

Multiply-adds come from :func:`deeplab_edu.models.summary.model_cost` (an exact count on the meta
device, so the widget answers instantly even for ResNet-101 at output stride 8 and 1025 pixels).
"""

from __future__ import annotations

import itertools
from functools import lru_cache
from typing import Any, Sequence

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from ..models.summary import ModelConfig, model_cost
from .layout import LINE_MARKERS
from .widgets import positive_ints, show_figure

__all__ = ["plot_cost_vs_size", "cost_widget"]

_SIZES = (257, 385, 513, 769, 1025)


@lru_cache(maxsize=256)
def _gmacs(name: str, backbone: str, output_stride: int, size: int) -> float:
    return model_cost(ModelConfig(name, backbone, output_stride), size)[1] / 1e9


def plot_cost_vs_size(
    name: str = "deeplabv3",
    backbone: str = "resnet101",
    sizes: Sequence[int] = _SIZES,
    output_strides: Sequence[int] = (32, 16, 8),
    highlight: tuple[int, int] | None = None,
) -> Figure:
    """GMACs against input side for each output stride (counted, not estimated).

    ``highlight=(size, output_stride)`` marks one configuration with a black ring.
    """
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    for os_, marker in zip(output_strides, itertools.cycle(LINE_MARKERS)):
        macs = [_gmacs(name, backbone, os_, s) for s in sizes]
        ax.plot(sizes, macs, marker=marker, label=f"output stride {os_}")
    if highlight is not None:
        size, os_ = highlight
        value = _gmacs(name, backbone, os_, size)
        ax.plot([size], [value], "o", mfc="none", mec="k", ms=14, mew=2)
        ax.annotate(f"{value:.0f} GMACs", (size, value), textcoords="offset points", xytext=(8, -14))
    ax.set_xlabel("input side (pixels)")
    ax.set_ylabel("GMACs per image")
    ax.set_title(f"{name} / {backbone}: cost against input size")
    ax.legend()
    fig.tight_layout()
    return fig


def cost_widget(name: str = "deeplabv3", backbone: str = "resnet101", sizes: Sequence[int] = _SIZES) -> Any:
    """Input-size and output-stride sliders over :func:`plot_cost_vs_size`. Needs no front end to be built.

    Counts are cached, so moving a slider back costs nothing.

    Raises:
        ValueError: ``sizes`` is empty or holds a size that is not a positive whole number of pixels.
    """
    import ipywidgets as widgets

    sizes = positive_ints("sizes", sizes, "input sides in pixels", "(129, 257, 513)")
    size = widgets.SelectionSlider(options=list(sizes), value=sizes[len(sizes) // 2], description="input (px)")
    stride = widgets.Dropdown(options=[32, 16, 8], value=16, description="output stride",
                              style={"description_width": "initial"})
    out = widgets.Output()

    def draw(*_: Any) -> None:
        show_figure(out, plot_cost_vs_size(name, backbone, sizes, highlight=(size.value, stride.value)))

    size.observe(draw, names="value")
    stride.observe(draw, names="value")
    draw()
    return widgets.VBox([widgets.HBox([size, stride]), out])
