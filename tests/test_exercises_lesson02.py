"""Lesson 02's exercise checkers: the closed-form KL by hand."""
import math

from course_utils.exercises import NOT_ANSWERED
from course_utils.exercises.lesson02 import check_exercise_3


def test_exercise_3_kl_by_hand():
    expected = 0.5 * (0.25 + (0.25 + 1.0 - 1.0 - math.log(0.25)))   # worked by hand
    assert check_exercise_3(expected).correct
    assert check_exercise_3(round(expected, 3)).correct
    wrong = check_exercise_3(0.5 * (0.25 + 0.25))                 # forgot the -log σ² term
    assert not wrong.correct and "log σ²" in wrong.message
    assert check_exercise_3(None) is NOT_ANSWERED
