"""Every exercise of every chapter accepts its solution and rejects its listed mistakes."""

from __future__ import annotations

import pytest

from deeplab_edu.exercises import all_exercises, check, get

EXERCISES = all_exercises()


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


def test_unanswered_is_reported_not_raised() -> None:
    fb = check("00.1", ...)
    assert not fb and "not answered" in fb.message


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
