"""Every exercise of every chapter accepts its solution and rejects its listed mistakes."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from deeplab_edu.exercises import KINDS, all_exercises, check, function_exercise, get, hint, value_exercise
from deeplab_edu.exercises import _core

EXERCISES = all_exercises()


@pytest.fixture(autouse=True)
def _no_wrong_tries_yet() -> Iterator[None]:
    """Each test starts as a fresh Python session: no wrong tries counted (the hint comes from the second)."""
    _core._WRONG_TRIES.clear(), _core._HINT_STEPS.clear()
    yield
    _core._WRONG_TRIES.clear(), _core._HINT_STEPS.clear()


@pytest.mark.parametrize("key", sorted(EXERCISES))
def test_solution_is_accepted(key: str) -> None:
    ex = EXERCISES[key]
    feedback = check(key, ex.solution())
    assert feedback, str(feedback)


@pytest.mark.parametrize("key", sorted(EXERCISES))
def test_wrong_answers_are_rejected_with_a_reason(key: str) -> None:
    ex = EXERCISES[key]
    assert ex.wrong_answers, f"exercise {key} lists no wrong answers to test its checker with"
    for wrong in ex.wrong_answers:
        feedback = check(key, wrong)
        assert not feedback, f"{key} accepted the wrong answer {wrong!r}"
        assert len(feedback.message) > len(ex.title) + 5, f"{key}: feedback for {wrong!r} says nothing"


@pytest.mark.parametrize("key", sorted(k for k, ex in EXERCISES.items() if ex.mistakes))
def test_each_typical_mistake_gets_its_own_explanation(key: str) -> None:
    ex = EXERCISES[key]
    for wrong, explanation in ex.mistakes:
        message = check(key, wrong).message
        assert explanation in message, f"{key}: {wrong!r} should be told {explanation!r}, got {message!r}"


def test_every_exercise_has_a_known_kind() -> None:
    assert {ex.kind for ex in EXERCISES.values()} <= set(KINDS)


@pytest.mark.parametrize("chapter", [f"{c:02d}" for c in range(8)])
def test_chapters_00_to_07_make_learners_write_or_predict(chapter: str) -> None:
    kinds = {ex.kind for key, ex in EXERCISES.items() if key.startswith(chapter + ".")}
    assert kinds & {"function", "predict"}, f"chapter {chapter} has only single-value exercises: {kinds}"


def test_unanswered_is_reported_not_raised() -> None:
    fb = check("00.1", ...)
    assert not fb and "not answered" in fb.message


def test_measuring_cells_show_any_prediction_without_breaking(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """A measuring cell shows the measurement beside any prediction, and keeps it to itself before
    the first one (Run All would print the answer); the book, where the course checks itself, shows it."""
    from deeplab_edu.exercises import measured_and_predicted, prediction_made

    monkeypatch.delenv("DEEPLAB_EDU_COURSE_CHECKS", raising=False)
    assert measured_and_predicted(13, 12.5, fmt="d") == "measured: 13; your prediction: 12.5 (0.5 below)"
    assert measured_and_predicted(0.4, 0.3) == "measured: 0.400; your prediction: 0.300 (0.100 below)"
    # 05.3's trial: how far a prediction lies, so that a missed 256 x 256 shows at once
    assert measured_and_predicted(4_784_640, 4_719_104, fmt=",.0f").endswith("your prediction: 4,719,104 (65,536 below)")
    assert measured_and_predicted(0.4, 0.4) == "measured: 0.400; your prediction: 0.400"
    assert "not a number" in measured_and_predicted(0.4, "a lot")
    assert measured_and_predicted(0.4, 1e300) == "measured: 0.400; your prediction: 1e+300 (1e+300 above)"  # was 301 digits
    assert "0.4" not in measured_and_predicted(0.4, ...) and "hidden until you predict" in measured_and_predicted(0.4, ...)
    assert prediction_made("09.1", 300) and capsys.readouterr().out == ""
    assert not prediction_made("09.1", ...) and "make your prediction above first" in capsys.readouterr().out
    monkeypatch.setenv("DEEPLAB_EDU_COURSE_CHECKS", "1")
    assert measured_and_predicted(0.4, ...) == "measured: 0.400" and prediction_made("09.1", ...)


def test_malformed_answer_gives_feedback() -> None:
    assert "expected a number" in check("00.1", "eight").message


def test_unknown_exercise() -> None:
    with pytest.raises(KeyError, match="99"):
        get("99.1")


def test_each_chapter_with_exercises_has_at_least_three() -> None:
    chapters: dict[str, int] = {}
    for key in EXERCISES:
        chapters[key.split(".")[0]] = chapters.get(key.split(".")[0], 0) + 1
    thin = {c: n for c, n in chapters.items() if n < 3}
    assert not thin, f"chapters with fewer than three exercises: {thin}"


# --- the shared builders ---------------------------------------------------------------------
@pytest.fixture
def scratch() -> Iterator[str]:
    """A throw-away exercise key, removed from the registry afterwards."""
    yield "97.1"
    _core._REGISTRY.pop("97.1", None)


def test_value_exercise_tolerance_predicates_and_types(scratch: str) -> None:
    value_exercise(scratch, "a fraction", solution=lambda: 0.25, answer_type="fraction", abs_tol=1e-3,
                   mistakes=[(0.5, "one half is wrong"), (lambda a: a > 0.3, lambda a: f"{a} is too large")],
                   otherwise="no")
    assert check(scratch, 0.2501) and not check(scratch, 0.26)
    assert "one half is wrong" in check(scratch, 0.5).message
    assert "0.4 is too large" in check(scratch, 0.4).message
    assert "between 0 and 1" in check(scratch, 25).message
    assert get(scratch).kind == "value" and get(scratch).mistakes == ((0.5, "one half is wrong"),)


def test_value_exercise_arrays_and_text(scratch: str) -> None:
    value_exercise(scratch, "a map", solution=lambda: [[1, 2], [3, 4]], answer_type="array", kind="predict",
                   mistakes=[([[4, 3], [2, 1]], "reversed")], otherwise="no")
    assert check(scratch, torch.tensor([[1, 2], [3, 4]])) and check(scratch, [[1.0, 2.0], [3.0, 4.0]])
    assert "reversed" in check(scratch, [[4, 3], [2, 1]]).message
    assert not check(scratch, [1, 2, 3, 4])
    assert get(scratch).kind == "predict"


def test_the_hint_waits_for_a_first_try(scratch: str) -> None:
    function_exercise(scratch, "double it", reference=lambda x: 2 * x, inputs=lambda g: (torch.randn(3, generator=g),),
                      hint="multiply by two")

    def stub(x):  # as the notebook gives it: the body not written yet
        ...

    unanswered = check(scratch, stub).message
    assert "not answered yet" in unanswered and "multiply by two" not in unanswered
    assert "not answered yet" in check(scratch, ...).message
    assert "multiply by two" not in check(scratch, 3).message  # not a function: not judged, not a try
    first = check(scratch, lambda x: 3 * x).message
    assert "multiply by two" not in first and first.endswith('(Try again; a hint comes with the next wrong answer, '
                                                             'or at once from `hint("97.1")`, after `from '
                                                             'deeplab_edu.exercises import hint`.)')
    assert "division by zero. Hint: multiply by two" in check(scratch, lambda x: 1 / 0).message  # a sentence each
    assert "Hint: multiply by two" in check(scratch, lambda x: 4 * x).message  # and every wrong answer after


def test_hints_escalate_per_exercise_and_hint_gives_one_at_once() -> None:
    """A learner's trial found the hint (often formula-level) handed out with the first wrong answer. It
    comes from the second wrong answer to the same exercise; ``hint(key)`` gives it at once."""
    first = check("05.3", 7777).message
    assert "Hint:" not in first and '`hint("05.3")`, after `from deeplab_edu.exercises import hint`' in first
    assert "Hint:" not in check("01.1", 7777).message  # another exercise counts its own tries
    for unjudged in (..., None, "many", (1, 2)):  # unanswered or of the wrong kind: not a try
        assert "Hint:" not in check("01.1", unjudged).message
    assert "Hint:" not in check("01.1", "13").message
    assert f"Hint: {get('05.3').hint}" in check("05.3", 1000).message
    assert f"Hint: {get('01.1').hint}" in check("01.1", 12).message
    assert hint("05.4") == get("05.4").hint and "F.conv2d" in hint("05.4")
    assert "**Hint for exercise 05.4:**" in hint("05.4")._repr_markdown_()  # type: ignore[attr-defined]
    with pytest.raises(KeyError, match="no exercise '01.9'"):
        hint("01.9")


def test_the_hint_call_a_wrong_answer_offers_runs_as_written() -> None:
    """A learner's review: the first wrong answer offered `hint("01.2")`, which no chapter imports (they
    import check and solved), so the call was a NameError. The code the message offers runs in a fresh
    namespace, as in a learner's notebook."""
    import re

    snippets = re.findall(r"`([^`]+)`", check("05.3", 7777).message)
    call, imports = snippets[-2:]
    namespace: dict[str, object] = {}
    exec(imports, namespace)  # noqa: S102 - the message's own import line
    assert eval(call, namespace) == get("05.3").hint  # noqa: S307


