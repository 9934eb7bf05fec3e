"""Figures and widgets for chapter 01: which inputs eq. (1) of DeepLabv3 reads, and what it costs.

* :func:`plot_eq1` (1-D) and :func:`plot_eq1_2d`: the taps ``x[s*i - p + r*k]`` read for one
  output, with the zero padding drawn.
* :func:`atrous_widget`: sliders for kernel size, rate, stride, padding and input size, and a
  play button that walks the output index, redrawing :func:`plot_eq1` and :func:`plot_eq1_2d`.
* :func:`plot_dilated_kernel`: a filter and its "upsampled" version with ``rate - 1`` holes.
* :func:`plot_cost_vs_rate`: the table of :func:`deeplab_edu.atrous.cost_vs_rate` as a figure.
* :func:`plot_edge_and_line`: what a derivative filter at rate ``r`` makes of a step edge (a band
  ``2r`` wide) and of a thin line (two copies, ``r`` either side), from
  :func:`deeplab_edu.atrous.edge_and_line_response`.
"""

from __future__ import annotations

from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Rectangle

from ..atrous import EdgeResponse, conv_output_size, dilate_kernel, effective_kernel_size, input_positions
from .layout import text_colour_on
from .widgets import slider

__all__ = ["plot_eq1", "plot_eq1_2d", "atrous_widget", "plot_dilated_kernel", "plot_cost_vs_rate",
           "plot_edge_and_line"]

TAP = "#e8743b"
OUT = "#2a7ab0"
PAD = "#d9d9d9"


def plot_eq1(
    input_size: int = 12,
    kernel_size: int = 3,
    rate: int = 2,
    stride: int = 1,
    padding: int = 0,
    output_index: int = 0,
    ax: plt.Axes | None = None,
) -> plt.Axes:
    """Draw eq. (1) in 1-D: the input row (padding shaded), the output row, and the taps read.

    Raises:
        ValueError: ``output_index`` is outside the output.
    """
    n_out = conv_output_size(input_size, kernel_size, stride, padding, rate)
    if not 0 <= output_index < n_out:
        raise ValueError(f"output_index must be in [0, {n_out - 1}] (the output has {n_out} values), got {output_index}")
    taps = input_positions(output_index, kernel_size, rate, stride, padding)
    if ax is None:
        _, ax = plt.subplots(figsize=(max(6.0, 0.45 * (input_size + 2 * padding)), 2.6))
    for j in range(-padding, input_size + padding):
        is_pad = j < 0 or j >= input_size
        face = TAP if j in taps else (PAD if is_pad else "white")
        ax.add_patch(Rectangle((j, 1.5), 1, 1, facecolor=face, edgecolor="black", hatch="//" if is_pad else None))
        ax.text(j + 0.5, 2.0, "0" if is_pad else f"x{j}", ha="center", va="center", fontsize=8)
    offset = (input_size - n_out) / 2  # centre the output row under the input row
    for i in range(n_out):
        face = OUT if i == output_index else "white"
        ax.add_patch(Rectangle((offset + i, 0), 1, 1, facecolor=face, edgecolor="black"))
        ax.text(offset + i + 0.5, 0.5, f"y{i}", ha="center", va="center", fontsize=8,
                color="white" if i == output_index else "black")
    for k, j in enumerate(taps):
        ax.annotate("", xy=(offset + output_index + 0.5, 1.0), xytext=(j + 0.5, 1.5),
                    arrowprops=dict(arrowstyle="->", color=TAP, lw=1.5))
        ax.text(j + 0.5, 2.65, f"w{k}", ha="center", va="bottom", fontsize=8, color=TAP)
    terms = " + ".join(f"{'0' if (j < 0 or j >= input_size) else f'x[{j}]'}·w[{k}]" for k, j in enumerate(taps))
    ax.set_title(f"y[{output_index}] = {terms}   (k={kernel_size}, r={rate}, s={stride}, p={padding})", fontsize=9)
    ax.set_xlim(-padding - 0.5, input_size + padding + 0.5)
    ax.set_ylim(-0.3, 3.1)
    ax.set_axis_off()
    return ax


