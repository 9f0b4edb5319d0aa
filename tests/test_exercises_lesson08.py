from course_utils.exercises import lesson08


def test_exercise_1_cost_of_every_pair():
    assert lesson08.check_exercise_1(None, 20.0).message.startswith("No answer yet")
    assert lesson08.check_exercise_1(943 * 1682 * 20.0 / 3.6e6, 20.0)
    wrong = lesson08.check_exercise_1(943 * 1682 * 20.0 / 1000, 20.0)  # seconds, not hours
    assert not wrong and "hours" in wrong.message


def test_exercise_2_reranking_ceiling():
    assert lesson08.check_exercise_2(None).message.startswith("No answer yet")
    assert lesson08.check_exercise_2(0.6)
    wrong = lesson08.check_exercise_2(0.4)  # HR@10 before reranking: ranks 3 and 7
    assert not wrong and "at most 50" in wrong.message


def test_exercise_5_head_size():
    assert lesson08.check_exercise_5(None).message.startswith("No answer yet")
    assert lesson08.check_exercise_5(385)
    assert not lesson08.check_exercise_5(384 * 384 + 384)
