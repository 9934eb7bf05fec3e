"""Checked exercises, one module per chapter (``ch01.py`` is chapter 01).

>>> from deeplab_edu.exercises import check, hint
>>> check("00.1", 8)          # doctest: +SKIP
>>> hint("00.1")              # doctest: +SKIP

A wrong answer gets an explanation; the exercise's hint comes with the second wrong answer to it,
or at once from ``hint``.
"""

from ._core import (
    KINDS,
    NOT_ANSWERED,
    UNITS,
    Exercise,
    Feedback,
    WrongAnswer,
    all_exercises,
    check,
    compare_results,
    exercise,
    function_exercise,
    get,
    hint,
    measured_and_predicted,
    not_judged,
    number_problem,
    packaged_use,
    prediction_made,
    solved,
    value_exercise,
)

__all__ = [
    "KINDS", "NOT_ANSWERED", "Exercise", "Feedback", "all_exercises", "check", "compare_results", "exercise",
    "function_exercise", "get", "hint", "measured_and_predicted", "number_problem", "prediction_made", "solved", "value_exercise",
    "WrongAnswer", "UNITS", "not_judged", "packaged_use",
]
