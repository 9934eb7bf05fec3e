"""Data for the course: the offline procedural scenes and the real data sets."""

from .classes import IGNORE_INDEX, ClassInfo
from .procedural import ProceduralScenes

__all__ = ["IGNORE_INDEX", "ClassInfo", "ProceduralScenes"]
