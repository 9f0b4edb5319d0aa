from course_utils.exercises import lesson18
from course_utils.multimodal.connector import make_projector, n_trainable


def test_exercise_1_chance_category_rate():
    assert lesson18.check_exercise_1(None).message.startswith("No answer yet")
    assert lesson18.check_exercise_1(0.1)
    wrong = lesson18.check_exercise_1(0.5)
    assert not wrong and "10 category words" in wrong.message


def test_exercise_2_and_3_count_the_real_projectors():
    assert lesson18.linear_params(64, 576) == n_trainable(make_projector("linear", 64, 576))
    assert lesson18.mlp_params(64, 576) == n_trainable(make_projector("mlp", 64, 576))
    assert lesson18.check_exercise_2(64 * 576 + 576, 64, 576)
    wrong = lesson18.check_exercise_2(64 * 576, 64, 576)
    assert not wrong and "bias" in wrong.message
    assert lesson18.check_exercise_3(lesson18.mlp_params(64, 576), 64, 576)
    assert not lesson18.check_exercise_3(lesson18.linear_params(64, 576), 64, 576)
    assert lesson18.check_exercise_2(None, 64, 576).message.startswith("No answer yet")
    assert lesson18.check_exercise_3(None, 64, 576).message.startswith("No answer yet")
