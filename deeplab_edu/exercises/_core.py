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
"""

from __future__ import annotations

import contextlib
import copy
import dis
import functools
import importlib
import inspect
import math
import signal
import threading
import time
import types
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from ..config import course_checks

__all__ = [
    "Exercise", "Feedback", "exercise", "value_exercise", "function_exercise", "number_problem",
    "compare_results", "check", "get", "all_exercises", "measured_and_predicted", "packaged_use", "NOT_ANSWERED",
    "KINDS", "WrongAnswer",
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
    hint: str = ""
    kind: str = "value"
    #: (typical wrong answer, the explanation it must get), for the tests.
    mistakes: tuple[tuple[Any, str], ...] = field(default=())


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
        # text marks, not emoji: a machine without an emoji font draws those as empty boxes
        verdict = "✓ correct" if self.correct else "✗ not yet"
        return f"**Exercise {self.key}: {verdict}.** {self.message}"


_REGISTRY: dict[str, Exercise] = {}


class WrongAnswer(AssertionError):
    """:func:`check` judged an answer wrong where the course checks itself (``DEEPLAB_EDU_COURSE_CHECKS``)."""

#: Placeholder the notebooks put in answer cells; checking it says "not answered yet".
NOT_ANSWERED = ...


class _NotTried(str):
    """A checker's message for an answer not tried yet (a function stub that returns nothing):
    :func:`check` reports it without the exercise's hint, which is for a wrong answer."""


class _Unreadable(str):
    """A checker's message for an answer of the wrong kind (a string where a number is asked): the
    value was not judged, so :func:`check` gives no hint about the reasoning behind it."""


def _as_scalar(value: Any) -> Any:
    """``value`` as a Python number when it is a 0-d tensor or array (``(x > 0).sum()``,
    ``F.cross_entropy(...)``), else unchanged: a measured number is accepted as it comes."""
    if isinstance(value, (torch.Tensor, np.ndarray)) and value.ndim == 0:
        return value.item()
    return value


def exercise(
    key: str,
    title: str,
    *,
    solution: Callable[[], Any],
    wrong_answers: tuple[Any, ...] = (),
    hint: str = "",
    kind: str = "value",
    mistakes: tuple[tuple[Any, str], ...] = (),
) -> Callable[[Checker], Checker]:
    """Register ``checker`` as exercise ``key``.

    Args:
        key: ``"CC.N"``: two-digit chapter, then the exercise number.
        title: a short title, shown in feedback.
        solution: a zero-argument function returning a correct answer (used by tests
            and by the hidden solution cells).
        wrong_answers: plausible mistakes the checker must reject (tested).
        hint: shown after a wrong answer.
        kind: ``"value"``, ``"predict"`` or ``"function"`` (see the module docstring).
        mistakes: (wrong answer, explanation) pairs whose explanation the checker must give.

    Raises:
        ValueError: ``key`` is registered twice, or ``kind`` is unknown.
    """
    if kind not in KINDS:
        raise ValueError(f"exercise {key!r}: kind must be one of {KINDS}, got {kind!r}")

    def register(checker: Checker) -> Checker:
        if key in _REGISTRY:
            raise ValueError(f"exercise {key!r} is registered twice")
        _REGISTRY[key] = Exercise(key, title, checker, solution, tuple(wrong_answers), hint, kind, tuple(mistakes))
        return checker

    return register


# ---------------------------------------------------------------------------------------------
# Shared checking: answers of one value
# ---------------------------------------------------------------------------------------------
ANSWER_TYPES = ("number", "whole", "fraction", "ints", "text", "array")


def shown(value: Any) -> str:
    """A number as feedback shows it: whole numbers in full (4718848, not 4.71885e+06), others to six
    significant digits."""
    try:
        x = float(value)
    except (TypeError, ValueError, OverflowError):
        return repr(value)
    if math.isfinite(x) and x.is_integer() and abs(x) < 1e16:
        return str(int(x))
    return f"{x:.6g}"


