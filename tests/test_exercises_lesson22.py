import numpy as np
import pytest

from course_utils.exercises import lesson22


def test_exercise_1_distinct_2_by_hand():
    assert lesson22.check_exercise_1(4 / 6)
    assert lesson22.check_exercise_1(0.5, texts=("a b a b",), n=1)
    wrong = lesson22.check_exercise_1(5 / 7)  # counting a bigram across the two responses
    assert not wrong and "cross" in wrong.message
    assert lesson22.check_exercise_1(None).message.startswith("No answer yet")
    with pytest.raises(TypeError):
        lesson22.check_exercise_1("0.67")


def test_exercise_2_kappa_of_a_confusion_table():
    assert lesson22.kappa_from_table([[40, 10], [20, 30]]) == pytest.approx(0.4)
    assert lesson22.kappa_from_table([[5, 0], [0, 5]]) == pytest.approx(1.0)
    assert lesson22.check_exercise_2(0.4)
    wrong = lesson22.check_exercise_2(0.7)  # the accuracy, not kappa
    assert not wrong and "p_e" in wrong.message
    assert lesson22.check_exercise_2(None).message.startswith("No answer yet")
    with pytest.raises(ValueError, match="square"):
        lesson22.kappa_from_table([[1, 2, 3]])
    with pytest.raises(ValueError, match="undefined"):
        lesson22.kappa_from_table([[4, 0], [0, 0]])


def test_exercise_3_does_the_verdict_flip():
    assert lesson22.check_exercise_3("flips")
    assert lesson22.check_exercise_3(" Flips ")
    wrong = lesson22.check_exercise_3("consistent")
    assert not wrong and "slot" in wrong.message
    assert lesson22.check_exercise_3("consistent", margin_first=0.8, margin_swapped=-0.3)
    assert not lesson22.check_exercise_3("maybe")
    assert lesson22.check_exercise_3(None).message.startswith("No answer yet")
    assert np.isfinite(lesson22.kappa_from_table([[1, 1], [1, 1]]))
