"""PASCAL VOC 2012 segmentation, with the SBD "trainaug" training set of the DeepLab papers.

VOC 2012 has 1,464 ``train`` and 1,449 ``val`` images with pixel labels (21 classes,
:data:`deeplab_edu.data.classes.VOC`; the annotators' boundary band is 255). DeepLab trains on
*trainaug*: VOC ``train`` plus the images that the Semantic Boundaries Dataset (SBD, Hariharan et
al. 2011) annotated, minus every VOC ``val`` image (DeepLabv3 Sec. 4 quotes 10,582 images)::

    train_aug = (SBD train  ∪  SBD val  ∪  VOC train)  \\  VOC val

:func:`trainaug_ids` computes exactly this from the four lists; :func:`prepare_trainaug` writes
``ImageSets/Segmentation/train_aug.txt`` and a ``SegmentationClassAug/`` folder of index PNGs
(VOC's own mask where the image has one, with its 255 boundary band; otherwise SBD's, which has
no boundary band). A ready-made ``SegmentationClassAug`` folder, as many DeepLab ports
distribute it, is accepted as well, with its ``train_aug.txt``.

A split list (``ImageSets/Segmentation/{split}.txt``) holds one image per line, in either form:
an image's stem (``2007_000032``, VOC's own lists and those written here), or an image's path and
its mask's path (``/JPEGImages/2007_000032.jpg /SegmentationClassAug/2007_000032.png``, the
``train_aug.txt`` that many DeepLab ports share), of which the stem is taken; the two names must
agree. The folders such a line names are not read: images come from ``JPEGImages/``, masks from
``SegmentationClassAug/`` (trainaug) or ``SegmentationClass/``.

Layout: ``root/VOCdevkit/VOC2012/{JPEGImages, SegmentationClass, ImageSets/Segmentation}`` (what
torchvision downloads) or ``root`` pointing at ``VOC2012`` itself; SBD in ``root/SBD/{img, cls,
train.txt, val.txt}`` (torchvision's ``SBDataset`` layout). ``download=True`` uses torchvision's
download code (``VOCSegmentation`` for VOC, ``SBDataset``'s archive for SBD). Reading SBD's
``.mat`` files needs SciPy.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image

from .classes import IGNORE_INDEX, VOC
from .folder import JointTransform, SegmentationFolder
from .io import BadDataError, DatasetNotFoundError, load_mask, read_split_list
from .paths import data_home, download_lock, find_dataset_root, unpack_into_place
from ..atomic import atomic_path, write_text_atomic
from ..records import shown_path

__all__ = ["VOCSegmentation", "VOC_SPLITS", "trainaug_ids", "prepare_trainaug", "resolve_voc_root"]

#: The splits :class:`VOCSegmentation` reads: VOC 2012's, and ``trainaug`` (train + SBD, 10,582 images).
VOC_SPLITS = ("train", "val", "trainval", "trainaug")
_BOUNDARY_COLOUR = {(224, 224, 192): IGNORE_INDEX}


def _how_to_get(root: Path) -> str:
    return (
        f"PASCAL VOC 2012 was not found under {shown_path(root, absolute_outside=True)}. Pass download=True (--download; needs internet; about 2 GB "
        "through torchvision.datasets.VOCSegmentation), or point root= (--data-root; or DEEPLAB_EDU_VOC) at a folder "
        "holding VOCdevkit/VOC2012/ with JPEGImages/, SegmentationClass/ and ImageSets/Segmentation/."
    )


def _how_to_complete_trainaug(root: Path, voc_dir: Path) -> str:
    """What to do when files of the trainaug split are missing while VOC itself is there (``root``: the folder
    given; ``voc_dir``: its ``VOC2012``): its masks are built from SBD (:func:`prepare_trainaug`), its images are
    VOC's own."""
    lst = voc_dir / "ImageSets" / "Segmentation" / "train_aug.txt"
    return (
        f"SegmentationClassAug/ and train_aug.txt are built from SBD: delete {shown_path(lst, absolute_outside=True)} "
        f"and the split is built again, its missing masks made and the others kept, from SBD in "
        f"{shown_path(root / 'SBD', absolute_outside=True)} (download=True, --download, fetches SBD when it is not "
        "there), or copy the missing masks from a ready-made SegmentationClassAug folder. An image missing from "
        "JPEGImages/ is VOC's own: its copy is incomplete (unpack VOC 2012's archive again)."
    )