def plot_eq1_2d(
    input_size: int = 9,
    kernel_size: int = 3,
    rate: int = 2,
    stride: int = 1,
    padding: int = 0,
    output_index: tuple[int, int] = (0, 0),
    ax: plt.Axes | None = None,
) -> plt.Axes:
    """The 2-D picture: an ``input_size`` square (padding shaded) with the taps of output ``(i, j)``.

    Raises:
        ValueError: ``output_index`` is outside the output.
    """
    n_out = conv_output_size(input_size, kernel_size, stride, padding, rate)
    i, j = output_index
    if not (0 <= i < n_out and 0 <= j < n_out):
        raise ValueError(f"output_index must lie in the {n_out}x{n_out} output, got {output_index}")
    rows = input_positions(i, kernel_size, rate, stride, padding)
    cols = input_positions(j, kernel_size, rate, stride, padding)
    if ax is None:
        _, ax = plt.subplots(figsize=(3.6, 3.6))
    lo, hi = -padding, input_size + padding
    for a in range(lo, hi):
        for b in range(lo, hi):
            is_pad = not (0 <= a < input_size and 0 <= b < input_size)
            face = TAP if (a in rows and b in cols) else (PAD if is_pad else "white")
            ax.add_patch(Rectangle((b, -a - 1), 1, 1, facecolor=face, edgecolor="0.4", lw=0.6))
    span = rows[-1] - rows[0] + 1
    ax.add_patch(Rectangle((cols[0], -rows[0] - span), span, span, fill=False, edgecolor=TAP, lw=1.5, ls="--"))
    ax.set_xlim(lo - 0.2, hi + 0.2)
    ax.set_ylim(-hi - 0.2, -lo + 0.2)
    ax.set_aspect("equal")
    ax.set_axis_off()
    ax.set_title(f"taps of y[{i},{j}] on a {input_size}x{input_size} input\n(output {n_out}x{n_out})", fontsize=9)
    return ax


def atrous_widget(
    input_size: int = 12, kernel_size: int = 3, rate: int = 2, stride: int = 1, padding: int = 0, output_index: int = 0
) -> Any:
    """Sliders for eq. (1) and a play button that walks the output index (ipywidgets).

    Building it needs no front end; in JupyterLab it redraws :func:`plot_eq1` and
    :func:`plot_eq1_2d` whenever a slider moves. The start values must lie on the sliders: input size
    3-24, kernel 1-7, rate 1-6, stride 1-3, padding 0-8 (:func:`~deeplab_edu.viz.widgets.slider`).

    Raises:
        TypeError: a start value is not a whole number.
        ValueError: a start value lies outside its slider, or ``output_index`` outside the output.
    """
    import ipywidgets as W
    from IPython.display import display

    style = {"description_width": "initial"}
    sliders = {
        "input_size": slider("input_size", input_size, 3, 24, description="input size n", style=style),
        "kernel_size": slider("kernel_size", kernel_size, 1, 7, description="kernel size K", style=style),
        "rate": slider("rate", rate, 1, 6, description="rate r", style=style),
        "stride": slider("stride", stride, 1, 3, description="stride s", style=style),
        "padding": slider("padding", padding, 0, 8, description="padding p", style=style),
    }
    index = W.IntSlider(0, min=0, max=0, description="output i", style=style)
    play = W.Play(value=0, min=0, max=0, interval=700, description="animate")
    W.jslink((play, "value"), (index, "value"))
    message = W.HTML()

    def output_size() -> int | None:
        v = {k: s.value for k, s in sliders.items()}
        try:
            return conv_output_size(v["input_size"], v["kernel_size"], v["stride"], v["padding"], v["rate"])
        except ValueError:
            return None

    def update_range(_: Any = None) -> None:
        n = output_size()
        top = max(0, (n or 1) - 1)
        index.max = play.max = top
        index.value = min(index.value, top)
        message.value = (
            f"output size <b>{n}</b> = floor((n + 2p - K - (K-1)(r-1)) / s) + 1" if n
            else "<b>no output</b>: the padded input is shorter than the effective kernel"
        )

    for s in sliders.values():
        s.observe(update_range, names="value")
    update_range()
    if not 0 <= output_index <= index.max:
        raise ValueError(f"output_index={output_index!r} is outside the output of these settings, 0 to {index.max}")
    index.value = output_index

    def draw(output_index: int, **v: int) -> None:
        if output_size() is None:
            return
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.2), gridspec_kw={"width_ratios": [2.3, 1]})
        plot_eq1(output_index=output_index, ax=a1, **v)
        n2 = max(3, min(v["input_size"], 11))
        try:
            n_out2 = conv_output_size(n2, v["kernel_size"], v["stride"], v["padding"], v["rate"])
            shown = min(output_index, n_out2 - 1)
            plot_eq1_2d(n2, v["kernel_size"], v["rate"], v["stride"], v["padding"], (shown, shown), ax=a2)
            # say where the square differs from the sliders (a learner's trial: "y[2,2] on a 11x11 input" beside
            # sliders at 12 and y[3], with no word of why; the static book's explorer says "n shown up to 11")
            notes = ([f"(n shown up to 11; the 1-D input is {v['input_size']})"] if n2 != v["input_size"] else []) + (
                [f"(y[{shown},{shown}]: its last output; the 1-D one is y[{output_index}])"]
                if shown != output_index else [])
            if notes:
                a2.set_title("\n".join([a2.get_title(), *notes]), fontsize=9)
        except ValueError:  # the square drawn has no output: say so in its place
            a2.set_axis_off()
            a2.text(0.5, 0.5, f"No 2-D picture: on the {n2}x{n2} input it draws\n(n shown up to 11) the effective "
                    f"kernel {effective_kernel_size(v['kernel_size'], v['rate'])}\nis longer than the padded side "
                    f"{n2 + 2 * v['padding']}.", ha="center", va="center", fontsize=9, transform=a2.transAxes)
        display(fig)
        plt.close(fig)

    out = W.interactive_output(draw, {"output_index": index, **sliders})
    controls = W.VBox([W.HBox([sliders["input_size"], sliders["kernel_size"], sliders["rate"]]),
                       W.HBox([sliders["stride"], sliders["padding"], index, play]), message])
    return W.VBox([controls, out])


