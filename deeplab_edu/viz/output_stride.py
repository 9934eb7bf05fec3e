"""Measurements and figures for chapter 03: output stride, dilated backbones, multi-grid, going deeper.

DeepLabv3 (Chen et al., 2017) sec. 3.1 defines the *output stride* as the ratio of the input
resolution to the final feature-map resolution and makes it 16 or 8 by removing the last strides
and dilating every later convolution (atrous convolution for dense feature extraction); sec. 3.2
cascades extra copies of block 4 ("going deeper") with doubling rates, and *multi-grid* unit rates
inside each block. This module measures what that costs on a real backbone
(:func:`deeplab_edu.models.backbones.build_backbone`) with :mod:`deeplab_edu.complexity`, extracts
the feature maps of a photograph at each output stride, and draws the chapter's figures and widget.

The paper's own results are kept here as constants, quoted with their table numbers, so that the
notebook can put them *next to* our measurements (never in place of them).
"""

from __future__ import annotations

import copy
import functools
import itertools
import math
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence, TypeVar, cast

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..atrous import conv_output_size
from ..choices import is_whole
from ..complexity import Cost, check_rounds, count_macs, count_parameters, peak_memory_bytes, time_interleaved
from ..data.transforms import normalize
from ..models.backbones import at_output_stride
from .images import display_rgb, require_rgb
from .layout import LINE_MARKERS, label_bars, panel_grid

if TYPE_CHECKING:
    from ..models.backbones import Backbone

__all__ = [
    "PAPER_TABLE1_MIOU",
    "PAPER_TABLE2_MIOU",
    "PAPER_TABLE3_MIOU",
    "expected_feature_size",
    "measure_output_strides",
    "macs_by_input_size",
    "macs_by_stage",
    "cached_imagenet_weights",
    "photo_features",
    "dense_vs_strided_difference",
    "interior_range",
    "plot_feature_maps",
    "plot_cost_vs_output_stride",
    "plot_cost_vs_input_size",
    "plot_macs_by_stage",
    "feature_map_widget",
]

#: DeepLabv3 Table 1: PASCAL VOC 2012 val mIoU (%) of ResNet-50 with blocks 5-7 ("block7") at each
#: output stride (the paper's numbers, not ours).
PAPER_TABLE1_MIOU: dict[int, float] = {8: 75.18, 16: 73.88, 32: 70.06, 64: 59.99, 128: 42.34, 256: 20.29}
#: DeepLabv3 Table 2: mIoU (%) at output stride 16 with blocks up to block4 / 5 / 6 / 7.
PAPER_TABLE2_MIOU: dict[str, tuple[float, float, float, float]] = {
    "resnet50": (64.81, 72.14, 74.29, 73.88),
    "resnet101": (68.39, 73.21, 75.34, 75.76),
}
#: DeepLabv3 Table 3: ResNet-101 at output stride 16, mIoU (%) per multi-grid for block4..block7.
PAPER_TABLE3_MIOU: dict[tuple[int, int, int], tuple[float, float, float, float]] = {
    (1, 1, 1): (68.39, 73.21, 75.34, 75.76),
    (1, 2, 1): (70.23, 75.67, 76.09, 76.66),
    (1, 2, 3): (73.14, 75.78, 75.96, 76.11),
    (1, 2, 4): (73.45, 75.74, 75.85, 76.02),
    (2, 2, 2): (71.45, 74.30, 74.70, 74.62),
}


def expected_feature_size(input_size: int, output_stride: int) -> int:
    """Feature-map side of a ResNet at ``output_stride`` for an ``input_size`` input, by arithmetic.

    The stem's 7x7 conv (stride 2, padding 3) and 3x3 max pooling (stride 2, padding 1), then one
    3x3 conv with stride 2 and padding 1 per further halving: each maps ``n`` to ``ceil(n / 2)``,
    so 513 becomes 257, 129, 65 (OS 8), 33 (OS 16), 17 (OS 32).

    Raises:
        ValueError: ``output_stride`` is not a power of two from 4 to 256.
    """
    if output_stride not in (4, 8, 16, 32, 64, 128, 256):
        raise ValueError(f"output_stride must be a power of two from 4 to 256, got {output_stride!r}")
    n = conv_output_size(input_size, 7, stride=2, padding=3)
    n = conv_output_size(n, 3, stride=2, padding=1)
    for _ in range(int(math.log2(output_stride)) - 2):
        n = conv_output_size(n, 3, stride=2, padding=1)
    return n


