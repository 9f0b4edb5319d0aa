"""Lesson 03's exercise checkers: right answers pass, wrong ones get a hint, bad types are refused."""
import numpy as np
import pandas as pd
import pytest

from course_utils.data.splits import leave_one_out_split
from course_utils.exercises import NOT_ANSWERED
from course_utils.exercises.lesson03 import (check_exercise_5, check_exercise_6, check_exercise_7,
                                             top10_successor_share, validation_same_second_share)


@pytest.fixture(scope="module")
def tiny_split():
    """Three users; user 0's validation item shares the second of its last training item, the others do not."""
    rows = [(0, 0, 5.0, 10), (0, 1, 5.0, 20), (0, 2, 5.0, 20), (0, 3, 5.0, 30),
            (1, 0, 5.0, 10), (1, 1, 5.0, 11), (1, 3, 5.0, 12), (1, 2, 5.0, 13),
            (2, 1, 5.0, 10), (2, 3, 5.0, 11), (2, 4, 5.0, 12), (2, 0, 5.0, 13)]
    return leave_one_out_split(pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"]))


def test_exercise_5_which_loss_is_a_distribution():
    assert check_exercise_5("ce").correct and check_exercise_5(" CE ").correct
    wrong = check_exercise_5("bce")
    assert not wrong.correct and "normalises" in wrong.message
    assert not check_exercise_5("mse").correct
    assert check_exercise_5(None) is NOT_ANSWERED


def test_exercise_6_same_second_by_hand(tiny_split):
    assert validation_same_second_share(tiny_split) == pytest.approx(1 / 3)
    assert check_exercise_6(1 / 3, tiny_split).correct
    wrong = check_exercise_6(0.5, tiny_split)
    assert not wrong.correct and "timestamps" in wrong.message
    with pytest.raises(TypeError, match="number"):
        check_exercise_6("a third", tiny_split)


def test_exercise_7_top_successors_by_hand(tiny_split):
    # training sequences: [0, 1], [0, 1], [1, 3]; test-time previous items 2, 3, 4 -> targets 3, 2, 0
    # 2 never precedes anything in training, nor 3 nor 4: no test item is a known successor
    assert top10_successor_share(tiny_split) == 0.0
    assert check_exercise_7(0.0, tiny_split).correct
    assert not check_exercise_7(0.3, tiny_split).correct


def test_exercise_6_and_7_on_movielens(ml_split):
    share = validation_same_second_share(ml_split)
    assert 0.2 < share < 0.7
    assert check_exercise_6(share, ml_split).correct
    top10 = top10_successor_share(ml_split)
    assert 0.0 < top10 < 0.5 and check_exercise_7(top10, ml_split).correct
    assert not check_exercise_7(top10 * 2 + 0.1, ml_split).correct
    assert np.isfinite(top10)
