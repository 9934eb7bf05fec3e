"""Files written whole or not at all: a reader (or a run resumed after a kill) sees the old
version or the new one, never half of one.

The new content goes to a hidden temporary file in the same folder, which is then renamed over
the target with :func:`os.replace` (atomic on POSIX and Windows when both are on one file system).
Used for checkpoints, run records, metrics, exported models and converted data set files.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_path", "write_text_atomic", "check_writable", "remove_stale_temporaries",
           "remove_abandoned_folders", "acquire_or_wait", "owned_temporary_folder"]

#: ``.<stem>.tmp<pid><suffix>``: the temporary files of :func:`atomic_path` (``<stem>`` shortened to
#: ``<start of stem>~<hash>`` where the name would be too long).
_TEMPORARY = re.compile(r"^\..+\.tmp(\d+)(\.[^.]*)?$")
#: The longest file name, in bytes, of the common file systems (ext4, XFS, btrfs, APFS; NTFS counts 255
#: UTF-16 units, never more than the UTF-8 bytes): where ``os.pathconf`` cannot say.
_NAME_MAX = 255


def _temporary_name(path: Path) -> str:
    """``.<stem>.tmp<pid><suffix>`` for ``path``, or, where that would be longer than the folder's longest file
    name (``path``'s own name may be 19 bytes shorter and legal: an image named with 240 characters), the same
    with the stem cut to fit and a short hash of the whole name after it (``.<start>~<hash>.tmp<pid><suffix>``):
    still one per file and process, and still found by :func:`remove_stale_temporaries`."""
    pid, suffix = os.getpid(), path.suffix
    full = f".{path.stem}.tmp{pid}{suffix}"
    try:
        limit = os.pathconf(path.parent, "PC_NAME_MAX")
    except (AttributeError, OSError, ValueError):  # Windows has no pathconf
        limit = _NAME_MAX
    limit = min(limit, _NAME_MAX) if limit > 0 else _NAME_MAX
    if len(os.fsencode(full)) <= limit:
        return full
    digest = hashlib.sha256(os.fsencode(path.name)).hexdigest()[:8]
    room = max(limit - len(os.fsencode(f".~{digest}.tmp{pid}{suffix}")), 0)
    start = os.fsencode(path.stem)[:room].decode(sys.getfilesystemencoding(), "ignore")  # whole characters
    return f".{start}~{digest}.tmp{pid}{suffix}"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write to; when the block ends without an error it replaces ``path``.

    The temporary file is ``.<stem>.tmp<pid><suffix>`` next to ``path`` (hidden; one per process, so
    two processes writing the same file do not mix their bytes; the suffix kept, for writers that
    check it; the stem shortened where the name would exceed the folder's longest file name, which
    ``path``'s own may not); it is removed if the block raises. A process killed while writing leaves it behind:
    :func:`remove_stale_temporaries` removes those.
    The parent folder is created if needed.

    Args:
        path: the file to (re)write.
        fsync: flush the new file's data to the disk before the rename, so that a power cut cannot
            leave the new name pointing at an empty file (checkpoints ask for this).

    Raises:
        OSError: (``ENOSPC``) the block or the rename failed because the disk is full (the message names
            ``path`` and the free space; ``torch.save``'s ``RuntimeError`` for a full disk becomes this).
        OSError, RuntimeError: any other error of the block or the rename, unchanged, except that one
            about the temporary file (a folder that is not writable) names ``path`` as its file, and
            ``torch.save``'s ``RuntimeError`` for a file it cannot open becomes an ``OSError`` naming ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(_temporary_name(path))
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:
        if (full := _disk_full(path, err)) is not None:
            raise OSError(errno.ENOSPC, full) from err
        if isinstance(err, OSError) and err.filename is not None and Path(err.filename) == tmp:
            err.filename = str(path)  # the hidden temporary file is ours: name the file the caller asked for
        if isinstance(err, RuntimeError) and (cause := re.search(r"open file failed with strerror: (.+)", str(err))):
            # torch.save's own words for a folder it cannot write in, naming no file (a trial)
            raise OSError(f"cannot write {path}: {cause.group(1).strip()} (in the folder {path.parent})") from err
        raise
    finally:
        with contextlib.suppress(OSError):  # a read-only folder refuses even this: its error was raised above
            tmp.unlink(missing_ok=True)


#: Free bytes below which a failed write is taken to have filled its disk (``torch.save`` reports a full
#: disk as a ``RuntimeError``, "unexpected pos ..." or "failed writing file", not as ``ENOSPC``).
_NEARLY_FULL_BYTES = 1 << 20


#: Errors that say the folder may not be written, whatever its free space (a read-only mount reports 0 bytes free).
_NOT_WRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)


def _disk_full(path: Path, err: BaseException) -> str | None:
    """The message for a write of ``path`` that failed (``err``) because its disk is full, else ``None`` (also
    for a folder that may not be written, :data:`_NOT_WRITABLE`: a read-only mount has no free bytes either)."""
    if isinstance(err, OSError) and err.errno in _NOT_WRITABLE:
        return None
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        free = None
    no_space = isinstance(err, OSError) and err.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
    if not no_space and (free is None or free >= _NEARLY_FULL_BYTES):
        return None
    left = f" ({free / 2**20:.1f} MiB free)" if free is not None else ""
    return (f"could not write {path}: no space left on the disk that holds {path.parent}{left}; the file is "
            f"unchanged (the new version went to a temporary file, now removed). Free some space there, or write "
            f"elsewhere, and run again (a training run: the same command with --resume)")


def check_writable(folder: str | os.PathLike[str], *, before: str = "", after: str = "") -> Path:
    """Make ``folder`` (and its parents) and create a file in it, removed at once: before minutes of work whose
    output goes there (a run's checkpoints, ``--record``, ``eval --json``, an executed notebook), so that a folder
    that cannot be written fails first, not after the work. Returns ``folder`` as a Path. ``before`` and ``after``
    frame the error's message (the file to be written, what to do).

    Raises:
        OSError: ``folder`` cannot be made (a file, or a broken link, stands where it or a parent folder belongs)
            or written in (read-only, no permission, a full disk); the message names it and says why.
    """
    import tempfile

    from .records import shown_path

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        blocking = next((p for p in (folder, *folder.parents) if p.is_symlink() or p.exists()), folder)
        why = (f"{shown_path(blocking)} is {'a broken link' if not blocking.exists() else 'a file'}, not a folder"
               if isinstance(err, (FileExistsError, NotADirectoryError)) and not blocking.is_dir()
               else err.strerror or str(err))
        raise OSError(f"{before}cannot write in {shown_path(folder)} ({why}){after}") from None  # without [Errno N]
    return folder


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """``Path(path).write_text(text, encoding="utf-8")`` through :func:`atomic_path`; returns ``path`` as a Path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files that :func:`atomic_path` left in ``folder`` when its process was killed.

    A file is stale when the process that wrote it (the pid in its name) no longer runs. Returns
    the removed paths; a missing folder is fine.
    """
    removed = []
    for tmp in Path(folder).glob(".*.tmp*"):
        match = _TEMPORARY.match(tmp.name)
        if match is None or not tmp.is_file() or _running(int(match.group(1))):
            continue
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def acquire_or_wait(lock: Any, timeout_s: float, waiting: str | None, *, stream: IO[str] | None = None) -> None:
    """Take ``lock`` (a :class:`filelock.FileLock`) at once or, when another process holds it, print ``waiting``
    (to ``stream``, standard output by default; nothing when ``None``) and wait for it at most ``timeout_s``
    seconds: a run's folder, a download, a book build.

    Raises:
        filelock.Timeout: the other process still held it after ``timeout_s`` (the caller names what waited).
        OSError: the lock file cannot be opened (a read-only folder; ``Timeout`` is an ``OSError`` too, so a
            caller catches ``Timeout`` first).
    """
    from filelock import Timeout

    try:
        lock.acquire(timeout=0)
    except Timeout:
        if waiting is not None:
            print(waiting, file=stream or sys.stdout, flush=True)
        lock.acquire(timeout=timeout_s)


def remove_abandoned_folders(parent: str | os.PathLike[str], prefix: str, *, older_than_s: float) -> list[Path]:
    """Remove the folders ``parent/<prefix><pid>_*`` of processes that were killed (their exit handlers never
    ran): a folder whose process (the pid in its name) no longer runs and that nobody touched for
    ``older_than_s`` seconds. A folder whose process runs is kept however old; one named without a pid
    (``<prefix>`` and no ``<pid>_``, an older version's) goes by its age alone. Returns the removed folders.

    :func:`owned_temporary_folder` names folders so (the smoke profile's runs, the book's kernels): a kernel
    killed by a time-out, a SIGHUP or SIGKILL left tens of MB in each.
    """
    import time

    owner = re.compile(rf"^{re.escape(prefix)}(\d+)_")
    removed, now = [], time.time()
    for folder in Path(parent).glob(f"{prefix}*"):
        named = owner.match(folder.name)
        if named is not None and _running(int(named.group(1))):
            continue
        try:
            if folder.is_dir() and now - folder.stat().st_mtime > older_than_s:
                shutil.rmtree(folder, ignore_errors=True)  # (not a link's target: rmtree refuses links)
                if not folder.exists():
                    removed.append(folder)
        except OSError:  # another process removed it meanwhile
            continue
    return removed


def owned_temporary_folder(prefix: str, *, abandoned_after_s: float) -> Path:
    """A fresh folder ``<prefix><pid>_<random>`` in the temporary folder, named after this process, once those of
    killed processes are removed (:func:`remove_abandoned_folders` with ``abandoned_after_s``): the smoke
    profile's runs and the book's kernels. The caller removes it when done."""
    import tempfile

    remove_abandoned_folders(tempfile.gettempdir(), prefix, older_than_s=abandoned_after_s)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}_"))


def _running(pid: int) -> bool:
    """Whether a process ``pid`` may still exist: signal 0 on POSIX (another user's process, which it may not
    signal, counts as running, as it does where ``/proc`` hides it from psutil), psutil's ``pid_exists`` on
    Windows (where signal 0 would be CTRL_C_EVENT); a pid no process can have is not running."""
    if pid == os.getpid():
        return True
    try:
        if os.name == "nt":
            import psutil

            return bool(psutil.pid_exists(pid))
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OverflowError, ValueError):  # a pid beyond the system's range, in a hand-named file
        return False
    except OSError:  # EPERM: another user's process
        return True
    return True
