"""Checked exercises, one module per chapter (``ch01.py`` is chapter 01).

>>> from deeplab_edu.exercises import check, hint
>>> check("00.1", 8)          # doctest: +SKIP
>>> hint("00.1")              # doctest: +SKIP

A wrong answer gets an explanation; the exercise's hint comes with the second wrong answer to it,
or at once from ``hint``.
"""

from . import _core
from ._core import (
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

# assigned here, not imported, so that each has a `#:` comment autodoc reads: the API page documents them here
#: The kinds of exercise: one value, a prediction measured afterwards, a function to write.
KINDS = _core.KINDS
#: The placeholder (``...``) the notebooks put in answer cells; checking it says "not answered yet".
NOT_ANSWERED = _core.NOT_ANSWERED
#: The things a number in a text answer may count, by the ``unit`` a value exercise names
#: (:func:`value_exercise`): a word of another unit is refused, not judged as the number.
UNITS = _core.UNITS

__all__ = [
    "KINDS", "NOT_ANSWERED", "Exercise", "Feedback", "all_exercises", "check", "compare_results", "exercise",
    "function_exercise", "get", "hint", "measured_and_predicted", "number_problem", "prediction_made", "solved", "value_exercise",
    "WrongAnswer", "UNITS", "not_judged", "packaged_use",
]
