"""deeplab_edu: the helper package of the deeplab-edu course.

The notebooks in ``notebooks/`` teach; this package holds the code they import, one
module per concept, each named after the paper section or equation it implements.
See ``README.md`` for the map from chapters to modules.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from .config import choose, device, profile


def source_version(pyproject: Path = Path(__file__).resolve().parent.parent / "pyproject.toml") -> str:
    """The version in the source tree's ``pyproject.toml`` with the local label ``+source`` (for a
    package imported from a checkout without being installed, e.g. through ``PYTHONPATH``), or
    ``"0.0.0+unknown"`` when there is no readable ``pyproject.toml`` with a ``[project] version``."""
    import tomllib

    try:
        return str(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["version"]) + "+source"
    except (OSError, KeyError, TypeError, tomllib.TOMLDecodeError):
        return "0.0.0+unknown"


try:
    __version__ = version("deeplab-edu")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = source_version()

__all__ = ["__version__", "choose", "device", "profile", "source_version"]
