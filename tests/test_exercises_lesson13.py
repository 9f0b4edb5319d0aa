import numpy as np
import pytest

from course_utils.exercises import lesson13


def test_exercise_1_entropy_in_bits():
    assert lesson13.entropy_bits([20, 10, 10]) == pytest.approx(1.5)
    assert lesson13.entropy_bits([5, 0, 5]) == pytest.approx(1.0)  # an empty value adds nothing
    assert lesson13.entropy_bits([7]) == 0.0
    assert lesson13.check_exercise_1(1.5)
    wrong = lesson13.check_exercise_1(np.log2(3))
    assert not wrong and "shares" in wrong.message
    assert lesson13.check_exercise_1(None).message.startswith("No answer yet")
    with pytest.raises(ValueError, match="non-negative"):
        lesson13.entropy_bits([-1, 2])


def test_exercise_2_random_slate_chance():
    assert lesson13.check_exercise_2(0.06)
    assert lesson13.check_exercise_2(3 / 300, k=3, n_candidates=300)
    wrong = lesson13.check_exercise_2(1 / 50)
    assert not wrong and "positions" in wrong.message
    assert lesson13.check_exercise_2(None).message.startswith("No answer yet")
    with pytest.raises(ValueError, match="k <= n_candidates"):
        lesson13.check_exercise_2(0.5, k=5, n_candidates=3)


def test_exercise_3_first_question_is_the_highest_entropy():
    entropies = {"tone": 1.5, "pattern": 0.9, "brand": 2.5}
    assert lesson13.check_exercise_3("brand", entropies)
    assert lesson13.check_exercise_3(" Brand ", entropies)
    wrong = lesson13.check_exercise_3("tone", entropies)
    assert not wrong and "entropies" in wrong.message
    assert not lesson13.check_exercise_3("colour", entropies)
    assert lesson13.check_exercise_3(None, entropies).message.startswith("No answer yet")
    with pytest.raises(ValueError, match="empty"):
        lesson13.check_exercise_3("tone", {})
