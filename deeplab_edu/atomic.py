"""Files written whole or not at all: a reader (or a run resumed after a kill) sees the old
version or the new one, never half of one.

The new content goes to a hidden temporary file in the same folder, which is then renamed over
the target with :func:`os.replace` (atomic on POSIX and Windows when both are on one file system).
Used for checkpoints, run records, metrics, exported models and converted data set files.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "write_text_atomic"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write to; when the block ends without an error it replaces ``path``.

    The temporary file is ``.<name>.tmp<pid>`` next to ``path`` (hidden; one per process, so two
    processes writing the same file do not mix their bytes); it is removed if the block raises.
    The parent folder is created if needed.

    Args:
        path: the file to (re)write.
        fsync: flush the new file's data to the disk before the rename, so that a power cut cannot
            leave the new name pointing at an empty file (checkpoints ask for this).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """``Path(path).write_text(text)`` through :func:`atomic_path`; returns ``path`` as a Path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)
