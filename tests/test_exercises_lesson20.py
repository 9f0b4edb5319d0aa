"""Lesson 20's exercise checkers: right, wrong and unanswered."""
import numpy as np
import pytest

from course_utils.exercises.lesson20 import (EXERCISE_1_LATENCIES_MS, check_exercise_1, check_exercise_2,
                                             check_exercise_3, check_exercise_4, check_exercise_7)


def test_exercise_1_p95():
    assert check_exercise_1(float(np.percentile(EXERCISE_1_LATENCIES_MS, 95))).correct
    assert check_exercise_1(90.25).correct  # 90 + 0.05 × (95 − 90), by hand
    assert not check_exercise_1(13.0).correct  # the median is not the tail
    assert not check_exercise_1(None).answered
    with pytest.raises(TypeError):
        check_exercise_1("90")


def test_exercise_2_ease_flops():
    assert check_exercise_2(2 * 1682 ** 2).correct
    assert not check_exercise_2(1682 ** 2).correct  # forgot the add
    assert check_exercise_2(2 * 100 ** 2, n_items=100).correct
    assert not check_exercise_2(None).answered


def test_exercise_3_energy():
    grams = 2 * 3600 * 8 * 12 * 1.2 / 3.6e6 * 300
    assert check_exercise_3(grams).correct
    assert not check_exercise_3(grams / 1.2).correct  # PUE left out
    assert not check_exercise_3(None).answered


def test_exercise_4_speed_up():
    assert check_exercise_4(1.25).correct
    assert not check_exercise_4(2.0).correct
    assert not check_exercise_4(None).answered


def test_exercise_7_training_estimate():
    assert check_exercise_7(0.35 * 3 * 38).correct           # ceil(2400 / 64) = 38 batches per epoch
    assert check_exercise_7(39.9).correct
    assert not check_exercise_7(0.35 * 3 * 37.5).correct     # the last, smaller batch is a step too
    assert not check_exercise_7(0.35 * 38).correct           # one epoch only
    assert not check_exercise_7(None).answered
