"""The exercise checker shared by every chapter.

Each chapter module (``ch01.py``, ``ch02.py``, ...) registers its exercises with
:func:`exercise`. A checker receives the learner's answer and returns ``None`` when
it is right, or a sentence that says *what* is wrong (never just "wrong"). The
notebooks call :func:`check`::

    from deeplab_edu.exercises import check
    check("01.1", my_answer)

Every exercise also carries a reference ``solution`` so the test suite can prove
that the checker accepts the right answer and rejects wrong ones.

Three kinds of exercise (``Exercise.kind``), each with a shared builder so that the chapter
modules hold questions and feedback, not checking code:

* ``"value"``: one answer (a number, a tuple, a name), :func:`value_exercise`;
* ``"predict"``: predict a value, then measure it in the notebook with the package
  (:func:`value_exercise` with ``kind="predict"``; the notebook's next cell does the measuring);
* ``"function"``: write a small function; :func:`function_exercise` runs it against the
  package's reference on fixed edge cases and seeded random inputs, and recognises typical
  mistakes by running a known wrong implementation on the same inputs.

In both builders, ``mistakes`` pairs a typical wrong answer (or wrong function) with the sentence
that explains it: that is the targeted feedback, and the tests check that each one is given.

What the feedback may say. A message explains what is wrong: which quantity or concept, and in which
direction (too large, too small) where that helps. It never states the worked computation with the
exercise's numbers filled in, nor names the package call that returns the answer: the catch-all
``otherwise`` message especially, since any guess gets it. A targeted ``mistakes`` message names the
misconception but not the final number.

Hints escalate. An exercise's ``hint`` (a step towards the answer, never the finished code) is not
given with the first wrong answer to an exercise: that one ends by saying a hint comes with the
next. From the learner's second wrong answer to the same exercise in this Python session on, the
hint follows the explanation. :func:`hint` gives it at once. A hint may come in steps, a tuple: a
nudge towards the idea first, the formula only with the next wrong answer (or the next call of
:func:`hint`), so that a learner who needed only the nudge still works the formula out. An
unanswered exercise and an answer of the wrong kind or form (a string where a number is asked, one
number where a pair is: :func:`not_judged`) are not wrong tries and do not count; a number that is
the right kind but cannot be right (28.125 where a count is asked, 38 where a fraction is) is a wrong
answer, which counts: it comes from a slip in the working (225 / 8 not rounded up, a percentage), and
the hint helps with that.
"""

from __future__ import annotations

import contextlib
import copy
import dis
import functools
import importlib
import inspect
import math
import re
import signal
import sys
import threading
import time
import types
import warnings
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from ..config import course_checks

__all__ = [
    "Exercise", "Feedback", "exercise", "value_exercise", "function_exercise", "number_problem",
    "compare_results", "check", "solved", "prediction_made", "hint", "get", "all_exercises", "not_judged",
    "measured_and_predicted", "packaged_use", "NOT_ANSWERED", "KINDS", "UNITS", "WrongAnswer",
]

Checker = Callable[[Any], "str | None"]
#: The kinds of exercise: one value, a prediction measured afterwards, a function to write.
KINDS = ("value", "predict", "function")


@dataclass(frozen=True)
class Exercise:
    """One exercise: its id (``"CC.N"``, chapter and number), a title, a checker and a solution."""

    key: str
    title: str
    checker: Checker
    solution: Callable[[], Any]
    wrong_answers: tuple[Any, ...] = field(default=())
    hints: tuple[str, ...] = field(default=())
    kind: str = "value"
    #: (typical wrong answer, the explanation it must get), for the tests.
    mistakes: tuple[tuple[Any, str], ...] = field(default=())
    #: What the answer key adds to the computed answer: e.g. that it depends on the machine.
    key_note: str = ""

    @property
    def hint(self) -> str:
        """The last, most explicit step of the hint ("" when the exercise has none)."""
        return self.hints[-1] if self.hints else ""


@dataclass(frozen=True, repr=False)
class Feedback:
    """The result of :func:`check`; truthy when the answer is right. Shown as its sentence: in a notebook as
    Markdown, in a Python prompt as ``[01.2] not yet: ...`` (``key``, ``correct`` and ``message`` are its fields)."""

    key: str
    correct: bool
    message: str

    def __bool__(self) -> bool:
        return self.correct

    def __str__(self) -> str:
        mark = "correct" if self.correct else "not yet"
        return f"[{self.key}] {mark}: {self.message}"

    __repr__ = __str__  # a Python prompt shows the sentence, not Feedback(key=..., correct=..., message=...)

    def _repr_markdown_(self) -> str:
        # text marks, not emoji: a machine without an emoji font draws those as empty boxes
        verdict = "✓ correct" if self.correct else "✗ not yet"
        return f"**Exercise {self.key}: {verdict}.** {self.message}"


_REGISTRY: dict[str, Exercise] = {}


class WrongAnswer(AssertionError):
    """:func:`check` judged an answer wrong where the course checks itself (``DEEPLAB_EDU_COURSE_CHECKS``)."""

#: Placeholder the notebooks put in answer cells; checking it says "not answered yet".
NOT_ANSWERED = ...


def _unanswered(value: Any) -> bool:
    """``...`` (the notebooks' placeholder) or ``None``: not answered yet."""
    return value is NOT_ANSWERED or value is None


class _NotTried(str):
    """A checker's message for an answer not tried yet (a function stub that returns nothing):
    :func:`check` reports it without the exercise's hint, which is for a wrong answer."""


class _Unreadable(str):
    """A checker's message for an answer of the wrong kind (a string where a number is asked): the
    value was not judged, so :func:`check` gives no hint about the reasoning behind it."""


def not_judged(message: str) -> str:
    """A mistake message of :func:`value_exercise` for an answer of the wrong form (one number where a pair
    is asked, two rates of three): like an answer of the wrong kind, it is not a wrong try and brings no hint."""
    return _Unreadable(message)


def _as_scalar(value: Any) -> Any:
    """``value`` as a Python number when it is a 0-d tensor or array (``(x > 0).sum()``,
    ``F.cross_entropy(...)``), a ``Fraction`` or a ``Decimal`` (an int when it is whole, else a float),
    else unchanged: a measured or exactly computed number is accepted as it comes."""
    if isinstance(value, (torch.Tensor, np.ndarray)) and value.ndim == 0:
        return value.item()
    if isinstance(value, Fraction) or (isinstance(value, Decimal) and value.is_finite()):
        return int(value) if value == int(value) else float(value)
    return value


def exercise(
    key: str,
    title: str,
    *,
    solution: Callable[[], Any],
    wrong_answers: tuple[Any, ...] = (),
    hint: str | tuple[str, ...] = "",
    kind: str = "value",
    mistakes: tuple[tuple[Any, str], ...] = (),
    key_note: str = "",
) -> Callable[[Checker], Checker]:
    """Register ``checker`` as exercise ``key``.

    Args:
        key: ``"CC.N"``: two-digit chapter, then the exercise number.
        title: a short title, shown in feedback.
        solution: a zero-argument function returning a correct answer (used by tests
            and by the hidden solution cells).
        wrong_answers: plausible mistakes the checker must reject (tested).
        hint: a step towards the answer (not the finished code), shown from the second wrong answer on,
            or at once by :func:`hint`; a tuple gives it in steps, one more with each later wrong answer
            (or call of :func:`hint`): the idea first, the formula last.
        kind: ``"value"``, ``"predict"`` or ``"function"`` (see the module docstring).
        mistakes: (wrong answer, explanation) pairs whose explanation the checker must give.
        key_note: what the teacher's answer key (``python -m deeplab_edu.exercises``) says beside
            the computed answer, e.g. that another machine computes another one.

    Raises:
        ValueError: ``key`` is registered twice, or ``kind`` is unknown.
    """
    if kind not in KINDS:
        raise ValueError(f"exercise {key!r}: kind must be one of {KINDS}, got {kind!r}")

    def register(checker: Checker) -> Checker:
        if key in _REGISTRY:
            raise ValueError(f"exercise {key!r} is registered twice")
        hints = (hint,) if isinstance(hint, str) else tuple(hint)
        _REGISTRY[key] = Exercise(key, title, checker, solution, tuple(wrong_answers), tuple(h for h in hints if h),
                                  kind, tuple(mistakes), key_note)
        return checker

    return register


# ---------------------------------------------------------------------------------------------
# Shared checking: answers of one value
# ---------------------------------------------------------------------------------------------
ANSWER_TYPES = ("number", "whole", "fraction", "ints", "text", "array")


