"""Figures and a widget for chapter 07: the fully connected CRF of DeepLab v1/v2.

- :func:`plot_kernels`: the bilateral and smoothness kernels around one pixel (DeepLab v2 eq. 3).
- :func:`plot_refinement`: image, coarse prediction, CRF result, ground truth.
- :func:`plot_free_energy`: the mean-field objective per iteration.
- :func:`plot_iterations`: the belief of one class after each mean-field iteration (v2 Fig. 5).
- :func:`crf_figure` draws the refined mask for one set of parameters; :func:`crf_widget` wraps
  it in sliders for the weights, bandwidths and number of iterations.
"""

from __future__ import annotations

from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from ..crf import DEEPLAB_RELEASED, CRFParams, Method, kernel_maps, mean_field
from .data import class_legend
from .images import colorize, display_rgb
from .layout import panel_grid

__all__ = ["plot_kernels", "plot_refinement", "plot_free_energy", "plot_iterations", "crf_figure", "crf_widget"]


def plot_kernels(image: torch.Tensor, pixel: tuple[int, int], params: CRFParams = DEEPLAB_RELEASED) -> Figure:
    """Where one pixel sends its messages: the appearance (bilateral) and smoothness kernels
    (:func:`~deeplab_edu.crf.kernel_maps`) of ``pixel`` = ``(row, column)`` in ``image`` (3, H, W),
    float in [0, 1] or uint8, each over the whole image."""
    maps = kernel_maps(image, pixel, params)
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.8), layout="constrained")
    axes[0].imshow(display_rgb(image))
    axes[0].set_title("image and the chosen pixel")
    for ax, key, title in (
        (axes[1], "bilateral", f"appearance kernel\n$\\theta_\\alpha$={params.theta_alpha:g} px, $\\theta_\\beta$={params.theta_beta:g}"),
        (axes[2], "spatial", f"smoothness kernel\n$\\theta_\\gamma$={params.theta_gamma:g} px"),
    ):
        im = ax.imshow(maps[key].cpu().numpy(), cmap="magma", vmin=0, vmax=1)
        ax.set_title(title)
        fig.colorbar(im, ax=ax, fraction=0.046, label="kernel value (1 at the pixel)")
    for ax in axes:
        ax.plot(pixel[1], pixel[0], marker="+", color="cyan", markersize=14, markeredgewidth=2)
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


def plot_refinement(
    image: torch.Tensor,
    before: torch.Tensor,
    after: torch.Tensor,
    target: torch.Tensor | None,
    palette: Sequence[Sequence[int]],
    *,
    titles: Sequence[str] = ("image", "coarse prediction", "after the dense CRF", "ground truth"),
    class_names: Sequence[str] | None = None,
) -> Figure:
    """Image (3, H, W), label maps (H, W) before and after the CRF, and the ground truth (H, W; ``None``:
    left out), the label maps coloured with ``palette`` (an RGB colour per label) unblended, so their
    colours are the legend's; with ``class_names``, a legend of the class colours under the panels.
    Two panels a row (6.6 inches wide: the book's text column).

    Raises:
        ValueError: ``titles`` has fewer titles than there are panels (3, or 4 with ``target``).
    """
    # an audit: masks blended over the image (overlay, 0.6) matched their legend colours on 13 % of the wire pixels
    panels = [display_rgb(image), colorize(before, palette), colorize(after, palette)]
    if target is not None:
        panels.append(colorize(target, palette))
    if len(titles) < len(panels):
        raise ValueError(f"titles has {len(titles)} titles for {len(panels)} panels (image, before, after"
                         f"{', ground truth' if target is not None else ''}): give one per panel")
    # an audit: four panels in a row made a 13-inch figure, shown at half its size in the book's column
    fig, axes = panel_grid(len(panels), 2, (3.3, 3.5), extra_height=0.7 * (class_names is not None),
                           layout="constrained")
    for ax, panel, title in zip(axes, panels, titles):
        ax.imshow(panel)
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    if class_names is not None:  # an audit: the blended masks could not be matched to the classes without it
        share = class_legend(fig, class_names, palette)  # constrained layout's rect: (left, bottom, width, height)
        fig.get_layout_engine().set(rect=(0, share, 1, 1 - share))  # type: ignore[call-arg, union-attr]
    return fig


def plot_free_energy(energies: Sequence[float], *, label: str = "") -> Figure:
    """The mean-field free energy F(Q) (KL up to log Z) after each iteration."""
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    ax.plot(range(len(energies)), list(energies), marker="o", label=label or None)
    ax.set_xlabel("mean-field iteration")
    ax.set_ylabel("free energy F(Q)")
    ax.grid(alpha=0.3)
    if label:
        ax.legend()
    fig.tight_layout()
    return fig


