"""Keep freed memory for the next training step: glibc's allocator on Linux, set with ``mallopt(3)``.

A training step allocates and frees the same large tensors every iteration. By default glibc's
``malloc`` gives freed memory back to the operating system (it trims the top of its heap once more
than ``M_TRIM_THRESHOLD`` bytes are free there, and serves blocks above ``M_MMAP_THRESHOLD`` with
``mmap``, unmapped again at ``free``), so the next step touches fresh pages: one page fault and a
zero-filled 4 KiB page each, about 1-4 microseconds apiece in a virtual machine. Measured on the
course's 2-core VM (issue 11, ``benchmarks/README.md``): a training step of DeepLabv3+ ResNet-50 at
128 px took 7 000-11 000 such faults, none with both thresholds raised; 100 iterations of the
``cpu`` preset took 37.9 s (mean of three runs) with this setting against 40.8 s without, and
0.45-0.48 against 2.5-4.6 million minor faults (DataLoader workers included). PyTorch's Performance Tuning Guide
(CPU-specific optimizations, "Switch Memory Allocator") recommends an allocator that reuses memory
(jemalloc, TCMalloc) for this reason; this gets the same reuse from the allocator already loaded.

The setting is the whole process's, so the engine keeps it to training, where it pays:
:func:`freed_memory_kept` sets it for a ``with`` block, and :meth:`~deeplab_edu.engine.trainer.Trainer.fit`
trains in one on the CPU unless ``keep_freed_memory: false`` is configured. As the last such block
ends, however (fits running side by side in one process are counted), the trim threshold goes down to
:data:`AFTER_TRAINING_TRIM_THRESHOLD` and ``malloc_trim(0)`` returns the memory freed by then to the
operating system: a notebook's kernel keeps no training's high-water mark (an audit: once a Trainer had been
built, 255 MiB of a ResNet-50's freed memory stayed with the process for good, against 89 MiB with the
defaults). The thresholds are not put back to glibc's starting 128 KiB: setting either one turns off its
*dynamic* mmap threshold for good (``mallopt(3)``), so a fixed 128 KiB would map and unmap every larger
block afterwards (a review: inference after a training then took ~140 000 page faults a forward and twice
the CPU time of a fresh kernel's). They are left where glibc's dynamic rule takes them once blocks of a
training's size have been freed: an mmap threshold of 32 MiB and a trim threshold twice that. A process started with either threshold in ``GLIBC_TUNABLES`` (e.g.
``GLIBC_TUNABLES=glibc.malloc.trim_threshold=2147483647:glibc.malloc.mmap_threshold=33554432``, the
same setting for a whole process from its start) is left as its owner set it. :func:`keep_freed_memory`
sets it for the rest of the process, as a benchmark's process wants (``deeplab-edu bench``); a block
then undoes nothing. Other C libraries (macOS, Windows, musl) are left alone.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import sys
import threading
from typing import Iterator

__all__ = ["keep_freed_memory", "freed_memory_kept", "MMAP_THRESHOLD", "TRIM_THRESHOLD", "AFTER_TRAINING_TRIM_THRESHOLD"]

#: ``M_TRIM_THRESHOLD`` and ``M_MMAP_THRESHOLD`` in glibc's ``<malloc.h>``.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: Blocks up to this size come from the heap and are reused (glibc's largest accepted value on 64-bit, 32 MiB).
MMAP_THRESHOLD = 32 * 2**20
#: Free memory at the top of the heap kept rather than returned to the OS (the largest ``int``).
TRIM_THRESHOLD = 2**31 - 1
#: The trim threshold as the last training ends (the mmap threshold stays at :data:`MMAP_THRESHOLD`): where
#: glibc's dynamic rule puts it after freeing a mapped block of 32 MiB, twice the mmap threshold (64 MiB).
AFTER_TRAINING_TRIM_THRESHOLD = 2 * MMAP_THRESHOLD
#: The ``GLIBC_TUNABLES`` names of the two thresholds: a process started with one is left as it is.
_TUNABLES = ("glibc.malloc.trim_threshold", "glibc.malloc.mmap_threshold")

_done: bool | None = None  # keep_freed_memory's answer: set for the rest of the process (None: not asked)
_blocks = 0  # freed_memory_kept blocks running with the setting
_lock = threading.Lock()


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return None  # not glibc (musl has a mallopt that does nothing)
    return libc


@functools.lru_cache(maxsize=None)
def _libc() -> ctypes.CDLL | None:
    """:func:`_glibc`, looked up once (``find_library`` runs ``ldconfig``): the C library each training sets."""
    return _glibc()


def _keep(libc: ctypes.CDLL) -> bool:
    """Both thresholds raised; whether glibc accepted them (it refuses 32 MiB on 32-bit, changing nothing)."""
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
                and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1)


def keep_freed_memory() -> bool:
    """Raise glibc's trim and mmap thresholds so that freed blocks up to 32 MiB are reused, not returned,
    for the rest of the process (a training inside it does not undo it as it ends; :func:`freed_memory_kept`
    is the setting for a training only).

    Returns ``True`` if glibc accepted both settings (now or in an earlier call), ``False`` where
    there is no glibc or it refused; never raises. Idempotent.
    """
    global _done
    with _lock:
        if _done is None:
            libc = _glibc()
            _done = libc is not None and _keep(libc)
        return _done


@contextlib.contextmanager
def freed_memory_kept(enabled: bool = True) -> Iterator[bool]:
    """:func:`keep_freed_memory`'s setting for a ``with`` block (a training), undone as it is left, however:
    as the last block of the process ends, glibc's trim threshold goes down to
    :data:`AFTER_TRAINING_TRIM_THRESHOLD` (the mmap threshold stays at 32 MiB, where glibc's dynamic rule
    would take it; see the module's docstring) and ``malloc_trim(0)`` returns the freed memory to the
    operating system.

    Yields whether freed memory is kept in the block. Nothing is set or undone where ``enabled`` is false,
    without glibc, where ``GLIBC_TUNABLES`` sets either threshold (the process's owner chose them), or where
    :func:`keep_freed_memory` set it for the whole process; never raises.
    """
    global _blocks
    libc = _libc() if enabled else None
    tuned = any(name in os.environ.get("GLIBC_TUNABLES", "") for name in _TUNABLES)
    with _lock:
        mine = libc is not None and not tuned and not _done and (_blocks > 0 or _keep(libc))
        if mine:
            _blocks += 1
    try:
        yield mine or bool(enabled and _done)
    finally:
        if mine and libc is not None:
            with _lock:
                _blocks -= 1
                if _blocks == 0 and not _done:  # the last training, and no one kept it for the process
                    libc.mallopt(_M_TRIM_THRESHOLD, AFTER_TRAINING_TRIM_THRESHOLD)
                    libc.malloc_trim(0)