@pytest.mark.parametrize("key", ["01.2", "01.4", "06.2", "06.4", "07.1", "08.3"])
def test_a_hint_in_steps_gives_the_idea_before_the_formula(key: str) -> None:
    """A lecturer's review found these hints formula-level from the start: plugging numbers in, the learner never
    works the formula out. The second wrong answer gets the idea, the third the formula; hint() steps the same way."""
    ex = get(key)
    assert len(ex.hints) == 2 and ex.hint == ex.hints[-1]
    wrong = ex.wrong_answers[0] if ex.wrong_answers else ex.mistakes[0][0]
    assert "Hint:" not in check(key, wrong).message
    second = check(key, wrong).message
    assert f"Hint: {ex.hints[0]}" in second and ex.hints[1] not in second and "More with the next wrong answer" in second
    assert "from deeplab_edu.exercises import hint" in second  # the chapters import check and solved, not hint
    third = check(key, wrong).message
    assert f"Hint: {ex.hints[1]}" in third and "More with" not in third
    assert f"Hint: {ex.hints[1]}" in check(key, wrong).message  # the last step stays
    _core._HINT_STEPS.clear()
    first = hint(key)
    assert first.startswith(ex.hints[0]) and f'call `hint("{key}")` again' in first
    assert hint(key) == ex.hints[1] and hint(key) == ex.hints[1]


def test_a_wrong_form_is_no_try_and_hint_calls_count() -> None:
    """A learner's trial: one number where a pair is asked counted as a wrong try (a string did not), and after
    hint() had shown both steps the next wrong answer still said a hint would come."""
    assert "two numbers" in check("07.4", 0.135).message and "two numbers" in check("07.4", 0.2).message
    assert "Hint:" not in check("07.4", (0.5, 0.5)).message  # the first judged wrong answer: still no hint
    assert "three numbers" in check("08.3", (3, 6)).message and "Hint:" not in check("08.3", (3, 6, 9)).message
    hint("07.1"), hint("07.1")
    assert f"Hint: {get('07.1').hints[1]}" in check("07.1", 224).message  # no "a hint comes with the next" again


def test_hints_leave_the_learner_something_to_write() -> None:
    """A hint is a step, not the finished call (05.4 gave ``F.conv2d(x, w, b, padding=r, dilation=r)``, 09.3 the
    whole F.interpolate call, 02.4 the two update lines)."""
    assert all(ex.hint for ex in EXERCISES.values())
    for key, finished in [("05.4", "padding=r"), ("09.3", "size=low_level.shape"), ("02.4", "r +="),
                          ("02.4", "J *="), ("10.1", "cm[c, c]"), ("11.4", "ceil(max("), ("00.3", "(n + 1) // 2")]:
        assert all(finished not in step for step in get(key).hints), (key, get(key).hints)


def test_value_exercise_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="answer_type"):
        value_exercise("96.1", "x", solution=lambda: 1, otherwise="no", answer_type="colour")
    with pytest.raises(ValueError, match="kind"):
        value_exercise("96.2", "x", solution=lambda: 1, otherwise="no", kind="function")


def test_function_exercise_reports_errors_and_mistakes(scratch: str) -> None:
    function_exercise(scratch, "double it", reference=lambda x: 2 * x,
                      inputs=lambda g: (torch.randn(3, generator=g),),
                      mistakes=[(lambda x: x + x + 1, "off by one")], signature="double(x)")
    assert check(scratch, lambda x: x * 2)
    assert "off by one" in check(scratch, lambda x: 2 * x + 1).message
    assert "raised ZeroDivisionError" in check(scratch, lambda x: 1 / 0).message
    assert "returned None" in check(scratch, lambda x: None).message

    def stub(x: torch.Tensor) -> None:
        """The notebook's stub: a docstring and `...`."""
        ...  # your code here

    def printer(x: torch.Tensor) -> None:
        print(2 * x)  # prints its result: returns None on the first argument already

    assert "not answered yet" in check(scratch, stub).message
    assert "not answered" not in (told := check(scratch, printer).message) and "every path" in told and "prints" in told
    assert "shape" in check(scratch, lambda x: torch.cat([x, x])).message
    assert "double(x)" in check(scratch, 3).message
    assert get(scratch).kind == "function"
    threads = torch.get_num_threads()
    check(scratch, lambda x: 2 * x)  # checks run on one thread, then restore the setting
    assert torch.get_num_threads() == threads


def test_function_exercise_names_a_mistake_that_fails_the_same_way(scratch: str) -> None:
    def shrinks(x: torch.Tensor) -> torch.Tensor:
        return x[:-1] + x[1:-1]  # the sizes do not match: raises

    function_exercise(scratch, "x", reference=lambda x: x, inputs=lambda g: (torch.randn(5, generator=g),),
                      mistakes=[(shrinks, "sizes differ")])
    message = check(scratch, shrinks).message
    assert "sizes differ" in message and "RuntimeError" in message


def test_function_exercise_does_not_let_the_learner_change_the_inputs(scratch: str) -> None:
    function_exercise(scratch, "sum", reference=lambda x: x.sum(), inputs=lambda g: (torch.ones(4),), trials=2)

    def in_place(x: torch.Tensor) -> torch.Tensor:
        total = x.sum()
        x.zero_()  # would corrupt the reference's input if the arguments were shared
        return total

    # its results are judged right (the reference had inputs of its own), and the change it makes to the
    # caller's tensor is named (stop 68: it passed, and a learner's next cell then worked on zeros)
    message = check(scratch, in_place).message
    assert "returns the right results but changes its 1st argument in place" in message


