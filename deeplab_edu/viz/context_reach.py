"""The figure of chapter 10's designed experiments (sections 7 and 8, :mod:`deeplab_edu.context_reach`).

A row per validation scene: the scene (or, for each network given, the scene with the input pixels
its output at the vehicle's centre can see, :func:`~deeplab_edu.context_reach.probe_footprint`,
framed), the truth, and each network's prediction.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import nn

from ..context_reach import BOAT, CAR, SHORE, ContextProbe, GridProbe, ShoreScenes, probe_footprint
from .data import class_legend
from .images import colorize, display_rgb

__all__ = ["first_vehicles", "vehicle_centre", "plot_probe_scenes"]


def first_vehicles(scenes: ShoreScenes) -> list[int]:
    """The indices of the first scene with a boat and the first with a car.

    Raises:
        ValueError: ``scenes`` holds no boat or no car.
    """
    found = [(scenes.labels == k).flatten(1).any(1).nonzero().flatten() for k in (BOAT, CAR)]
    if any(len(f) == 0 for f in found):
        raise ValueError(f"first_vehicles: the {len(scenes)} scenes need a boat and a car")
    return [int(f[0]) for f in found]


def vehicle_centre(label: torch.Tensor) -> tuple[int, int]:
    """The (row, column) of the centre of the vehicle in one ``(H, W)`` label map of
    :func:`~deeplab_edu.context_reach.shore_scenes`: the mean of its pixels' rows and columns, rounded
    down (row 3 of a vehicle 8 rows tall).

    Raises:
        ValueError: ``label`` is not one (H, W) label map, or holds no vehicle.
    """
    if label.dim() != 2:
        raise ValueError(f"vehicle_centre takes one (H, W) label map, got shape {tuple(label.shape)}: index a "
                         "batch first (labels[i])")
    rows, cols = ((label == BOAT) | (label == CAR)).nonzero().T
    if len(rows) == 0:
        raise ValueError("vehicle_centre: the label map holds no boat or car")
    return int(rows.float().mean()), int(cols.float().mean())


def plot_probe_scenes(scenes: ShoreScenes, indices: Sequence[int], models: Mapping[str, nn.Module], *,
                      footprints: Mapping[str, ContextProbe | GridProbe] | None = None, title: str = "") -> Figure:
    """A row per scene ``indices`` of ``scenes``: the scene, or with ``footprints`` (``{column title:
    ContextProbe or GridProbe}``) for each of them the scene with the pixels its output at the vehicle's
    centre sees (framed, the rest dimmed, the centre marked); the truth; each of ``models``' predictions
    (``{column title: model}``, each returning ``{"out": (N, 5, H, W) logits}`` as the chapter's probes do, and
    already in eval mode: the function does not switch it). A legend of
    :data:`~deeplab_edu.context_reach.SHORE`'s classes below.

    Returns:
        the figure, ``len(indices)`` rows of ``1 + max(1, len(footprints)) + len(models)`` panels, 2 inches
        each.

    Raises:
        ValueError: ``indices`` is empty, or as :func:`vehicle_centre`, for a scene without a vehicle.
    """
    if len(indices) == 0:
        raise ValueError("indices is empty: give at least one scene's index")
    footprints = footprints or {}
    columns = 1 + max(1, len(footprints)) + len(models)
    fig, axes = plt.subplots(len(indices), columns, figsize=(2 * columns, 2.2 * len(indices) + 0.5), squeeze=False)
    for r, (row, i) in enumerate(zip(axes, indices)):
        image, label = scenes.images[i], scenes.labels[i]
        picture = display_rgb(image)
        panels: list[tuple[str, np.ndarray, np.ndarray | None]] = []  # (title, image, footprint or None)
        if not footprints:
            panels.append(("scene", picture, None))
        centre = vehicle_centre(label) if footprints else None  # every footprint is seen from there
        for name, probe in footprints.items():
            footprint = probe_footprint(probe, label.shape[-1], centre)
            panels.append((name, np.where(footprint[..., None], picture, 0.25 * picture), footprint))
        panels.append(("truth", colorize(label, SHORE.palette), None))
        with torch.no_grad():
            for name, model in models.items():
                panels.append((name, colorize(model(image[None])["out"].argmax(1)[0], SHORE.palette), None))
        for ax, (name, shown, seen) in zip(row, panels):
            ax.imshow(shown, interpolation="nearest")
            if seen is not None and centre is not None:  # a footprint: its output's position marked, its extent framed
                ax.plot(centre[1], centre[0], "w+", markersize=8)
                rows, cols = np.flatnonzero(seen.any(1)), np.flatnonzero(seen.any(0))  # the footprint's frame
                ax.add_patch(Rectangle((cols[0] - 0.5, rows[0] - 0.5), cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1,
                                       fill=False, edgecolor="white", linewidth=1.5))
            if r == 0:  # the columns' titles, once
                ax.set_title(name, fontsize=9)
            ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    share = class_legend(fig, SHORE.class_names, SHORE.palette, ignore=False)
    fig.tight_layout(rect=(0, share, 1, 1))
    return fig
