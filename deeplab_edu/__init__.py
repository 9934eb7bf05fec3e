"""deeplab_edu: the helper package of the deeplab-edu course.

The notebooks in ``notebooks/`` teach; this package holds the code they import, one
module per concept, each named after the paper section or equation it implements.
See ``README.md`` for the map from chapters to modules.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .config import choose, device, profile

try:
    __version__ = version("deeplab-edu")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__", "choose", "device", "profile"]