def test_an_answer_that_uses_the_packaged_version_is_refused_by_name() -> None:
    """Chapters import the package's version of what an exercise asks for (to use it elsewhere): a
    learner who wraps it must hear so, not "correct" (found by a review: 01.5 passed with
    ``lambda w, r: dilate_kernel(w, r)``)."""
    import functools

    import numpy as np

    from deeplab_edu import atrous, findings
    from deeplab_edu.atrous import dilate_kernel
    from deeplab_edu.findings import miou
    from deeplab_edu.models import ASPPv2
    from deeplab_edu.receptive_field import LayerSpec, receptive_field

    def wrapped(w: torch.Tensor, rate: int) -> torch.Tensor:
        def inner() -> torch.Tensor:
            return atrous.dilate_kernel(w, rate)  # through the module, in a nested function
        return inner()

    def helper(w: torch.Tensor, rate: int) -> torch.Tensor:  # the learner's own helper, which wraps it
        return dilate_kernel(w, rate)

    def via_helper(w: torch.Tensor, rate: int) -> torch.Tensor:
        return helper(w, rate)

    def by_default(w: torch.Tensor, rate: int, dilate=dilate_kernel) -> torch.Tensor:  # type: ignore[no-untyped-def]
        return dilate(w, rate)

    def imports_it(w: torch.Tensor, rate: int) -> torch.Tensor:  # a learner's trial: passed as correct
        from deeplab_edu.atrous import dilate_kernel as own
        return own(w, rate)

    for key, answer, name in [
        ("01.5", dilate_kernel, "dilate_kernel"),
        ("01.5", via_helper, "dilate_kernel"),
        ("01.5", by_default, "dilate_kernel"),
        ("01.5", imports_it, "dilate_kernel"),
        ("10.1", lambda cm: float(np.nanmean([findings.class_iou(cm, k) for k in range(len(cm))])), "class_iou"),
        ("10.2", lambda low, high, diff: findings.joint_verdict((low, high), (low, high), diff), "joint_verdict"),
        ("01.5", lambda w, r: dilate_kernel(w, r), "dilate_kernel"),
        ("01.5", functools.partial(dilate_kernel), "dilate_kernel"),
        ("01.5", wrapped, "dilate_kernel"),
        ("02.4", lambda layers: receptive_field([LayerSpec(*layer) for layer in layers]).size, "receptive_field"),
        ("05.4", lambda x, w, b, rates: ASPPv2(x.shape[1], w[0].shape[0], rates)(x), "ASPPv2"),
        ("10.1", lambda *args: miou(*args), "miou"),
    ]:
        feedback = check(key, answer)
        assert not feedback and f"`{name}`" in feedback.message and "the package's own version" in feedback.message
    assert check("01.5", get("01.5").solution())  # the hidden solutions write their own

    class Box:  # an attribute or a local that shares a packaged name is not a use of it
        dilate_kernel = 0

    def own(w: torch.Tensor, rate: int) -> torch.Tensor:
        box, dilate_kernel = Box(), 0
        box.dilate_kernel += dilate_kernel + atrous.__name__.count("x")  # a module in scope, another attribute
        out = torch.zeros((len(w) - 1) * rate + 1, dtype=w.dtype)
        out[::rate] = w
        return out

    assert check("01.5", own)


# --- chapter 11 ------------------------------------------------------------------------------
def test_ch11_window_count_is_what_sliding_window_logits_does_on_real_tensors() -> None:
    """11.4's reference (the package's sliding_window_logits run on the meta device) counts real passes."""
    from deeplab_edu.exercises import ch11
    from deeplab_edu.inference import sliding_window_logits

    for h, w, crop, stride in [(40, 50, 64, 20), (100, 130, 48, 30), (64, 64, 64, 21), (97, 33, 32, 32)]:
        counter = ch11._CountPasses()
        sliding_window_logits(counter, torch.zeros(1, 3, h, w), crop, stride)
        assert counter.passes == ch11._windows_reference(h, w, crop, stride) == ch11._windows(h, w, crop, stride)


@pytest.mark.filterwarnings("ignore:the image is in:UserWarning")  # zeros: only the multiply-adds are counted
def test_ch11_multi_scale_flip_cost_is_the_sum_of_squared_scales() -> None:
    """11.3's rule, (1 + flip) * sum(s^2), is what count_macs measures for predict_probs when sizes do not round."""
    from deeplab_edu.complexity import count_macs
    from deeplab_edu.exercises.ch11 import V2_SCALES, ms_flip_cost
    from deeplab_edu.inference import Strategy, predict_probs

    net = torch.nn.Conv2d(3, 4, 3, padding=1).eval()
    image = torch.zeros(1, 3, 64, 64)  # 0.5 and 0.75 give 32 and 48 pixels: no rounding
    one = count_macs(lambda x: predict_probs(net, x), image)
    for flip in (False, True):
        macs = count_macs(lambda x: predict_probs(net, x, Strategy(scales=V2_SCALES, flip=flip)), image)
        assert macs / one == ms_flip_cost(V2_SCALES, flip) == (3.625 if flip else 1.8125)


def _endless(*args: object) -> object:
    while True:
        try:
            sum(range(1000))
        except Exception:  # a learner's broad except must not swallow the check's stop
            pass


def test_an_endless_function_is_stopped_with_feedback(monkeypatch: pytest.MonkeyPatch) -> None:
    import signal
    import time

    monkeypatch.setattr(_core, "FUNCTION_TIME_LIMIT_S", 0.5)
    handler, (left, _) = signal.getsignal(signal.SIGALRM), signal.getitimer(signal.ITIMER_REAL)
    start = time.monotonic()
    feedback = check("01.5", _endless)
    assert time.monotonic() - start < 5
    assert not feedback and "still running after 0.5 s" in feedback.message
    assert "returned for 0 of the" in feedback.message and "called with (" in feedback.message
    # pytest-timeout's own timer (or anyone's) is put back as it was
    assert signal.getsignal(signal.SIGALRM) is handler
    assert (signal.getitimer(signal.ITIMER_REAL)[0] > 0) == (left > 0)
    assert check("01.5", get("01.5").solution())  # and the next check runs normally


def test_a_slow_function_off_the_main_thread_is_stopped_between_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    import time

    from deeplab_edu.exercises.ch01 import _my_dilate  # a learner's own (the package's own is refused)

    def slow(w: torch.Tensor, rate: int) -> torch.Tensor:
        time.sleep(0.2)
        return _my_dilate(w, rate)

    monkeypatch.setattr(_core, "FUNCTION_TIME_LIMIT_S", 0.5)
    found: list[object] = []
    worker = threading.Thread(target=lambda: found.append(check("01.5", slow)))  # no SIGALRM off the main thread
    worker.start()
    worker.join(30)
    assert found and not found[0] and "still running after 0.5 s" in found[0].message  # type: ignore[attr-defined]


