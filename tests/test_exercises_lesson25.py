from course_utils.exercises.lesson25 import check_exercise_1, check_exercise_2, check_exercise_3


def test_exercise_1_win_rate():
    assert check_exercise_1(0.5).correct
    assert not check_exercise_1(1 / 3).correct      # the unmeasured dimension counted as a loss
    assert not check_exercise_1(None).correct
    assert check_exercise_1(1 / 3, model="B").correct  # B: 0 on accuracy, 1 on latency, 0 on the gap


def test_exercise_2_direction():
    assert check_exercise_2("half").correct
    assert check_exercise_2(" Half ").correct
    assert not check_exercise_2("lower").correct
    assert not check_exercise_2("sideways").correct
    assert not check_exercise_2(None).correct
    assert check_exercise_2("lower", metric="p50 ms (1 user)").correct


def test_exercise_3_normalised_gini():
    assert check_exercise_3(0.6).correct
    assert not check_exercise_3(0.4).correct         # the direction flipped
    assert not check_exercise_3(None).correct
    assert check_exercise_3(1.0, model="P").correct
