"""Figures and widgets for chapter 02: receptive fields on a photograph and on feature-map grids.

* :func:`parse_layer_stack` / :func:`stack_model`: a small text format for a layer stack
  (``conv k=3 s=2 d=1``, ``pool k=2 s=2``, one layer per line) and the network it describes.
* :func:`plot_layer_stack`: the theoretical square (Araujo et al.) and the effective map (Luo et
  al.) of one output unit on the photograph, next to the feature-map grid at the effective stride.
* :func:`layer_stack_editor`: the same figure driven by a text box and sliders (ipywidgets).
* :func:`plot_output_stride_grids`: feature-map cells of several networks (e.g. ResNet-50 at
  output stride 32, 16, 8) over the image with one receptive field each.
* :func:`plot_gridding` and :func:`plot_erf_maps`.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence, cast

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import nn

from ..effective_receptive_field import effective_receptive_field, mass_extent
from ..gridding import coverage
from ..receptive_field import LayerSpec, ReceptiveField, receptive_field
from .images import display_rgb, require_rgb, sample_photo

__all__ = [
    "DEFAULT_STACK",
    "parse_layer_stack",
    "stack_model",
    "plot_layer_stack",
    "layer_stack_editor",
    "plot_output_stride_grids",
    "plot_gridding",
    "plot_erf_maps",
]

#: The layer stack the explorer starts with, one layer a line (``conv k=3 d=2``: kernel 3, dilation 2;
#: ``s=2``: stride 2).
DEFAULT_STACK = """conv k=3 s=2
conv k=3
pool k=2 s=2
conv k=3 d=2
conv k=3 d=4"""

SQUARE = "#ffd23f"
# the colour map of effective maps, here and in chapter 02's explorer (deeplab_edu.viz.explorers)
ERF_CMAP = "magma"
# ASCII digits and line breaks only, as the JavaScript explorer reads them (explorers.js, parseLayerStack)
_LINE = re.compile(r"^(conv|pool)((?: +[ksdp]=\d+)*) *$", re.ASCII)
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# JavaScript's whitespace (its \s and trim()): a space in a layer line, in Python and in JavaScript alike
_SPACE = re.compile("[\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]")


def parse_layer_stack(text: str) -> list[tuple[str, LayerSpec]]:
    """Parse one layer per line: ``conv k=3 s=1 d=2 p=2`` or ``pool k=2 s=2``.

    ``k`` kernel (default 3), ``s`` stride (1), ``d`` dilation (1), ``p`` padding (default
    ``d (k - 1) // 2``, "same"). Blank lines and ``#`` comments are skipped.

    Raises:
        ValueError: the stack is empty, or a line cannot be read (the message names it).
    """
    layers = []
    for n, raw in enumerate(_LINE_BREAK.split(text), 1):
        line = _SPACE.sub(" ", raw.split("#", 1)[0]).strip(" ").lower()
        if not line:
            continue
        m = _LINE.match(line)
        if not m:
            raise ValueError(f"line {n} ({raw.strip()!r}): write e.g. 'conv k=3 s=1 d=2' or 'pool k=2 s=2'")
        kind, opts = m.group(1), dict(o.split("=") for o in m.group(2).split())
        k, s, d = int(opts.get("k", 3)), int(opts.get("s", 1)), int(opts.get("d", 1))
        if kind == "pool" and d != 1:
            raise ValueError(f"line {n}: pooling layers take no dilation here")
        p = int(opts.get("p", d * (k - 1) // 2))
        if kind == "pool" and p > k // 2:
            raise ValueError(f"line {n}: pooling padding p={p} must be at most k // 2 = {k // 2}")
        try:
            layers.append((kind, LayerSpec(k, s, p, d, name=f"{kind}{n}")))
        except ValueError as err:
            raise ValueError(f"line {n} ({raw.strip()!r}): {err}") from None
    if not layers:
        raise ValueError("the layer stack is empty: write at least one line such as 'conv k=3'")
    return layers


def stack_model(layers: Sequence[tuple[str, LayerSpec]], channels: int = 4, in_channels: int = 3, seed: int = 0) -> nn.Sequential:
    """The randomly initialised network a parsed stack describes (conv + ReLU, max pooling; no final ReLU).

    Its weights are drawn with ``seed`` from a stream of their own: the caller's random state is left as it was.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _stack_layers(layers, channels, in_channels)


def _stack_layers(layers: Sequence[tuple[str, LayerSpec]], channels: int, in_channels: int) -> nn.Sequential:
    """:func:`stack_model`'s layers, drawn from the current random stream."""
    mods: list[nn.Module] = []
    c = in_channels
    for kind, sp in layers:
        if kind == "conv":
            mods += [nn.Conv2d(c, channels, sp.kernel, sp.stride, sp.padding, sp.dilation), nn.ReLU()]
            c = channels
        else:
            mods.append(nn.MaxPool2d(sp.kernel, sp.stride, sp.padding))
    if isinstance(mods[-1], nn.ReLU):  # the output unit is a pre-activation: its gradient never dies
        mods.pop()
    return nn.Sequential(*mods)


def _show(image: torch.Tensor, ax: plt.Axes) -> None:
    ax.imshow(display_rgb(image))
    ax.set_xticks([]), ax.set_yticks([])


def _square(ax: plt.Axes, rf: ReceptiveField, i: int, j: int, **kw: Any) -> None:
    (r0, _), (c0, _) = rf.region(i), rf.region(j)
    ax.add_patch(Rectangle((c0 - 0.5, r0 - 0.5), rf.size, rf.size, fill=False, **{"edgecolor": SQUARE, "lw": 2, **kw}))


def _centres(rf: ReceptiveField, n: int) -> np.ndarray:
    return np.array([rf.center(i) for i in range(n)])


def plot_layer_stack(
    text_or_layers: str | Sequence[tuple[str, LayerSpec]] = DEFAULT_STACK,
    image: torch.Tensor | None = None,
    output_index: tuple[int, int] | None = None,
    *,
    effective: bool = True,
    samples: int = 2,
    axes: Sequence[plt.Axes] | None = None,
) -> Sequence[plt.Axes]:
    """Receptive field of one output unit of a layer stack, on a photo and on the feature grid.

    Left: the photograph with the theoretical square (yellow) and, with ``effective``, the
    effective receptive field of the randomly initialised stack (heat map, Luo et al.).
    Right: the output feature map's cells (dots at their centres, spaced by the effective
    stride) with the chosen unit and its square.

    Args:
        text_or_layers: the stack, as text (:func:`parse_layer_stack`) or parsed.
        image: the photograph, (3, H, W) float in [0, 1]; ``None``: the sample photo at 128 pixels.
        output_index: the unit's (row, column) in the output map; ``None``: its centre.
        effective: also draw the effective receptive field.
        samples: random inputs the effective field averages
            (:func:`~deeplab_edu.effective_receptive_field.effective_receptive_field`).
        axes: two axes to draw on (``None``: a new figure).

    Returns:
        the two axes drawn on.

    Raises:
        ValueError: ``output_index`` is outside the output feature map, the text is not a layer stack
            (:func:`parse_layer_stack`), or ``image`` is not (3, H, W).
        RuntimeError: the stack leaves no output on this image (PyTorch's "Output size is too small").
    """
    layers = parse_layer_stack(text_or_layers) if isinstance(text_or_layers, str) else list(text_or_layers)
    image = sample_photo(128) if image is None else require_rgb(image)
    h, w = image.shape[-2:]
    rf = receptive_field([sp for _, sp in layers])
    model = stack_model(layers)
    with torch.no_grad():
        oh, ow = model(image[None]).shape[-2:]
    i, j = ((oh - 1) // 2, (ow - 1) // 2) if output_index is None else output_index
    if not (0 <= i < oh and 0 <= j < ow):
        raise ValueError(f"output_index {(i, j)} is outside the {oh}x{ow} output")
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 4.8))
    _show(image, axes[0])
    title = f"receptive field (solid yellow) {rf.size}px, effective stride {rf.stride}"  # the mark named: an audit
    if effective:
        erf = effective_receptive_field(model, (h, w), samples=samples, output_index=(i, j))
    if effective and float(erf.sum()) == 0:
        title += "\neffective: no gradient reached the input (all units inactive)"
    elif effective:
        axes[0].imshow(erf.numpy(), cmap=ERF_CMAP, alpha=0.85 * (erf / erf.max()).sqrt().numpy())
        side = mass_extent(erf, 0.9)
        cy, cx = rf.center(i), rf.center(j)
        axes[0].add_patch(Rectangle((cx - side / 2, cy - side / 2), side, side, fill=False, edgecolor="cyan", lw=1.5, ls="--"))
        title += f"\neffective (dashed cyan): 90% of the gradient within {side}px"
    _square(axes[0], rf, i, j)
    axes[0].set_xlim(-0.5, w - 0.5), axes[0].set_ylim(h - 0.5, -0.5)
    axes[0].set_title(title, fontsize=9)
    _show(image * 0.35 + 0.65, axes[1])
    ys, xs = np.meshgrid(_centres(rf, oh), _centres(rf, ow), indexing="ij")
    axes[1].scatter(xs.ravel(), ys.ravel(), s=6, color="k")
    axes[1].scatter([rf.center(j)], [rf.center(i)], s=40, color="red", zorder=3)
    _square(axes[1], rf, i, j, edgecolor="red")
    axes[1].set_xlim(-0.5, w - 0.5), axes[1].set_ylim(h - 0.5, -0.5)
    axes[1].set_title(f"output feature map {oh}x{ow}: unit ({i}, {j}) and its field", fontsize=9)
    return axes