def test_odd_numbers_and_containers_get_feedback_not_a_crash() -> None:
    import numpy as np

    from deeplab_edu.exercises._core import number_problem, shown

    for answer in (float("nan"), float("inf"), 10**400):  # they raised ValueError / OverflowError
        feedback = check("01.1", answer)
        assert not feedback and ("finite" in feedback.message or "too large" in feedback.message)
    assert shown(4718848) == "4718848" and shown(2.5) == "2.5" and shown(np.int64(7)) == "7"
    assert check("05.2", 2212353).message.split(" — ", 1)[1].startswith("2212353 is too large")  # not 2.21235e+06
    # 05.3's trial: 4784640.5 was shown as "4.78464e+06 is not a whole number", which reads as whole
    assert shown(4784640.5) == "4784640.5" and shown(1 / 3) == "0.333333" and shown(1e20) == "1e+20"
    assert "4784640.5 is not a whole number" in check("05.3", 4784640.5).message
    # an API trial: "7 layers" was judged as 7 for a size in pixels; a unit word of another thing is refused
    told = check("02.1", "7 layers")
    assert not told and "'7 layers' is in layers, but this exercise asks for a number of pixels" in told.message
    assert check("02.1", "7 px") and check("02.1", "7 cells") and check("05.3", "4,784,640 weights")
    assert "a number of images" in check("11.1", "32 steps").message and check("11.1", "32 images")
    assert "a number of channels" in check("09.1", "320 px").message and check("09.1", "320 channels")
    assert "a number of parameters" in check("09.2", "27776 channels").message
    assert "a number of passes:" in check("11.3", "6 images").message  # not "passs"
    assert shown(4784640.0000001) == "4784640.0000001" and shown(13.0000004) == "13.0000004"  # not whole-looking
    assert check("06.1", "0.4 images")  # an exercise that names no unit takes any unit word, as before
    with pytest.raises(ValueError, match="unit must be one of"):
        value_exercise("99.9", "t", solution=lambda: 1, otherwise="no", unit="pixels")
    # ... and three numbers were told of "a square window or map": only two equal ones are a square's sides
    assert "square" not in check("05.3", (1, 2, 3)).message and "square" in check("02.1", (7, 7)).message
    assert check("09.1", np.int64(320)) and check("09.2", np.int64(5 * 5 * 128 + 128 * 192))  # NumPy ints are numbers
    assert "expected a number, got bool" in check("09.1", True).message
    # a teacher's trial: "8x", "32 images", "zero", "2.212.352" were told only "expected a number, got str."
    assert "the text 'thirteen': write the number alone, in digits, without quotes" in check("01.1", "thirteen").message
    assert check("01.1", "8x").message.endswith("without quotes, words or units (8).")
    assert "32 is too large" in check("01.1", "32 px").message  # judged as 32 (a counted try): the unit fits
    assert "is in images, but this exercise asks for a number of pixels" in check("01.1", "32 images").message
    # a learner's trial in JupyterLab: "6px" was judged and "0 params" or "1536 channels" refused
    assert check("03.1", "0 params") and check("03.1", "0 parameters") and check("05.3", "4,784,640 params")
    assert check("09.1", "320 channels")  # a counted thing: channels
    assert "words or units (3)" in check("01.1", "3 apples").message  # not a counted thing of these exercises
    assert check("01.1", "2.212.352").message.endswith("units.")
    # a number as a learner types it in quotes (a trial): judged as the number it spells, as "1x3" is as a
    # list; with separators or a unit too
    for exercise, text in (("01.1", " {} "), ("07.2", "{:,}"), ("07.1", "{}px")):
        right = get(exercise).solution()
        assert check(exercise, text.format(right)), (exercise, text.format(right))
        wrong = check(exercise, text.format(right + 1))
        assert not wrong and "expected a number" not in wrong.message and "too large" in wrong.message
    assert "without quotes: 13." in number_problem(" 13")  # a direct call is told what it was given
    # an exact number is a number (it was refused: "expected a number, got Fraction"); a calculation in
    # quotes is named as one (it read "expected one number, got 2": "2**3" as the list 2, 3)
    from decimal import Decimal
    from fractions import Fraction

    assert check("01.1", Fraction(13)) and check("01.1", Decimal(13)) and not check("01.1", Fraction(27, 2))
    assert "a calculation: write it without quotes" in check("01.1", "2**3").message
    assert "a calculation" in check("01.1", "26 / 2").message and "expected one number" in check("01.1", "3*3").message
    assert "write 5 itself, without brackets" in check("01.2", [5]).message
    assert repr(check("01.2", 4)).startswith("[01.2] not yet: ")  # a Python prompt shows the sentence
    # a negative count, length or rate is named as such (but 01.3's input indices may be negative)
    assert "negative" in check("01.4", -6).message and "negative" in check("08.3", (-3, 6, 9)).message
    assert "negative" not in check("01.3", (-4, 0, 3)).message
    assert check("02.2", np.array(get("02.2").solution())) and check("01.3", torch.tensor(get("01.3").solution()))
    assert "other way round" in check("02.2", get("02.2").solution()[::-1]).message
    counts = torch.tensor(get("04.2").solution(), dtype=torch.float32, requires_grad=True)  # measured with a conv
    assert check("04.2", counts) and check("04.2", get("04.2").solution() * (1 + 1e-15))
    assert "answer with a name" in check("11.2", ["fp16"]).message  # it raised "unhashable type"
    # a measured number comes as a 0-d tensor ((x > 0).sum(), F.cross_entropy(...)): it is a number,
    # and a wrong kind of answer gets no hint about reasoning that was never judged
    assert check("01.1", torch.tensor(13)) and check("01.1", np.array(13)) and check("06.1", torch.tensor(get("06.1").solution()))
    assert check("02.3", torch.tensor(get("02.3").solution()))
    assert check("00.3", lambda *args: torch.tensor(get("00.3").solution()(*args)))
    assert not check("01.1", torch.tensor([13])) and not check("01.1", torch.tensor(12))
    assert "Hint" not in check("01.1", "13").message and "hint" in check("01.1", 12).message.lower()
    with pytest.raises(TypeError, match="string such as '01.2'"):
        check(1.1, 1)  # type: ignore[arg-type]


def test_set_and_name_answers_accept_their_spellings() -> None:
    import numpy as np

    right = ["a", "b", "c", "f", "g", "h"]
    for answer in (right, right[::-1], tuple(right), "a b c f g h", "a, b, c, f, g, h"):
        assert check("06.3", answer), answer
    assert "not ids of these lists" in check("06.3", ["abc", "fgh"]).message  # it was accepted
    assert "not ids of these lists" in check("06.3", "hgfcba").message
    for spelling in ("fp16", " FP16 ", "float16", "half", torch.float16):
        assert check("11.2", spelling), spelling
    # a measured pair is a pair however it comes: list, tuple, NumPy, tensor
    pair = get("07.4").solution()
    for answer in (list(pair), tuple(pair), np.array(pair), torch.tensor(pair)):
        assert check("07.4", answer), answer


def test_a_typical_mistake_is_named_only_when_it_explains_every_result() -> None:
    import math

    # right for 513 but wrong at (1, 32): agrees with "n // output_stride" there and nowhere else
    feedback = check("00.3", lambda n, s: math.ceil(n / s) if n > 1 else 0)
    assert not feedback and "rounds down" not in feedback.message and "with the arguments (1, 32)" in feedback.message


def test_tensor_results_say_where_they_differ() -> None:
    from deeplab_edu.exercises import compare_results

    want = torch.zeros(2, 3)
    got = want.clone()
    got[1, 2] = 0.5
    why = compare_results(got, want)
    assert why is not None and "0.5 at index (1, 2)" in why and "1 of 6 values" in why