def resolve_voc_root(root: Path) -> Path:
    """The ``VOC2012`` folder inside ``root`` (``root/VOCdevkit/VOC2012``, ``root/VOC2012`` or ``root``).

    Raises:
        DatasetNotFoundError: none of ``root/VOCdevkit/VOC2012``, ``root/VOC2012`` and ``root`` holds both
            ``JPEGImages/`` and ``ImageSets/Segmentation/``.
    """
    for cand in (root / "VOCdevkit" / "VOC2012", root / "VOC2012", root):
        if (cand / "JPEGImages").is_dir() and (cand / "ImageSets" / "Segmentation").is_dir():
            return cand
    raise DatasetNotFoundError(_how_to_get(root))


def trainaug_ids(
    voc_train: Iterable[str], voc_val: Iterable[str], sbd_train: Iterable[str], sbd_val: Iterable[str]
) -> list[str]:
    """``(SBD train ∪ SBD val ∪ VOC train) \\ VOC val``, sorted."""
    return sorted((set(sbd_train) | set(sbd_val) | set(voc_train)) - set(voc_val))


def _load_sbd_mask(path_stem: Path) -> np.ndarray:
    """An SBD class mask: ``cls/{id}.mat`` (MATLAB, needs SciPy) or an already converted ``cls/{id}.png``."""
    png = path_stem.with_suffix(".png")
    if png.is_file():
        return load_mask(png, VOC.num_classes, allow_palette=True).numpy().astype(np.uint8)
    mat = path_stem.with_suffix(".mat")
    if not mat.is_file():
        raise DatasetNotFoundError(f"SBD mask not found: {mat} (nor {png})")
    try:
        from scipy.io import loadmat
    except ImportError:
        raise ImportError(
            f"reading SBD's MATLAB masks ({mat}) needs SciPy: pip install scipy "
            "(or use a ready-made SegmentationClassAug folder)."
        ) from None
    try:
        seg = np.asarray(loadmat(str(mat))["GTcls"][0]["Segmentation"][0])
    except (ValueError, KeyError, IndexError, OSError, NotImplementedError) as err:  # not SBD's layout, or damaged
        raise BadDataError(f"SBD mask {mat} is not a readable SBD annotation (GTcls.Segmentation): "
                           f"{type(err).__name__}: {err}; download SBD again") from None
    bad = np.setdiff1d(np.unique(seg), [*range(len(VOC.class_names)), IGNORE_INDEX])
    if bad.size:
        raise BadDataError(f"SBD mask {mat} holds labels {bad[:5].tolist()}; SBD's labels are the 21 VOC classes "
                           f"0..20 (and {IGNORE_INDEX})")
    return seg.astype(np.uint8)


def prepare_trainaug(voc_dir: Path, sbd_root: Path, *, progress: bool = True) -> Path:
    """Write ``train_aug.txt`` and ``SegmentationClassAug/`` into ``voc_dir`` from VOC and SBD.

    Returns the split list's path. Existing mask files are kept (the step can be resumed); the list
    is written last, atomically: VOC train plus SBD train and val, less VOC val (the module docstring).

    Raises:
        ~deeplab_edu.data.io.DatasetNotFoundError: a split list or an SBD mask is missing (the message
            says how to get it).
        ~deeplab_edu.data.io.BadDataError: a split list is empty, a VOC mask cannot be read as
            labels (:func:`~deeplab_edu.data.io.load_mask`), or an SBD ``.mat`` file is damaged or holds
            labels outside 0..20 and 255.
        ImportError: SciPy, which reads SBD's MATLAB masks, is not installed.
    """
    seg_sets = voc_dir / "ImageSets" / "Segmentation"
    voc_train = read_split_list(seg_sets / "train.txt", stems=True)
    voc_val = read_split_list(seg_sets / "val.txt", stems=True)
    sbd_train = read_split_list(sbd_root / "train.txt", hint="Get SBD with download=True (torchvision's SBDataset archive).",
                                stems=True)
    sbd_val = read_split_list(sbd_root / "val.txt", stems=True)
    ids = trainaug_ids(voc_train, voc_val, sbd_train, sbd_val)
    out_dir = voc_dir / "SegmentationClassAug"
    out_dir.mkdir(exist_ok=True)
    voc_train_set = set(voc_train)
    from ..progress import progress_bar

    for i in progress_bar(ids, desc="SegmentationClassAug", progress=progress):
        dst = out_dir / f"{i}.png"
        if dst.is_file():
            continue
        if i in voc_train_set:
            arr = load_mask(voc_dir / "SegmentationClass" / f"{i}.png", VOC.num_classes,
                            palette=VOC.palette, colour_aliases=_BOUNDARY_COLOUR).numpy().astype(np.uint8)
        else:
            arr = _load_sbd_mask(sbd_root / "cls" / i)
        with atomic_path(dst) as tmp:
            Image.fromarray(arr, mode="L").save(tmp, format="PNG")
    lst = seg_sets / "train_aug.txt"
    write_text_atomic(lst, "\n".join(ids) + "\n")  # written last and whole: its presence means the masks are all there
    return lst


