"""Downloads that cannot hang: a bound on how long a connection may stall.

``urllib`` (which torchvision's and torch.hub's downloads use) waits for ever on a server that
accepts the connection and then sends nothing. :func:`stall_timeout` bounds every blocking step
(connecting, each read) for the downloads of the data sets and the pretrained weights, so that a
stalled download fails with the caller's message ("downloading ... failed (TimeoutError: ...)")
instead of hanging. A slow download that keeps receiving data is not cut off.
"""

from __future__ import annotations

import contextlib
import os
import socket
from typing import Iterator

__all__ = ["DOWNLOAD_STALL_TIMEOUT_S", "stall_timeout"]

#: Seconds a download may wait for the next bytes (``$DEEPLAB_EDU_DOWNLOAD_TIMEOUT`` overrides it).
DOWNLOAD_STALL_TIMEOUT_S = 60.0


@contextlib.contextmanager
def stall_timeout(seconds: float | None = None) -> Iterator[float]:
    """Within the block, a socket operation that waits longer than ``seconds`` raises ``TimeoutError``.

    Sets the process's default socket timeout (``socket.setdefaulttimeout``, which ``urlopen``
    uses when it is given none) and restores the previous one afterwards.

    Args:
        seconds: the bound; ``None``: ``$DEEPLAB_EDU_DOWNLOAD_TIMEOUT``, else
            :data:`DOWNLOAD_STALL_TIMEOUT_S`.

    Raises:
        ValueError: the bound (or the environment variable) is not a positive number of seconds under a million.
    """
    if seconds is None:
        text = os.environ.get("DEEPLAB_EDU_DOWNLOAD_TIMEOUT", str(DOWNLOAD_STALL_TIMEOUT_S))
        try:
            seconds = float(text)
        except ValueError:
            raise ValueError(f"DEEPLAB_EDU_DOWNLOAD_TIMEOUT={text!r} is not a number of seconds") from None
    if not 0 < seconds < 1e6:  # inf or 1e300: socket.setdefaulttimeout fails with an OverflowError
        raise ValueError(f"a download stall timeout must be positive seconds, under a million, got {seconds} "
                         "(DEEPLAB_EDU_DOWNLOAD_TIMEOUT sets it; default 60)")
    before = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield seconds
    finally:
        socket.setdefaulttimeout(before)
