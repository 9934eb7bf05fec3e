"""Cityscapes fine annotations (Cordts et al. 2016), 19 evaluated classes; local folder only.

Cityscapes needs a registered account to download, so there is no ``download=True``: get
``leftImg8bit_trainvaltest.zip`` and ``gtFine_trainvaltest.zip`` from
https://www.cityscapes-dataset.com/downloads/ and extract both into one folder::

    root/leftImg8bit/{train,val,test}/{city}/{city}_{seq}_{frame}_leftImg8bit.png
    root/gtFine/{train,val,test}/{city}/{city}_{seq}_{frame}_gtFine_labelIds.png

The masks hold the 34 *label ids* of ``cityscapesScripts``; they are mapped to the 19 *train ids*
(:data:`deeplab_edu.data.classes.CITYSCAPES_ID_TO_TRAIN_ID`) and every other id to 255.
"""

from __future__ import annotations

from pathlib import Path

from .classes import CITYSCAPES, cityscapes_lut
from .folder import JointTransform, SegmentationFolder
from .io import BadDataError, DatasetNotFoundError
from .paths import data_home, find_dataset_root
from ..records import shown_path

__all__ = ["Cityscapes", "CITYSCAPES_SPLITS"]

#: The splits :class:`Cityscapes` reads (``test``'s masks are not public).
CITYSCAPES_SPLITS = ("train", "val", "test")


def _how_to_get(root: Path) -> str:
    return (
        f"Cityscapes was not found under {shown_path(root, absolute_outside=True)}. It cannot be downloaded automatically (it needs a "
        "registered account): download leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip from "
        "https://www.cityscapes-dataset.com/downloads/, extract both into one folder so that it holds "
        "leftImg8bit/ and gtFine/, and pass it as root= (--data-root; or set DEEPLAB_EDU_CITYSCAPES)."
    )


class Cityscapes(SegmentationFolder):
    """Cityscapes (fine annotations, 19 train classes) from a local folder.

    Args:
        root: the folder holding ``leftImg8bit/`` and ``gtFine/``; ``None`` looks in
            ``$DEEPLAB_EDU_CITYSCAPES``, ``<repo>/../shared/data/cityscapes`` and the user data folder.
        split: ``"train"``, ``"val"`` or ``"test"`` (test masks are all ignore).
        download: must be ``False``; Cityscapes needs registration.
        transform: joint transform ``(image, mask) -> (image, mask)``.
        check_files: refuse the split when an image's mask is missing (the default); ``False`` leaves it to the
            item that reads it (``deeplab-edu check-data``).

    Raises:
        ValueError: ``split`` is not ``"train"``, ``"val"`` or ``"test"``.
        DatasetNotFoundError: ``download`` is true (Cityscapes cannot be downloaded), ``root`` has no
            ``leftImg8bit/<split>`` folder, or (with ``check_files``) the ``gtFine`` mask of an image is missing.
        BadDataError: ``leftImg8bit/<split>`` holds no ``*/*_leftImg8bit.png`` image.
    """

    def __init__(
        self,
        root: str | Path | None = None,
        split: str = "train",
        *,
        download: bool = False,
        transform: JointTransform | None = None,
        check_files: bool = True,
    ) -> None:
        if split not in CITYSCAPES_SPLITS:
            raise ValueError(f"split must be one of {CITYSCAPES_SPLITS} for Cityscapes, got {split!r}")
        if root is None:
            root = find_dataset_root("cityscapes") or data_home() / "cityscapes"
        root = Path(root).expanduser()
        if download:
            raise DatasetNotFoundError("download=True is not possible for Cityscapes. " + _how_to_get(root))
        img_dir = root / "leftImg8bit" / split
        if not img_dir.is_dir():
            raise DatasetNotFoundError(_how_to_get(root))
        images = sorted(img_dir.glob("*/*_leftImg8bit.png"))
        if not images:
            raise BadDataError(f"{img_dir} holds no */*_leftImg8bit.png images. " + _how_to_get(root))
        pairs = []
        for img in images:
            stem = img.name[: -len("_leftImg8bit.png")]
            pairs.append((img, root / "gtFine" / split / img.parent.name / f"{stem}_gtFine_labelIds.png"))
        self.root = root
        self.split = split
        super().__init__(
            pairs, CITYSCAPES, transform=transform, lut=cityscapes_lut(),
            missing_hint=_how_to_get(root), check_files=check_files, name=f"cityscapes/{split}",
        )