def shown(value: Any) -> str:
    """A number as feedback shows it: whole numbers in full (4718848, not 4.71885e+06), others of 1 or more
    in full to at most six decimals (4784640.5, not 4.78464e+06: a learner's trial read the latter as a
    whole number), smaller ones to six significant digits."""
    try:
        x = float(value)
    except (TypeError, ValueError, OverflowError):
        return repr(value)
    if math.isfinite(x) and x.is_integer() and abs(x) < 1e16:
        return str(int(x))
    if math.isfinite(x) and 1 <= abs(x) < 1e16:
        text = f"{x:.6f}".rstrip("0").rstrip(".")
        return text if "." in text else repr(x)  # 4784640.0000001 must not read as the whole 4784640
    return f"{x:.6g}"


def _one_side(values: Any) -> str:
    """The hint for several numbers where one is asked: only two equal ones read as a square's two sides."""
    return " (for a square window or map, the length of its side)" if len(values) == 2 and values[0] == values[1] else ""


def _a(noun: str) -> str:
    """``noun`` with its indefinite article: "a Tensor", "an ndarray"."""
    return f"{'an' if noun[:1].lower() in 'aeiou' or noun.startswith('nd') else 'a'} {noun}"


#: A count written rounded, with a scale: ``"2.2M"``, ``"15 thousand"``, and with what it counts after the scale
#: (a census: ``"0.64 GMACs"`` and ``"2.21M params"`` were told to write 0.64 and 2.21, then "not a whole number").
#: ``"642 MACs"`` is no scale: the unit must follow the scale letter whole.
_SCALED_TEXT = re.compile(r"\s*(\d{1,3}(?:,\d{3})+|\d*\.?\d+)\s*([kKMGB]|thousand|million|billion|mil|bn)\s*(?:MACs?|FLOPs?|"
                          r"params?|parameters?|weights?|multiply-adds?)?\s*\.?\s*", re.IGNORECASE)


def number_problem(answer: Any, *, whole: bool = False, fraction: bool = False) -> str | None:
    """What is wrong with ``answer`` as a number (``None`` when it is one).

    Args:
        whole: it must be a whole number (a count of pixels, channels, parameters).
        fraction: it must lie between 0 and 1.
    """
    answer = _as_scalar(answer)
    if isinstance(answer, str) and (number := _number_in_text(answer)) is not None:
        return _Unreadable(f"expected a number, got the text {answer!r}: write the number itself, without quotes"
                           f"{', separators or unit' if number != answer.strip() else ''}: {number}.")
    if (isinstance(answer, (list, tuple)) and len(answer) == 1
            and isinstance(answer[0], (int, float, np.integer, np.floating)) and not isinstance(answer[0], bool)):
        return _Unreadable(f"expected a number, got a {type(answer).__name__} of one: write {shown(answer[0])} "
                           "itself, without brackets.")
    if isinstance(answer, (np.ndarray, torch.Tensor)) and answer.ndim >= 1:
        if (answer.size if isinstance(answer, np.ndarray) else answer.numel()) == 1:
            # (1,) and (1, 1) alike: a value kept inside a batch dimension (a trial's [[13]] was "got Tensor")
            return _Unreadable(f"expected a number, got {_a(type(answer).__name__)} of shape {tuple(answer.shape)} "
                               f"holding one: write {shown(answer.reshape(-1)[0].item())} itself (`x.item()` gives "
                               "it), without brackets.")
        return _Unreadable(f"expected one number, got {_a(type(answer).__name__)} of shape {tuple(answer.shape)}: the "
                           "question asks for a single value.")
    if isinstance(answer, str) and _is_calculation(answer):  # "2**3", "16 / 4": a sum left to do
        return _Unreadable(f"expected a number, got the text {answer!r}, a calculation: write it without quotes "
                           "and Python computes it, or write its result.")
    several = parse_ints(answer) if isinstance(answer, str) else answer
    if (isinstance(several, (list, tuple)) and len(several) > 1
            and all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in several)):
        return _Unreadable(f"expected one number, got {len(several)} numbers ({_brief(answer)}): the question asks "
                           f"for a single value{_one_side(several)}.")
    if isinstance(answer, str) and (scaled := _SCALED_TEXT.fullmatch(answer)):
        # a learner's trial: "2.2M" was told to write "2.2", which is then no whole number
        return _Unreadable(f"expected a number, got the text {answer!r}: write the number in full, in digits and "
                           f"without quotes ({scaled[1]}{scaled[2]} is a rounded count; the exercise wants every "
                           "digit).")
    if isinstance(answer, str):  # "8x", "3 apples", "zero", "2.212.352": words around or instead of the number
        found = re.findall(r"\d*\.\d+|\d+", answer)
        return _Unreadable(f"expected a number, got the text {answer!r}: write the number alone, in digits, without "
                           f"quotes, words or units{f' ({found[0]})' if len(found) == 1 else ''}.")
    if isinstance(answer, bool) or not isinstance(answer, (int, float, np.integer, np.floating)):
        return _Unreadable(f"expected a number, got {type(answer).__name__}.")
    try:
        finite = math.isfinite(float(answer))
    except OverflowError:
        return "that number is far too large to be the answer."
    if not finite:
        return f"{answer} is not a finite number."
    if whole and float(answer) != int(answer):
        return f"{shown(answer)} is not a whole number: this counts things."
    if fraction and not 0 <= answer <= 1:
        return f"{shown(answer)} is not a fraction between 0 and 1 (did you give a percentage or a count?)."
    return None


#: One number as a learner might type it in quotes: thousands separators, a unit after it (a per cent sign
#: too: ``"38%"`` reads as 38, except where a fraction is asked: there it is refused as a percentage).
_NUMBER_TEXT = re.compile(r"([-+]?(?:(?:\d{1,3}(?:[,_ ]\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?)\s*(px|%|img|"
                          r"(?:pixel|cell|row|column|position|input|param|parameter|weight|channel|image|sample|"
                          r"step|iteration|layer)s?|pass(?:es)?|branch(?:es)?|class(?:es)?)?\.?", re.IGNORECASE)

#: A number written with a decimal comma, as much of Europe writes it (a census: "0,82" was "2 numbers").
_DECIMAL_COMMA = re.compile(r"\s*([-+]?)(\d+),(\d+)\s*")

#: The things a number in text may count (:data:`_NUMBER_TEXT`'s unit words), by the ``unit`` a value
#: exercise names (:func:`value_exercise`): a word of another unit is refused, not judged as the number.
UNITS: dict[str, tuple[str, ...]] = {
    # a cell of a feature map is a position, as a pixel is of an image (a census: "22 rows", "10 inputs" where the
    # question asks how many rows or input positions)
    "pixel": ("px", "pixel", "cell", "row", "column", "position", "input"),
    "parameter": ("param", "parameter", "weight"),
    "channel": ("channel",),
    "image": ("image", "img", "sample"),
    "step": ("step", "iteration"),
    "pass": ("pass",),
}


def _unit_in_text(text: str) -> str | None:
    """The unit word after the number ``text`` spells, singular and in lower case (``"7 layers"``: ``"layer"``);
    ``None`` without one."""
    match = _NUMBER_TEXT.fullmatch(text.strip())
    if match is None or match.group(2) is None:
        return None
    word = match.group(2).lower()
    if word.endswith(("passes", "branches", "classes")):
        return word[:-2]
    return word[:-1] if word.endswith("s") and word not in ("pass", "class") else word


def _unit_problem(answer: Any, unit: str) -> str | None:
    """Why text such as ``"7 layers"`` does not answer an exercise that counts ``unit`` (``None`` if it may)."""
    word = _unit_in_text(answer) if unit and isinstance(answer, str) else None
    if word is None or word in UNITS[unit]:
        return None
    plural = {"%": "per cent", "px": "pixels", "img": "images", "pass": "passes", "branch": "branches",
              "class": "classes"}
    return _Unreadable(f"{answer!r} is in {plural.get(word, word + 's')}, but this exercise asks for a number of "
                       f"{plural.get(unit, unit + 's')}: write the number alone, in digits, without quotes or unit.")


#: A calculation written as text: numbers joined by + - * / ** (with brackets), at least one operator.
_ARITHMETIC = re.compile(r"\(*\s*[-+]?\d+(?:\.\d+)?\s*\)*(?:\s*(?:\*\*|[-+*/])\s*\(*\s*[-+]?\d+(?:\.\d+)?\s*\)*)+")


