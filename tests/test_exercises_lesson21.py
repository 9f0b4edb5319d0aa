from course_utils.exercises import lesson21


def test_exercise_1_sample_size():
    assert lesson21.check_exercise_1(None).message.startswith("No answer yet")
    assert lesson21.check_exercise_1(1570)             # 2 * ((1.96 + 0.8416) / 0.1)^2 = 1569.8
    wrong = lesson21.check_exercise_1(785)             # forgot the factor 2
    assert not wrong and "z_0.975" in wrong.message
    assert lesson21.check_exercise_1(393, effect_size=0.2)


def test_exercise_2_team_draft_slate():
    assert lesson21.check_exercise_2(None).message.startswith("No answer yet")
    assert lesson21.check_exercise_2([2, 0, 1, 4])     # worked by hand in the solution
    wrong = lesson21.check_exercise_2([0, 2, 1, 4])    # as if A had picked first
    assert not wrong and "coin is False" in wrong.message


def test_exercise_3_novelty_multiplier():
    assert lesson21.check_exercise_3(None).message.startswith("No answer yet")
    assert lesson21.check_exercise_3(1.075)
    assert not lesson21.check_exercise_3(1.15)         # one half-life, not two
    assert lesson21.check_exercise_3(1.3, day=0)
