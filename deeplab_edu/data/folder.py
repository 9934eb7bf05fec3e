"""A segmentation data set read from pairs of files: the base of the VOC, CamVid and Cityscapes
loaders (the data sets of DeepLabv2 Sec. 4).

Construction checks that every listed file exists (by default: ``check_files``), so a missing or
incomplete data set fails at once with the list of missing files and what to do, instead of deep inside
a ``DataLoader``; ``deeplab-edu check-data`` reads a split with missing files item by item instead.
Each item is checked as it is read (see :mod:`deeplab_edu.data.io`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from .classes import ClassInfo
from .io import BadDataError, SegmentationDataset, check_files_exist, check_pair, load_image, load_mask

__all__ = ["SegmentationFolder", "JointTransform"]

#: A transform of an image (3, H, W) and its mask (H, W) together (the same crop, flip and scale for
#: both), returning the pair.
JointTransform = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class SegmentationFolder(SegmentationDataset):
    """Items ``(image, mask)`` read from ``pairs`` of (image file, mask file).

    Args:
        pairs: the (image, mask) paths.
        info: class names, palette and ignore label.
        transform: optional joint transform ``(image, mask) -> (image, mask)``.
        lut: lookup table applied to raw mask values (e.g. label ids -> train ids).
        colour_aliases: extra colours accepted in colour-coded masks (colour -> label).
        missing_hint: appended to the error when files are missing (how to get the data).
        check_files: stat every file at construction (the default).

    Items: image float32 (3, H, W) in [0, 1], mask int64 (H, W) with 255 = ignore.

    Raises:
        TypeError: ``transform`` is given and is not callable.
        BadDataError: ``pairs`` is empty.
        ~deeplab_edu.data.io.DatasetNotFoundError: with ``check_files``, a file of ``pairs`` is missing.
    """

    def __init__(
        self,
        pairs: Sequence[tuple[Path, Path]],
        info: ClassInfo,
        *,
        transform: JointTransform | None = None,
        lut: np.ndarray | None = None,
        colour_aliases: dict[tuple[int, int, int], int] | None = None,
        missing_hint: str = "",
        check_files: bool = True,
        name: str | None = None,
    ) -> None:
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable (image, mask) -> (image, mask), got {transform!r}")
        self.name = name or info.name
        if not pairs:
            raise BadDataError(f"{self.name}: the split lists no images. {missing_hint}".strip())
        self.pairs = [(Path(a), Path(b)) for a, b in pairs]
        self.info = info
        self.transform = transform
        self.lut = lut
        self.colour_aliases = colour_aliases
        if check_files:
            files = [p for pair in self.pairs for p in pair]
            check_files_exist(files, what=f"{self.name} data set", hint=missing_hint)

    # the same attributes as ProceduralScenes
    @property
    def num_classes(self) -> int:
        """Number of classes (the ignore label not counted), from ``info``."""
        return self.info.num_classes

    @property
    def class_names(self) -> tuple[str, ...]:
        """The class names (``info.class_names``)."""
        return self.info.class_names

    @property
    def palette(self) -> tuple[tuple[int, int, int], ...]:
        """One RGB colour per class (``info.palette``)."""
        return self.info.palette

    @property
    def ignore_index(self) -> int:
        """The mask value of ignored pixels (``info.ignore_index``, 255 by default)."""
        return self.info.ignore_index

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Item ``index`` without the transform (image float (3, H, W), mask int64 (H, W))."""
        image_path, mask_path = self.pairs[index]
        image = load_image(image_path)
        mask = load_mask(
            mask_path, self.num_classes, palette=self.palette, colour_aliases=self.colour_aliases, lut=self.lut
        )
        check_pair(image, mask, image_path, mask_path)
        return image, mask

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.load(index)
        if self.transform is not None:
            image, mask = self.transform(image, mask)
        return image, mask

    def __repr__(self) -> str:
        n = len(self)
        return f"{type(self).__name__}({self.name!r}, {n} image{'' if n == 1 else 's'}, {self.num_classes} classes)"