def _is_calculation(text: str) -> bool:
    """``text`` is a calculation (``"2**3"``, ``"16 / 4"``, ``"2*4 + 1"``, ``"4*4*2"``); ``"3*3"`` or
    ``"3x3"`` alone is not, since it reads as a window's two sides (:func:`parse_ints`)."""
    text = text.strip()
    return bool(_ARITHMETIC.fullmatch(text) and (re.search(r"\*\*|/|[\d)]\s*[-+]", text) or text.count("*") >= 2))


def _number_in_text(text: str) -> str | None:
    """The number ``text`` spells (``"13"``, ``" 0.5 "``, ``"1e3"``, ``"15,731,712"``, ``"160px"``, ``"38%"``, with a
    counted thing too: ``"0 params"``, ``"1536 channels"``, ``"32 images"``), as Python reads it (``"15731712"``);
    ``None`` when it spells none (``"8x"``: a factor, not a count)."""
    match = _NUMBER_TEXT.fullmatch(text.strip())
    if match is None:
        return None
    number = re.sub(r"[,_ ]", "", match.group(1))
    try:
        float(number)
    except ValueError:
        return None
    return number


def _spelled_number(answer: Any) -> Any:
    """``answer`` as the number it spells when it is text that spells one (:func:`_number_in_text`: an int
    for ``"13"`` or ``"15,731,712"``, a float for ``"0.5"`` or ``"1e3"``), else unchanged."""
    if isinstance(answer, str) and (number := _number_in_text(answer)) is not None:
        return float(number) if any(c in number for c in ".eE") else int(number)
    return answer


def direction(answer: Any, target: Any, *, more: str = "too large", less: str = "too small") -> str:
    """``"too large"`` or ``"too small"`` (or the words given): where ``answer`` lies from ``target``,
    for a feedback message that must not state the target itself (``""`` when they are equal or
    cannot be compared)."""
    try:
        a, t = float(answer), float(target)
    except (TypeError, ValueError, OverflowError):
        return ""
    return more if a > t else less if a < t else ""


def normalise_text(text: str) -> str:
    """A text answer in the form answers are compared in: lower case, hyphens and underscores as
    spaces, runs of spaces as one, surrounding quotes dropped (``"Not_Resolved"``, ``"not-resolved"`` and
    ``"'not resolved'"`` read as ``"not resolved"``)."""
    return " ".join(text.strip().strip("'\"").lower().replace("-", " ").replace("_", " ").split())


def _parse_list(text: str, kind: Callable[[str], Any], separators: str) -> tuple[Any, ...] | None:
    """The numbers of ``kind`` (``int``, ``float``) written as text between optional brackets and split by
    spaces or ``separators``, as a tuple; ``None`` when ``text`` is not such a list."""
    inner = text.strip().strip("()[]").strip()
    for separator in separators:
        inner = inner.replace(separator, " ")
    parts = inner.split()
    try:
        return tuple(kind(p) for p in parts) if parts else None
    except ValueError:
        return None


def parse_ints(text: str) -> tuple[int, ...] | None:
    """Whole numbers written as text, ``"(1, 3)"``, ``"1x3"``, ``"1 x 3"``, ``"3x11x50x70"`` or
    ``"[-1, 2, 5]"``, as a tuple; ``None`` when ``text`` is not such a list."""
    return _parse_list(text, int, "×*xX,")


def _example(n: int) -> str:
    return "(" + ", ".join(str(i) for i in range(1, n + 1)) + ("," if n == 1 else "") + ")"


def _form(answer_type: str, solution: Callable[[], Any]) -> str:
    """How to answer, for an answer of the wrong kind: ``"a tuple of 2 whole numbers, e.g. (1, 2)"``."""
    if answer_type == "ints":
        try:
            n = len(solution())
        except Exception:  # a solution that cannot be computed here: no example rather than a wrong one
            return "a list or tuple of whole numbers"
        return (f"a list or tuple of {n} whole numbers, e.g. {_example(n)}" if n > 1
                else "a list or tuple of whole numbers")
    if answer_type == "text":
        return "a name (a string)"
    if answer_type == "array":
        return "an array of numbers (a nested list, a NumPy array or a tensor)"
    return "a number"


def _ragged(answer: Any) -> str | None:
    """Why a nested list is not an array: its rows have different lengths (``None`` when they do not)."""
    if not isinstance(answer, (list, tuple)) or not answer:
        return None
    rows = [len(row) if isinstance(row, (list, tuple)) or (isinstance(row, (np.ndarray, torch.Tensor)) and row.ndim)
            else None for row in answer]  # a 0-d array or tensor is a number (a census: a pair of them raised)
    if None in rows:
        return None if all(r is None for r in rows) else ("some items are numbers and others are rows: in an array "
                                                          "every item is a row of the same length.")
    if len(set(rows)) > 1:
        return (f"the rows have different lengths ({', '.join(map(str, rows))}): every row of an array has the same "
                "number of entries.")
    return None


def _normalise(answer: Any, answer_type: str, form: str = "", *, unit: str = "") -> tuple[Any, str | None]:
    """The answer in a comparable form, or the reason it cannot be read (``form`` says how to answer; ``unit``
    what a number counts, as :func:`value_exercise` takes it)."""
    form = form or _form(answer_type, lambda: ())
    if answer_type in ("number", "whole", "fraction"):
        if (wrong_unit := _unit_problem(answer, unit)) is not None:
            return answer, wrong_unit
        if isinstance(answer, str) and (comma := _DECIMAL_COMMA.fullmatch(answer)) and (
                comma[2] == "0" or len(comma[3]) != 3):  # "0,82", "3,8": not "15,731" (a thousands separator)
            return answer, _Unreadable(f"{answer!r} has a decimal comma: Python writes a decimal point, "
                                       f"{comma[1]}{comma[2]}.{comma[3]}, without quotes.")
        if answer_type == "fraction" and isinstance(answer, str) and _unit_in_text(answer) == "%":
            # a census: "1%" for 0.01 was judged as 1, "too large"; the sign says what the learner meant
            return answer, _Unreadable(f"{answer!r} is a percentage: this exercise asks for a fraction between 0 and 1 "
                                       "(50% is 0.5), written without quotes.")
        # a checker called directly, not through check(), gets a 0-d tensor as is; "13", "15,731,712" or
        # "160px" is judged as the number it spells, as "1x3" is as a list of numbers
        answer = _spelled_number(_as_scalar(answer))
        problem = number_problem(answer, whole=answer_type == "whole", fraction=answer_type == "fraction")
        return answer, problem
    if answer_type == "ints":
        if isinstance(answer, (np.ndarray, torch.Tensor)) and answer.ndim == 1:
            answer = answer.tolist()  # np.array([3, 11]) or torch.tensor([3, 11]) for (3, 11)
        if isinstance(answer, str) and (parsed := parse_ints(answer)) is not None:
            answer = parsed  # "1x3", "1 x 3", "(1, 3)"
        if isinstance(answer, (str, bytes)) or not isinstance(answer, Sequence):
            return answer, _Unreadable(f"answer with {form}.")
        if not all(number_problem(v, whole=True) is None for v in answer):
            return answer, _Unreadable(f"answer with {form}.")
        return tuple(int(v) for v in answer), None
    if answer_type == "text":
        if not isinstance(answer, str):
            return answer, _Unreadable(f"answer with {form}, got {type(answer).__name__}.")
        return normalise_text(answer), None
    if answer_type == "array":
        if isinstance(answer, str) and (parsed_floats := _parse_list(answer, float, ",")) is not None:
            answer = parsed_floats  # "0.1353, 0.6064" as the ints' "1, 3" (a trial was told to give two numbers)
        if (ragged := _ragged(answer)) is not None:
            return answer, _Unreadable(ragged)
        try:
            arr = np.asarray(answer.detach().cpu() if isinstance(answer, torch.Tensor) else answer, dtype=float)
        except (TypeError, ValueError, OverflowError):
            return answer, _Unreadable(f"answer with {form}.")
        if not np.isfinite(arr).all():
            return answer, _Unreadable(f"{int((~np.isfinite(arr)).sum())} of its entries are not finite numbers "
                                       "(nan or inf): answer with finite numbers.")
        return arr, None
    raise ValueError(f"answer_type must be one of {ANSWER_TYPES}, got {answer_type!r}")


def _matches(answer: Any, target: Any, rel_tol: float, abs_tol: float) -> bool:
    if isinstance(answer, np.ndarray):
        target = np.asarray(target, dtype=float)
        # a hair of tolerance even for exact answers: a count map computed in floating point is right too
        return answer.shape == target.shape and bool(np.allclose(answer, target, rtol=rel_tol, atol=max(abs_tol, 1e-9)))
    if isinstance(answer, tuple):
        return answer == tuple(target) if isinstance(target, Sequence) and not isinstance(target, str) else False
    if isinstance(answer, str):
        return isinstance(target, str) and answer == normalise_text(target)
    if isinstance(target, (int, float, np.integer, np.floating)) and not isinstance(target, bool):
        if rel_tol == 0 and abs_tol == 0:
            return answer == target
        return math.isclose(answer, target, rel_tol=rel_tol, abs_tol=abs_tol)
    return False