def number_problem(answer: Any, *, whole: bool = False, fraction: bool = False) -> str | None:
    """What is wrong with ``answer`` as a number (``None`` when it is one).

    Args:
        whole: it must be a whole number (a count of pixels, channels, parameters).
        fraction: it must lie between 0 and 1.
    """
    answer = _as_scalar(answer)
    if isinstance(answer, bool) or not isinstance(answer, (int, float, np.integer, np.floating)):
        return _Unreadable(f"expected a number, got {type(answer).__name__}.")
    try:
        finite = math.isfinite(float(answer))
    except OverflowError:
        return "that number is far too large to be the answer."
    if not finite:
        return f"{answer} is not a finite number."
    if whole and float(answer) != int(answer):
        return f"{answer} is not a whole number: this counts things."
    if fraction and not 0 <= answer <= 1:
        return f"{answer} is not a fraction between 0 and 1 (did you give a percentage or a count?)."
    return None


def _normalise(answer: Any, answer_type: str) -> tuple[Any, str | None]:
    """The answer in a comparable form, or the reason it cannot be read."""
    if answer_type in ("number", "whole", "fraction"):
        answer = _as_scalar(answer)  # a checker called directly, not through check(), gets a 0-d tensor as is
        problem = number_problem(answer, whole=answer_type == "whole", fraction=answer_type == "fraction")
        return answer, problem
    if answer_type == "ints":
        if isinstance(answer, (np.ndarray, torch.Tensor)) and answer.ndim == 1:
            answer = answer.tolist()  # np.array([3, 11]) or torch.tensor([3, 11]) for (3, 11)
        if isinstance(answer, (str, bytes)) or not isinstance(answer, Sequence):
            return answer, _Unreadable("answer with a tuple of whole numbers, e.g. (1, 2, 3).")
        if not all(number_problem(v, whole=True) is None for v in answer):
            return answer, _Unreadable("answer with a tuple of whole numbers, e.g. (1, 2, 3).")
        return tuple(int(v) for v in answer), None
    if answer_type == "text":
        if not isinstance(answer, str):
            return answer, _Unreadable(f"answer with a name (a string), got {type(answer).__name__}.")
        return answer.strip().lower(), None
    if answer_type == "array":
        try:
            arr = np.asarray(answer.detach().cpu() if isinstance(answer, torch.Tensor) else answer, dtype=float)
        except (TypeError, ValueError):
            return answer, _Unreadable("answer with an array of numbers (a nested list, a NumPy array or a tensor).")
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
        return isinstance(target, str) and answer == target.strip().lower()
    if isinstance(target, (int, float, np.integer, np.floating)) and not isinstance(target, bool):
        if rel_tol == 0 and abs_tol == 0:
            return answer == target
        return math.isclose(answer, target, rel_tol=rel_tol, abs_tol=abs_tol)
    return False


def _say(message: Any, answer: Any) -> str:
    return message(answer) if callable(message) else message


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
    hint: str = "",
    kind: str = "value",
    parse: Callable[[Any], Any] | None = None,
) -> Exercise:
    """Register an exercise whose answer is one value, with targeted feedback for typical mistakes.

    Args:
        key, title, solution, hint: as for :func:`exercise`.
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
        parse: turns other spellings of an answer into the expected form first (e.g. ``"1x3"``
            into ``(1, 3)``); it should return an unparseable answer unchanged.

    Returns:
        The registered :class:`Exercise`.

    Raises:
        ValueError: ``answer_type`` or ``kind`` is not one of the names above, or ``key`` is already
            registered (as for :func:`exercise`).
    """
    if answer_type not in ANSWER_TYPES:
        raise ValueError(f"exercise {key!r}: answer_type must be one of {ANSWER_TYPES}, got {answer_type!r}")
    if kind not in ("value", "predict"):
        raise ValueError(f"exercise {key!r}: a value exercise has kind 'value' or 'predict', not {kind!r}")
    mistakes = tuple(mistakes)

    def checker(answer: Any) -> str | None:
        got, problem = _normalise(parse(answer) if parse is not None else answer, answer_type)
        if problem is not None:
            return problem
        if _matches(got, solution(), rel_tol, abs_tol):
            return None
        for wrong, message in mistakes:
            hit = wrong(got) if callable(wrong) else _matches(got, wrong, rel_tol, abs_tol)
            if hit:
                return _say(message, got)
        return _say(otherwise, got)

    examples = tuple((w, m) for w, m in mistakes if not callable(w) and isinstance(m, str))
    wrong = tuple(w for w, _ in mistakes if not callable(w)) + tuple(more_wrong)
    exercise(key, title, solution=solution, wrong_answers=wrong, hint=hint, kind=kind, mistakes=examples)(checker)
    return _REGISTRY[key]