def _lacks_files(voc_dir: Path) -> bool:
    """Whether the ``VOC2012`` folder ``voc_dir`` lacks a split list (``train.txt``, ``val.txt``) or a file one of them
    names: an unpacking cut short (an older version's, in place), which ``download=True`` replaces."""
    seg_sets = voc_dir / "ImageSets" / "Segmentation"
    try:
        ids = [*read_split_list(seg_sets / "train.txt", stems=True), *read_split_list(seg_sets / "val.txt", stems=True)]
    except (DatasetNotFoundError, BadDataError):
        return True
    return not all((voc_dir / "JPEGImages" / f"{i}.jpg").is_file() and (voc_dir / "SegmentationClass" / f"{i}.png")
                   .is_file() for i in ids)


def _download_voc(root: Path) -> None:
    """Download VOC 2012's archive (torchvision's) into ``root`` and unpack its ``VOCdevkit/VOC2012`` into place once
    whole (:func:`~deeplab_edu.data.paths.unpack_into_place`: an unpacking cut short leaves no copy that looks found;
    an incomplete copy there is moved aside), under the download lock CamVid's download takes too
    (:func:`~deeplab_edu.data.paths.download_lock`): a second process waits, then uses the first one's copy.

    Raises:
        DatasetNotFoundError: the download or the extraction failed (the message says where to put a copy by hand),
            ``root`` cannot be written, or another process kept the lock too long.
    """
    from torchvision.datasets.utils import download_url
    from torchvision.datasets.voc import DATASET_YEAR_DICT

    from ..network import stall_timeout

    archive = DATASET_YEAR_DICT["2012"]
    with download_lock(root, archive["filename"], "PASCAL VOC 2012"):
        with contextlib.suppress(DatasetNotFoundError):
            if not _lacks_files(resolve_voc_root(root)):  # another process downloaded it while this one waited
                return
        try:
            with stall_timeout():  # a server that stops sending fails the download instead of hanging it
                download_url(archive["url"], str(root), filename=archive["filename"], md5=archive["md5"])
        except Exception as err:
            raise DatasetNotFoundError(
                f"downloading PASCAL VOC 2012 into {root} failed ({type(err).__name__}: {err}). Download "
                f"{archive['filename']} on a machine with internet, extract it under root= (--data-root) so that "
                "root/VOCdevkit/VOC2012 exists, and try again without download=True (--download)."
            ) from None
        unpack_into_place(root / archive["filename"], root, archive["base_dir"], "ImageSets/Segmentation",
                          "PASCAL VOC 2012")


def _download_sbd(sbd_root: Path) -> None:
    """Download SBD's archive (torchvision's ``SBDataset``'s) into ``sbd_root``, unpack it into place once whole and
    move its ``dataset/`` files up (``train.txt``, whose presence means SBD is there, last), under the download lock
    (as :func:`_download_voc`).

    Raises:
        DatasetNotFoundError: the download or the extraction failed, ``sbd_root`` cannot be written, or another
            process kept the lock too long.
    """
    from torchvision.datasets import SBDataset
    from torchvision.datasets.utils import download_url

    from ..network import stall_timeout

    with download_lock(sbd_root, SBDataset.filename, "SBD"):
        if (sbd_root / "train.txt").is_file():  # another process downloaded it while this one waited
            return
        try:
            with stall_timeout():
                download_url(SBDataset.url, str(sbd_root), filename=SBDataset.filename, md5=SBDataset.md5)
        except Exception as err:
            raise DatasetNotFoundError(
                f"downloading SBD into {sbd_root} failed ({type(err).__name__}: {err}). Download "
                f"{SBDataset.url} elsewhere and extract benchmark_RELEASE/dataset/{{img,cls,train.txt,val.txt}} "
                f"into {sbd_root}."
            ) from None
        extracted = unpack_into_place(sbd_root / SBDataset.filename, sbd_root, "benchmark_RELEASE", "dataset/train.txt",
                                      "SBD") / "dataset"
        for f in ("cls", "img", "inst", "val.txt", "train.txt"):
            if (extracted / f).exists() and not (sbd_root / f).exists():
                shutil.move(str(extracted / f), str(sbd_root / f))