def test_a_second_learners_trial_gets_told_what_is_wrong() -> None:
    """A learner's trial (stop 51): a function's result of the wrong dtype was told only that its values
    differ; a rounded parameter count was "too small"; "38%", "7x7" and (160, 160) got "expected a number,
    got str/tuple"; 08.3's rates in reverse order were "not it"; 10.3's "too many / too few" led to its
    answer in two guesses, unmeasured."""
    import numpy as np

    from deeplab_edu.exercises import compare_results

    want = torch.tensor([0.25, 0.75])
    assert "dtype int64" in compare_results(want.round().long(), want)
    assert "dtype float16, a lower precision" in compare_results(want.half() + 1e-3, want)
    assert "dtype" not in compare_results(want + 1, want)  # the same dtype: nothing to say about it
    assert "dtype int64" in compare_results(np.array([0, 1]), np.array([0.25, 0.75]))
    for key, exact in (("07.2", get("07.2").solution()), ("05.2", get("05.2").solution())):
        rounded = float(f"{exact:.3g}")
        assert "looks rounded" in check(key, rounded).message and "too small" not in check(key, rounded).message
    assert "looks rounded" not in check("05.2", get("05.2").solution() - 512).message  # not round: its own mistake
    assert "percentage" in check("08.2", "38%").message
    for key, pair in (("02.1", "7x7"), ("02.1", (7, 7)), ("07.1", (160, 160))):
        assert "expected one number, got 2 numbers" in check(key, pair).message, key
    # a learner of chapter 11: "4*4*2" (a product of three) was told of "a square window or map"
    assert "a calculation: write it without quotes" in check("11.1", "4*4*2").message
    # a learner in JupyterLab: "2.2M" was told to write 2.2, which was then "not a whole number"
    told = check("05.2", "2.2M").message
    assert "write the number in full" in told and "(2.2)" not in told
    assert "the 1st and the 3rd are swapped" in check("08.3", tuple(reversed(get("08.3").solution()))).message
    # a third trial (stop 60): each told of a mistake it did not make
    assert "1-D fraction" not in check("04.3", (40 / 65) ** 2).message  # 1.5 % from 25 / 65, within rel_tol
    assert "1-D fraction" in check("04.3", 0.385).message
    n, c, h, w = get("11.5").solution()
    assert "height and width are swapped" in check("11.5", (n, c, w, h)).message
    assert "the question lists" not in check("11.5", (c, n, w, h)).message
    assert "in another order: what does each place stand for?" in check("11.5", (c, w, n, h)).message
    assert "that is the ratio the chapter printed" not in check("03.3", 3.75).message  # 1.1 % from the answer
    assert "output stride 16 over 8" in check("03.3", 0.25).message  # the naive 4, inverted
    assert check("07.4", ", ".join(f"{v:.4f}" for v in get("07.4").solution()))  # text, as 01.3 takes it
    assert "rounded to one decimal" in check("07.4", tuple(round(v, 1) for v in get("07.4").solution())).message
    from deeplab_edu.models.aspp import feature_map_side  # 08.1 keeps the given order: a sorted answer is named

    assert "sorted: keep them in the order given" in check("08.1", lambda c, s, r: tuple(sorted(
        x for x in r if x >= feature_map_side(c, s)))).message
    resolved = get("10.3").solution()
    for guess in {resolved + 3, resolved + 5} - {resolved}:
        message = check("10.3", guess).message
        assert "too many" not in message and "too few" not in message


# --- feedback that explains without handing out the answer (a learner's trial) ------------------
def _whole_number_solutions() -> list[str]:
    keys = []
    for key, ex in EXERCISES.items():
        if ex.kind == "function":
            continue
        answer = ex.solution()
        if isinstance(answer, (int, float)) and not isinstance(answer, bool) and float(answer).is_integer() \
                and answer >= 10:
            keys.append(key)
    return keys


@pytest.mark.parametrize("key", _whole_number_solutions())
def test_no_feedback_on_a_random_number_states_the_answer(key: str) -> None:
    """The catch-all message said e.g. "7777 is not 6 branches x 256 channels" for 05.3: whatever a guess gets,
    it must not contain the answer's digits (written plainly or with thousands separators)."""
    import random

    ex = EXERCISES[key]
    answer = int(ex.solution())
    spellings = {str(answer), f"{answer:,}"}
    rng = random.Random(key)
    guesses = [g for g in (rng.randint(0, 3 * answer) for _ in range(60)) if g != answer] + [7777, 3, 0, answer + 1,
                                                                                              answer - 1, 10 * answer]
    for guess in guesses:
        if any(s in str(guess) for s in spellings):
            continue  # a guess that holds the answer's digits itself proves nothing
        message = ex.checker(guess) or ""
        assert not any(s in message for s in spellings), f"{key}: the feedback for {guess} gives {answer}: {message!r}"
        worked = [sum_ for sum_ in _arithmetic_in(message) if sum_[1] == answer]
        assert not worked, f"{key}: the feedback for {guess} works the answer out, {worked[0][0]!r}: {message!r}"


def _arithmetic_in(message: str) -> list[tuple[str, float]]:
    """The arithmetic written in ``message`` ("256 + 64", "1 + 3 * (3 - 1)", "5 x 5 x 128 + 128 x 192") with
    its values, every run of numbers and operators and each of its parts between brackets."""
    import ast
    import re

    def value(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return value(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return float(node.value)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow)):
            left, right = value(node.left), value(node.right)
            return {ast.Add: left + right, ast.Sub: left - right, ast.Mult: left * right,
                    ast.Div: left / right if right else float("nan"), ast.Pow: left ** min(right, 64)}[type(node.op)]
        raise ValueError(node)

    found = []
    for run in re.findall(r"[\d(][\d\s+\-*/x×().]*[\d)]", message):
        text = re.sub(r"(?<=[\d)\s])[x×](?=[\s\d(])", "*", run)
        for start in range(len(text)):
            for end in range(len(text), start, -1):
                piece = text[start:end].strip()
                if not re.search(r"[+\-*/]", piece) or not piece[0].isdigit() and piece[0] != "(":
                    continue
                try:
                    found.append((piece, value(ast.parse(piece, mode="eval"))))
                except (SyntaxError, ValueError, TypeError, ZeroDivisionError, OverflowError):
                    continue
    return found


def _right_kind_of_junk(ex: _core.Exercise) -> list[object]:
    import numpy as np

    answer = ex.solution()
    if isinstance(answer, str):
        return ["zzz"]
    if isinstance(answer, (tuple, list)) and all(isinstance(v, int) for v in answer):
        return [tuple(7 for _ in answer), tuple(v + 1 for v in answer)]
    if isinstance(answer, (np.ndarray, tuple, list)):
        return [np.full(np.shape(answer), 0.77)]
    return [7777, 0.77, 3]


@pytest.mark.parametrize("key", sorted(k for k, ex in EXERCISES.items() if ex.kind != "function"))
def test_no_feedback_names_the_call_that_returns_the_answer(key: str) -> None:
    """02.3 said "check it against sampling_pattern((2, 2, 4))", 04.3 "against valid_weight_fractions(65, 20)": the
    package call the solution makes must not appear in a message (the title may name a function it asks about)."""
    ex = EXERCISES[key]
    calls = [name for name in getattr(ex.solution, "__code__", None).co_names  # type: ignore[union-attr]
             if not name.startswith("_") and callable(ex.solution.__globals__.get(name))]  # type: ignore[attr-defined]
    for junk in _right_kind_of_junk(ex):
        message = ex.checker(junk) or ""
        assert message and not any(f"{name}(" in message for name in calls), (key, junk, message)


@pytest.mark.parametrize("key, answer, says", [
    ("01.2", 4, "the + 1 is missing"),
    ("01.2", 4, "on one side only"),
    ("02.1", 6, "forgets the starting pixel"),
    ("11.5", (3, 12, 50, 70), "void label as a class"),
    ("11.5", "3 x 12 x 50 x 70", "void label as a class"),
])
def test_new_value_mistakes_are_named(key: str, answer: object, says: str) -> None:
    message = check(key, answer).message
    assert says in message, message
    assert str(get(key).solution()) not in message.split(": ", 1)[1]


