from course_utils.exercises import lesson23
from course_utils.exercises.lesson23 import check_exercise_6, check_exercise_7


def test_exercise_1_fairllm_by_hand():
    assert lesson23.check_exercise_1(None).message.startswith("No answer yet")
    assert lesson23.check_exercise_1((0.6, 0.8, 4 / 6))            # worked by hand in the solution
    wrong = lesson23.check_exercise_1((0.75, 0.8, 4 / 6))          # Jaccard as shared / k
    assert not wrong and "union" in wrong.message
    assert not lesson23.check_exercise_1((0.6, 0.8, 5 / 6))        # the swapped pair (3, 7) counted


def test_exercise_2_snsr_snsv():
    assert lesson23.check_exercise_2(None).message.startswith("No answer yet")
    assert lesson23.check_exercise_2((0.2, 0.0816))
    wrong = lesson23.check_exercise_2((0.2, 0.1))                   # sample std (ddof=1)
    assert not wrong and "ddof=0" in wrong.message


def test_exercise_3_read_a_group_gap():
    assert lesson23.check_exercise_3(None).message.startswith("No answer yet")
    assert lesson23.check_exercise_3("c") and lesson23.check_exercise_3(" C ")
    wrong = lesson23.check_exercise_3("a")
    assert not wrong and "interval excludes zero" in wrong.message
    assert not lesson23.check_exercise_3("d").correct


def test_exercise_6_membership_auc_right_wrong_unanswered():
    assert check_exercise_6(9.5 / 12).correct
    wrong = check_exercise_6(0.75)  # ties counted as losses
    assert not wrong.correct and "tie" in wrong.message
    assert not check_exercise_6(None).answered


def test_exercise_7_target_mid_rank_right_wrong_unanswered():
    assert check_exercise_7(2.5).correct
    wrong = check_exercise_7(3.5)  # forgot to drop the seen item
    assert not wrong.correct and "seen item" in wrong.message
    assert not check_exercise_7(None).answered