# ---------------------------------------------------------------------------------------------
# Shared checking: functions written by the learner
# ---------------------------------------------------------------------------------------------
def _brief(value: Any, limit: int = 80) -> str:
    """A short description of an argument or a result for feedback messages."""
    if isinstance(value, torch.Tensor):
        if value.numel() <= 12:
            return f"tensor({value.tolist()})"
        return f"a tensor of shape {tuple(value.shape)}"
    if isinstance(value, np.ndarray):
        return f"array({value.tolist()})" if value.size <= 12 else f"an array of shape {value.shape}"
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, torch.Tensor) for v in value):
        shapes = sorted({tuple(v.shape) for v in value})
        return f"a list of {len(value)} tensors of shape {' or '.join(map(str, shapes))}"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def compare_results(got: Any, want: Any, atol: float = 1e-5) -> str | None:
    """Why ``got`` differs from ``want`` (``None`` when they agree).

    Tensors and arrays must have the same shape and values within ``atol`` (any dtype); numbers
    are compared with ``atol``; sequences element by element; anything else with ``==``.
    """
    if isinstance(want, (torch.Tensor, np.ndarray)):
        if not isinstance(got, (torch.Tensor, np.ndarray, list, tuple)):
            return f"it returned {type(got).__name__}, not a {'tensor' if isinstance(want, torch.Tensor) else 'array'}."
        g = torch.as_tensor(np.asarray(got) if isinstance(got, (list, tuple)) else got).detach().cpu().double()
        w = torch.as_tensor(want).detach().cpu().double()
        if tuple(g.shape) != tuple(w.shape):
            return f"it has shape {tuple(g.shape)}, expected {tuple(w.shape)}."
        if not torch.allclose(g, w, atol=atol, rtol=0, equal_nan=False):
            gap = (g - w).abs().nan_to_num(nan=float("inf"))
            at = tuple(int(i) for i in np.unravel_index(int(gap.argmax()), tuple(g.shape))) if g.dim() else ()
            where = f" at index {at}" if at else ""
            return (f"its values differ: the largest difference is {shown(gap.max().item())}{where} (got "
                    f"{shown(g[at].item())}, expected {shown(w[at].item())}; {int((gap > atol).sum())} of "
                    f"{g.numel()} values differ by more than {atol:g}).")
        return None
    if isinstance(want, (int, float, np.integer, np.floating)) and not isinstance(want, bool):
        got = _as_scalar(got)
        if isinstance(got, bool) or not isinstance(got, (int, float, np.integer, np.floating)):
            return f"it returned {type(got).__name__}, not a number."
        return None if math.isclose(float(got), float(want), rel_tol=0, abs_tol=atol) else "the number differs."
    if isinstance(want, (list, tuple)):
        if isinstance(got, (np.ndarray, torch.Tensor)) and got.ndim >= 1:
            got = got.tolist()  # an array holds the same (nested) sequence
        if isinstance(got, (str, bytes)) or not isinstance(got, Sequence):
            return f"it returned {type(got).__name__}, not a sequence of {len(want)} items."
        if len(got) != len(want):
            return f"it has {len(got)} items, expected {len(want)}."
        for i, (g, w) in enumerate(zip(got, want)):
            if (why := compare_results(g, w, atol)) is not None:
                return f"item {i}: {why}"
        return None
    return None if got == want else "it differs."


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


