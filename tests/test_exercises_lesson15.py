import math

import pytest

from course_utils.exercises import lesson15


def test_exercise_1_itc_by_hand():
    assert not lesson15.check_exercise_1(None).answered
    # rows: logits [9, 2] and [1, 8]; columns: [9, 1] and [2, 8]
    rows = (math.log(math.exp(9) + math.exp(2)) - 9 + math.log(math.exp(1) + math.exp(8)) - 8) / 2
    columns = (math.log(math.exp(9) + math.exp(1)) - 9 + math.log(math.exp(2) + math.exp(8)) - 8) / 2
    assert lesson15.check_exercise_1((rows + columns) / 2)
    wrong = lesson15.check_exercise_1(rows + columns)              # summed, not averaged, over the two directions
    assert not wrong and "average" in wrong.message
    with pytest.raises(TypeError):
        lesson15.check_exercise_1("0.001")


def test_exercise_2_chance_recall():
    assert not lesson15.check_exercise_2(None).answered
    assert lesson15.check_exercise_2(10 / 600)
    assert lesson15.check_exercise_2(0.02, n_products=500)
    assert not lesson15.check_exercise_2(1 / 600)


def test_exercise_3_what_an_image_cannot_show():
    assert not lesson15.check_exercise_3(None).answered
    assert lesson15.check_exercise_3("Brand")
    assert not lesson15.check_exercise_3("tone")
    assert "not one of the options" in lesson15.check_exercise_3("colour").message
