"""The shared exercise checkers: confirm right answers, hint on wrong ones, refuse wrong types."""
import numpy as np
import pytest

from course_utils.exercises import NOT_ANSWERED, check_array, check_choice, check_number


def test_check_number():
    assert check_number(0.099, 10 / 101, hint="h").correct
    wrong = check_number(0.5, 10 / 101, hint="think of 101 candidates")
    assert not wrong.correct and "101 candidates" in wrong.message
    assert check_number(None, 1.0, hint="h") is NOT_ANSWERED
    assert NOT_ANSWERED._repr_markdown_().startswith("✏️") and "❌" not in NOT_ANSWERED._repr_markdown_()
    assert not check_number(float("nan"), 1.0, hint="h").correct
    with pytest.raises(TypeError, match="expected a number"):
        check_number("0.1", 0.1, hint="h")
    assert "✅" in check_number(1, 1.0, hint="h")._repr_markdown_()


def test_check_choice_and_array():
    assert check_choice(" EASE ", "EASE", options=["EASE", "Popularity"], hint="h").correct
    assert "not one of" in check_choice("SVD", "EASE", options=["EASE", "Popularity"], hint="h").message
    assert not check_choice("Popularity", "EASE", options=["EASE", "Popularity"], hint="look at NDCG").correct
    assert check_array([1.0, 2.0], np.array([1.0, 2.0]), hint="h").correct
    assert "shape" in check_array([1.0], [1.0, 2.0], hint="h").message
    assert "entry (1,)" in check_array([1.0, 3.0], [1.0, 2.0], hint="h").message
