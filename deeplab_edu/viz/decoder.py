"""Why DeepLabv3+'s decoder sharpens boundaries (DeepLabv3+ sec. 3.1 and 4.4, Fig. 5 "trimap").

DeepLabv3 predicts at output stride 16 and upsamples its logits 16 times; DeepLabv3+'s decoder
predicts at stride 4 and upsamples 4 times. A coarse grid smears boundaries. This module measures
what a grid does on real label maps:

- :func:`stride_oracle` gives the *proportion prediction* of a stride-``s`` grid: the exact class
  proportions of every ``s x s`` cell (area averaging of the one-hot labels, what a perfectly
  trained per-cell classifier would output), upsampled bilinearly like DeepLab's logits, then the
  arg-max. It is not an upper bound for a network: a network's logits in a cell can be sharper
  than proportions (a trained DeepLabv3+ draws wires this prediction misses);
- :func:`~deeplab_edu.metrics.boundary_band` marks the trimap band of DeepLabv3+ Fig. 5 as a bool mask: the band of
  :func:`deeplab_edu.metrics.trimap_target`, which chapter 09's trained models are scored in too;
- :func:`band_accuracy` scores a prediction inside bands of growing width;
- :func:`stride_oracle_scores` scores the proportion prediction over many label maps (mIoU, IoU per
  class), the reference chapter 09 sets beside the trained models of each prediction grid.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from ..choices import is_whole
from ..metrics import boundary_band, cell_averages_upsampled, counted_labels
from .data import class_legend
from .images import colorize, display_rgb
from .widgets import positive_ints, show_figure

__all__ = ["stride_oracle", "stride_oracle_scores", "band_accuracy", "plot_stride_oracles",
           "stride_oracle_widget"]


def stride_oracle(mask: torch.Tensor, stride: int, num_classes: int, ignore_index: int = 255) -> torch.Tensor:
    """The proportion prediction of a stride-``stride`` grid (see the module doc): (H, W) int64 labels.

    Args:
        mask: (H, W) int64 labels; ``ignore_index`` pixels contribute to no class.
        stride: the prediction grid's stride (16 for DeepLabv3, 4 with the v3+ decoder). When a
            side is not a multiple of it, the last cell of that side is partial (it averages the
            pixels it holds, ``ceil_mode``); every cell is upsampled onto its own ``stride x stride``
            block (:func:`~deeplab_edu.metrics.cell_averages_upsampled`).
        num_classes: number of classes.

    Raises:
        ValueError: ``mask`` is not 2-D integer labels, holds a label outside ``[0, num_classes)`` other than
            ``ignore_index``, or ``stride`` is not a whole number from 1.
    """
    if mask.dim() != 2 or mask.is_floating_point():
        raise ValueError(f"mask must be (H, W) integer labels, got {tuple(mask.shape)} {mask.dtype}")
    if not is_whole(stride) or stride < 1:
        raise ValueError(f"stride must be a whole number of pixels from 1, got {stride!r}")
    stride = int(stride)
    counted_labels(mask, mask, num_classes, ignore_index)  # refuses a label outside the classes, naming it
    mask = mask.long()
    valid = mask != ignore_index
    onehot = F.one_hot(torch.where(valid, mask, 0), num_classes).permute(2, 0, 1).float() * valid
    # the grid has ceil(H / stride) cells, like the network's, each upsampled onto its own block
    return cell_averages_upsampled(onehot, stride).argmax(0)


def stride_oracle_scores(masks: Iterable[torch.Tensor], stride: int, num_classes: int,
                         ignore_index: int = 255) -> dict[str, Any]:
    """The :func:`stride_oracle` of every (H, W) label map in ``masks``, scored against it as one data
    set: :meth:`deeplab_edu.metrics.ConfusionMatrix.compute`'s dictionary (``miou``, ``iou`` per
    class, ``pixel_accuracy``, fractions in [0, 1]; NaN for a class in neither the masks nor the
    prediction, which ``miou`` leaves out), the way the engine scores a model.

    Raises:
        ValueError: as :func:`stride_oracle`, for the first map that is not (H, W) integer labels or holds a
            label outside the classes, or a ``stride`` that is not a whole number from 1.
    """
    from ..metrics import ConfusionMatrix

    cm = ConfusionMatrix(num_classes, ignore_index)
    for mask in masks:
        cm.update(stride_oracle(mask, stride, num_classes, ignore_index)[None], mask[None])
    return cm.compute()


def band_accuracy(
    pred: torch.Tensor, mask: torch.Tensor, widths: Sequence[int], ignore_index: int = 255
) -> list[float]:
    """Pixel accuracy of ``pred`` (H, W) against ``mask`` (H, W) inside the :func:`~deeplab_edu.metrics.boundary_band` of
    each width, as fractions in [0, 1] (NaN for an empty band)."""
    out = []
    for w in widths:
        band = boundary_band(mask, w, ignore_index)
        out.append(float((pred[band] == mask[band]).float().mean()) if band.any() else float("nan"))
    return out


def plot_stride_oracles(
    image: torch.Tensor,
    mask: torch.Tensor,
    strides: Sequence[int],
    num_classes: int,
    palette: Sequence[Sequence[int]],
    class_names: Sequence[str] | None = None,
) -> Figure:
    """The photo, its labels, and the proportion prediction of each stride's grid, side by side.

    ``image`` (3, H, W) in [0, 1]; ``mask`` (H, W) class indices (255: ignored); ``palette`` RGB
    0-255 per class. With ``class_names``, a legend names the colours (the classes in the mask).
    """
    n = 2 + len(strides)
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 3.2 if class_names is None else 3.45))
    axes[0].imshow(display_rgb(image))
    axes[0].set_title("image", fontsize=9)
    axes[1].imshow(colorize(mask, palette))
    axes[1].set_title("labels", fontsize=9)
    for ax, s in zip(axes[2:], strides):
        pred = stride_oracle(mask, s, num_classes)
        valid = mask != 255
        acc = float((pred[valid] == mask[valid]).float().mean())
        ax.imshow(colorize(pred, palette))
        ax.set_title(f"proportions, stride {s}\npixel accuracy {acc:.1%}", fontsize=9)
    for ax in axes:
        ax.axis("off")
    if class_names is None:
        fig.tight_layout()
        return fig
    present = sorted(int(k) for k in torch.unique(mask) if int(k) < len(class_names))
    legend = class_legend(fig, [class_names[k] for k in present], [palette[k] for k in present],
                          ignore=bool((mask == 255).any()))
    fig.tight_layout(rect=(0, legend, 1, 1))
    return fig


def stride_oracle_widget(dataset: object, strides: Sequence[int] = (32, 16, 8, 4, 2)) -> object:
    """Scene index and stride sliders over :func:`plot_stride_oracles` (stride vs stride 4 side by side).

    ``dataset`` yields ``(image, mask)`` and has ``num_classes`` and ``palette`` (e.g.
    :class:`deeplab_edu.data.ProceduralScenes`). Needs no front end to be built.

    Raises:
        ValueError: ``dataset`` is empty, or ``strides`` is empty or holds a stride that is not a
            positive whole number.
    """
    import ipywidgets as widgets

    if len(dataset) == 0:  # type: ignore[arg-type]
        raise ValueError("dataset is empty: give a data set of scenes, e.g. ProceduralScenes(length=8, size=129)")
    strides = positive_ints("strides", strides, "output strides", "(32, 16, 8, 4)")

    index = widgets.IntSlider(value=0, min=0, max=len(dataset) - 1, description="scene")  # type: ignore[arg-type]
    stride = widgets.SelectionSlider(options=list(strides), value=16 if 16 in strides else strides[0],
                                     description="output stride", style={"description_width": "initial"})
    out = widgets.Output()

    def draw(*_: object) -> None:
        image, mask = dataset[index.value]  # type: ignore[index]
        fig = plot_stride_oracles(image, mask, (stride.value, 4), dataset.num_classes, dataset.palette,  # type: ignore[attr-defined]
                                  getattr(dataset, "class_names", None))
        show_figure(out, fig)

    index.observe(draw, names="value")
    stride.observe(draw, names="value")
    draw()
    return widgets.VBox([widgets.HBox([index, stride]), out])