def _normalise(image: torch.Tensor) -> torch.Tensor:
    return normalize(require_rgb(image))[None]


def _check_switchable(backbone: nn.Module) -> Backbone:
    """``backbone`` itself, typed as what it has been checked to be (a module with ``set_output_stride``)."""
    if not hasattr(backbone, "set_output_stride"):
        raise TypeError(
            f"backbone ({type(backbone).__name__}) has no set_output_stride(); build it with "
            "deeplab_edu.models.build_backbone"
        )
    return cast("Backbone", backbone)


class _KeepShape(nn.Module):
    """Wraps a backbone so that a measurement also records the shape of ``out``."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.shape: tuple[int, ...] | None = None

    def forward(self, x: torch.Tensor) -> Any:
        out = self.backbone(x)
        self.shape = tuple(out["out"].shape)
        return out


def measure_output_strides(
    backbone: nn.Module,
    input_size: int = 513,
    output_strides: Sequence[int] = (32, 16, 8),
    *,
    repeats: int = 3,
    warmup: int = 1,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Cost of one backbone at each output stride, switched in place (so the weights are the same).

    Every row: output stride, feature-map side (measured from the forward pass), parameters (M), multiply-adds (G), median forward time (s) and
    peak memory (MiB: what the forward pass allocates, without the weights) for a batch of one ``input_size`` x ``input_size`` image, in
    eval mode, measured with the parts of :func:`deeplab_edu.complexity.measure`. The forward passes are timed in rounds that
    run every output stride once (:func:`~deeplab_edu.complexity.time_interleaved`), ``warmup`` untimed rounds and then ``repeats`` timed ones: timed one output stride after
    the other, the first paid the process's warm-up alone and a busy spell of a shared machine slowed one output stride
    only (32 came out four times slower than 16). The backbone is left at its original output stride.

    Raises:
        ValueError: ``input_size`` is not an integer of at least 33, an output stride is one the
            backbone cannot take, ``repeats`` is below 1 or ``warmup`` below 0 (checked first, before the
            minutes of counting).
        TypeError: ``backbone`` has no ``set_output_stride`` (build it with
            :func:`~deeplab_edu.models.build_backbone`).
    """
    backbone = _check_switchable(backbone)
    if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 33:
        raise ValueError(f"input_size must be an int >= 33, got {input_size!r}")
    check_rounds(repeats, warmup)  # before the minutes of counting
    from ..progress import progress_bar

    device = torch.device(device)
    wrapped = _KeepShape(backbone).to(device)
    x = torch.randn(1, 3, input_size, input_size, device=device)
    counted: dict[int, tuple[int, int, int, int]] = {}  # side, parameters, multiply-adds, peak bytes
    was_training = wrapped.training
    wrapped.eval()
    try:
        with progress_bar(total=len(output_strides) + warmup + repeats, desc=f"measuring at {input_size}x{input_size}",
                          progress=progress) as bar:
            for os_ in output_strides:
                with at_output_stride(backbone, os_):
                    macs = count_macs(wrapped, x)  # a forward pass, which records the side
                    side = wrapped.shape[-1] if wrapped.shape else -1
                    counted[os_] = (side, count_parameters(wrapped), macs, peak_memory_bytes(wrapped, x))
                bar.update()

            def forward_at(os_: int) -> None:
                with at_output_stride(backbone, os_):
                    wrapped(x)

            seconds = time_interleaved({os_: functools.partial(forward_at, os_) for os_ in output_strides},
                                       repeats=repeats, warmup=warmup, device=device, on_round=bar.update)
    finally:
        wrapped.train(was_training)
    rows = []
    for os_, (side, params, macs, peak) in counted.items():
        cost = Cost(params=params, macs=macs, seconds=seconds[os_], peak_bytes=peak)
        rows.append({"output stride": os_, "feature map": side, **cost.as_row()})
    return rows


_M = TypeVar("_M", bound=nn.Module)


def _on_meta(backbone: _M) -> _M:
    return copy.deepcopy(backbone).to("meta").eval()


