"""Shared fixtures: repository paths and the optional CamVid copy."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")  # before anything imports matplotlib

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
CAMVID_DIR = Path(os.environ.get("DEEPLAB_EDU_CAMVID", REPO_ROOT.parent / "shared" / "data" / "camvid"))


@pytest.fixture(autouse=True)
def _smoke_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests run in the smoke profile unless a test says otherwise."""
    monkeypatch.setenv("DEEPLAB_EDU_PROFILE", "smoke")
    monkeypatch.setenv("MPLBACKEND", "Agg")


@pytest.fixture
def camvid_root() -> Path:
    """The shared CamVid copy (train + val); skips the test with the reason when absent."""
    if not (CAMVID_DIR / "train.txt").is_file():
        pytest.skip(f"CamVid copy not found at {CAMVID_DIR} (set DEEPLAB_EDU_CAMVID to point at one)")
    return CAMVID_DIR


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a network connection fails the way it fails offline (URLError)."""
    import socket
    import urllib.error

    def refuse(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def offline_torch_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: None) -> Path:
    """No network and an empty torch hub cache (``TORCH_HOME``, returned): downloads must fail."""
    import torch.hub

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)
    return tmp_path


@pytest.fixture(scope="session")
def built_book(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The book built once per test session in the ``smoke`` profile: its HTML folder.

    Shared by every test that looks at the built pages (tests/test_book.py, the browser tests), so
    the notebooks are executed and the book is built only once. Fails, naming the notebook and
    cell, when a notebook fails or Sphinx fails.
    """
    from deeplab_edu.book import build_book

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DEEPLAB_EDU_PROFILE", "smoke")
        html, _warnings = build_book(tmp_path_factory.mktemp("book"), quiet=True)
    return html
