"""The exercise checker shared by every chapter.

Each chapter module (``ch01.py``, ``ch02.py``, ...) registers its exercises with
:func:`exercise`. A checker receives the learner's answer and returns ``None`` when
it is right, or a sentence that says *what* is wrong (never just "wrong"). The
notebooks call :func:`check`::

    from deeplab_edu.exercises import check
    check("01.1", my_answer)

Every exercise also carries a reference ``solution`` so the test suite can prove
that the checker accepts the right answer and rejects wrong ones.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["Exercise", "Feedback", "exercise", "check", "get", "all_exercises", "NOT_ANSWERED"]

Checker = Callable[[Any], "str | None"]


@dataclass(frozen=True)
class Exercise:
    """One exercise: its id (``"CC.N"``, chapter and number), a title, a checker and a solution."""

    key: str
    title: str
    checker: Checker
    solution: Callable[[], Any]
    wrong_answers: tuple[Any, ...] = field(default=())
    hint: str = ""


@dataclass(frozen=True)
class Feedback:
    """The result of :func:`check`; truthy when the answer is right."""

    key: str
    correct: bool
    message: str

    def __bool__(self) -> bool:
        return self.correct

    def __str__(self) -> str:
        mark = "correct" if self.correct else "not yet"
        return f"[{self.key}] {mark}: {self.message}"

    def _repr_markdown_(self) -> str:
        icon = "✅" if self.correct else "❌"
        return f"{icon} **Exercise {self.key}**: {self.message}"


_REGISTRY: dict[str, Exercise] = {}

#: Placeholder the notebooks put in answer cells; checking it says "not answered yet".
NOT_ANSWERED = ...


def exercise(
    key: str,
    title: str,
    *,
    solution: Callable[[], Any],
    wrong_answers: tuple[Any, ...] = (),
    hint: str = "",
) -> Callable[[Checker], Checker]:
    """Register ``checker`` as exercise ``key``.

    Args:
        key: ``"CC.N"``: two-digit chapter, then the exercise number.
        title: a short title, shown in feedback.
        solution: a zero-argument function returning a correct answer (used by tests
            and by the hidden solution cells).
        wrong_answers: plausible mistakes the checker must reject (tested).
        hint: shown after a wrong answer.
    """

    def register(checker: Checker) -> Checker:
        if key in _REGISTRY:
            raise ValueError(f"exercise {key!r} is registered twice")
        _REGISTRY[key] = Exercise(key, title, checker, solution, tuple(wrong_answers), hint)
        return checker

    return register


def _load_chapter(key: str) -> None:
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
    """The registered exercise ``key`` (loading its chapter module on first use)."""
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


def check(key: str, answer: Any) -> Feedback:
    """Check ``answer`` to exercise ``key`` and say what, if anything, is wrong.

    An unanswered exercise (``...`` or ``None``) is reported, not raised, so that a
    notebook still runs top to bottom before the learner has tried.
    """
    ex = get(key)
    if answer is NOT_ANSWERED or answer is None:
        return Feedback(key, False, f"{ex.title}: not answered yet. Replace `...` with your answer.")
    try:
        problem = ex.checker(answer)
    except Exception as err:  # a malformed answer must give feedback, not a traceback
        problem = f"could not check this answer ({type(err).__name__}: {err})"
    if problem is None:
        return Feedback(key, True, f"{ex.title}: well done.")
    msg = f"{ex.title}: {problem}"
    if ex.hint:
        msg += f" Hint: {ex.hint}"
    return Feedback(key, False, msg)