def test_an_aspp_without_padding_is_told_the_branches_must_keep_the_size() -> None:
    """05.4 written with padding 0 printed only "RuntimeError: The size of tensor a (7) must match ..."; however
    the branches are combined (added in a loop, stacked), the learner hears why."""
    import torch.nn.functional as F

    from deeplab_edu.exercises.ch05 import _SIZES_DIFFER

    def looped(x, weights, biases, rates):  # type: ignore[no-untyped-def]
        out = 0
        for w, b, r in zip(weights, biases, rates):
            out = out + F.conv2d(x, w, b, dilation=r)
        return out

    def stacked(x, weights, biases, rates):  # type: ignore[no-untyped-def]
        return torch.stack([F.conv2d(x, w, b, dilation=r) for w, b, r in zip(weights, biases, rates)]).sum(0)

    for answer in (looped, stacked):
        message = check("05.4", answer).message
        assert _SIZES_DIFFER in message and "RuntimeError" in message, message
        assert "padding must match its dilation" in message


def test_fuse_by_four_then_crop_is_told_what_differs() -> None:
    import torch.nn.functional as F

    def cropped(encoder, low_level):  # type: ignore[no-untyped-def]
        up = F.interpolate(encoder, scale_factor=4, mode="bilinear")
        h, w = low_level.shape[-2:]
        return torch.cat((up[:, :, :h, :w], low_level), dim=1)

    message = check("09.3", cropped).message
    assert "upsampling by 4 and then cropping" in message and "Resize to the low-level map's size" in message


def test_miou_with_nan_zero_division_or_percent_is_named() -> None:
    import numpy as np

    def with_nan(cm):  # type: ignore[no-untyped-def]
        tp = np.diag(cm)
        return (tp / (cm.sum(0) + cm.sum(1) - tp)).mean()  # 0 / 0 for a class absent from both: nan

    def in_python(cm):  # type: ignore[no-untyped-def]
        ious = [cm[c, c].item() / (cm[c].sum().item() + cm[:, c].sum().item() - cm[c, c].item())
                for c in range(len(cm))]
        return sum(ious) / len(ious)

    def percent(cm):  # type: ignore[no-untyped-def]
        tp = np.diag(cm)
        union = cm.sum(0) + cm.sum(1) - tp
        return 100 * float((tp[union > 0] / union[union > 0]).mean())

    with np.errstate(all="ignore"):
        for answer in (with_nan, in_python):
            message = check("10.1", answer).message
            assert "left out" not in message and "Leave such classes out of the mean" in message, message
    assert "the checker wants the mean IoU as a fraction" in check("10.1", percent).message


# --- cosmetics ---------------------------------------------------------------------------------
def test_nested_results_name_the_block_and_the_unit_once() -> None:
    message = check("03.2", lambda os, mg, extra: [(2, 3, 8)]).message
    assert "item" not in message and "block 4, unit 2: the number differs (got 3, expected 4)" in message


def test_results_that_read_alike_say_how_their_values_differ(scratch: str) -> None:
    function_exercise(scratch, "double it", reference=lambda x: 2 * x, trials=2, signature="double(x)",
                      inputs=lambda g: (torch.randn(2, 3, 7, 9, generator=g),))
    message = check(scratch, lambda x: 2 * x + 0.5).message
    assert "expected a tensor of shape" not in message
    assert "a tensor of shape (2, 3, 7, 9), as expected, but its values differ: the largest difference is 0.5" \
        in message


def test_briefs_round_floats_and_sentences_end_once() -> None:
    import re

    from deeplab_edu.exercises._core import _brief

    assert _brief(torch.tensor([0.13530710306321392, 2.0])) == "tensor([0.1353, 2.0])"
    assert _brief((-0.3246239721775055, 1.0, 3)) == "(-0.3246, 1.0, 3)"
    assert _brief(list(range(100))).endswith("…") and len(_brief(list(range(100)))) <= 80
    keys_and_answers = [(key, a) for key, ex in EXERCISES.items() for a in (*ex.wrong_answers, *_junk(ex))]
    for key, answer in keys_and_answers:
        for _ in range(2):  # without, then with the hint
            message = check(key, answer).message
            # "(Seen with the arguments (513, 16).)." and the like; "0..6" is a range, "..." an ellipsis
            clumsy = re.search(r"\.\)\.|\.\.\)|(?<!\d)\.\.(?!\d)|\. \.", message.replace("...", ""))
            assert clumsy is None, (key, message)


def _junk(ex: _core.Exercise) -> list[object]:
    return [] if ex.kind == "function" else [7777, "zzz", (1, 2), [[1, 2], [3]]]


def test_the_answer_form_fits_the_question() -> None:
    import numpy as np

    assert "2 whole numbers, e.g. (1, 2)." in check("02.2", 15).message  # not "e.g. (1, 2, 3)" for a pair
    assert "4 whole numbers, e.g. (1, 2, 3, 4)" in check("11.5", "big").message
    assert "(1, 2, 3)" not in check("04.4", "wide").message
    assert "a list of image ids" in check("06.3", 5).message and "a name" not in check("06.3", 5).message
    ragged = get("04.2").solution().tolist()
    ragged[2] = ragged[2][:-1]
    message = check("04.2", ragged).message
    assert "the rows have different lengths (8, 8, 7, 8, 8)" in message, message
    assert "different lengths" not in check("04.2", np.zeros((5, 8)).tolist()).message


def test_spellings_are_accepted_alike() -> None:
    for answer in ("1x3", "(1, 3)", "1 x 3", "[1, 3]", "1×3"):
        assert check("04.4", answer), answer
    for answer in ("3x11x50x70", "3 x 11 x 50 x 70", "(3, 11, 50, 70)"):
        assert check("11.5", answer), answer
    for answer in ("torch.half", "torch.float16", "Half", "FP-16", torch.half):
        assert check("11.2", answer), answer
    assert check("11.2", "torch.bfloat16").message.count("bfloat16 keeps") == 1
    assert check("01.3", "(-1, 2, 5)")

    def spelled(low: float, high: float, direction: int) -> str:
        if low <= 0 <= high:
            return "Not_Resolved" if low < -1 else "not-resolved"
        return "Reproduced" if (low > 0) == (direction > 0) else "OPPOSITE"

    assert check("10.2", spelled)


@pytest.mark.parametrize("key", sorted(EXERCISES))
def test_checkers_answer_odd_input_with_a_message(key: str) -> None:
    """A checker returns a sentence for any answer, never raises (check() would hide that behind "could not
    check this answer")."""
    import numpy as np

    odd = [None, float("nan"), float("-inf"), "x", "", "1x", [[1, 2], [3]], (), [], {}, object(), -1, 10**400,
           np.array([]), torch.tensor([]), [None, None], ["a", 1], True, b"fp16", np.full((5, 8), np.nan), [[1, 2], 3]]
    for answer in odd:
        message = EXERCISES[key].checker(answer)
        assert isinstance(message, str) and len(message) > 10, (answer, message)


# ------------------------------------------------------------------ a learner's trial of every checker (stop 68)
def test_a_function_that_changes_its_input_in_place_is_told_so() -> None:
    from deeplab_edu.exercises import check

    def update(unary: torch.Tensor, messages: torch.Tensor) -> torch.Tensor:
        return unary.neg_().add_(messages).softmax(0)  # right values, and the caller's unary negated

    feedback = check("07.3", update)
    assert not feedback.correct and "changes `unary` in place" in feedback.message