def plot_dilated_kernel(w: torch.Tensor | Sequence[Sequence[float]], rate: int, ax: Sequence[plt.Axes] | None = None) -> Sequence[plt.Axes]:
    """A 2-D filter ``w`` (kh, kw) next to its upsampled version (``rate - 1`` zeros between taps, ``rate`` >= 1).

    Raises:
        ValueError: ``w`` is not 2-D, or ``rate`` is below 1 (:func:`~deeplab_edu.atrous.dilate_kernel`).
    """
    w = torch.as_tensor(w, dtype=torch.float32)
    if w.dim() != 2:
        raise ValueError(f"w must be a 2-D filter (kh, kw), got shape {tuple(w.shape)} (a 1-D one: plot_eq1)")
    big = dilate_kernel(w, rate, spatial_dims=2)
    if ax is None:
        _, ax = plt.subplots(1, 2, figsize=(7, 3.2), gridspec_kw={"width_ratios": [w.shape[-1], big.shape[-1]]})
    vmax = float(w.abs().max()) or 1.0
    for a, m, title in ((ax[0], w, f"filter {tuple(w.shape)}"), (ax[1], big, f"upsampled at rate {rate}: {tuple(big.shape)}")):
        image = a.imshow(m.numpy(), cmap="RdBu_r", vmin=-vmax, vmax=vmax)
        for (r, c), val in np.ndenumerate(m.numpy()):  # black or white, whichever reads on the tile (the largest
            # weight sits on the darkest one: black on it was 1.6:1, an accessibility audit)
            a.text(c, r, f"{val:g}", ha="center", va="center", fontsize=7,
                   color=text_colour_on(image.cmap(image.norm(val))))
        a.set_xticks([]), a.set_yticks([])
        a.set_title(title, fontsize=9)
    return ax