def macs_by_input_size(
    backbone: nn.Module, sizes: Iterable[int], output_strides: Sequence[int] = (32, 16, 8)
) -> list[dict[str, Any]]:
    """Multiply-adds (G) and feature-map side at each input size and output stride.

    Counted on a copy of the backbone on PyTorch's ``meta`` device: shapes flow through the real
    layers but no arithmetic is done, so the sweep takes seconds even for large inputs.

    Raises:
        ValueError: an output stride is one the backbone cannot take, or a size is not a whole number of
            pixels from 1.
        TypeError: ``backbone`` has no ``set_output_stride`` (build it with
            :func:`~deeplab_edu.models.build_backbone`).
    """
    sizes = list(sizes)
    bad = [s for s in sizes if not is_whole(s) or s < 1]
    if bad:
        raise ValueError(f"sizes are input sides in pixels, whole numbers from 1; got {bad[0]!r}")
    backbone = _check_switchable(backbone)
    meta = _on_meta(backbone)
    rows = []
    for size in sizes:
        for os_ in output_strides:
            meta.set_output_stride(os_)
            x = torch.empty(1, 3, size, size, device="meta")
            with torch.no_grad():
                side = meta(x)["out"].shape[-1]
            rows.append({"input": size, "output stride": os_, "feature map": side, "GMACs": count_macs(meta, x) / 1e9})
    return rows


def macs_by_stage(backbone: nn.Module, input_size: int = 513) -> dict[str, float]:
    """GMACs (10^9 multiply-adds) per image of each stage (stem, block1..block4, then the extra blocks 5-7)
    at the current output stride, for a ``input_size`` x ``input_size`` image (pixels).

    Counted on a ``meta`` copy with :class:`torch.utils.flop_counter.FlopCounterMode`'s per-module
    totals. ResNet's ``layer1..layer4`` are the paper's block1..block4 (DeepLabv3 sec. 3.2, Fig. 3).

    Raises:
        ValueError: ``backbone`` has no ``layer1`` to ``layer4`` (a ResNet's stages: a MobileNet or VGG-16 would
            be counted whole as its "stem").
    """
    missing = [f"layer{i}" for i in range(1, 5) if not hasattr(backbone, f"layer{i}")]
    if missing:
        raise ValueError(f"macs_by_stage counts a ResNet's stages, and {type(backbone).__name__} has no "
                         f"{', '.join(missing)}: use deeplab_edu.complexity.count_macs for its total")
    meta = _on_meta(backbone)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        meta(torch.empty(1, 3, input_size, input_size, device="meta"))
    per_module = {name: sum(ops.values()) / 2e9 for name, ops in counter.get_flop_counts().items()}
    root = type(meta).__name__
    stages: dict[str, float] = {}
    stem = 0.0
    for name, child in meta.named_children():
        if name.startswith("layer") and name[5:].isdigit():
            stages[f"block{name[5:]}"] = per_module.get(f"{root}.{name}", 0.0)
        elif isinstance(child, nn.ModuleList):
            for i, _ in enumerate(child):
                stages[f"block{5 + i}"] = per_module.get(f"{root}.{name}.{i}", 0.0)
        else:
            stem += per_module.get(f"{root}.{name}", 0.0)
    return {"stem": stem, **stages}


def cached_imagenet_weights(name: str = "resnet50") -> str | None:
    """Path of torchvision's ImageNet weights for ``name`` if they are already in the torch hub cache.

    Notebooks use it to pick pretrained weights *without* touching the network: when the file is
    absent they fall back to random weights and say so.
    """
    from pathlib import Path

    from ..models.pretrained import torchvision_weights

    path = Path(torch.hub.get_dir()) / "checkpoints" / torchvision_weights(name).url.rsplit("/", 1)[-1]
    return str(path) if path.is_file() else None


def photo_features(
    backbone: nn.Module, image: torch.Tensor, output_strides: Sequence[int] = (32, 16, 8)
) -> dict[int, torch.Tensor]:
    """The backbone's ``out`` features (1, C, h, w) of ``image`` (3, H, W in [0, 1]) at each output stride.

    The image is normalised with the ImageNet mean and standard deviation; the backbone runs in eval
    mode with the *same weights* at every output stride (switched in place, then restored).

    Raises:
        ValueError: an output stride is one the backbone cannot take, or ``image`` is not (3, H, W).
        TypeError: ``backbone`` has no ``set_output_stride`` (build it with
            :func:`~deeplab_edu.models.build_backbone`).
    """
    backbone = _check_switchable(backbone)
    x = _normalise(image)
    original, was_training = backbone.output_stride, backbone.training
    backbone.eval()
    feats = {}
    try:
        with torch.no_grad():
            for os_ in output_strides:
                backbone.set_output_stride(os_)
                feats[os_] = backbone(x)["out"]
    finally:
        backbone.set_output_stride(original)
        backbone.train(was_training)
    return feats


