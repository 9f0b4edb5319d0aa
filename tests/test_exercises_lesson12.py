import numpy as np
import pytest

from course_utils.exercises import lesson12


def test_exercise_1_counts_tuples():
    assert lesson12.check_exercise_1(None).message.startswith("No answer yet")
    assert lesson12.check_exercise_1(64 ** 3)
    wrong = lesson12.check_exercise_1(64 * 3)
    assert not wrong and "multiply" in wrong.message
    assert lesson12.check_exercise_1(32 ** 4, codebook_size=32, n_levels=4)
    with pytest.raises(ValueError, match="codebook_size"):
        lesson12.check_exercise_1(1, codebook_size=0)


def test_exercise_2_birthday_pairs():
    expected = 1682 * 1681 / 2 / 64 ** 3
    assert lesson12.check_exercise_2(None).message.startswith("No answer yet")
    assert lesson12.check_exercise_2(round(expected, 2))
    assert not lesson12.check_exercise_2(1682 / 64 ** 3)
    assert not lesson12.check_exercise_2(2 * expected)
    with pytest.raises(TypeError):
        lesson12.check_exercise_2("5.4")


def test_exercise_3_perplexity():
    p = np.array([0.5, 0.3, 0.2])
    assert lesson12.check_exercise_3(None).message.startswith("No answer yet")
    assert lesson12.check_exercise_3(float(np.exp(-(p * np.log(p)).sum())))
    assert not lesson12.check_exercise_3(3.0)
    assert not lesson12.check_exercise_3(float(-(p * np.log(p)).sum()))   # the entropy, not its exponential
    assert lesson12.check_exercise_3(4.0, counts=(1, 1, 1, 1))
