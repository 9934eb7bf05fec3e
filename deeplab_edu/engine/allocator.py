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

It changes the whole process: memory freed after training stays with the process (up to the
training's high-water mark) until it exits, which is what a training process wants. Other C
libraries (macOS, Windows, musl) are left alone. The :class:`~deeplab_edu.engine.trainer.Trainer`
calls :func:`keep_freed_memory` on the CPU unless ``keep_freed_memory: false`` is configured; the
environment variable ``GLIBC_TUNABLES=glibc.malloc.trim_threshold=...:glibc.malloc.mmap_threshold=...``
does the same for a whole process from its start.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["keep_freed_memory", "MMAP_THRESHOLD", "TRIM_THRESHOLD"]

#: ``M_TRIM_THRESHOLD`` and ``M_MMAP_THRESHOLD`` in glibc's ``<malloc.h>``.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: Blocks up to this size come from the heap and are reused (glibc's largest accepted value on 64-bit, 32 MiB).
MMAP_THRESHOLD = 32 * 2**20
#: Free memory at the top of the heap kept rather than returned to the OS (the largest ``int``).
TRIM_THRESHOLD = 2**31 - 1

_done: bool | None = None


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


def keep_freed_memory() -> bool:
    """Raise glibc's trim and mmap thresholds so that freed blocks up to 32 MiB are reused, not returned.

    Returns ``True`` if glibc accepted both settings (now or in an earlier call), ``False`` where
    there is no glibc or it refused; never raises. Idempotent.
    """
    global _done
    if _done is None:
        libc = _glibc()
        _done = bool(libc is not None and libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
                     and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1)
    return _done