def test_fuse_is_checked_on_maps_that_are_not_square() -> None:
    import torch.nn.functional as F

    from deeplab_edu.exercises import check

    def swapped(encoder: torch.Tensor, low_level: torch.Tensor) -> torch.Tensor:  # passed on square maps only
        size = (low_level.shape[3], low_level.shape[2])
        return torch.cat([F.interpolate(encoder, size=size, mode="bilinear"), low_level], 1)

    feedback = check("09.3", swapped)
    assert not feedback.correct and "height and width (in that order)" in feedback.message


def test_block_rates_may_not_call_the_package() -> None:
    from deeplab_edu.exercises import check
    from deeplab_edu.models import build_backbone

    def block_rates(output_stride: int, multi_grid: tuple[int, ...], extra_blocks: int) -> list:
        with torch.device("meta"):
            net = build_backbone("resnet50", output_stride=output_stride, multi_grid=tuple(multi_grid),
                                 extra_blocks=extra_blocks)
        return net.block_rates()[3:]

    feedback = check("03.2", block_rates)
    assert not feedback.correct and "`build_backbone`" in feedback.message


@pytest.mark.parametrize("key, answer", [("02.5", "less wide"), ("02.5", "it decreases"), ("11.2", "half precision"),
                                         ("11.2", "16-bit float"), ("06.3", "['a', 'b', 'c', 'f', 'g', 'h']")])
def test_right_answers_written_another_way_pass(key: str, answer: str) -> None:
    from deeplab_edu.exercises import check

    feedback = check(key, answer)
    assert feedback.correct, feedback.message


def test_a_form_to_fix_is_not_a_wrong_try() -> None:
    from deeplab_edu.exercises import check

    assert check("02.5", "sideways").message.count("Hint") == 0
    assert check("02.5", "sideways").message.count("Hint") == 0  # twice: still no hint, no try counted


@pytest.mark.parametrize("answer", [torch.tensor([[13]]), np.array([[13]])])
def test_a_number_inside_a_batch_dimension_is_named(answer: object) -> None:
    from deeplab_edu.exercises import check

    assert "holding one: write 13 itself" in check("01.1", answer).message


def test_a_huge_whole_number_from_a_function_is_named() -> None:
    from deeplab_edu.exercises import check

    message = check("11.4", lambda h, w, crop, stride: 10**400).message
    assert "401 digits, far too large" in message and "could not check" not in message
    message = check("11.4", lambda h, w, crop, stride: -(10**5000)).message  # past str()'s 4,300 digits (a review)
    assert "5001 digits, far too large" in message and "could not check" not in message


@pytest.mark.parametrize("answer", [3, 5, 8, 9])
def test_10_5s_feedback_does_not_give_the_number_away(answer: int) -> None:
    from deeplab_edu.exercises import check
    from deeplab_edu.exercises._core import get

    right = get("10.5").solution()
    message = check("10.5", answer).message.split(" — ", 1)[1]
    assert str(right) not in message.replace(str(answer), "")  # the learner's own number aside


@pytest.mark.parametrize("answer, says", [
    ([[(6, 8), (6, 8), (97, 129)], [(12, 16), (12, 16), (97, 129)]], "rounds an odd side *up*"),
    ([[(6, 8), (6, 8), (6, 8)], [(12, 16), (12, 16), (12, 16)]], "rounds an odd side *up*"),  # the backbone first
    ([[(13, 17), (13, 17), (97, 129)], [(25, 33), (25, 33), (97, 129)]], "the stem's stride counts too"),
    ([[(25, 33), (25, 33), (97, 129)], [(49, 65), (49, 65), (97, 129)]], "the stem halves the image too"),
    ([[(7, 9), (7, 9), (7, 9)], [(13, 17), (13, 17), (13, 17)]], "upsamples them bilinearly to the input's exact size"),
    ([[(9, 7), (9, 7), (129, 97)], [(17, 13), (17, 13), (129, 97)]], "height and width are swapped"),
    ([[(7, 9), (1, 1), (97, 129)], [(13, 17), (1, 1), (97, 129)]], "ASPP keeps the size of the map it reads"),
    ([[(7, 9), (7, 9), (97, 129)], [(7, 9), (7, 9), (97, 129)]], "removes block 3's stride"),
    ([[(7, 9), (7, 9), (97, 129)], [(14, 18), (14, 18), (97, 129)]], "rather than doubling"),
    ([[(7, 9), (7, 9), (97, 129)], [(13, 17), (13, 17), (96, 128)]], "the logits at output stride 8: not the size"),
])
def test_08_4_names_the_shape_mistake(answer: object, says: str) -> None:
    """Exercise 08.4 (the shapes of a 97 x 129 input at output stride 16 and 8): each natural wrong answer is told
    what it misses, without the sizes it should have given."""
    feedback = check("08.4", answer)
    assert not feedback and says in feedback.message, feedback.message
    assert "(7, 9)" not in feedback.message and "13, 17" not in feedback.message


def test_08_4_is_what_the_chapters_models_give() -> None:
    """08.4's answer is the shapes trace_stages measures, for each backbone the chapter's profiles build."""
    from deeplab_edu.exercises.ch08 import INPUT_08_4
    from deeplab_edu.models import build_model
    from deeplab_edu.models.summary import trace_stages

    for backbone in ("mobilenet_v3_large", "tiny_resnet", "resnet50"):
        model = build_model("deeplabv3", backbone=backbone, num_classes=3, output_stride=16).eval()
        measured = []
        for os_ in (16, 8):
            model.set_output_stride(os_)
            traced = dict(trace_stages(model, torch.zeros(1, 3, *INPUT_08_4)))
            measured.append([traced[f"backbone 'out' (output stride {os_})"][-2:], traced["ASPP"][-2:],
                             traced["logits upsampled to the input"][-2:]])
        assert check("08.4", measured), (backbone, measured)


@pytest.mark.parametrize("answer", [(5, 4), ("phase 2, eval OS 8", "control (phase 2 at OS 16), eval OS 8"),
                                    ["Phase 2, eval OS 8", "control (phase 2 at OS 16), eval OS 8"],
                                    ("phase 2, eval OS 8", 4), (5, "control (phase 2 at OS 16), eval OS 8"),
                                    ("5", "control (phase 2 at OS 16), eval OS 8")])
def test_08_5_takes_row_numbers_or_the_labels_of_evaluations(answer: object) -> None:
    """A label beside a row number is read too: it was told "answer with a list or tuple of 2 whole numbers"."""
    assert check("08.5", answer)
    assert "differ in the evaluation stride too" in check("08.5", ("phase 2, eval OS 8", 3)).message


@pytest.mark.parametrize("answer, says", [((5, 3), "differ in the evaluation stride too"),
                                          ((4, 2), "the part to take away"), ((3, 3), "a row minus itself"),
                                          ((6, 1), "rows 1 to 5"), ((1, 2, 3), "two row numbers")])
def test_08_5_says_what_a_wrong_difference_mixes_in(answer: object, says: str) -> None:
    feedback = check("08.5", answer)
    assert not feedback and says in feedback.message, feedback.message


