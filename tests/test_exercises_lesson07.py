import numpy as np

from course_utils.exercises import lesson07


def test_exercise_1_counts_multiply_adds():
    assert lesson07.check_exercise_1(None).message.startswith("No answer yet")
    assert lesson07.check_exercise_1(943 * 1682 * 384)
    wrong = lesson07.check_exercise_1(943 * 1682)
    assert not wrong and "d multiply-adds" in wrong.message


def test_exercise_2_full_probe_is_exact():
    assert lesson07.check_exercise_2(None).message.startswith("No answer yet")
    assert lesson07.check_exercise_2(1.0)
    assert not lesson07.check_exercise_2(0.9)


def test_exercise_4_counts_warm_items(ml_split):
    counts = np.asarray(ml_split.history("test").matrix.sum(axis=0)).ravel()
    expected = int((counts > 10).sum())
    assert lesson07.check_exercise_4(None).message.startswith("No answer yet")
    assert lesson07.check_exercise_4(expected, split=ml_split)
    assert not lesson07.check_exercise_4(expected + 5, split=ml_split)
    assert not lesson07.check_exercise_4(int((counts >= 10).sum()) + 100, split=ml_split)