def plot_iterations(history: Sequence[torch.Tensor], label: int, steps: Sequence[int] = (0, 1, 2, 10), *,
                    class_name: str | None = None, start_title: str = "before the CRF") -> Figure:
    """Belief in class ``label`` after the given iterations, like DeepLab v2 Fig. 5 (second row).

    Args:
        history: the beliefs ``Q`` after each iteration (``mean_field(..., return_history=True)``),
            each of shape (classes, H, W), probabilities in [0, 1]; ``history[0]`` is the unary term's
            (the scores the CRF starts from).
        label: the class whose belief is drawn.
        steps: the iterations to draw (those past the history are left out).
        class_name: the class's name, for the colour bar's label (else its index).
        start_title: the title over ``history[0]``: say where the scores came from (a network, or
            chapter 07's coarsened ground truth).

    Raises:
        ValueError: no step of ``steps`` lies within the history.
    """
    within = [s for s in steps if s < len(history)]
    if not within:
        raise ValueError(f"none of the steps {tuple(steps)} lies within the history of {len(history)} beliefs")
    steps = within
    fig, axes = plt.subplots(1, len(steps), figsize=(2.9 * len(steps) + 0.6, 3.0), layout="constrained")
    axes = np.atleast_1d(axes)
    im = None
    for ax, s in zip(axes, steps):
        im = ax.imshow(history[s][label].cpu().numpy(), cmap="viridis", vmin=0, vmax=1)
        ax.set_title(start_title if s == 0 else f"CRF iteration {s}")
        ax.axis("off")
    if im is not None:
        name = f"'{class_name}'" if class_name else f"class {label}"
        fig.colorbar(im, ax=list(axes), fraction=0.03, label=f"belief in {name} (probability)")
    return fig


def crf_figure(
    image: torch.Tensor,
    unary: torch.Tensor,
    palette: Sequence[Sequence[int]],
    params: CRFParams = DEEPLAB_RELEASED,
    target: torch.Tensor | None = None,
    method: Method = "approx",
    class_names: Sequence[str] | None = None,
) -> Figure:
    """Run the CRF with ``params`` on one image and show the coarse and refined masks (and the truth).

    Args:
        image: the RGB image (3, H, W), float in [0, 1] or uint8 in 0-255.
        unary: :math:`-\\log P` per label, (L, H, W), floating point
            (:func:`~deeplab_edu.crf.unary_from_probs`); the coarse prediction is its argmin.
        palette: an RGB colour (0-255) per label.
        params: the CRF's weights, bandwidths and iterations.
        target: the ground truth (H, W), class indices, 255 ignored in the pixel accuracy; ``None``: not shown.
        method: as :func:`~deeplab_edu.crf.mean_field`.
        class_names: the labels' names, for a legend of their colours (``None``: no legend).

    Raises:
        ValueError: ``unary`` is not 3-D (one image: a batch has no single figure), or as
            :func:`~deeplab_edu.crf.mean_field` (sizes that differ, values out of range).
    """
    if unary.ndim != 3:
        raise ValueError(f"unary must be one image's (L, H, W) scores, got shape {tuple(unary.shape)}")
    q = mean_field(unary, image, params, method=method)
    before = unary.argmin(0)
    after = q.argmax(0)
    titles = ["image", "coarse prediction", f"CRF: w1={params.w_bilateral:g}, w2={params.w_spatial:g}, "
              f"{params.iterations} it.", "ground truth"]
    if target is not None:
        valid = target != 255
        for i, lab in ((1, before), (2, after)):
            titles[i] += f"\npixel accuracy {(lab == target)[valid].float().mean().item():.3f}"
    return plot_refinement(image, before, after, target, palette, titles=titles, class_names=class_names)


def crf_widget(
    image: torch.Tensor,
    unary: torch.Tensor,
    palette: Sequence[Sequence[int]],
    params: CRFParams = DEEPLAB_RELEASED,
    target: torch.Tensor | None = None,
    method: Method = "approx",
    class_names: Sequence[str] | None = None,
) -> Any:
    """Sliders for w1, theta_alpha, theta_beta, w2, theta_gamma and the iterations, above :func:`crf_figure`.

    Builds without a front end (the widgets are simply not shown). Keep the image small (the
    CRF reruns on every change). The arguments are :func:`crf_figure`'s: ``image`` (3, H, W),
    ``unary`` (L, H, W), ``target`` (H, W), ``class_names`` for a legend.

    Raises:
        ValueError: as :func:`crf_figure`, for the first figure, or a value of ``params`` lies outside its
            slider (w1 and w2 0-40, theta_alpha 1-150 px, theta_beta 1-60, theta_gamma 0.5-10 px, 0-20
            iterations: :func:`~deeplab_edu.viz.widgets.slider`).
        TypeError: ``params.iterations`` is not a whole number.
    """
    import ipywidgets as widgets

    from .widgets import figure_widget, slider

    style = {"description_width": "initial"}
    real: dict[str, Any] = dict(integer=False, style=style)
    controls = {
        # ranges that hold chapter 07's search grids (w1 to 32, θα to 120 in the gpu profile), which the
        # sliders would have clamped without a word before (a best w1 of 16 shown as 10; the recorded cpu
        # build's best was w1=8, inside the old range)
        "w_bilateral": slider("w_bilateral", params.w_bilateral, 0, 40, step=0.5, description="w1 (appearance)", **real),
        "theta_alpha": slider("theta_alpha", params.theta_alpha, 1, 150, step=1, description="θα (px)", **real),
        "theta_beta": slider("theta_beta", params.theta_beta, 1, 60, step=1, description="θβ (0-255)", **real),
        "w_spatial": slider("w_spatial", params.w_spatial, 0, 40, step=0.5, description="w2 (smoothness)", **real),
        "theta_gamma": slider("theta_gamma", params.theta_gamma, 0.5, 10, step=0.5, description="θγ (px)", **real),
        "iterations": slider("iterations", params.iterations, 0, 20, style=style),
    }

    def draw(**values: Any) -> Figure:
        return crf_figure(image, unary, palette, params.replace(**values), target, method, class_names)

    box = figure_widget(draw, controls)
    # two rows of three sliders read better than one long row
    sliders = list(controls.values())
    box.children = (widgets.VBox([widgets.HBox(sliders[:3]), widgets.HBox(sliders[3:])]), *box.children[1:])
    return box