def layer_stack_editor(text: str = DEFAULT_STACK, image: torch.Tensor | None = None) -> Any:
    """Edit a layer stack as text and see its receptive field on the photograph (ipywidgets)."""
    import ipywidgets as W
    from IPython.display import display

    image = sample_photo(128) if image is None else image
    box = W.Textarea(text, description="layers", rows=7, layout=W.Layout(width="320px"), continuous_update=False)
    row = W.IntSlider(-1, min=-1, max=64, description="unit row (-1 centre)", style={"description_width": "initial"})
    col = W.IntSlider(-1, min=-1, max=64, description="unit col (-1 centre)", style={"description_width": "initial"})
    eff = W.Checkbox(True, description="effective map (Luo et al.)")
    help_ = W.HTML("<small>one layer per line: <code>conv k=3 s=2 d=1</code> or <code>pool k=2 s=2</code>"
                   " (padding defaults to 'same' for odd kernels)</small>")

    def draw(text: str, r: int, c: int, effective: bool) -> None:
        try:
            layers = parse_layer_stack(text)
            model = stack_model(layers)
            with torch.no_grad():
                oh, ow = model(image[None]).shape[-2:]
            # -1 means the centre on that axis alone: moving only the row slider keeps the column centred.
            idx = ((oh - 1) // 2 if r < 0 else min(r, oh - 1), (ow - 1) // 2 if c < 0 else min(c, ow - 1))
            axes = plot_layer_stack(layers, image, idx, effective=effective)
            fig = cast(Figure, axes[0].figure)  # plot_layer_stack made the axes with plt.subplots
            fig.tight_layout()
            display(fig)
            plt.close(fig)
        except (ValueError, RuntimeError) as err:
            print(f"cannot draw this stack: {err}")

    out = W.interactive_output(draw, {"text": box, "r": row, "c": col, "effective": eff})
    return W.VBox([W.HBox([box, W.VBox([row, col, eff, help_])]), out])


def plot_output_stride_grids(
    fields: Mapping[str, ReceptiveField], image: torch.Tensor, sizes: Mapping[str, tuple[int, int]], ax: Sequence[plt.Axes] | None = None
) -> np.ndarray:
    """One panel per network: its feature-map cell centres over ``image`` and the centre unit's field.

    ``sizes[name]`` is that network's output map size (rows, cols) for this image.

    Raises:
        ValueError: ``fields`` is empty.
    """
    if not fields:
        raise ValueError("fields is empty: give at least one network's {name: ReceptiveField}")
    if ax is None:
        _, ax = plt.subplots(1, len(fields), figsize=(4 * len(fields), 4.2))
    axes: np.ndarray = np.atleast_1d(ax)  # type: ignore[arg-type]  # an object array: numpy's ArrayLike has no Axes
    h, w = image.shape[-2:]
    for a, (name, rf) in zip(axes, fields.items()):
        oh, ow = sizes[name]
        _show(image * 0.5 + 0.5, a)
        ys, xs = np.meshgrid(_centres(rf, oh), _centres(rf, ow), indexing="ij")
        a.scatter(xs.ravel(), ys.ravel(), s=max(1.0, 150 / max(oh, ow)), color="k")
        i, j = (oh - 1) // 2, (ow - 1) // 2
        a.scatter([rf.center(j)], [rf.center(i)], s=30, color="red", zorder=3)
        _square(a, rf, i, j, edgecolor="red")
        a.set_xlim(-0.5, w - 0.5), a.set_ylim(h - 0.5, -0.5)
        a.set_title(f"{name}: {oh}x{ow} map\nreceptive field {rf.size}px, stride {rf.stride}", fontsize=9)
    return axes


def plot_gridding(patterns: Mapping[str, torch.Tensor], ax: Sequence[plt.Axes] | None = None) -> np.ndarray:
    """Sampling patterns (:func:`~deeplab_edu.gridding.sampling_pattern`) side by side: the colour is the
    number of paths from each input pixel to the output (a colour bar per panel); zeros, the holes, are white.

    Raises:
        ValueError: ``patterns`` is empty.
    """
    if not patterns:
        raise ValueError("patterns is empty: give at least one {rates: sampling_pattern(...)}")
    if ax is None:
        _, ax = plt.subplots(1, len(patterns), figsize=(3.6 * len(patterns), 3.6))
    axes: np.ndarray = np.atleast_1d(ax)  # type: ignore[arg-type]  # an object array: numpy's ArrayLike has no Axes
    for a, (name, p) in zip(axes, patterns.items()):
        image = a.imshow(np.ma.masked_equal(p.numpy(), 0), cmap="viridis")
        a.figure.colorbar(image, ax=a, fraction=0.046, pad=0.04, label="paths to the output")
        a.set_facecolor("white")
        a.set_xticks([]), a.set_yticks([])
        a.set_title(f"rates {name}: {p.shape[0]}x{p.shape[1]}\n{coverage(p):.0%} of the pixels read", fontsize=9)
    return axes


def plot_erf_maps(
    maps: Mapping[str, torch.Tensor], rf: ReceptiveField, output_index: int | tuple[int, int] | None = None,
    ax: Sequence[plt.Axes] | None = None
) -> np.ndarray:
    """Effective receptive field maps (each (H, W)) with the theoretical square of the output unit.

    ``output_index`` is the unit's ``(row, column)`` in the output map, or one index for both; by default
    the input's centre, ``((H - 1) // 2, (W - 1) // 2)``, right for a stride-1, same-padded network. The
    square may extend past the image (then only its visible part is drawn).

    Raises:
        ValueError: ``maps`` is empty.
    """
    if not maps:
        raise ValueError("maps is empty: give at least one {name: effective receptive field map}")
    if ax is None:
        _, ax = plt.subplots(1, len(maps), figsize=(3.8 * len(maps), 3.8))
    axes: np.ndarray = np.atleast_1d(ax)  # type: ignore[arg-type]  # an object array: numpy's ArrayLike has no Axes
    for a, (name, m) in zip(axes, maps.items()):
        h, w = m.shape
        a.imshow(m.numpy(), cmap=ERF_CMAP)
        if output_index is None:  # an audit: one index for both put the square of a wide map in the wrong column
            row, col = (h - 1) // 2, (w - 1) // 2
        elif isinstance(output_index, tuple):
            row, col = output_index
        else:  # one index (NumPy's too) for both
            row = col = int(output_index)
        (r0, _), (c0, _) = rf.region(row), rf.region(col)
        a.add_patch(Rectangle((c0 - 0.5, r0 - 0.5), rf.size, rf.size, fill=False, edgecolor=SQUARE, lw=1.5))
        a.set_xlim(-0.5, w - 0.5), a.set_ylim(h - 0.5, -0.5)
        a.set_xticks([]), a.set_yticks([])
        a.set_title(f"{name}\n90% of |gradient| within {mass_extent(m, 0.9)}px of {rf.size}px", fontsize=9)
    return axes

