"""Image pooling and multi-grid when the context is out of the convolutions' reach: designed experiments.

DeepLabv3 adds an image-level branch to ASPP (Chen et al. 2017, sec. 3.3, after ParseNet) so that
every position gets "global context": the average of the whole feature map (chapter 04). On the
course's scenes it changes little (chapter 10, findings c1-c6): the teaching network's receptive
field spans a whole scene, so its convolutions reach a vehicle's surroundings too. This module
changes the design so that they cannot, and keeps everything else equal:

* :func:`shore_scenes`: a vehicle drawn the same way whether it is a boat or a car; a band of water
  or road along the bottom of the scene is the only thing that tells which. ``far=True`` puts the
  vehicle in the top third, :data:`FAR_GAP` pixels or more above the band; ``far=False`` puts it on
  the band (as the course's scenes do: a boat on water, a car on a road).
* :class:`ContextProbe`: two 3x3 convolutions and the course's :class:`~deeplab_edu.models.ASPP`
  (rates 1 and 2) at full resolution, with or without image pooling: its convolutions see
  9 x 9 pixels, far less than the gap.
* :func:`train_probe`, :func:`reach_experiment`: train both arms on both kinds of scene over
  seeds and keep one confusion matrix per validation scene, for :mod:`deeplab_edu.findings`'
  statistics (chapter 10, section 7); :func:`probe_footprint` shows which input pixels reach an output
  and :func:`probe_reach` how far,
  :func:`probe_confusions` and :func:`probe_miou` score one trained probe (chapter 10's exercises 10.4
  and 10.5).

Multi-grid (DeepLabv3 sec. 3.2.1) changes the findings as little (e1, e2): it widens block 4's field
at the same cost, and the teaching network's field covers a scene without it. The same design
isolates it (chapter 10, section 8):

* ``shore_scenes(..., gap=MID_GAP)``: the vehicle lies :data:`MID_GAP` rows above the band, so its
  pixels are 15-28 pixels from the band;
* :class:`GridProbe`: two 3x3 convolutions and a block shaped like block 4 of the course's teaching
  ResNet, at full resolution, its rates 2·(1, 1, 1) = (2, 2, 2) (an output sees 29 x 29 pixels, the
  band out of reach) or multi-grid 2·(1, 2, 4) = (2, 4, 8) (61 x 61, the band within reach), the same
  parameters either way;
* :func:`grid_experiment`, :data:`GRID_FINDINGS`: both arms on the mid scenes and on the near control.

Nothing else tells a far boat from a far car: the vehicle's position is drawn independently of the
band, and in training the batch norm's batch statistics carry only the batch's mix of water and road
scenes, the same for every image of the batch (a prior the network may lean on, which evaluation, with
running statistics, does not have). The network without image pooling can therefore at best guess.
The class indices (:data:`BOAT` = 3, ...) are this module's, not those of the course's scenes
(:data:`deeplab_edu.data.classes.BOAT` = 7).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock

from .data.classes import PROCEDURAL, ClassInfo
from .effective_receptive_field import train_toy
from .findings import Finding, class_iou, miou, scene_confusions, seed_values
from .models.aspp import ASPP

__all__ = [
    "SHORE", "BACKGROUND", "WATER", "ROAD", "BOAT", "CAR", "VEHICLE_ROWS", "BAND_TOP", "FAR_GAP", "MID_GAP",
    "SCENE_KINDS", "REACH_ARMS", "GRID_ARMS", "shore_scenes", "ShoreScenes", "ContextProbe", "GridProbe",
    "probe_footprint", "probe_reach", "train_probe", "probe_confusions", "probe_miou", "ReachExperiment",
    "REACH_FINDINGS", "GRID_FINDINGS", "reach_experiment", "grid_experiment",
]

#: The classes of :func:`shore_scenes`, with the course scenes' colours for car and boat (for the label maps;
#: the scenes draw boats and cars alike, :data:`_DRAWN`), and a sand background: told apart under colour
#: blindness too (``tests/test_palettes.py``; the earlier blue-purple car was the water's blue to a deuteranope).
SHORE = ClassInfo(
    "shore",
    ("background", "water", "road", "boat", "car"),
    ((200, 195, 170), (50, 90, 205), (90, 90, 90), *(PROCEDURAL.palette[PROCEDURAL.class_names.index(name)] for name in ("boat", "car"))),
)
#: The class indices of :data:`SHORE`.
BACKGROUND, WATER, ROAD, BOAT, CAR = range(5)
#: The colour each class is drawn in (RGB in [0, 1]): a boat and a car look the same.
_DRAWN = torch.tensor([(0.55, 0.6, 0.45), (0.2, 0.35, 0.8), (0.35, 0.35, 0.35), (0.85, 0.2, 0.15), (0.85, 0.2, 0.15)])
#: A vehicle's height in rows at the default size of 48 (``size // 6``; its width is ``size // 3``).
VEHICLE_ROWS = 48 // 6
#: The band's first row at the default size of 48: the band is the bottom quarter (``size - size // 4``).
BAND_TOP = 48 - 48 // 4
#: The fewest pixels between a far vehicle and the band at the default size of 48: the band is the bottom
#: quarter and a far vehicle ends within the top third (:func:`shore_scenes`).
FAR_GAP = BAND_TOP - 48 // 3
#: The fewest and most rows between the vehicle and the band in the multi-grid experiment's *mid* scenes (size
#: 48, vehicles 8 rows tall): the vehicle's pixels lie 15 to 28 rows from the band, beyond the 14 pixels a
#: :class:`GridProbe` with no multi-grid (1, 1, 1) sees on each side (a hard limit: no margin needed) and 2 rows
#: inside the 30 of multi-grid (1, 2, 4) (within the field is not enough: the band must be seen through more
#: than its edge; chapter 10's exercise 10.4 measures it).
MID_GAP = (14, 20)
#: The kinds of scene the experiments train and score on: keyword arguments of :func:`shore_scenes`.
SCENE_KINDS: dict[str, dict[str, Any]] = {
    "far": {"far": True}, "near": {"far": False}, "mid": {"far": True, "gap": MID_GAP}}
#: The image-pooling experiment's arms: ``(kind of scene, image_pooling)`` (:data:`SCENE_KINDS`, :class:`ContextProbe`).
REACH_ARMS = {"far, with image pooling": ("far", True), "far, without": ("far", False),
              "near, with image pooling": ("near", True), "near, without": ("near", False)}
#: The multi-grid experiment's arms: ``(kind of scene, multi_grid)`` (:data:`SCENE_KINDS`, :class:`GridProbe`).
GRID_ARMS = {"mid, multi-grid (1, 2, 4)": ("mid", (1, 2, 4)), "mid, no multi-grid (1, 1, 1)": ("mid", (1, 1, 1)),
             "near, multi-grid (1, 2, 4)": ("near", (1, 2, 4)), "near, no multi-grid (1, 1, 1)": ("near", (1, 1, 1))}


def shore_scenes(n: int, size: int = 48, *, far: bool, gap: tuple[int, int] | None = None,
                 generator: torch.Generator | None = None, noise: float = 0.08) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` scenes: a band of water or road along the bottom quarter, and one vehicle.

    The vehicle (``size // 6`` by ``size // 3`` pixels) is a boat on water scenes and a car on road
    scenes, drawn in one colour either way. ``far=True`` places it within the top third, at least
    ``size - size // 4 - size // 3`` pixels above the band (:data:`FAR_GAP`, 20, at 48); ``far=False``
    on the band. With ``gap=(fewest, most)`` (``far=True`` only) a far vehicle lies that many rows above
    the band instead, drawn uniformly (:data:`MID_GAP`). Gaussian noise of standard deviation ``noise`` is
    added to every pixel.

    Returns:
        images (n, 3, size, size), float32, about [0, 1]; labels (n, size, size), int64 class
        indices of :data:`SHORE`.

    Raises:
        ValueError: ``n`` is below 1 or ``size`` below 24 (the vehicle and the band need room), or ``gap`` is
            given with ``far=False`` or does not fit (``0 <= fewest <= most <= size - size // 4 - size // 6``).
    """
    if n < 1 or size < 24:
        raise ValueError(f"shore_scenes needs n >= 1 and size >= 24, got n={n}, size={size}")
    band, vh, vw = size // 4, size // 6, size // 3
    top = size - band
    if gap is not None and not (far and len(gap) == 2 and all(isinstance(g, (int, np.integer)) for g in gap)
                                and 0 <= gap[0] <= gap[1] <= top - vh):
        raise ValueError(f"shore_scenes: gap={gap!r} needs far=True and whole numbers 0 <= fewest <= most <= "
                         f"{top - vh} (the rows above the band at size {size})")
    water = torch.randint(2, (n,), generator=generator).bool()
    if gap is not None:
        y = top - vh - torch.randint(gap[0], gap[1] + 1, (n,), generator=generator)
    elif far:
        y = torch.randint(1, size // 3 - vh + 1, (n,), generator=generator)
    else:
        y = top + torch.randint(1, band - vh, (n,), generator=generator)
    x = torch.randint(0, size - vw + 1, (n,), generator=generator)
    rows = torch.arange(size).view(1, size, 1)
    cols = torch.arange(size).view(1, 1, size)
    y, x = y.view(n, 1, 1), x.view(n, 1, 1)
    vehicle = (rows >= y) & (rows < y + vh) & (cols >= x) & (cols < x + vw)
    w = water.view(n, 1, 1)
    labels = torch.full((n, size, size), BACKGROUND, dtype=torch.int64)
    labels = torch.where((rows >= top).expand(n, size, size), torch.where(w, WATER, ROAD), labels)
    labels = torch.where(vehicle, torch.where(w, BOAT, CAR), labels)
    images = _DRAWN[labels].permute(0, 3, 1, 2).contiguous()
    images = images + noise * torch.randn(images.shape, generator=generator)
    return images, labels


class ShoreScenes(torch.utils.data.Dataset):
    """A fixed set of :func:`shore_scenes` (drawn once from ``seed``), as a data set of
    ``(image (3, size, size), label (size, size))`` items with ``num_classes`` and ``class_names``,
    for :func:`deeplab_edu.findings.evaluate_views`-style evaluation.

    Raises:
        ValueError: as :func:`shore_scenes`.
    """

    num_classes = SHORE.num_classes
    class_names = SHORE.class_names
    ignore_index = SHORE.ignore_index

    def __init__(self, n: int, size: int = 48, *, far: bool, gap: tuple[int, int] | None = None, seed: int = 0) -> None:
        self.images, self.labels = shore_scenes(n, size, far=far, gap=gap,
                                                generator=torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.labels[i]


class ContextProbe(nn.Module):
    """Two 3x3 convolutions (BN, ReLU) at full resolution, DeepLabv3's ASPP with or without its image
    pooling branch (sec. 3.3; :class:`~deeplab_edu.models.ASPP`, rates ``atrous_rates``, no dropout)
    and a 1x1 classifier.

    (N, 3, H, W) -> ``{"out": (N, num_classes, H, W)}`` logits, as the course's models. Without image
    pooling, an output sees ``5 + 2 * max(atrous_rates)`` pixels across (9 with the default rates);
    with it, also the average of the whole feature map.

    Raises:
        ValueError: ``width`` or ``num_classes`` is not a positive integer, or a rate is not one
            (:class:`~deeplab_edu.models.ASPP`).
    """

    def __init__(self, image_pooling: bool = True, *, width: int = 16, atrous_rates: Sequence[int] = (1, 2),
                 num_classes: int = SHORE.num_classes) -> None:
        super().__init__()
        _check_positive("ContextProbe", width=width, num_classes=num_classes)
        self.backbone = _two_convs(width)
        self.aspp = ASPP(width, atrous_rates, width, image_pooling=image_pooling, dropout=0.0)
        self.classifier = nn.Conv2d(width, num_classes, 1)

    def features(self) -> nn.Sequential:
        """Everything before the 1x1 classifier (the backbone and ASPP), as one module."""
        return nn.Sequential(self.backbone, self.aspp)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """(N, 3, H, W) -> ``{"out": (N, num_classes, H, W)}``."""
        return {"out": self.classifier(self.aspp(self.backbone(x)))}


def _check_positive(owner: str, **values: object) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{owner}: {name} must be a positive integer, got {value!r}")


def _two_convs(width: int) -> nn.Sequential:
    """The probes' stem: two 3x3 convolutions (BN, ReLU) at full resolution, 3 -> ``width`` channels."""
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
        nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
    )


class GridProbe(nn.Module):
    """Two 3x3 convolutions (BN, ReLU) at full resolution, a block shaped like block 4 of the course's
    teaching ResNet (:class:`~deeplab_edu.models.backbones.TinyResNetBackbone`: three basic units of two
    3x3 convolutions; here ``width`` channels and PyTorch's default initialisation) with DeepLabv3's
    multi-grid unit rates (sec. 3.2.1: unit ``i`` dilates its convolutions by ``rate * multi_grid[i]``;
    ``rate=2`` is block 4's at output stride 16), and a 1x1 classifier.

    (N, 3, H, W) -> ``{"out": (N, num_classes, H, W)}`` logits. An output sees
    ``5 + 4 * rate * sum(multi_grid)`` pixels across: 29 with no multi-grid (1, 1, 1), 61 with multi-grid
    (1, 2, 4), with the same parameters and multiply-adds (chapter 02's recurrences).

    Raises:
        ValueError: ``rate``, ``width`` or ``num_classes`` is not a positive integer, or ``multi_grid`` does
            not hold three of them.
    """

    def __init__(self, multi_grid: Sequence[int] = (1, 2, 4), *, rate: int = 2, width: int = 16,
                 num_classes: int = SHORE.num_classes) -> None:
        super().__init__()
        _check_positive("GridProbe", rate=rate, width=width, num_classes=num_classes)
        if len(multi_grid) != 3:
            raise ValueError(f"GridProbe: multi_grid needs three unit rates (block 4's units), got {tuple(multi_grid)}")
        _check_positive("GridProbe", **{f"multi_grid[{i}]": r for i, r in enumerate(multi_grid)})
        self.multi_grid = tuple(multi_grid)
        self.stem = _two_convs(width)
        units = [BasicBlock(width, width) for _ in multi_grid]
        for unit, unit_rate in zip(units, multi_grid):
            for conv in (unit.conv1, unit.conv2):  # a 3x3 convolution keeps its size with padding = dilation
                conv.dilation = conv.padding = (rate * unit_rate, rate * unit_rate)
        self.block4 = nn.Sequential(*units)
        self.classifier = nn.Conv2d(width, num_classes, 1)

    def features(self) -> nn.Sequential:
        """Everything before the 1x1 classifier (the stem and block 4), as one module."""
        return nn.Sequential(self.stem, self.block4)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """(N, 3, H, W) -> ``{"out": (N, num_classes, H, W)}``."""
        return {"out": self.classifier(self.block4(self.stem(x)))}


def probe_footprint(model: ContextProbe | GridProbe, size: int = 48,
                    position: tuple[int, int] | None = None) -> np.ndarray:
    """Which input pixels can change ``model``'s output at ``position`` of a ``size`` x ``size`` scene
    (default: where a far vehicle's centre row lies, row ``size // 8``, mid-width): chapter 04's
    :func:`~deeplab_edu.boundary.input_footprint` of its ``features()``, everything but the 1x1
    classifier (which adds nothing). A :class:`ContextProbe`: 81 pixels (9 x 9) without image pooling,
    every pixel with it; a :class:`GridProbe`: a square of its field's side, cut by the scene's edges.

    Returns:
        a bool array (size, size).

    Raises:
        ValueError: ``position`` lies outside the scene, or ``size`` is below 1.
    """
    from .boundary import input_footprint

    position = (size // 8, size // 2) if position is None else position
    return input_footprint(model.features(), size, size, position, channels=3)


def probe_reach(model: ContextProbe | GridProbe, size: int = 128) -> int:
    """How many pixels ``model``'s output sees on each side, measured: half the side of its
    :func:`probe_footprint` at the centre of a ``size`` x ``size`` scene, the output's own pixel left out.
    4 for a :class:`ContextProbe` without image pooling (9 x 9 pixels), 14 and 30 for a :class:`GridProbe`
    with no multi-grid (1, 1, 1) and multi-grid (1, 2, 4) (29 and 61 across); chapter 10's exercises 10.4 and
    10.5 start from it.

    Raises:
        ValueError: the footprint reaches the scene's edge, so ``size`` does not hold the whole field (a
            :class:`ContextProbe` with image pooling sees every pixel of any scene), or as :func:`probe_footprint`.

    >>> probe_reach(ContextProbe(image_pooling=False))
    4
    """
    footprint = probe_footprint(model, size, (size // 2, size // 2))
    cols = np.flatnonzero(footprint.any(0))
    if cols[0] == 0 or cols[-1] == size - 1:
        raise ValueError(f"probe_reach: the footprint of {type(model).__name__} reaches the edge of a {size} x {size} "
                         "scene, so its reach is not measured (its field is wider, or it sees the whole scene)")
    return int(cols[-1] - cols[0]) // 2


def train_probe(model: nn.Module, *, far: bool, gap: tuple[int, int] | None = None, steps: int = 200, batch: int = 16,
                size: int = 48, lr: float = 3e-3, seed: int = 0) -> list[float]:
    """Train ``model`` with Adam on fresh :func:`shore_scenes` (``far``, ``gap``) every step (drawn from a
    generator seeded ``seed``: both arms of a seed see the same scenes); returns each step's loss (cross-entropy, nats
    per pixel). The model is left in eval mode.

    Raises:
        ValueError: ``steps`` is negative, ``batch`` below 2 (with one scene the image-pooling branch's
            batch norm sees one value per channel, and :class:`~deeplab_edu.models.aspp.ImagePooling` then
            uses its running statistics and never updates them), or as :func:`shore_scenes`.
        RuntimeError: the last loss is not finite (training diverged).
    """
    if steps < 0 or batch < 2:
        raise ValueError(f"train_probe needs steps >= 0 and batch >= 2, got steps={steps}, batch={batch}")
    g = torch.Generator().manual_seed(seed)
    return train_toy(model, lambda: shore_scenes(batch, size, far=far, gap=gap, generator=g), steps, lr=lr,
                     desc="train_probe")


def probe_confusions(model: nn.Module, scenes: ShoreScenes) -> np.ndarray:
    """One confusion matrix per scene of ``scenes`` for ``model``'s prediction (the argmax of its ``"out"``
    logits, computed under :func:`torch.no_grad`, in whatever mode ``model`` is: :func:`train_probe`
    leaves it in eval mode).

    Returns:
        (len(scenes), 5, 5) uint32 pixel counts, rows the truth, columns the prediction
        (:func:`deeplab_edu.findings.scene_confusions`).

    Raises:
        ValueError: ``model``'s output is not ``{"out": (N, 5, H, W)}`` for the scenes' (N, 3, H, W) images.
    """
    with torch.no_grad():
        out = model(scenes.images)
    scores = out.get("out") if isinstance(out, Mapping) else None
    n, c, (h, w) = len(scenes.labels), SHORE.num_classes, scenes.labels.shape[-2:]
    if not isinstance(scores, torch.Tensor) or tuple(scores.shape) != (n, c, h, w):  # an audit: 3 channels were
        shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(out).__name__  # scored after argmax
        raise ValueError(f"the model's output should be {{'out': (N, {c}, H, W)}} = {(n, c, h, w)} for these scenes, "
                         f"got {shape}")
    return scene_confusions(scores.argmax(1), scenes.labels, c)


def probe_miou(model: nn.Module, scenes: ShoreScenes) -> float:
    """``model``'s mIoU on ``scenes`` (a fraction in [0, 1]): the pixels of all its scenes counted together
    (:func:`probe_confusions` summed over scenes, :func:`deeplab_edu.findings.miou`).

    Raises:
        ValueError: as :func:`probe_confusions`.

    >>> scenes = ShoreScenes(4, far=False)
    >>> class Oracle(nn.Module):  # scores every pixel's true class highest
    ...     def forward(self, x):
    ...         return {"out": nn.functional.one_hot(scenes.labels, 5).permute(0, 3, 1, 2).float()}
    >>> probe_miou(Oracle(), scenes)
    1.0
    """
    return float(miou(probe_confusions(model, scenes).sum(0).astype(np.float64)))


@dataclass
class ReachExperiment:
    """What :func:`reach_experiment` or :func:`grid_experiment` measured.

    Attributes:
        matrices: ``{arm: (seeds, val_scenes, 5, 5)}`` uint32 pixel counts per validation scene,
            rows the truth, columns the prediction (:func:`deeplab_edu.findings.scene_confusions`),
            the layout :func:`deeplab_edu.findings.bootstrap_difference` reads.
        models: ``{arm: ContextProbe or GridProbe}``, the first seed's trained model of each arm (eval mode).
        val: ``{kind: ShoreScenes}`` (``"far"`` or ``"mid"``, and ``"near"``), the validation scenes every seed
            of the kind's arms was scored on.
        seeds: the seeds, in the order of the matrices' first axis.
    """

    matrices: dict[str, np.ndarray]
    models: dict[str, ContextProbe | GridProbe]
    val: dict[str, ShoreScenes]
    seeds: tuple[int, ...]

    def keyed(self) -> dict[str, np.ndarray]:
        """The matrices keyed as :func:`deeplab_edu.findings.findings_table` reads them
        (``"<arm>|probe|all"``), for :data:`REACH_FINDINGS` or :data:`GRID_FINDINGS`."""
        return {f"{arm}|probe|all": m for arm, m in self.matrices.items()}

    def per_seed(self) -> dict[str, dict[str, np.ndarray]]:
        """``{arm: {"mIoU": ..., "boat IoU": ..., "car IoU": ...}}``: one value per seed (percent, over the
        seed's validation scenes; :func:`deeplab_edu.findings.seed_values`), in the order of :attr:`seeds`."""
        measures = {"mIoU": miou, "boat IoU": lambda cm: class_iou(cm, BOAT), "car IoU": lambda cm: class_iou(cm, CAR)}
        return {arm: {name: 100 * seed_values(cms.astype(float), fn) for name, fn in measures.items()}
                for arm, cms in self.matrices.items()}


_CLAIM = "DeepLabv3 sec. 3.3 (the claim); scenes designed here"
#: The two comparisons, as :class:`deeplab_edu.findings.Finding` rows (with minus without image pooling, mIoU):
#: the vehicle far from the band, and on it (the control, expected not to resolve). The claim is DeepLabv3's
#: (sec. 3.3: image-level features give the model global context); the scenes and the numbers are this
#: module's, so there is no paper value.
REACH_FINDINGS = [
    Finding("r1", "image pooling, the vehicle far from the band", ("far, without", "probe"),
            ("far, with image pooling", "probe"), "miou", _CLAIM, None),
    Finding("r2", "image pooling, the vehicle on the band", ("near, without", "probe"),
            ("near, with image pooling", "probe"), "miou", _CLAIM, None,
            note="the control: the band lies within the convolutions' reach, so image pooling has nothing to add"),
]
_GRID_CLAIM = "DeepLabv3 sec. 3.2.1 and Table 5 (the claim); scenes designed here"
#: The multi-grid comparisons (multi-grid (1, 2, 4) minus no multi-grid (1, 1, 1), mIoU): the vehicle between
#: the two fields' reach (:data:`MID_GAP`), and on the band (the control). The claim is DeepLabv3's (sec.
#: 3.2.1, Table 5: multi-grid (1, 2, 4) improves on (1, 1, 1)); the scenes and numbers are this module's.
GRID_FINDINGS = [
    Finding("m1", "multi-grid, the vehicle 15-28 px from the band", ("mid, no multi-grid (1, 1, 1)", "probe"),
            ("mid, multi-grid (1, 2, 4)", "probe"), "miou", _GRID_CLAIM, None),
    Finding("m2", "multi-grid, the vehicle on the band", ("near, no multi-grid (1, 1, 1)", "probe"),
            ("near, multi-grid (1, 2, 4)", "probe"), "miou", _GRID_CLAIM, None,
            note="the control: both fields reach the band, so multi-grid has nothing to add"),
]


def _experiment(arms: Mapping[str, tuple[str, Callable[[], ContextProbe | GridProbe]]], seeds: Sequence[int], *,
                steps: int, val_scenes: int, size: int, progress: bool, name: str) -> ReachExperiment:
    """Train ``arms`` (``{arm: (kind of scene, a function building the untrained model)}``) for every seed
    and score each on ``val_scenes`` validation scenes of its kind (the same scenes for every seed and arm)."""
    from .progress import progress_bar

    if not seeds or val_scenes < 1:
        raise ValueError(f"{name} needs seeds and val_scenes >= 1, got {list(seeds)} and {val_scenes}")
    val = {kind: ShoreScenes(val_scenes, size, seed=10_000, **SCENE_KINDS[kind])
           for kind in dict.fromkeys(kind for kind, _ in arms.values())}
    matrices = {arm: np.zeros((len(seeds), val_scenes, SHORE.num_classes, SHORE.num_classes), np.uint32)
                for arm in arms}
    models: dict[str, ContextProbe | GridProbe] = {}
    runs = [(arm, i, seed) for arm in arms for i, seed in enumerate(seeds)]
    for arm, i, seed in progress_bar(runs, desc="training the probes", progress=progress):
        kind, build = arms[arm]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build()
            train_probe(model, **SCENE_KINDS[kind], steps=steps, size=size, seed=seed)
        matrices[arm][i] = probe_confusions(model, val[kind])
        models.setdefault(arm, model)
    return ReachExperiment(matrices, models, val, tuple(seeds))


def reach_experiment(seeds: Sequence[int] = (0, 1, 2), *, steps: int = 200, val_scenes: int = 100, size: int = 48,
                     progress: bool = True) -> ReachExperiment:
    """Train a :class:`ContextProbe` for every arm of :data:`REACH_ARMS` and seed, and score it on
    ``val_scenes`` validation scenes of its kind (the same scenes for every seed and both arms).

    Each seed sets the initial weights (``torch.manual_seed``, inside :func:`torch.random.fork_rng`, so
    the caller's random stream is left as it was) and the training scenes (:func:`train_probe`).
    About 7 s per run of 200 steps on a 2-core CPU: 12 runs with three seeds.

    Raises:
        ValueError: no seeds, ``val_scenes`` below 1, or as :func:`train_probe`.
    """
    arms = {arm: (kind, partial(ContextProbe, image_pooling=pooling))
            for arm, (kind, pooling) in REACH_ARMS.items()}
    return _experiment(arms, seeds, steps=steps, val_scenes=val_scenes, size=size, progress=progress,
                       name="reach_experiment")


def grid_experiment(seeds: Sequence[int] = (0, 1, 2), *, steps: int = 200, val_scenes: int = 100,
                    progress: bool = True) -> ReachExperiment:
    """Train a :class:`GridProbe` for every arm of :data:`GRID_ARMS` and seed, and score it on
    ``val_scenes`` validation scenes of its kind, as :func:`reach_experiment` does (the same seeds,
    training and scoring) on scenes of the default size, 48, for which :data:`MID_GAP` is designed.
    About 8.5 s per run of 200 steps on a 2-core CPU: 12 runs with three seeds.

    Raises:
        ValueError: no seeds, ``val_scenes`` below 1, or as :func:`train_probe`.
    """
    arms = {arm: (kind, partial(GridProbe, multi_grid))
            for arm, (kind, multi_grid) in GRID_ARMS.items()}
    return _experiment(arms, seeds, steps=steps, val_scenes=val_scenes, size=48, progress=progress,
                       name="grid_experiment")