def packaged_use(answer: Any, packaged: Sequence[Any]) -> str | None:
    """The name of the first of ``packaged`` that ``answer`` is, subclasses, wraps (``functools.partial``,
    a closure, a default argument) or uses by name: a global, or an attribute of a module
    (``atrous.dilate_kernel``), in its own code, its nested functions and lambdas, a class's
    methods, and the learner's own helpers it calls (functions of the same notebook, three calls
    deep); ``None`` if none.

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
        for ins in dis.get_instructions(current):
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
    hint: str = "",
    packaged: Sequence[Any] = (),
) -> Exercise:
    """Register a write-a-function exercise, checked against the package's ``reference``.

    The learner's function is called on the fixed ``cases`` and then on ``trials`` inputs drawn by
    ``inputs(generator)`` (seeded: the same inputs every time), each time with fresh copies of the
    arguments, for at most :data:`FUNCTION_TIME_LIMIT_S` seconds in all (a function still running
    then is stopped and the feedback says so: an endless loop must not hang the notebook). When a
    result differs from ``reference``'s, the typical ``mistakes`` (wrong
    implementations) are run on the same inputs: the one that reproduces the learner's results on
    every input names the mistake; otherwise the feedback shows the first wrong input, the result and
    the expected one. A function that raises gets the
    error, and the explanation of a typical mistake that raises the same error.

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
            return compare_results(got, wrong(*_clone(args)), atol) is None
        except Exception:  # a mistake that cannot run on these inputs is simply not this one
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
        for args in arguments():
            shown = ", ".join(_brief(a) for a in args)
            want = reference(*_clone(args))
            if expired():  # where no timer can interrupt the learner's code: stop between calls
                raise _StillRunning
            calling["shown"] = shown
            try:
                got = answer(*_clone(args))
            except Exception as err:  # the learner's code: report, never raise
                crash = f"calling it with ({shown}) raised {type(err).__name__}: {err}"
                for wrong, message in mistakes:  # a typical mistake that fails the same way
                    try:
                        wrong(*_clone(args))
                    except Exception as same:
                        if type(same) is type(err) and str(same) == str(err):
                            return f"{message} (Calling it with ({shown}) raised {type(err).__name__}: {err})"
                return crash
            if got is None:
                message = ("your function returned None: fill in its body and `return` the result (a function that "
                           "prints its result still returns None).")
                # nothing returned yet: the stub as the notebook gives it, so the hint waits for a first try
                return _NotTried(message) if calling["done"] == 0 else message
            calling["done"] += 1
            results.append((args, got))
            why = compare_results(got, want, atol)
            if why is not None and first_wrong is None:
                first_wrong = (args, got, want, why)
        if first_wrong is None:
            return None
        args, got, want, why = first_wrong
        shown = ", ".join(_brief(a) for a in args)
        # a typical mistake is named only when it reproduces the learner's results on *every* input: one
        # that merely agrees on the first wrong input would explain a different function
        for wrong, message in mistakes:
            if all(agrees(wrong, a, g) for a, g in results):
                return f"{message} (Seen with the arguments ({shown}).)"
        return f"with the arguments ({shown}) {why} It returned {_brief(got)}; expected {_brief(want)}."

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
    """``"measured: 0.400; your prediction: 0.300"`` for the cell that measures what a learner predicted:
    the prediction is shown when it is a number, and never breaks the cell when it is not (``...``
    before a first try, ``None``, a string): the notebook runs top to bottom either way."""
    text = f"measured: {measured:{fmt}}"
    prediction = _as_scalar(prediction)
    if prediction is NOT_ANSWERED or prediction is None:
        return text
    if number_problem(prediction) is None:
        try:
            shown = format(prediction, fmt)
        except (TypeError, ValueError):  # 12.5 against a whole-number format ("d"): shown as it is
            shown = format(prediction, "g")
        return f"{text}; your prediction: {shown}"
    return f"{text}; your prediction ({_brief(prediction)}) is not a number"


def check(key: str, answer: Any) -> Feedback:
    """Check ``answer`` to exercise ``key`` and say what, if anything, is wrong.

    An unanswered exercise (``...`` or ``None``, or a function stub that returns nothing) is
    reported, not raised, so that a notebook still runs top to bottom before the learner has
    tried; the exercise's hint comes with a wrong answer only, not before a first try.

    Raises:
        WrongAnswer: only where the course checks itself (:func:`deeplab_edu.config.course_checks`:
            the notebook tests, ``make book``), for an answer judged wrong: there the only answers
            given are the hidden solutions', and one that fails must stop the run.
    """
    ex = get(key)
    if answer is NOT_ANSWERED or answer is None:
        return Feedback(key, False, f"{ex.title}: not answered yet. Replace `...` with your answer.")
    try:
        problem = ex.checker(_as_scalar(answer))
    except Exception as err:  # a malformed answer must give feedback, not a traceback
        problem = f"could not check this answer ({type(err).__name__}: {err})"
    if problem is None:
        return Feedback(key, True, f"{ex.title}: well done.")
    if isinstance(problem, _NotTried):
        return Feedback(key, False, f"{ex.title}: not answered yet: {problem}")
    msg = f"{ex.title}: {problem}"
    if ex.hint and not isinstance(problem, _Unreadable):
        msg += ("" if msg.rstrip().endswith((".", "!", "?")) else ".") + f" Hint: {ex.hint}"
    if course_checks():
        raise WrongAnswer(f"[{key}] {msg}")
    return Feedback(key, False, msg)