def dense_vs_strided_difference(features: Mapping[int, torch.Tensor]) -> dict[tuple[int, int], float]:
    """Relative difference between the strided features and every ``k``-th dense feature.

    For output strides ``a < b`` (same weights, no multi-grid) the atrous algorithm computes the
    strided map exactly at every ``b / a``-th position of the dense one: returns
    ``max |dense[::k, ::k] - strided| / max |strided|`` for every pair (rounding only).

    Raises:
        ValueError: a denser map does not subsample to the sparser one's shape.
    """
    out = {}
    strides = sorted(features)
    for i, a in enumerate(strides):
        for b in strides[i + 1 :]:
            k = b // a
            dense, strided = features[a][..., ::k, ::k], features[b]
            if dense.shape != strided.shape:
                raise ValueError(f"OS {a} features {tuple(features[a].shape)} do not subsample to OS {b}'s {tuple(strided.shape)}")
            out[(a, b)] = float((dense - strided).abs().max() / strided.abs().max().clamp_min(1e-12))
    return out


# --------------------------------------------------------------------------- figures
def _channel_view(feat: torch.Tensor, channel: int | None) -> np.ndarray:
    f = feat[0].float()
    if channel is not None:
        return f[channel].cpu().numpy()
    # how far each position's feature vector is from the map's mean feature
    return (f - f.mean(dim=(1, 2), keepdim=True)).norm(dim=0).cpu().numpy()


#: the outer share of each side of a feature map that :func:`interior_range` leaves out (at least one cell)
BORDER_SHARE = 1 / 16


def interior_range(views: Iterable[np.ndarray], percentiles: tuple[float, float] = (1.0, 99.0)) -> tuple[float, float]:
    """A colour range for 2-D maps set by their interiors, not their borders.

    Each ``(h, w)`` map loses a frame of ``max(1, round(BORDER_SHARE * side))`` cells on each side
    (a map too small to keep an interior is used whole); the range is the given ``percentiles`` of
    the values left, pooled over all maps, in the maps' own units. With random weights a ResNet's
    feature maps are brightest along the border (the zero padding seen through the layers); that
    frame would otherwise set the scale and flatten the interior.

    Raises:
        ValueError: no maps, or a map that is not 2-D.
    """
    kept = []
    for v in views:
        v = np.asarray(v)
        if v.ndim != 2:
            raise ValueError(f"maps must be 2-D (h, w), got shape {v.shape}")
        mh, mw = (max(1, round(BORDER_SHARE * side)) for side in v.shape)
        inner = v[mh:-mh, mw:-mw]
        kept.append((inner if inner.size else v).ravel())
    if not kept:
        raise ValueError("no maps to take a colour range from")
    lo, hi = np.percentile(np.concatenate(kept), percentiles)
    return float(lo), float(max(hi, lo + 1e-12))


