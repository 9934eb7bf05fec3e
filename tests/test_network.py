"""Downloads fail after a stall instead of hanging (no network needed: a local server that never answers)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from deeplab_edu.network import stall_timeout


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A URL on this machine whose server accepts connections and never sends a byte."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/archive.zip"
    stop.set()
    thread.join(5)
    for conn in accepted:
        conn.close()
    server.close()


def test_a_stalled_dataset_download_fails_naming_it(silent_server: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from deeplab_edu.data import DatasetNotFoundError, camvid

    monkeypatch.setattr(camvid, "CAMVID_URL", silent_server)
    monkeypatch.setenv("DEEPLAB_EDU_DOWNLOAD_TIMEOUT", "1")
    start = time.monotonic()
    with pytest.raises(DatasetNotFoundError, match=r"downloading CamVid from http://127\.0\.0\.1.*failed.*timed out"):
        camvid.download_camvid(tmp_path)
    assert time.monotonic() - start < 30  # torchvision retries nothing here; without the bound it waited for ever


def test_stall_timeout_restores_the_default_and_checks_its_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    before = socket.getdefaulttimeout()
    with stall_timeout(2.5) as seconds:
        assert seconds == socket.getdefaulttimeout() == 2.5
    assert socket.getdefaulttimeout() == before
    monkeypatch.setenv("DEEPLAB_EDU_DOWNLOAD_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="DEEPLAB_EDU_DOWNLOAD_TIMEOUT='soon'"), stall_timeout():
        pass
    with pytest.raises(ValueError, match="must be positive"), stall_timeout(0):
        pass
    monkeypatch.setenv("DEEPLAB_EDU_DOWNLOAD_TIMEOUT", "inf")  # a trial: an OverflowError traceback
    with pytest.raises(ValueError, match=r"under a million, got inf \(DEEPLAB_EDU_DOWNLOAD_TIMEOUT sets it"):
        with stall_timeout():
            pass
