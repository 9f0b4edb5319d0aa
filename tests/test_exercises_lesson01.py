"""Lesson 01's exercise checkers: right answers pass, wrong ones get a hint, bad types are refused."""
import pytest

from course_utils.exercises import NOT_ANSWERED
from course_utils.exercises.lesson01 import check_exercise_3, check_exercise_4, check_exercise_5


def test_exercise_3_sampled_hit_rate():
    assert check_exercise_3((10 / 101, 10 / 1600)).correct
    assert check_exercise_3((0.099, 0.00625)).correct
    wrong = check_exercise_3((0.1, 0.1))
    assert not wrong.correct and "full" in wrong.message and "sampled:" not in wrong.message
    assert check_exercise_3(None) is NOT_ANSWERED
    with pytest.raises(TypeError, match="pair"):
        check_exercise_3(0.099)


def test_exercise_4_recall_normalisations():
    assert check_exercise_4((8 / 30, 0.4)).correct
    wrong = check_exercise_4((0.4, 8 / 30))
    assert not wrong.correct and "by |test|" in wrong.message


def test_exercise_5_mrr_and_auc():
    assert check_exercise_5((0.25, 1597 / 1600)).correct
    wrong = check_exercise_5((0.25, 0.5))
    assert not wrong.correct and "non-relevant" in wrong.message
    assert check_exercise_5(None) is NOT_ANSWERED
