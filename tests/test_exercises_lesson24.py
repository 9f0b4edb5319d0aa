"""Lesson 24's exercise checkers: right, wrong and unanswered."""
import pytest

from course_utils.exercises.lesson24 import check_exercise_1, check_exercise_2, check_exercise_3


def test_exercise_1_attack_success_rate():
    assert check_exercise_1(0.5).correct
    wrong = check_exercise_1(4 / 6)   # counting the item that was first anyway
    assert not wrong.correct and "first anyway" in wrong.message
    assert not check_exercise_1(None).answered
    with pytest.raises(TypeError):
        check_exercise_1("0.5")


def test_exercise_2_which_defence():
    assert check_exercise_2("catalogue constraint").correct
    assert check_exercise_2(" Catalogue Constraint ").correct
    assert not check_exercise_2("detector").correct and "OUTPUT" in check_exercise_2("detector").message
    assert not check_exercise_2("firewall").correct
    assert not check_exercise_2(None).answered


def test_exercise_3_false_positive_rate():
    assert check_exercise_3(0.25).correct
    assert not check_exercise_3(1 - 6 / 9).correct   # 1 - precision is not the false-positive rate
    assert not check_exercise_3(None).answered
