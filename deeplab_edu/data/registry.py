"""``build_dataset``: one entry point for every data set of the course, by name.

>>> from deeplab_edu.data import build_dataset
>>> ds = build_dataset("procedural", "train", length=100, size=128)
>>> image, mask = ds[0]
>>> tuple(image.shape), mask.dtype
((3, 128, 128), torch.int64)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ..choices import DATASETS, dataset_name
from .camvid import CamVid
from .cityscapes import Cityscapes
from .io import SegmentationDataset
from .own import FolderDataset
from .procedural import ProceduralScenes
from .voc import VOCSegmentation

__all__ = ["DATASETS", "PROCEDURAL_SPLIT_SEED_OFFSET", "build_dataset"]

#: The procedural splits use disjoint seeds: ``seed + offset[split]``.
PROCEDURAL_SPLIT_SEED_OFFSET = {"train": 0, "val": 1_000_003, "test": 2_000_006}


def build_dataset(
    name: str,
    split: str,
    *,
    root: str | Path | None = None,
    download: bool = False,
    transform: Callable[..., Any] | None = None,
    **kwargs: Any,
) -> SegmentationDataset:
    """Build data set ``name`` (one of :data:`~deeplab_edu.choices.DATASETS`) for ``split``.

    Every data set yields ``(image, mask)``: image float32 (3, H, W) (in [0, 1] before
    normalisation), mask int64 (H, W) with 255 = ignore, and has ``num_classes``,
    ``class_names``, ``palette`` and ``ignore_index`` (a :class:`~deeplab_edu.data.io.SegmentationDataset`).

    Args:
        name: ``"procedural"``, ``"voc"``, ``"camvid"``, ``"cityscapes"`` or ``"folder"`` (your own
            images and masks: :mod:`deeplab_edu.data.own`).
        split: ``"train"``, ``"val"`` (``"test"``; ``"trainaug"`` for VOC; any split folder for ``"folder"``).
        root: the data folder (real data sets; ``None`` searches the usual places, see
            :mod:`deeplab_edu.data.paths`; ``"folder"`` needs it).
        download: fetch a missing real data set where a public source exists (``"procedural"`` is generated:
            nothing to fetch, and ``download`` changes nothing).
        transform: joint transform ``(image, mask) -> (image, mask)``.
        **kwargs: passed on; for ``"procedural"``: ``length``, ``size``, ``seed`` (the split's
            seed is ``seed + PROCEDURAL_SPLIT_SEED_OFFSET[split]``, so splits never overlap),
            ``max_objects``, ...; for ``"folder"``: ``skip_unpaired`` (:class:`~deeplab_edu.data.own.FolderDataset`);
            for the real data sets: ``check_files`` (``False``: a missing file is the error of the item that
            reads it, not of the split; ``deeplab-edu check-data``).

    Raises:
        ValueError: ``name`` is not a data set of :data:`~deeplab_edu.choices.DATASETS` (case, ``-`` and ``_``
            aside; ``"pascal_voc"`` also names VOC); for ``"procedural"``, ``split`` is not ``"train"``,
            ``"val"`` or ``"test"``, or ``root`` is given; for ``"folder"``, ``root`` is not given or
            ``download`` is true; or the data set's constructor raises it (e.g. for an unknown ``split``).
        TypeError: ``kwargs`` are given for a data set other than ``"procedural"`` (``"folder"``: other than
            ``skip_unpaired``; a real data set: other than ``check_files``).
    """
    key = dataset_name(name)
    if key == "procedural":
        if split not in PROCEDURAL_SPLIT_SEED_OFFSET:
            raise ValueError(f"split must be one of {tuple(PROCEDURAL_SPLIT_SEED_OFFSET)} for procedural, got {split!r}")
        if root is not None:
            raise ValueError("the procedural data set is generated: it takes no root= (--data-root); download= (--download) is ignored")
        seed = int(kwargs.pop("seed", 0)) + PROCEDURAL_SPLIT_SEED_OFFSET[split]
        kwargs.setdefault("length", 1000 if split == "train" else 200)
        return ProceduralScenes(seed=seed, transform=transform, **kwargs)
    if key == "folder":
        if root is None:
            raise ValueError("the folder data set needs its folder: root= (--data-root DIR)")
        if download:
            raise ValueError("the folder data set is your own: there is nothing to download (drop download= / --download)")
        unexpected = sorted(set(kwargs) - {"skip_unpaired"})
        if unexpected:
            raise TypeError(f"unexpected arguments for folder: {', '.join(unexpected)}")
        return FolderDataset(root, split, transform=transform, **kwargs)
    loaders = {"voc": VOCSegmentation, "camvid": CamVid, "cityscapes": Cityscapes}
    if key not in loaders:
        raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    unexpected = sorted(set(kwargs) - {"check_files"})
    if unexpected:
        raise TypeError(f"unexpected arguments for {name}: {', '.join(unexpected)}")
    return loaders[key](root, split, download=download, transform=transform, **kwargs)