def _looks_rounded(answer: Any, target: Any) -> bool:
    """``answer`` is a whole ``target`` of 100 or more rounded (or cut) to tens or more, at least its first two
    digits kept: 15,732,000, 15,700,000 or 16,000,000 for 15,731,712; 27,800 or 28,000 for 27,776."""
    try:
        a, t = int(answer), int(target)
        if a != float(answer):  # 27780.5: not a whole number, so no rounding of one
            return False
    except (TypeError, ValueError, OverflowError):
        return False
    if a == t or abs(t) < 100:
        return False
    return any(a % 10 ** p == 0 and abs(a - t) < 10 ** p for p in range(1, len(str(abs(t))) - 1))


def _rounded_count(answer: Any, target: Any) -> str | None:
    """Feedback for a count given rounded (:func:`_looks_rounded`), or in thousands, millions or billions within
    1 % of ``target`` (0.642 or 642 for 642,318,336: GMACs, MMACs); ``None`` for any other answer. The message
    says the answer is close, never the count."""
    if _looks_rounded(answer, target):
        return (f"{shown(answer)} is close, but it looks rounded: this exercise wants the exact count (every "
                "term of it), not a rounded one.")
    try:
        a, t = float(answer), float(target)
    except (TypeError, ValueError, OverflowError):
        return None
    if not (math.isfinite(a) and a > 0 and t >= 1000):
        return None
    for factor, name in ((1e3, "thousands"), (1e6, "millions"), (1e9, "billions")):
        if abs(a * factor - t) <= 0.01 * t:  # a census: 0.642 (GMACs) was "not a whole number: this counts things"
            return (f"{shown(answer)} looks like the count in {name} (as GMACs or M parameters write it): this "
                    "exercise wants the count itself, every digit of it.")
    return None


def _say(message: Any, answer: Any) -> str:
    return message(answer) if callable(message) else message


def _ordinal(n: int) -> str:
    """1 -> "1st", 2 -> "2nd", 3 -> "3rd", 4 -> "4th", 11 -> "11th" (the places of an answer's values)."""
    return f"{n}{'th' if n % 100 in (11, 12, 13) else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def value_exercise(
    key: str,
    title: str,
    *,
    solution: Callable[[], Any],
    otherwise: Any,
    mistakes: Sequence[tuple[Any, Any]] = (),
    answer_type: str = "number",
    rel_tol: float = 0.0,
    abs_tol: float = 0.0,
    more_wrong: Sequence[Any] = (),
    hint: str | tuple[str, ...] = "",
    kind: str = "value",
    parse: Callable[[Any], Any] | None = None,
    form: str = "",
    key_note: str = "",
    unit: str = "",
) -> Exercise:
    """Register an exercise whose answer is one value, with targeted feedback for typical mistakes.

    Args:
        key, title, solution, hint, key_note: as for :func:`exercise`.
        otherwise: the message (or ``f(answer) -> message``) for a wrong answer that matches no
            listed mistake.
        mistakes: ``(wrong, message)`` pairs tried in order after the right answer; ``wrong`` is a
            value (compared like the solution) or a predicate ``f(answer) -> bool``; ``message``
            is a string or ``f(answer) -> str``.
        answer_type: ``"number"``, ``"whole"``, ``"fraction"``, ``"ints"`` (a tuple of whole
            numbers), ``"text"`` (a name, compared case-insensitively) or ``"array"``.
        rel_tol, abs_tol: tolerance for numbers and arrays (0 and 0: exact).
        more_wrong: further wrong answers the tests must see rejected.
        kind: ``"value"`` or ``"predict"``.
        parse: turns other spellings of an answer into the expected form first (e.g. ``"yes"``
            into ``True``); it should return an unparseable answer unchanged, or a :func:`not_judged`
            message where it knows why the answer cannot be read (a label that is none of the valid
            ones). Text answers are compared without case, hyphens, underscores or extra spaces
            (:func:`normalise_text`), and ``"ints"`` answers may be written ``"1x3"``, ``"1 x 3"`` or ``"(1, 3)"`` without one.
        form: how to answer, for an answer of the wrong kind (``"a list of image ids, e.g. ['a', 'b']"``);
            by default one follows from ``answer_type`` (for ``"ints"``, with an example of the
            solution's length).
        unit: what a number answer counts, a key of :data:`UNITS` (``"pixel"``, ``"parameter"``...): text
            such as ``"7 layers"`` for a size in pixels is then refused naming both (not judged as 7);
            ``""`` (the default) accepts any unit word after the number.

    Returns:
        The registered :class:`Exercise`.

    Raises:
        ValueError: ``answer_type``, ``kind`` or ``unit`` is not one of the names above, a tolerance is negative or
            not finite, or ``key`` is already registered (as for :func:`exercise`).
    """
    if not (0 <= rel_tol < math.inf and 0 <= abs_tol < math.inf):  # an audit: -1 was registered, and every
        raise ValueError(f"exercise {key!r}: rel_tol and abs_tol must be finite and at least 0, got {rel_tol!r}, "
                         f"{abs_tol!r}")  # check then said "could not check this answer"
    if unit and unit not in UNITS:
        raise ValueError(f"exercise {key!r}: unit must be one of {tuple(UNITS)} or '', got {unit!r}")
    if answer_type not in ANSWER_TYPES:
        raise ValueError(f"exercise {key!r}: answer_type must be one of {ANSWER_TYPES}, got {answer_type!r}")
    if kind not in ("value", "predict"):
        raise ValueError(f"exercise {key!r}: a value exercise has kind 'value' or 'predict', not {kind!r}")
    mistakes = tuple(mistakes)

    def checker(answer: Any) -> str | None:
        parsed = parse(answer) if parse is not None else answer
        if isinstance(parsed, _Unreadable):  # the parser said why it cannot read the answer
            return parsed
        got, problem = _normalise(parsed, answer_type, form or _form(answer_type, solution), unit=unit)
        if problem is not None:
            if answer_type == "whole" and rel_tol == 0 == abs_tol and not isinstance(problem, _Unreadable):
                return _rounded_count(got, solution()) or problem  # 0.642: a count in billions, not a slip
            return problem
        target = solution()
        if _matches(got, target, rel_tol, abs_tol):
            return None
        if answer_type in ("whole", "ints") and min(np.ravel(got), default=0) < 0 <= min(np.ravel(target), default=0):
            said = f"{shown(got)} is negative" if answer_type == "whole" else f"{got} holds a negative number"
            return f"{said}; what this exercise asks for (a count, a length, a rate) is never below 0."
        if answer_type == "whole" and rel_tol == 0 == abs_tol and (rounded := _rounded_count(got, target)):
            return rounded
        for wrong, message in mistakes:
            hit = wrong(got) if callable(wrong) else _matches(got, wrong, rel_tol, abs_tol)
            if hit:
                return _say(message, got)
        if answer_type == "ints" and isinstance(target, Sequence) and sorted(got) == sorted(target):
            moved = [i + 1 for i, (g, t) in enumerate(zip(got, target)) if g != t]
            if len(moved) == 2:  # a trial: (3, 11, 70, 50) for (3, 11, 50, 70) was told "the order the question lists"
                return (f"the right values, but the {_ordinal(moved[0])} and the {_ordinal(moved[1])} are swapped: "
                        "what does each place stand for?")
            return "the right values, in another order: what does each place stand for?"
        return _say(otherwise, got)

    examples = tuple((w, m) for w, m in mistakes if not callable(w) and isinstance(m, str))
    wrong = tuple(w for w, _ in mistakes if not callable(w)) + tuple(more_wrong)
    exercise(key, title, solution=solution, wrong_answers=wrong, hint=hint, kind=kind, mistakes=examples,
             key_note=key_note)(checker)
    return _REGISTRY[key]


# ---------------------------------------------------------------------------------------------
# Shared checking: functions written by the learner
# ---------------------------------------------------------------------------------------------
def _number_text(x: float) -> str:
    """A float for a message: four significant digits (0.1353, not 0.13530710306321392); a whole
    float keeps its ``.0`` so that it still reads as a float."""
    if math.isfinite(x) and x.is_integer() and abs(x) < 1e16:
        return f"{x:.1f}"
    return f"{x:.4g}"