class VOCSegmentation(SegmentationFolder):
    """PASCAL VOC 2012 semantic segmentation (21 classes), including the SBD ``trainaug`` split.

    Args:
        root: folder holding ``VOCdevkit/VOC2012`` (and ``SBD/`` for trainaug); ``None`` looks in
            ``$DEEPLAB_EDU_VOC``, ``<repo>/../shared/data/voc`` and the user data folder.
        split: ``"train"``, ``"val"``, ``"trainval"`` or ``"trainaug"`` (alias ``"train_aug"``).
        download: fetch what is missing with torchvision's download code; a VOC copy that lacks a file its
            ``train``/``val`` lists name (an unpacking cut short) is downloaded again (the old copy moved aside).
        transform: joint transform ``(image, mask) -> (image, mask)``.
        check_files: refuse the split when a file it lists is missing (the default); ``False`` leaves each missing
            file to the item that reads it (``deeplab-edu check-data``).

    Raises:
        ValueError: ``split`` is not ``"train"``, ``"val"``, ``"trainval"``, ``"trainaug"`` or ``"train_aug"``.
        DatasetNotFoundError: no ``VOC2012`` folder is found under ``root`` and ``download`` is false, or the
            download fails; for ``"trainaug"``, when ``train_aug.txt`` or ``SegmentationClassAug/`` is missing and
            ``root/SBD`` has no ``train.txt``: ``download`` is false, or SBD's download fails; the split list is
            missing; or (with ``check_files``) files it names are missing.
        ~deeplab_edu.data.io.BadDataError: the split list names no image, names a file outside the folder, pairs an
            image with a mask of another name, or has a line that is neither a stem nor two paths (the forms of the
            module's docstring).
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
        split = "trainaug" if split == "train_aug" else split
        if split not in VOC_SPLITS:
            raise ValueError(f"split must be one of {VOC_SPLITS} for VOC, got {split!r}")
        if root is None:
            root = find_dataset_root("voc") or data_home() / "voc"
        root = Path(root).expanduser()
        try:
            voc_dir = resolve_voc_root(root)
            lacking = download and _lacks_files(voc_dir)  # an unpacking cut short
        except DatasetNotFoundError:
            if not download:
                raise
            lacking = True
        if lacking:
            _download_voc(root)
            voc_dir = resolve_voc_root(root)
        seg_sets = voc_dir / "ImageSets" / "Segmentation"
        if split == "trainaug":
            lst = seg_sets / "train_aug.txt"
            if not lst.is_file() or not (voc_dir / "SegmentationClassAug").is_dir():
                sbd_root = root / "SBD"
                if not (sbd_root / "train.txt").is_file():
                    if not download:
                        raise DatasetNotFoundError(
                            f"the trainaug split needs {lst} and {voc_dir / 'SegmentationClassAug'}, or SBD "
                            f"in {sbd_root} (img/, cls/, train.txt, val.txt) to build them from. Pass "
                            "download=True (--download) to fetch SBD with torchvision's SBDataset code, or place a "
                            "ready-made SegmentationClassAug folder and train_aug.txt there."
                        )
                    _download_sbd(sbd_root)
                prepare_trainaug(voc_dir, sbd_root)
            ids = read_split_list(lst, stems=True)
            mask_dir = voc_dir / "SegmentationClassAug"
            hint = _how_to_complete_trainaug(root, voc_dir)  # VOC is there: not _how_to_get's "not found"
        else:
            ids = read_split_list(seg_sets / f"{split}.txt", hint=_how_to_get(root), stems=True)
            mask_dir = voc_dir / "SegmentationClass"
            hint = _how_to_get(root)
        pairs = [(voc_dir / "JPEGImages" / f"{i}.jpg", mask_dir / f"{i}.png") for i in ids]
        self.root = voc_dir
        self.split = split
        super().__init__(
            pairs,
            VOC,
            transform=transform,
            colour_aliases=_BOUNDARY_COLOUR,
            missing_hint=hint,
            check_files=check_files,
            name=f"voc/{split}",
        )
