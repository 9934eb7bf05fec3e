"""Checked exercises, one module per chapter (``ch01.py`` is chapter 01).

>>> from deeplab_edu.exercises import check
>>> check("00.1", 8)          # doctest: +SKIP
"""

from ._core import NOT_ANSWERED, Exercise, Feedback, all_exercises, check, exercise, get

__all__ = ["NOT_ANSWERED", "Exercise", "Feedback", "all_exercises", "check", "exercise", "get"]