def _rounded(value: Any) -> str:
    """``repr`` of a (nested) list or tuple of numbers, with its floats to four significant digits."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, (float, np.floating)):
        return _number_text(float(value))
    if isinstance(value, (int, np.integer)):
        whole = int(value)
        # str() of an int over 4,300 digits raises (a review): a huge one is described, not written out
        return str(whole) if abs(whole) < 10**40 else f"a {'negative ' if whole < 0 else ''}number of {_digits(whole)} digits"
    if isinstance(value, list):
        return "[" + ", ".join(_rounded(v) for v in value) + "]"
    if isinstance(value, tuple):
        return "(" + ", ".join(_rounded(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return repr(value)


def _digits(whole: int) -> int:
    """The number of decimal digits of ``whole``, computed without ``str`` (which refuses over 4,300 digits)."""
    bits = abs(whole).bit_length()
    estimate = max(1, int(bits * math.log10(2)))
    return estimate + 1 if abs(whole) >= 10**estimate else estimate


def _brief(value: Any, limit: int = 80) -> str:
    """A short description of an argument or a result for feedback messages (floats to four significant
    digits; a long text cut with an ellipsis)."""
    if isinstance(value, torch.Tensor):
        if value.numel() <= 12:
            return f"tensor({_rounded(value.tolist())})"
        return f"a tensor of shape {tuple(value.shape)}"
    if isinstance(value, np.ndarray):
        return f"array({_rounded(value.tolist())})" if value.size <= 12 else f"an array of shape {value.shape}"
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, torch.Tensor) for v in value):
        shapes = sorted({tuple(v.shape) for v in value})
        return f"a list of {len(value)} tensors of shape {' or '.join(map(str, shapes))}"
    text = _rounded(value)
    return text if len(text) <= limit else text[: limit - 1].rstrip(" ,") + "…"


def _item_label(path: tuple[int, ...]) -> str:
    return "item " + "".join(f"[{i}]" for i in path)


def compare_results(got: Any, want: Any, atol: float = 1e-5, *,
                    label: Callable[[tuple[int, ...]], str] | None = None) -> str | None:
    """Why ``got`` differs from ``want`` (``None`` when they agree).

    Tensors and arrays must have the same shape and values within ``atol`` (any dtype); numbers
    are compared with ``atol``; sequences element by element; text without case, hyphens and
    underscores (:func:`normalise_text`); anything else with ``==``. NaN agrees with NaN only.

    Args:
        got: what the learner's function returned.
        want: what the reference returned.
        atol: the largest absolute difference still counted as equal.
        label: names the element of nested sequences that differs, from its indices (``(1, 2)`` for
            ``got[1][2]``): e.g. ``"block 5, unit 3"``; by default ``"item [1][2]"``.
    """
    found = _difference(got, want, atol, ())
    if found is None:
        return None
    path, why = found
    return f"{(label or _item_label)(path)}: {why}" if path else why


def _difference(got: Any, want: Any, atol: float, path: tuple[int, ...]) -> tuple[tuple[int, ...], str] | None:
    """The indices of the first element where ``got`` differs from ``want``, and why (``None``: they agree)."""
    if isinstance(want, (torch.Tensor, np.ndarray)):
        if not isinstance(got, (torch.Tensor, np.ndarray, list, tuple)):
            return path, f"it returned {type(got).__name__}, not a {'tensor' if isinstance(want, torch.Tensor) else 'array'}."
        try:
            g = torch.as_tensor(np.asarray(got) if isinstance(got, (list, tuple)) else got).detach().cpu().double()
        except (TypeError, ValueError, RuntimeError):
            return path, f"it returned a {type(got).__name__} that is not an array of numbers."
        w = torch.as_tensor(want).detach().cpu().double()
        if tuple(g.shape) != tuple(w.shape):
            return path, f"it has shape {tuple(g.shape)}, expected {tuple(w.shape)}."
        if not torch.allclose(g, w, atol=atol, rtol=0, equal_nan=True):
            gap = (g - w).abs().nan_to_num(nan=float("inf"))
            gap[g.isnan() & w.isnan()] = 0
            at = tuple(int(i) for i in np.unravel_index(int(gap.argmax()), tuple(g.shape))) if g.dim() else ()
            where = f" at index {at}" if at else ""
            return path, (f"its values differ: the largest difference is {shown(gap.max().item())}{where} (got "
                          f"{shown(g[at].item())}, expected {shown(w[at].item())}; {int((gap > atol).sum())} of "
                          f"{g.numel()} values differ by more than {atol:g}).{_dtype_note(got, want)}")
        return None
    if isinstance(want, (int, float, np.integer, np.floating)) and not isinstance(want, bool):
        got = _as_scalar(got)
        if isinstance(got, bool) or not isinstance(got, (int, float, np.integer, np.floating)):
            return path, f"it returned {type(got).__name__}, not a number."
        try:
            x, y = float(got), float(want)
        except OverflowError:  # a learner's 10**400 (a trial: "could not check this answer")
            return path, f"it returned a whole number of {_digits(int(got))} digits, far too large in size to be right."
        if (math.isnan(x) and math.isnan(y)) or math.isclose(x, y, rel_tol=0, abs_tol=atol):
            return None
        g_text, w_text = shown(x), shown(y)
        if g_text == w_text:
            g_text, w_text = repr(x), repr(y)
        why = " (a nan comes from a 0 / 0)" if math.isnan(x) else ""
        return path, f"the number differs (got {g_text}, expected {w_text}){why}."
    if isinstance(want, (list, tuple)):
        if isinstance(got, (np.ndarray, torch.Tensor)) and got.ndim >= 1:
            got = got.tolist()  # an array holds the same (nested) sequence
        if isinstance(got, (str, bytes)) or not isinstance(got, Sequence):
            return path, f"it returned {type(got).__name__}, not a sequence of {len(want)} items."
        if len(got) != len(want):
            return path, f"it has {len(got)} item{'' if len(got) == 1 else 's'}, expected {len(want)}."
        for i, (g, w) in enumerate(zip(got, want)):
            if (found := _difference(g, w, atol, (*path, i))) is not None:
                return found
        return None
    if isinstance(want, str):
        if not isinstance(got, str):
            return path, f"it returned {type(got).__name__}, not a string."
        return None if normalise_text(got) == normalise_text(want) else (path, "the text differs.")
    return None if got == want else (path, "it differs.")


def _dtype_note(got: Any, want: Any) -> str:
    """A sentence for values that differ when the learner's tensor or array is of a kind that cannot hold
    the expected values: integers (or booleans) for floating-point results, or half precision for single
    or double (``""`` otherwise)."""
    if not isinstance(got, (torch.Tensor, np.ndarray)):
        return ""
    g, w = (str(x.dtype).removeprefix("torch.") for x in (got, want))
    g_float = got.is_floating_point() if isinstance(got, torch.Tensor) else np.issubdtype(got.dtype, np.floating)
    w_float = want.is_floating_point() if isinstance(want, torch.Tensor) else np.issubdtype(want.dtype, np.floating)
    if w_float and not g_float:
        return (f" Your result is of dtype {g}, where the expected one is {w}: a rounding, an integer division or "
                "a tensor built from whole numbers loses the fractions.")
    if w_float and g in ("float16", "bfloat16") and w in ("float32", "float64"):
        return f" Your result is of dtype {g}, a lower precision than the expected {w}: keep the input's dtype."
    return ""


#: Seconds a learner's function may run, over all the inputs of one check, before the check stops it.
FUNCTION_TIME_LIMIT_S = 60.0


class _StillRunning(BaseException):
    """Raised into a learner's function that outlived the check's time limit (a BaseException, so
    that the learner's own ``except Exception`` does not swallow it)."""


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[Callable[[], bool]]:
    """Stop the code inside after ``seconds`` by raising :class:`_StillRunning` into it.

    On the main thread of a POSIX process (a Jupyter kernel runs cells there) a ``SIGALRM`` timer
    interrupts even an endless Python loop, and again every second if the loop catches it. A timer
    already set (pytest-timeout's, say) keeps its deadline and its handler. Elsewhere (Windows,
    another thread) nothing can be interrupted: the context yields a function saying whether the
    time is up, which the caller checks between calls.
    """
    deadline = time.monotonic() + seconds

    def expired() -> bool:
        return time.monotonic() >= deadline

    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield expired
        return
    outer_handler = signal.getsignal(signal.SIGALRM)
    outer_left, outer_interval = signal.getitimer(signal.ITIMER_REAL)
    outer_deadline = time.monotonic() + outer_left

    def on_alarm(signum: int, frame: Any) -> None:
        if outer_left and time.monotonic() >= outer_deadline and callable(outer_handler):
            outer_handler(signum, frame)  # the outer timer's turn
        if expired():
            raise _StillRunning

    signal.signal(signal.SIGALRM, on_alarm)
    first = seconds if not outer_left else min(seconds, outer_left)
    signal.setitimer(signal.ITIMER_REAL, max(first, 1e-3), 1.0)
    try:
        yield expired
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, outer_handler)
        if outer_left:
            signal.setitimer(signal.ITIMER_REAL, max(outer_deadline - time.monotonic(), 1e-3), outer_interval)


