from course_utils.exercises.lesson17 import (W0_OPTIONS, check_exercise_1, check_exercise_2, check_exercise_3,
                                             check_exercise_4)
from course_utils.multimodal.image_diffusion import linear_alphas_cumprod, make_scheduler


def test_exercise_1_schedule():
    assert not check_exercise_1(None).answered
    assert check_exercise_1(float(linear_alphas_cumprod()[499]))
    assert check_exercise_1(float(make_scheduler().alphas_cumprod[499]))  # the library's value agrees
    wrong = check_exercise_1(float(linear_alphas_cumprod()[999]))
    assert not wrong and "np.cumprod" in wrong.message


def test_exercise_2_guidance():
    assert not check_exercise_2(None).answered
    assert check_exercise_2(1.1)
    assert not check_exercise_2(0.5)  # the conditional prediction alone is w = 1
    assert "difference" in check_exercise_2(0.2 * 3).message


def test_exercise_3_unguided_share():
    assert not check_exercise_3(None).answered
    assert check_exercise_3("About 10%")
    assert not check_exercise_3(W0_OPTIONS[1])
    assert "not one of the options" in check_exercise_3("half").message


def test_exercise_4_frechet_distance():
    assert not check_exercise_4(None).answered
    assert check_exercise_4(5.0)
    assert not check_exercise_4(4 + 1 + 16 - 2 * 1 * 4)  # variance 4 used as a standard deviation
    assert "variance" in check_exercise_4(1.0).message
