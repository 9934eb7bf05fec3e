"""Image pooling when the context is out of the convolutions' reach: a designed experiment.

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
  statistics (chapter 10, section 7); :func:`probe_footprint` shows which input pixels reach an output.

Nothing else tells a far boat from a far car: the vehicle's position is drawn independently of the
band, and in training the batch norm's batch statistics carry only the batch's mix of water and road
scenes, the same for every image of the batch (a prior the network may lean on, which evaluation, with
running statistics, does not have). The network without image pooling can therefore at best guess.
The class indices (:data:`BOAT` = 3, ...) are this module's, not those of the course's scenes
(:data:`deeplab_edu.data.classes.BOAT` = 7).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .data.classes import ClassInfo
from .effective_receptive_field import train_toy
from .findings import Finding, scene_confusions
from .models.aspp import ASPP

__all__ = [
    "SHORE", "BACKGROUND", "WATER", "ROAD", "BOAT", "CAR", "FAR_GAP", "REACH_ARMS", "shore_scenes", "ShoreScenes",
    "ContextProbe", "probe_footprint", "train_probe", "ReachExperiment",
    "REACH_FINDINGS", "reach_experiment",
]

#: The classes of :func:`shore_scenes`, with the course scenes' colours for car and boat (for the label maps;
#: the scenes draw boats and cars alike, :data:`_DRAWN`).
SHORE = ClassInfo(
    "shore",
    ("background", "water", "road", "boat", "car"),
    ((120, 150, 100), (50, 90, 205), (90, 90, 90), (70, 240, 240), (145, 30, 180)),
)
#: The class indices of :data:`SHORE`.
BACKGROUND, WATER, ROAD, BOAT, CAR = range(5)
#: The colour each class is drawn in (RGB in [0, 1]): a boat and a car look the same.
_DRAWN = torch.tensor([(0.55, 0.6, 0.45), (0.2, 0.35, 0.8), (0.35, 0.35, 0.35), (0.85, 0.2, 0.15), (0.85, 0.2, 0.15)])
#: The fewest pixels between a far vehicle and the band at the default size of 48: the band is the bottom
#: quarter and a far vehicle ends within the top third (:func:`shore_scenes`).
FAR_GAP = 48 - 48 // 4 - 48 // 3
#: The experiment's arms: ``(far, image_pooling)``, the arguments of :func:`shore_scenes` and :class:`ContextProbe`.
REACH_ARMS = {"far, with image pooling": (True, True), "far, without": (True, False),
              "near, with image pooling": (False, True), "near, without": (False, False)}


def shore_scenes(n: int, size: int = 48, *, far: bool, generator: torch.Generator | None = None,
                 noise: float = 0.08) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` scenes: a band of water or road along the bottom quarter, and one vehicle.

    The vehicle (``size // 6`` by ``size // 3`` pixels) is a boat on water scenes and a car on road
    scenes, drawn in one colour either way. ``far=True`` places it within the top third, at least
    ``size - size // 4 - size // 3`` pixels above the band (:data:`FAR_GAP`, 20, at 48); ``far=False``
    on the band. Gaussian noise of standard deviation ``noise`` is added to every pixel.

    Returns:
        images (n, 3, size, size), float32, about [0, 1]; labels (n, size, size), int64 class
        indices of :data:`SHORE`.

    Raises:
        ValueError: ``n`` is below 1 or ``size`` below 24 (the vehicle and the band need room).
    """
    if n < 1 or size < 24:
        raise ValueError(f"shore_scenes needs n >= 1 and size >= 24, got n={n}, size={size}")
    band, vh, vw = size // 4, size // 6, size // 3
    top = size - band
    water = torch.randint(2, (n,), generator=generator).bool()
    if far:
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

    def __init__(self, n: int, size: int = 48, *, far: bool, seed: int = 0) -> None:
        self.images, self.labels = shore_scenes(n, size, far=far, generator=torch.Generator().manual_seed(seed))

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
        for name, value in (("width", width), ("num_classes", num_classes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ContextProbe: {name} must be a positive integer, got {value!r}")
        self.backbone = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
        )
        self.aspp = ASPP(width, atrous_rates, width, image_pooling=image_pooling, dropout=0.0)
        self.classifier = nn.Conv2d(width, num_classes, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """(N, 3, H, W) -> ``{"out": (N, num_classes, H, W)}``."""
        return {"out": self.classifier(self.aspp(self.backbone(x)))}


def probe_footprint(model: ContextProbe, size: int = 48, position: tuple[int, int] | None = None) -> np.ndarray:
    """Which input pixels can change ``model``'s output at ``position`` of a ``size`` x ``size`` scene
    (default: where a far vehicle's centre row lies, row ``size // 8``, mid-width): chapter 04's
    :func:`~deeplab_edu.boundary.input_footprint` of the backbone and ASPP (the 1x1 classifier adds
    nothing). 81 pixels (9 x 9) without image pooling, every pixel with it.

    Returns:
        a bool array (size, size).

    Raises:
        ValueError: ``position`` lies outside the scene, or ``size`` is below 1.
    """
    from .boundary import input_footprint

    position = (size // 8, size // 2) if position is None else position
    return input_footprint(nn.Sequential(model.backbone, model.aspp), size, size, position, channels=3)


def train_probe(model: nn.Module, *, far: bool, steps: int = 200, batch: int = 16, size: int = 48, lr: float = 3e-3,
                seed: int = 0) -> list[float]:
    """Train ``model`` with Adam on fresh :func:`shore_scenes` every step (drawn from a generator seeded
    ``seed``: both arms of a seed see the same scenes); returns each step's loss (cross-entropy, nats
    per pixel). The model is left in eval mode.

    Raises:
        ValueError: ``steps`` is negative, ``batch`` below 2 (with one scene the image-pooling branch's
            batch norm sees one value per channel, and :class:`~deeplab_edu.models.aspp.ImagePooling` then
            uses its running statistics and never updates them), or ``size`` below 24 (:func:`shore_scenes`).
        RuntimeError: the last loss is not finite (training diverged).
    """
    if steps < 0 or batch < 2:
        raise ValueError(f"train_probe needs steps >= 0 and batch >= 2, got steps={steps}, batch={batch}")
    g = torch.Generator().manual_seed(seed)
    return train_toy(model, lambda: shore_scenes(batch, size, far=far, generator=g), steps, lr=lr, desc="train_probe")


@dataclass
class ReachExperiment:
    """What :func:`reach_experiment` measured.

    Attributes:
        matrices: ``{arm: (seeds, val_scenes, 5, 5)}`` uint32 pixel counts per validation scene,
            rows the truth, columns the prediction (:func:`deeplab_edu.findings.scene_confusions`),
            the layout :func:`deeplab_edu.findings.bootstrap_difference` reads.
        models: ``{arm: ContextProbe}``, the first seed's trained model of each arm (eval mode).
        val: ``{"far": ShoreScenes, "near": ShoreScenes}``, the validation scenes every seed was scored on.
        seeds: the seeds, in the order of the matrices' first axis.
    """

    matrices: dict[str, np.ndarray]
    models: dict[str, ContextProbe]
    val: dict[str, ShoreScenes]
    seeds: tuple[int, ...]

    def keyed(self) -> dict[str, np.ndarray]:
        """The matrices keyed as :func:`deeplab_edu.findings.findings_table` reads them
        (``"<arm>|probe|all"``), for :data:`REACH_FINDINGS`."""
        return {f"{arm}|probe|all": m for arm, m in self.matrices.items()}


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
    from .progress import progress_bar

    if not seeds or val_scenes < 1:
        raise ValueError(f"reach_experiment needs seeds and val_scenes >= 1, got {list(seeds)} and {val_scenes}")
    val = {kind: ShoreScenes(val_scenes, size, far=kind == "far", seed=10_000) for kind in ("far", "near")}
    matrices = {arm: np.zeros((len(seeds), val_scenes, SHORE.num_classes, SHORE.num_classes), np.uint32)
                for arm in REACH_ARMS}
    models: dict[str, ContextProbe] = {}
    runs = [(arm, i, seed) for arm in REACH_ARMS for i, seed in enumerate(seeds)]
    for arm, i, seed in progress_bar(runs, desc="training the probes", progress=progress):
        far, pooling = REACH_ARMS[arm]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = ContextProbe(image_pooling=pooling)
            train_probe(model, far=far, steps=steps, size=size, seed=seed)
        scenes = val["far" if far else "near"]
        with torch.no_grad():
            pred = model(scenes.images)["out"].argmax(1)
        matrices[arm][i] = scene_confusions(pred, scenes.labels, SHORE.num_classes)
        models.setdefault(arm, model)
    return ReachExperiment(matrices, models, val, tuple(seeds))