def _clone(args: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(a.clone() if isinstance(a, torch.Tensor) else copy.deepcopy(a) for a in args)


def _same_data(after: Any, before: Any) -> bool:
    """Whether an argument holds what it held before the call: tensors and arrays (values, shape, dtype), lists,
    tuples and dicts compared element by element; anything else (a number, a module) is taken as unchanged."""
    if isinstance(before, torch.Tensor):
        return (isinstance(after, torch.Tensor) and after.shape == before.shape and after.dtype == before.dtype
                and bool(torch.equal(after, before) or torch.allclose(after, before, rtol=0, atol=0, equal_nan=True)))
    if isinstance(before, np.ndarray):
        return (isinstance(after, np.ndarray) and after.shape == before.shape
                and bool(np.array_equal(after, before, equal_nan=before.dtype.kind in "fc")))
    if isinstance(before, (list, tuple)):
        return len(after) == len(before) and all(_same_data(a, b) for a, b in zip(after, before))
    if isinstance(before, dict):
        return after.keys() == before.keys() and all(_same_data(after[k], before[k]) for k in before)
    return True


def _changed_argument(given: tuple[Any, ...], originals: tuple[Any, ...]) -> int | None:
    """The index of the first of ``given`` (the copies a learner's function was called with) that no longer
    holds what its original does; ``None`` if none changed."""
    for i, (after, before) in enumerate(zip(given, originals)):
        try:
            if not _same_data(after, before):
                return i
        except Exception:  # noqa: BLE001 - something the comparison cannot read is not reported as changed
            continue
    return None


def _parameter_names(signature: str) -> list[str]:
    """The parameter names of a call written as ``"dilate(w, rate)"`` (``[]`` without one)."""
    match = re.fullmatch(r"\s*[\w.]+\((.*)\)\s*", signature)
    return [name.strip() for name in match.group(1).split(",") if name.strip()] if match else []


def packaged_use(answer: Any, packaged: Sequence[Any]) -> str | None:
    """The name of the first of ``packaged`` that ``answer`` is, subclasses, wraps (``functools.partial``,
    a closure, a default argument) or uses by name: a global, or an attribute of a module
    (``atrous.dilate_kernel``), in its own code, its nested functions and lambdas, a class's
    methods, and the learner's own helpers it calls (functions of the same notebook, three calls
    deep); ``None`` if none.

    It also sees a name imported inside the function (``from deeplab_edu.atrous import dilate_kernel``).
    A good-faith check, not a sandbox: a learner who hides the call (``getattr``, an alias in
    another module) is not caught. Its point is the honest mistake of wrapping the reference. A
    local variable or an attribute of another object that shares a packaged name is not a use.
    """
    names = {id(obj): getattr(obj, "__qualname__", repr(obj)) for obj in packaged}
    return _packaged_in(answer, names, depth=3, seen=set()) if names else None


def _packaged_in(obj: Any, names: dict[int, str], depth: int, seen: set[int]) -> str | None:
    if id(obj) in names:
        return names[id(obj)]
    if id(obj) in seen or depth < 0:
        return None
    seen.add(id(obj))
    if isinstance(obj, functools.partial):
        return _packaged_in(obj.func, names, depth, seen)
    if inspect.isclass(obj):
        for part in [*obj.__mro__, *(getattr(v, "__func__", v) for v in vars(obj).values())]:
            if (found := _packaged_in(part, names, depth, seen)) is not None:
                return found
        return None
    function = getattr(obj, "__func__", obj)
    code = getattr(function, "__code__", None)
    if not isinstance(code, types.CodeType):
        return None
    module_globals = getattr(function, "__globals__", {})
    scope: dict[str, Any] = dict(module_globals)
    for name, cell in zip(code.co_freevars, getattr(function, "__closure__", None) or ()):
        with contextlib.suppress(ValueError):  # an empty cell
            scope[name] = cell.cell_contents  # e.g. a module imported in an enclosing function
    defaults = [*(getattr(function, "__defaults__", None) or ()), *(getattr(function, "__kwdefaults__", None) or {}).values()]
    for value in defaults:
        if id(value) in names:
            return names[id(value)]

    def learners_helper(value: Any) -> bool:  # a function of the same notebook (not the package's)
        return inspect.isfunction(value) and value.__globals__ is module_globals

    codes = [code]
    while codes:
        current = codes.pop()
        codes += [c for c in current.co_consts if isinstance(c, types.CodeType)]
        previous: Any = None
        imported: Any = None  # the module of the last import statement (``from deeplab_edu.atrous import ...``)
        for ins in dis.get_instructions(current):
            if ins.opname == "IMPORT_NAME":
                imported = sys.modules.get(str(ins.argval))
            elif ins.opname == "IMPORT_FROM" and id(attribute := getattr(imported, str(ins.argval), None)) in names:
                return names[id(attribute)]  # imported inside the function
            if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME", "LOAD_DEREF", "LOAD_CLASSDEREF") and ins.argval in scope:
                value = scope[ins.argval]
                if id(value) in names:
                    return names[id(value)]
                if learners_helper(value) and (found := _packaged_in(value, names, depth - 1, seen)) is not None:
                    return found
            elif ins.opname in ("LOAD_ATTR", "LOAD_METHOD") and isinstance(previous, types.ModuleType):
                if id(attribute := getattr(previous, str(ins.argval), None)) in names:
                    return names[id(attribute)]
            loads_name = ins.opname in ("LOAD_GLOBAL", "LOAD_NAME", "LOAD_DEREF", "LOAD_CLASSDEREF")
            previous = scope.get(ins.argval) if loads_name else None
    return None


def _is_stub(fn: Any) -> bool:
    """Whether ``fn``'s body does nothing but return None (``...``, ``pass``, a docstring): the
    notebooks' answer stub, as against a written function that forgot to ``return``."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return False
    return all(i.opname in ("RESUME", "NOP", "RETURN_VALUE") or (i.opname in ("LOAD_CONST", "RETURN_CONST")
                                                                 and i.argval is None)
               for i in dis.get_instructions(code))


def _first_line(err: BaseException) -> str:
    """An error's message for feedback: its first line (PyTorch adds pages of C++ context below)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else ""


def function_exercise(
    key: str,
    title: str,
    *,
    reference: Callable[..., Any],
    inputs: Callable[[torch.Generator], tuple[Any, ...]],
    solution: Callable[..., Any] | None = None,
    mistakes: Sequence[tuple[Callable[..., Any], str]] = (),
    cases: Sequence[tuple[Any, ...]] = (),
    trials: int = 20,
    seed: int = 0,
    atol: float = 1e-5,
    signature: str = "",
    hint: str | tuple[str, ...] = "",
    packaged: Sequence[Any] = (),
    errors: Sequence[tuple[str, str]] = (),
    label: Callable[[tuple[int, ...]], str] | None = None,
) -> Exercise:
    """Register a write-a-function exercise, checked against the package's ``reference``.

    The learner's function is called on the fixed ``cases`` and then on ``trials`` inputs drawn by
    ``inputs(generator)`` (seeded: the same inputs every time), each time with fresh copies of the
    arguments, for at most :data:`FUNCTION_TIME_LIMIT_S` seconds in all (a function still running
    then is stopped and the feedback says so: an endless loop must not hang the notebook). When a
    result differs from ``reference``'s, the typical ``mistakes`` (wrong
    implementations) are run on the same inputs: the one that reproduces the learner's results on
    every input names the mistake; otherwise the feedback shows the first wrong input, the result and
    the expected one (or, where the two read alike, how their values differ). A function that raises
    gets the error, and the explanation of a typical mistake that raises the same error, or of the
    first of ``errors`` that matches it.

    Args:
        reference: the package function the answer must agree with.
        inputs: draws one tuple of arguments from a ``torch.Generator``.
        solution: a learner-style solution (defaults to ``reference``); the tests check it.
        mistakes: ``(wrong function, explanation)`` pairs.
        cases: argument tuples tried first (edge cases).
        atol: tolerance when comparing results (:func:`compare_results`).
        signature: how the function is called, e.g. ``"dilate(w, rate)"``, for messages.
        packaged: the package's own versions of what the learner writes (functions or classes the
            chapter imports for other uses): an answer that is, subclasses or calls one of them by
            name is refused, naming it (:func:`packaged_use`), instead of passing without a line
            of the learner's own.
        errors: ``(regular expression, explanation)`` pairs for a mistake that fails in many ways
            (sizes that do not match, whatever the sizes): an error whose ``"TypeName: message"``
            the expression finds gets the explanation.
        label: names the element of a nested result that differs (:func:`compare_results`).

    Returns:
        The registered :class:`Exercise`.
    """
    mistakes = tuple(mistakes)
    call = signature or "your function"

    def arguments() -> list[tuple[Any, ...]]:
        gen = torch.Generator().manual_seed(seed)
        return [tuple(c) for c in cases] + [inputs(gen) for _ in range(trials)]

    def agrees(wrong: Callable[..., Any], args: tuple[Any, ...], got: Any) -> bool:
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")  # a mistake that divides 0 by 0 says nothing to the learner
                return compare_results(got, wrong(*_clone(args)), atol) is None
        except Exception:  # a mistake that cannot run on these inputs is simply not this one
            return False

    def fails_alike(wrong: Callable[..., Any], args: tuple[Any, ...], err: Exception) -> bool:
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                wrong(*_clone(args))
        except Exception as same:
            return type(same) is type(err) and str(same) == str(err)
        return False

    def checker(answer: Any) -> str | None:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny inputs: one thread is fastest, and immune to a busy machine
        calling = {"shown": "", "done": 0}
        limit = FUNCTION_TIME_LIMIT_S
        try:
            with _time_limit(limit) as expired:
                return check_function(answer, calling, expired)
        except _StillRunning:
            pass
        finally:
            torch.set_num_threads(threads)
        return (f"your function was still running after {limit:g} s, when the check stopped it (it had returned "
                f"for {calling['done']} of the {len(arguments())} inputs and was called with ({calling['shown']})): "
                "an endless loop, or a loop over every element of a large tensor? Each input here is small.")

    def check_function(answer: Any, calling: dict[str, Any], expired: Callable[[], bool]) -> str | None:
        if not callable(answer):
            return _Unreadable(f"answer with a function, {call}, not with the value {_brief(answer)}.")
        if (used := packaged_use(answer, packaged)) is not None:
            return (f"your function uses `{used}`, the package's own version of what this exercise asks you to "
                    "write, so it would pass without a line of yours: write the body yourself, from the chapter's "
                    "explanation (the chapter imports it for other uses).")
        results: list[tuple[tuple[Any, ...], Any]] = []
        first_wrong: tuple[tuple[Any, ...], Any, Any, str] | None = None
        changed: tuple[int, str] | None = None  # the first argument the function changed in place, and where
        for args in arguments():
            shown = ", ".join(_brief(a) for a in args)
            want = reference(*_clone(args))
            if expired():  # where no timer can interrupt the learner's code: stop between calls
                raise _StillRunning
            calling["shown"] = shown
            given = _clone(args)
            try:
                got = answer(*given)
            except Exception as err:  # the learner's code: report, never raise
                error = f"{type(err).__name__}: {_first_line(err)}"
                seen = f"(Calling it with ({shown}) raised {error})"
                for wrong, message in mistakes:  # a typical mistake that fails the same way
                    if fails_alike(wrong, args, err):
                        return f"{message} {seen}"
                for pattern, message in errors:  # a typical mistake that fails in many ways
                    if re.search(pattern, f"{type(err).__name__}: {err}"):
                        return f"{message} {seen}"
                return f"calling it with ({shown}) raised {error}"
            if got is None:
                if calling["done"] == 0 and _is_stub(answer):  # the stub as the notebook gives it; no hint yet
                    return _NotTried("your function returned None: fill in its body and `return` the result.")
                if calling["done"] == 0:
                    return (f"with the arguments ({shown}) your function returned None: every path through it must "
                            "end with `return` and the result (a function that prints its result still returns "
                            "None).")
                return (f"with the arguments ({shown}) your function returned None, though it returned a value for "
                        f"{calling['done']} earlier argument(s): a path through it ends without `return`.")
            calling["done"] += 1
            results.append((args, got))
            why = compare_results(got, want, atol, label=label)
            if why is not None and first_wrong is None:
                first_wrong = (args, got, want, why)
            if changed is None and (i := _changed_argument(given, args)) is not None:
                changed = (i, shown)
        if first_wrong is None and changed is not None:  # right results, but a caller's data changed (a trial)
            i, shown = changed
            names = _parameter_names(signature)
            which = f"`{names[i]}`" if i < len(names) else f"its {_ordinal(i + 1)} argument"
            return (f"your function returns the right results but changes {which} in place (seen when called with "
                    f"({shown})): the caller's tensor or list changes too, and a second call, or the next cell, "
                    "then works on something else. Work on a copy (`x.clone()`, `list(xs)`), or use operations "
                    "that return a new result (`x.neg()`, not `x.neg_()`; `xs[1:]`, not `xs.pop(0)`).")
        if first_wrong is None:
            return None
        args, got, want, why = first_wrong
        shown = ", ".join(_brief(a) for a in args)
        # a typical mistake is named only when it reproduces the learner's results on *every* input: one
        # that merely agrees on the first wrong input would explain a different function
        for wrong, message in mistakes:
            if all(agrees(wrong, a, g) for a, g in results):
                return f"{message} (Seen with the arguments ({shown}).)"
        returned, expected = _brief(got), _brief(want)
        if returned == expected and isinstance(got, (torch.Tensor, np.ndarray)):  # alike to the eye (two tensors
            # of one shape): say how the values differ
            return f"with the arguments ({shown}) it returned {returned}, as expected, but {why}"
        if returned == expected:  # numbers alike to four digits: the difference says it, with every digit
            return f"with the arguments ({shown}) {why}"
        if f"got {returned}, expected {expected}" in why:  # said once is enough
            return f"with the arguments ({shown}) {why}"
        return f"with the arguments ({shown}) {why} It returned {returned}; expected {expected}."

    wrong = tuple(w for w, _ in mistakes) + (lambda *args: None,)
    exercise(key, title, solution=lambda: solution or reference, wrong_answers=wrong, hint=hint,
             kind="function", mistakes=mistakes)(checker)
    return _REGISTRY[key]


def _load_chapter(key: str) -> None:
    if not isinstance(key, str):
        raise TypeError(f"an exercise id is a string such as '01.2', got {key!r}")
    chapter = key.split(".", 1)[0]
    if not (chapter.isdigit() and len(chapter) == 2):
        raise KeyError(f"exercise id {key!r} should look like '01.2' (chapter.number)")
    try:
        importlib.import_module(f"deeplab_edu.exercises.ch{chapter}")
    except ModuleNotFoundError as err:
        if err.name != f"deeplab_edu.exercises.ch{chapter}":
            raise
        raise KeyError(f"chapter {chapter} has no exercises (no deeplab_edu/exercises/ch{chapter}.py)") from None


def get(key: str) -> Exercise:
    """The registered exercise ``key`` (loading its chapter module on first use).

    Raises:
        TypeError: ``key`` is not a string.
        KeyError: ``key`` does not look like ``'01.2'``, its chapter has no exercises, or it names none
            of them (the message lists the chapter's).
    """
    if isinstance(key, str):
        key = key.strip()  # "01.1 " as typed
    if key not in _REGISTRY:
        _load_chapter(key)
    if key not in _REGISTRY:
        known = ", ".join(sorted(k for k in _REGISTRY if k.startswith(key.split(".")[0])))
        raise KeyError(f"no exercise {key!r}; this chapter has: {known or 'none'}")
    return _REGISTRY[key]


def all_exercises() -> dict[str, Exercise]:
    """Every exercise of every chapter module that exists."""
    import pkgutil

    from deeplab_edu import exercises as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith("ch"):
            importlib.import_module(f"deeplab_edu.exercises.{info.name}")
    return dict(sorted(_REGISTRY.items()))


def measured_and_predicted(measured: float, prediction: Any, fmt: str = ".3f") -> str:
    """``"measured: 0.400; your prediction: 0.300 (0.100 below)"`` for the cell that measures what a learner
    predicted: the prediction is shown when it is a number, with how far it lies from the measurement (a
    learner's trial of 05.3 had to subtract to see what a prediction missed), and never breaks the cell
    when it is not (``...``
    before a first try, ``None``, a string): the notebook runs top to bottom either way. Before a
    first try the measurement itself stays hidden (it is the answer), except where the course checks
    itself (the book shows it; :func:`prediction_made`)."""
    prediction = _spelled_number(_as_scalar(prediction))  # "300" or "30,000", read as check() reads it
    if _unanswered(prediction) and not course_checks():
        return "measured: hidden until you predict (replace `...` above, then run this cell again)"
    if isinstance(measured, (torch.Tensor, np.ndarray)) and measured.reshape(-1).shape[0] == 1:
        measured = measured.reshape(-1)[0].item()  # an audit: a measured tensor([0.4]), or 3.0 against "d", broke
    measured = _as_scalar(measured)  # the cell
    try:
        format(measured, fmt)
    except (TypeError, ValueError):
        fmt = "g" if isinstance(measured, (int, float)) else ""
    text = f"measured: {measured:{fmt}}"
    if _unanswered(prediction):
        return text
    if number_problem(prediction) is None:
        try:
            shown, gap = format(prediction, fmt), format(abs(prediction - measured), fmt)
        except (TypeError, ValueError):  # 12.5 against a whole-number format ("d"): shown as it is
            shown, gap = format(prediction, "g"), format(abs(prediction - measured), "g")
        if len(shown) > 24 or len(gap) > 24:  # a trial's 1e300 against ".3f": 301 digits, in scientific notation
            shown, gap = format(prediction, ".4g"), format(abs(prediction - measured), ".4g")
        if shown == format(measured, fmt) or not re.search(r"[1-9]", gap):  # no gap at the shown precision
            return f"{text}; your prediction: {shown}"
        return f"{text}; your prediction: {shown} ({gap} {'below' if prediction < measured else 'above'})"
    return f"{text}; your prediction ({_brief(prediction)}) is not a number"


#: Wrong tries per exercise in this Python session (a kernel restart starts again): the hint comes from the second.
_WRONG_TRIES: dict[str, int] = {}
#: Steps of each exercise's hint shown in this Python session, by check() or hint().
_HINT_STEPS: dict[str, int] = {}


def _hint_call(key: str) -> str:
    """How a learner calls :func:`hint` for ``key``, with its import: the chapters import ``check`` and
    ``solved`` only, so a bare ``hint(...)`` would be a ``NameError`` in a learner's notebook."""
    return f'`hint("{key}")`, after `from deeplab_edu.exercises import hint`'


def _next_hint_step(ex: Exercise, *, by_hint: bool = False) -> str:
    """The next step of ``ex``'s hint not shown yet in this session (the last step again once all were), with a
    note when another step follows (``by_hint``: asked for by :func:`hint`, whose caller has it imported)."""
    step = min(_HINT_STEPS.get(ex.key, 0), len(ex.hints) - 1)
    _HINT_STEPS[ex.key] = step + 1
    if step + 1 >= len(ex.hints):
        return ex.hints[step]
    call = f'call `hint("{ex.key}")` again' if by_hint else f"from {_hint_call(ex.key)}"
    return ex.hints[step] + f" (More with the next wrong answer, or {call}.)"


def _sentence(text: str) -> str:
    """``text`` ending as a sentence: a full stop added unless it ends in one already (also inside a
    closing bracket: ``"... (513, 16).)"`` is left alone, not made ``"....)."``)."""
    text = text.rstrip()
    return text if text.endswith((".", "!", "?", ".)", "!)", "?)", "…")) else text + "."


def hint(key: str) -> str:
    """The hint of exercise ``key`` at once, without a wrong answer first (:func:`check` gives it from the
    second wrong answer on). A hint in steps gives its next step with each call.

    >>> hint("00.1")  # doctest: +ELLIPSIS
    'output stride = ...'

    Raises:
        TypeError: ``key`` is not a string.
        KeyError: no exercise ``key`` (as for :func:`get`).
    """
    ex = get(key)
    if not ex.hints:
        return _HintText(ex.key, "this exercise has no hint: its feedback explains each wrong answer.")
    return _HintText(ex.key, _next_hint_step(ex, by_hint=True))


class _HintText(str):
    """A hint as :func:`hint` returns it: a string, shown in a notebook as a sentence, not in quotes."""

    key: str

    def __new__(cls, key: str, text: str) -> _HintText:
        made = super().__new__(cls, text)
        made.key = key
        return made

    def _repr_markdown_(self) -> str:
        return f"**Hint for exercise {self.key}:** {str(self)}"


def prediction_made(key: str, prediction: Any) -> bool:
    """Whether the measuring cell of a predict-then-measure exercise may show its measurement.

    True once the learner has answered exercise ``key`` (``prediction`` is neither ``...`` nor
    ``None``), and always where the course checks itself (the book shows every measurement, behind a
    toggle). Otherwise it prints that the measurement waits for a prediction and returns False:
    Run All in JupyterLab would otherwise print the answer before the learner has thought.

    Raises:
        KeyError: ``key`` names no exercise (as :func:`get`).
    """
    get(key)
    if course_checks() or not _unanswered(prediction):
        return True
    print(f"Exercise {key}: make your prediction above first (replace `...`), then run this cell again: "
          "the measurement would give the answer away.")
    return False


def solved(key: str, answer: Any, *notes: object) -> None:
    """The last line of a hidden solution cell: checks the solution's ``answer``, and shows nothing in
    a learner's notebook.

    JupyterLab opens a collapsed cell's output again when the cell runs, so a solution that printed
    its result would show it to every learner who runs all cells. Where the course checks itself
    (:func:`deeplab_edu.config.course_checks`: the book's build, the notebook tests) ``notes`` are
    printed, one per line, then that the solution passes, so the book's hidden solution shows them;
    in a learner's notebook nothing is printed.

    Raises:
        WrongAnswer: ``answer`` does not pass the checker (a solution that stopped passing is a bug,
            wherever it runs).
        KeyError, TypeError: ``key`` names no exercise, or is not a string (:func:`get`).
    """
    ex = get(key)
    key = ex.key  # as registered ("01.1 " as typed is 01.1)
    problem = "no answer" if _unanswered(answer) else ex.checker(_as_scalar(answer))
    if problem is not None:
        raise WrongAnswer(f"[{key}] the solution does not pass: {problem}")
    if course_checks():
        for note in notes:
            print(note)
        print(f"Exercise {key}: this solution passes the checker.")


def check(key: str, answer: Any) -> Feedback:
    """Check ``answer`` to exercise ``key`` and say what, if anything, is wrong.

    An unanswered exercise (``...`` or ``None``, or a function stub that returns nothing) is
    reported, not raised, so that a notebook still runs top to bottom before the learner has
    tried. The exercise's hint escalates: the first wrong answer to ``key`` gets the explanation
    and a note that a hint comes with the next wrong answer (or from :func:`hint`); from the second
    wrong answer in this Python session on (or the first, once :func:`hint` was called), the hint's
    next step follows the explanation. Neither an unanswered exercise nor an answer of the wrong
    kind or form (a string where a number is asked, one number where a pair is) counts as a try.

    Raises:
        WrongAnswer: only where the course checks itself (:func:`deeplab_edu.config.course_checks`:
            the notebook tests, ``make book``), for an answer judged wrong: there the only answers
            given are the hidden solutions', and one that fails must stop the run.
        KeyError: no exercise has ``key`` (the message lists the chapter's exercises, :func:`get`).
        TypeError: ``key`` is not a string such as ``"05.3"`` (:func:`get`).
    """
    ex = get(key)
    key = ex.key  # as registered ("01.1 " as typed is 01.1)
    if _unanswered(answer):
        return Feedback(key, False, f"{ex.title} — not answered yet. Replace `...` with your answer.")
    try:
        problem = ex.checker(_as_scalar(answer))
    except Exception as err:  # a malformed answer must give feedback, not a traceback
        problem = _Unreadable(f"could not check this answer ({type(err).__name__}: {_first_line(err)})")
    if problem is None:
        return Feedback(key, True, f"{ex.title} — well done.")
    if isinstance(problem, _NotTried):
        return Feedback(key, False, f"{ex.title} — not answered yet: {problem}")
    msg = _sentence(f"{ex.title} — {problem}")
    if not isinstance(problem, _Unreadable):
        tries = _WRONG_TRIES[key] = _WRONG_TRIES.get(key, 0) + 1
        if ex.hints and (tries >= 2 or key in _HINT_STEPS):  # a hint() call already showed a step: the next one
            msg = _sentence(f"{msg} Hint: {_next_hint_step(ex)}")
        elif ex.hints:
            msg += f" (Try again; a hint comes with the next wrong answer, or at once from {_hint_call(key)}.)"
    if course_checks():
        raise WrongAnswer(f"[{key}] {msg}")
    return Feedback(key, False, msg)