def plot_feature_maps(
    image: torch.Tensor, features: Mapping[int, torch.Tensor], channel: int | None = None,
    *, interior_scale: bool = True,
) -> Figure:
    """Top row: the photo with the grid of feature cells of each output stride (one cell = one
    feature vector, ``OS`` x ``OS`` pixels). Bottom row: the feature map over the same extent.

    Args:
        image: the photograph, ``(3, H, W)`` with values in [0, 1].
        features: ``{output stride: (1, C, h, w) feature map}``, as :func:`photo_features` returns.
        channel: ``None`` shows, per position, the distance of the feature vector from the map's
            mean (the Euclidean norm over the channels, in the features' units: where the features
            change); an int shows that channel's values.
        interior_scale: the bottom row shares one colour scale; by default it is set by the maps'
            interiors (:func:`interior_range`: 1st to 99th percentile without the outer frame), and
            values outside it take the end colours (the colour bar's arrows). ``False`` spans the
            full range of all maps, border included.

    Raises:
        ValueError: ``features`` is empty or holds a map that is not ``(1, C, h, w)``, ``image`` is not
            ``(3, H, W)``, or ``channel`` is not one of the maps' channels ``0 .. C - 1``.
    """
    if not features:
        raise ValueError("features is empty; pass the output of photo_features")
    for os_, f in features.items():
        if f.dim() != 4 or f.shape[0] != 1:
            raise ValueError(f"features[{os_!r}] must be a (1, C, h, w) feature map, as photo_features returns; "
                             f"got shape {tuple(f.shape)}" + (" (add the batch axis: f[None])" if f.dim() == 3 else ""))
    require_rgb(image)  # before a figure is made (display_rgb checks it again when it draws)
    channels = min(int(f.shape[1]) for f in features.values())
    if channel is not None and not (is_whole(channel) and 0 <= channel < channels):
        raise ValueError(f"channel must be one of the feature maps' channels, 0 to {channels - 1} (or None: the "
                         f"distance from the mean over all of them), got {channel!r}")
    strides = sorted(features, reverse=True)
    n = len(strides)
    fig, axes = plt.subplots(2, n, figsize=(3.0 * n + 0.8, 6.2), squeeze=False, layout="constrained")
    h, w = image.shape[-2:]
    rgb = display_rgb(image)
    views = {os_: _channel_view(features[os_], channel) for os_ in strides}
    # one colour scale for the row, so that the output strides compare
    if interior_scale:
        vmin, vmax = interior_range(views.values())
    else:
        vmin, vmax = min(float(v.min()) for v in views.values()), max(float(v.max()) for v in views.values())
    im = None
    for col, os_ in enumerate(strides):
        view = views[os_]
        fh, fw = view.shape
        top, bottom = axes[0, col], axes[1, col]
        top.imshow(rgb, extent=(0, w, h, 0))
        for k in range(1, fh):
            top.axhline(k * h / fh, color="white", lw=0.5, alpha=0.8)
        for k in range(1, fw):
            top.axvline(k * w / fw, color="white", lw=0.5, alpha=0.8)
        top.set_title(f"OS {os_}: {fh} x {fw} feature cells", fontsize=9)
        im = bottom.imshow(view, cmap="viridis", interpolation="nearest", extent=(0, w, h, 0), vmin=vmin, vmax=vmax)
        bottom.set_title(f"OS {os_}: the features", fontsize=9)
        for ax in (top, bottom):
            ax.set_xlim(0, w)
            ax.set_ylim(h, 0)
            ax.set_xticks([])
            ax.set_yticks([])
    assert im is not None  # features is not empty
    fig.colorbar(im, ax=list(axes[1]), fraction=0.03, extend="both" if interior_scale else "neither",  # one scale for the row
                 label="distance from the map's mean feature" if channel is None else f"channel {channel}")
    return fig