def plot_cost_vs_rate(rows: Sequence[dict[str, float]], ax: Sequence[plt.Axes] | None = None) -> Sequence[plt.Axes]:
    """Parameters, multiply-adds and effective kernel size against the rate (rows from ``cost_vs_rate``: keys
    ``rate``, ``params``, ``MACs``, ``effective kernel``).

    Raises:
        ValueError: ``rows`` is empty.
    """
    if not rows:
        raise ValueError("rows is empty; pass the output of cost_vs_rate")
    rates = [r["rate"] for r in rows]
    if ax is None:
        _, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    ax[0].plot(rates, [r["params"] for r in rows], "o-", label="parameters")
    ax[0].plot(rates, [r["MACs"] / 1000 for r in rows], "s-", label="multiply-adds / 1000")
    ax[0].set_xlabel("atrous rate r")
    ax[0].set_ylabel("count (see the legend)")  # an audit: two quantities on an unlabelled axis
    # from 0, with room above the highest line (both are flat: a fixed limit would sit on it)
    ax[0].set_ylim(0, 1.15 * max(max(r["params"], r["MACs"] / 1000) for r in rows))
    ax[0].legend(fontsize=8)
    ax[0].set_title("measured cost of one 3x3 conv", fontsize=9)
    ax[1].plot(rates, [r["effective kernel"] for r in rows], "o-", color=TAP)
    ax[1].set_xlabel("atrous rate r")
    ax[1].set_ylabel("pixels")
    ax[1].set_title("field of view: effective kernel size", fontsize=9)
    return ax


def plot_edge_and_line(results: Sequence[EdgeResponse]) -> plt.Figure:
    """Top: the test pattern and the absolute response at each rate; bottom: the middle row.

    In each profile the band where the step answers is shaded and labelled with its width, and the
    two places where the line answers are marked: both are measured from ``results``, not drawn
    from the formula.

    Raises:
        ValueError: ``results`` is empty.
    """
    if not results:
        raise ValueError("plot_edge_and_line needs at least one EdgeResponse")
    n = len(results)
    fig, axes = plt.subplots(2, n + 1, figsize=(3.0 * (n + 1), 5.2), gridspec_kw={"height_ratios": [1.3, 1]})
    first = results[0]
    image = first.image.numpy()  # matplotlib takes arrays (a tensor warns under NumPy 2)
    axes[0, 0].imshow(image, cmap="gray", vmin=0, vmax=1)
    axes[0, 0].set_title(f"test pattern: step at {first.step_at},\nline at {first.line_at}", fontsize=10)
    axes[1, 0].plot(image[image.shape[0] // 2], color="k")
    axes[1, 0].set_title("middle row of the pattern", fontsize=10)
    axes[1, 0].set_ylabel("intensity", fontsize=10)
    axes[1, 1].set_ylabel("|response|", fontsize=10)
    for col, res in enumerate(results, start=1):
        axes[0, col].imshow(res.response.numpy(), cmap="magma")
        axes[0, col].set_title(f"|Sobel| at rate {res.rate}", fontsize=10)
        row = res.response[res.response.shape[0] // 2].numpy()
        ax = axes[1, col]
        ax.plot(row, color=OUT)
        # the labels stand above the curve's peak on a white box over the guides (an audit: the curves crossed them)
        label_box = {"facecolor": "white", "edgecolor": "none", "pad": 1}
        if res.step_columns:
            lo, hi = min(res.step_columns), max(res.step_columns)
            ax.axvspan(lo - 0.5, hi + 0.5, color=TAP, alpha=0.25)
            ax.text((lo + hi) / 2, row.max() * 1.05, f"step: {hi - lo + 1} px", ha="center", va="bottom", fontsize=9,
                    bbox=label_box)
        for j in res.line_columns:
            ax.axvline(j, color="#7a3ca8", lw=0.8, ls="--")
        if res.line_columns:
            ax.text(float(np.mean(res.line_columns)), row.max() * 1.05, f"line: {len(res.line_columns)}x",
                    ha="center", va="bottom", fontsize=9, color="#7a3ca8", bbox=label_box)
        ax.set_ylim(0, row.max() * 1.3 if row.max() > 0 else 1)
        ax.set_title(f"middle row, rate {res.rate}", fontsize=10)
    for ax in axes[0]:
        ax.set_axis_off()
    for ax in axes[1]:
        ax.set_xlabel("column", fontsize=10)
        ax.tick_params(labelsize=9)  # shown at about 0.8 of its width: 7 pt ticks read 7.8 px (an audit)
    fig.tight_layout()
    return fig

