"""Lesson 11's exercise checkers: right, wrong and unanswered."""
import pytest

from course_utils.exercises.lesson11 import EXERCISE_2_TEXT, check_exercise_1, check_exercise_2, check_exercise_3
from course_utils.llm.rag import cited_ids


def test_exercise_1_top_n_rerank_cannot_move_hr():
    assert check_exercise_1(0).correct and check_exercise_1(0.0).correct
    wrong = check_exercise_1(0.1)
    assert not wrong.correct and "top 10" in wrong.message
    assert not check_exercise_1(None).answered
    with pytest.raises(TypeError):
        check_exercise_1("0")
    with pytest.raises(ValueError):
        check_exercise_1(0, top_n=5, k=10)


def test_exercise_2_missing_citations():
    assert cited_ids(EXERCISE_2_TEXT) == [1, 4, 2, 5]
    assert check_exercise_2(2).correct
    assert not check_exercise_2(4).correct and "1..3" in check_exercise_2(4).message
    assert not check_exercise_2(None).answered
    assert check_exercise_2(0, text="Nice [R1].", n_given=1).correct   # the checker counts, it does not remember


def test_exercise_3_token_cost():
    assert check_exercise_3(144, 294, 150).correct
    assert not check_exercise_3(294, 294, 150).correct
    assert not check_exercise_3(None, 294, 150).answered
