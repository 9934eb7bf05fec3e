"""Figures and widgets for chapter 05: what each ASPP branch sees, drawn on a real photograph.

The footprint of a branch is *measured*, not drawn from a formula: the centre output of the branch
is back-propagated to its input (:func:`deeplab_edu.boundary.input_footprint`), and every feature
position with a non-zero gradient is in the footprint. Each feature position stands for an
``output_stride x output_stride`` block of the image, which is how the footprint is drawn on the
photo. (The backbone's own receptive field makes every position see much more than its block;
chapter 02 measures that.)
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..boundary import input_footprint
from ..models.aspp import ASPP, ASPPConv, ImagePooling, atrous_rates_for, feature_map_side
from .images import display_rgb
from .layout import panel_grid
from .widgets import show_figure

__all__ = ["branch_names", "branch_footprints", "plot_branch_footprints", "aspp_footprint_widget"]

_COLOURS = ["#1f77b4", "#2ca02c", "#ff7f0e", "#d62728", "#9467bd", "#8c564b"]


def _cell_corner(row: int, col: int, output_stride: int) -> tuple[float, float]:
    """The top-left corner, in image pixels (x, y), of the square drawn for feature ``(row, col)``:
    centred on the pixel the feature is centred on, ``output_stride * index`` (chapter 02's
    ``i * S - P + (r - 1) / 2`` for the course's ResNets), so the squares tile the image."""
    return (col - 0.5) * output_stride, (row - 0.5) * output_stride


def branch_names(aspp: ASPP) -> list[str]:
    """Readable names of the ASPP branches: ``1x1``, ``rate r`` ..., ``image pooling``."""
    names = []
    for b in aspp.convs:
        if isinstance(b, ASPPConv):
            names.append(f"rate {b.rate}")
        elif isinstance(b, ImagePooling):
            names.append("image pooling")
        else:
            names.append("1x1")
    return names


def branch_footprints(
    rates: Sequence[int] = (6, 12, 18), size: int = 33, position: tuple[int, int] | None = None
) -> dict[str, np.ndarray]:
    """The measured footprint of each branch of an ASPP with ``rates`` on a ``size x size`` map.

    A small ASPP is enough: the footprint depends on the geometry, not the width. (32 output
    channels make it practically impossible that every ReLU is off at the chosen position.)
    ``position`` is the output unit's (row, column) on the map (``None``: its centre). The ASPP's
    weights are drawn with seed 0 from a stream of their own (the caller's random state is left as
    it was). Returns ``{branch name: bool array (size, size)}``.

    Raises:
        ValueError: ``position`` lies outside the map (:func:`~deeplab_edu.boundary.input_footprint`).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        aspp = ASPP(4, tuple(rates), out_channels=32)
    return {
        name: input_footprint(branch, size, size, position=position, channels=4)
        for name, branch in zip(branch_names(aspp), aspp.convs)
    }


def plot_branch_footprints(
    photo: torch.Tensor,
    footprints: dict[str, np.ndarray],
    output_stride: int,
    position: tuple[int, int] | None = None,
) -> Figure:
    """One panel per branch: the photo, with the feature positions the branch reads shaded.

    Args:
        photo: (3, H, W) image in [0, 1], the network's input.
        footprints: from :func:`branch_footprints` on the feature map of this photo.
        output_stride: pixels per feature position.
        position: the output position whose footprint is shown (drawn as a black square).
    """
    img = display_rgb(photo)
    h, w = img.shape[:2]
    n = len(footprints)
    fig, axes = panel_grid(n, 3, (2.6, 2.9), extra_height=0.3, layout="constrained")
    for k, (ax, (name, fp)) in enumerate(zip(axes, footprints.items())):
        ax.imshow(img)
        size = fp.shape[0]
        i, j = position if position is not None else (size // 2, size // 2)
        colour = _COLOURS[k % len(_COLOURS)]
        if fp.all():
            ax.add_patch(Rectangle((0, 0), w - 1, h - 1, fill=True, alpha=0.3, color=colour))
        else:
            for a, b in zip(*np.nonzero(fp)):
                # opaque, with a white rim: a tap is 16 of 513 pixels wide and must show on any photo
                ax.add_patch(Rectangle(_cell_corner(a, b, output_stride), output_stride, output_stride,
                                       facecolor=colour, edgecolor="white", lw=1.0))
        ax.add_patch(Rectangle(_cell_corner(i, j, output_stride), output_stride, output_stride, fill=False, lw=1.5,
                               color="k"))
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
        ax.set_title(f"{name}\n{int(fp.sum())} of {fp.size} positions", fontsize=9)
        ax.axis("off")
    where = "the centre" if position is None else f"position {tuple(position)}"
    fig.suptitle(f"What each ASPP branch reads for one output position, {where}\n(output stride {output_stride})",
                 fontsize=10)
    return fig


def aspp_footprint_widget(photo: torch.Tensor | None = None, image_size: int = 513) -> Any:
    """Interactive version of :func:`plot_branch_footprints`: output stride, row and column sliders.

    The rates follow the output stride ((6, 12, 18) at 16, (12, 24, 36) at 8). Building the widget
    needs no front end; it only draws when displayed.

    Args:
        photo: a square RGB image (3, S, S), float in [0, 1]; ``None``: the sample photo at ``image_size``.
        image_size: the sample photo's side in pixels (at least 33, so that the map at output stride 16
            has more than one position).

    Raises:
        ValueError: ``photo`` is not a square (3, S, S) image, or ``image_size`` is below 33.
    """
    import ipywidgets as widgets

    from .images import sample_photo

    if photo is None and (isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 33):
        raise ValueError(f"image_size must be a whole number of pixels, at least 33, got {image_size!r}")
    if photo is not None and (not isinstance(photo, torch.Tensor) or photo.ndim != 3 or photo.shape[0] != 3
                              or photo.shape[1] != photo.shape[2]):
        raise ValueError(f"photo must be a square RGB image (3, S, S): the footprints are drawn on a square map; "
                         f"got {tuple(getattr(photo, 'shape', ()))}")
    photo = sample_photo(image_size) if photo is None else photo
    stride = widgets.Dropdown(options=[16, 8], value=16, description="output stride",
                              style={"description_width": "initial"})
    side = feature_map_side(photo.shape[-1], 16)  # the map at the first stride: the sliders start at its centre
    row = widgets.IntSlider(value=side // 2, min=0, max=side - 1, description="row")
    col = widgets.IntSlider(value=side // 2, min=0, max=side - 1, description="column")
    out = widgets.Output()
    moving = [False]  # True while a change of stride moves the sliders: one redraw, not three

    def draw(*_: Any) -> None:
        if moving[0]:
            return
        os_ = int(stride.value)
        size = feature_map_side(photo.shape[-1], os_)
        row.max = col.max = size - 1
        pos = (min(row.value, size - 1), min(col.value, size - 1))
        fps = branch_footprints(atrous_rates_for(os_), size, pos)
        show_figure(out, plot_branch_footprints(photo, fps, os_, pos))

    def keep_the_place(change: dict[str, Any]) -> None:
        # the same place of the photo at the new stride (a learner's trial: row 16 at 16 is the centre, at 8 a
        # quarter of the way in), as the text says each branch then covers the same part of the photo
        old, new = int(change["old"]), int(change["new"])
        size = feature_map_side(photo.shape[-1], new)
        moving[0] = True
        try:
            row.max = col.max = size - 1
            row.value, col.value = (min(size - 1, round(v.value * old / new)) for v in (row, col))
        finally:
            moving[0] = False
        draw()

    stride.observe(keep_the_place, names="value")
    for w in (row, col):
        w.observe(draw, names="value")
    draw()
    return widgets.VBox([widgets.HBox([stride, row, col]), out])