def plot_cost_vs_output_stride(rows: Sequence[Mapping[str, Any]], paper_miou: Mapping[int, float] | None = None) -> Figure:
    """Measured GMACs, forward time and peak memory per output stride; optionally the paper's mIoU beside them.

    ``rows`` are :func:`measure_output_strides`' (keys ``output stride``, ``feature map``, ``GMACs``,
    ``forward (s)``, ``peak memory (MiB)``); ``paper_miou`` maps an output stride to a mIoU in per cent
    (:data:`PAPER_TABLE1_MIOU`: DeepLabv3 Table 1).

    Raises:
        ValueError: ``rows`` is empty.
    """
    if not rows:
        raise ValueError("rows is empty; pass the output of measure_output_strides")
    keys = [("GMACs", "multiply-adds (G)"), ("forward (s)", "forward time (s)"), ("peak memory (MiB)", "peak memory (MiB)")]
    panels = len(keys) + (1 if paper_miou else 0)
    fig, axes = panel_grid(panels, 2, (3.4, 3.0))
    labels = [f"OS {r['output stride']}\n({r['feature map']}x{r['feature map']})" for r in rows]
    for ax, (key, title) in zip(axes, keys):
        values = [r[key] for r in rows]
        label_bars(ax, ax.bar(labels, values, color="#4c72b0"), [f"{v:.3g}" for v in values])
        ax.set_title(f"{title}\n(measured)", fontsize=9)
        ax.tick_params(labelsize=8)
    if paper_miou:
        ax = axes[-1]
        strides = sorted(paper_miou, reverse=True)
        ax.plot([str(s) for s in strides], [paper_miou[s] for s in strides], "o-", color="#dd8452")
        ax.set_title("mIoU (%), DeepLabv3 Table 1\n(paper, ResNet-50 + block7)", fontsize=9)
        ax.set_xlabel("output stride", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_cost_vs_input_size(rows: Sequence[Mapping[str, Any]]) -> Figure:
    """GMACs against the input side, one line per output stride (log-log: slope 2 means quadratic).

    ``rows`` are :func:`macs_by_input_size`'s (keys ``input`` in pixels, ``output stride``, ``GMACs``).

    Raises:
        ValueError: ``rows`` is empty.
    """
    if not rows:
        raise ValueError("rows is empty; pass the output of macs_by_input_size")
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    for os_, marker in zip(sorted({r["output stride"] for r in rows}, reverse=True), itertools.cycle(LINE_MARKERS)):
        sel = sorted((r for r in rows if r["output stride"] == os_), key=lambda r: r["input"])
        ax.plot([r["input"] for r in sel], [r["GMACs"] for r in sel], marker=marker, linestyle="-", label=f"OS {os_}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    sizes = sorted({r["input"] for r in rows})
    ax.set_xticks(sizes)
    ax.set_xticklabels([str(s) for s in sizes])
    ax.minorticks_off()
    ax.set_xlabel("input side (pixels)")
    ax.set_ylabel("multiply-adds (G)")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    ax.set_title("cost grows with the number of pixels", fontsize=10)
    return fig


def plot_macs_by_stage(stages_by_config: Mapping[str, Mapping[str, float]], title: str | None = None) -> Figure:
    """Stacked bars: GMACs of each stage (stem, block1..block7), one bar per configuration; the stages in
    steps of viridis and hatched in turn (told apart without hue), the legend in the stacking's order.

    Raises:
        ValueError: ``stages_by_config`` is empty.
    """
    if not stages_by_config:
        raise ValueError("stages_by_config is empty")
    names: list[str] = []
    for stages in stages_by_config.values():
        names += [s for s in stages if s not in names]
    fig, ax = plt.subplots(figsize=(1.6 * len(stages_by_config) + 3, 3.8))
    bottoms = np.zeros(len(stages_by_config))
    # an audit: tab10's blue, orange and green stages were one colour to a red-green colour-blind reader
    colours = plt.get_cmap("viridis")(np.linspace(0.05, 0.95, len(names)))
    for k, stage in enumerate(names):
        vals = np.array([stages.get(stage, 0.0) for stages in stages_by_config.values()])
        ax.bar(list(stages_by_config), vals, bottom=bottoms, label=stage, color=colours[k],
               hatch=("", "//", "..", "xx")[k % 4], edgecolor="white", linewidth=0.5)
        bottoms += vals
    ax.set_ylabel("multiply-adds (G)")
    handles, labels = ax.get_legend_handles_labels()  # top of the stack first, as the bars read
    ax.legend(handles[::-1], labels[::-1], fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left")
    ax.tick_params(axis="x", labelsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def feature_map_widget(image: torch.Tensor, features: Mapping[int, torch.Tensor], channel: int = -1) -> Any:
    """Output-stride selector and channel slider (-1: norm over channels) above the feature map.

    Raises:
        ValueError: ``features`` is empty or not a mapping of output stride to features (what
            :func:`photo_features` returns), or ``channel`` is neither -1 nor a channel of the maps.
    """
    import ipywidgets as widgets

    from .widgets import figure_widget

    if not isinstance(features, Mapping):
        raise ValueError(f"features must map each output stride to its features ({{32: ..., 16: ...}}, what "
                         f"photo_features returns), got a {type(features).__name__}")
    if not features:
        raise ValueError("features is empty; pass the output of photo_features")
    channels = next(iter(features.values())).shape[1]
    if not -1 <= channel < channels:
        raise ValueError(f"channel must be -1 (norm) or in 0..{channels - 1}, got {channel}")
    strides = sorted(features, reverse=True)
    controls = {
        # a label in full (it was cut to "output str..."), and a slider wide enough to browse 2048 channels by
        # (its number can also be typed: the readout is editable)
        "output_stride": widgets.Dropdown(options=strides, value=strides[-1], description="output stride",
                                          style={"description_width": "initial"}),
        "channel": widgets.IntSlider(value=channel, min=-1, max=channels - 1, description="channel (-1: norm)",
                                     style={"description_width": "initial"},
                                     continuous_update=False, layout=widgets.Layout(width="95%")),
    }

    def draw(output_stride: int, channel: int) -> Figure:
        return plot_feature_maps(image, {output_stride: features[output_stride]}, None if channel < 0 else channel)

    return figure_widget(draw, controls)