def test_08_3s_message_for_3_6_9_covers_both_routes_to_it() -> None:
    """(3, 6, 9) is (6, 12, 18) x 16/33 rounded, and also each paper rate's closest share on 16 cells: its message
    said only the first. The fit keeps the largest rate whose share is at least the paper rate's; each of 3, 6, 9
    falls just short of it."""
    from deeplab_edu.boundary import mean_valid_fraction
    from deeplab_edu.models.aspp import fit_atrous_rates

    paper = {p: mean_valid_fraction(33, p) for p in (6, 12, 18)}
    closest = tuple(min(range(1, 17), key=lambda r: abs(mean_valid_fraction(16, r) - paper[p])) for p in paper)
    scaled = tuple(round(p * 16 / 33) for p in paper)
    assert closest == scaled == (3, 6, 9)
    assert all(mean_valid_fraction(16, r) < paper[p] for r, p in zip(closest, paper))  # "a little less"
    assert fit_atrous_rates(16) == tuple(max(r for r in range(1, 17) if mean_valid_fraction(16, r) >= paper[p] - 1e-9)
                                         for p in paper)  # the rule the message states
    message = check("08.3", (3, 6, 9)).message
    assert "scaled by 16/33" in message and "comes closest" in message and "at least the paper rate's" in message


def test_chapter_01s_hints_write_relationship_15_in_the_chapters_symbols() -> None:
    """A new user's trial: chapter 01 writes K taps, rate r and input size n (its lowercase k is eq. (1)'s tap
    index), but 01.1's and 01.4's hints said k + (k - 1)(r - 1) and 01.5's message (k - 1) * rate + 1. 01.2's
    step names Dumoulin & Visin's i, k, d as theirs, as the chapter does."""
    assert "K + (K - 1)(r - 1)" in get("01.1").hint and "K + (K - 1)(r - 1)" in get("01.4").hint
    assert "floor((n + 2p - K - (K - 1)(r - 1)) / s) + 1" in get("01.2").hint
    assert "Dumoulin & Visin write i, k, d" in get("01.2").hint

    def one_too_long(w: torch.Tensor, rate: int) -> torch.Tensor:
        out = torch.zeros(len(w) * rate, dtype=w.dtype)
        out[::rate] = w
        return out

    message = check("01.5", one_too_long).message
    assert "(K - 1) * rate + 1 entries for K taps" in message, message
    texts = [step for key in ("01.1", "01.2", "01.3", "01.4", "01.5") for step in get(key).hints] + [message]
    assert not [t for t in texts if "(k - 1)" in t or "(k-1)" in t or "k + " in t], texts


def test_08_5_names_a_label_that_is_not_a_row_and_lists_the_rows() -> None:
    """A new user's trial: two labels with a typo got "answer with a list or tuple of 2 whole numbers", which
    does not say labels are taken. It names the text that is no row and lists the table's labels; like any
    answer of the wrong form it is not a wrong try."""
    from deeplab_edu.exercises.ch08 import ROWS_08_5

    feedback = check("08.5", ("phase 2 eval OS 8", "control eval OS 8"))
    assert not feedback and "'phase 2 eval OS 8' and 'control eval OS 8' are not rows of section 10's table" \
        in feedback.message, feedback.message
    assert all(repr(label) in feedback.message for label in ROWS_08_5) and "whole numbers" not in feedback.message
    assert "Hint" not in check("08.5", ("phase 2, eval OS 8", "control eval OS 8")).message  # no wrong try counted
    assert "'control eval OS 8' is not a row" in check("08.5", ("phase 2, eval OS 8", "control eval OS 8")).message


def test_08_4_says_the_logits_are_not_the_map_times_the_stride() -> None:
    """A new user's trial: logits given as the feature map's side times the output stride (7 x 16 = 112 for a
    side of 97) got the generic "not the size the model gives": the upsampling lands on the input's exact size,
    not a fixed factor s (chapter 08, section 1)."""
    from deeplab_edu.exercises.ch08 import INPUT_08_4, _shapes_08_4

    answer = [[f, f, tuple(n * s for n in f)] for (f, _, _), s in zip(_shapes_08_4(), (16, 8))]
    assert answer == [[(7, 9), (7, 9), (112, 144)], [(13, 17), (13, 17), (104, 136)]]
    feedback = check("08.4", answer)
    assert not feedback and "not the feature map's side times the output stride" in feedback.message
    assert "not by a fixed factor s" in feedback.message and "not the size the model gives" not in feedback.message
    said = feedback.message.split(" — ", 1)[1]  # after the exercise's title, which names the input
    assert not any(str(v) in said for v in (*INPUT_08_4, "7", "13")), said  # no size given away


def _counted(message: str) -> bool:
    """A first wrong try ends by saying a hint comes with the next; a form to fix (not judged) does not."""
    return "a hint comes with the next wrong answer" in message


@pytest.mark.parametrize(("key", "answer", "right", "said", "counted"), [
    # the right answer in a learner's form: ".4" (Python's 0.4) was read as 4, "1%" (0.01) as the fraction 1
    ("06.1", ".4", True, "", False),
    ("06.2", ".82", True, "", False),
    ("09.4", "1%", False, "is a percentage", False),
    # a count in a scale: told which one, not "not a whole number" or "write 2.21" (then "not a whole number")
    ("01.6", 0.642318, False, "count in billions", True),
    ("01.6", 642, False, "count in millions", True),
    ("01.6", "0.64 GMACs", False, "write the number in full", False),
    ("05.2", "2.21M params", False, "write the number in full", False),
    ("09.2", 27.776, False, "count in thousands", True),
    # rounded by hand: the same message in every count (09.2 said "too large"; 07.2 to two digits too)
    ("09.2", 28000, False, "looks rounded", True),
    ("09.2", 27800, False, "looks rounded", True),
    ("07.2", 16_000_000, False, "looks rounded", True),
    # a learner's 0.8 was shown as "0.8000", digits never typed
    ("06.2", 0.8, False, "0.8 is too small", True),
    ("09.2", 27780.5, False, "not a whole number", True),  # a review: "looks rounded" for a non-whole number
    ("07.1", "160 classes", False, "is in classes", False),  # not "classs"
    ("06.2", "0,82", False, "decimal comma: Python writes a decimal point, 0.82", False),  # was "2 numbers"
    ("03.3", "3,8", False, "decimal point, 3.8", False),
    ("05.2", "2,212,352", True, "", False),  # thousands separators, as before: read as the number
    # a form to fix, as in 02.5, 07.4 and 08.4: not a wrong try
    ("11.2", "fp16.", True, "", False),
    ("11.2", "the fp16", True, "", False),
    ("11.2", np.float16, True, "", False),
    ("11.2", "float16, not bf16", False, "answer with one of 'fp16' and 'bf16'", False),
    ("04.2", np.zeros((1, 5, 8)), False, "shape (5, 8); yours has shape (1, 5, 8)", False),
    ("06.3", "a;b;c;f;g;h", True, "", False),
    ("06.3", "a b z", False, "not ids of these lists", False),
    # a pair of 0-d tensors (a measured pair) raised inside the checker; the question's own noun as the unit
    ("07.4", (torch.tensor(0.1353), torch.tensor(0.6065)), True, "", False),
    ("10.4", "22 rows", True, "", False),
    ("10.3", "0 classes", True, "", False),
    ("11.1", "32 samples", True, "", False),
    ("04.5", "10 inputs", True, "", False),
])
def test_a_census_of_answer_forms(key: str, answer: object, right: bool, said: str, counted: bool) -> None:
    """A census of 1,250 answer forms across the value and predict exercises: right answers in a learner's form
    refused or counted wrong, a scale or a rounding told differently from one exercise to the next, a form to fix
    counted as a wrong try."""
    feedback = check(key, answer)
    assert bool(feedback) is right, feedback.message
    assert said in feedback.message
    assert _counted(feedback.message) is counted, feedback.message
