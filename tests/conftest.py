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
