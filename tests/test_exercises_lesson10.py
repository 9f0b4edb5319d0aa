from course_utils.exercises import lesson10


def test_exercise_1_lora_parameter_count():
    assert not lesson10.check_exercise_1(None).answered
    assert lesson10.check_exercise_1(30 * 16 * (1152 + 768))
    assert lesson10.check_exercise_1(30 * 8 * (1152 + 768), r=8)
    wrong = lesson10.check_exercise_1(30 * 16 * 1152 * 2)  # v_proj taken as square
    assert not wrong and "v_proj" in wrong.message


def test_exercise_1_matches_peft_on_the_real_model_shape():
    # 460,800 is what peft's get_nb_trainable_parameters reports for r = 8 (tests/test_llm_tuning.py checks it).
    assert lesson10.check_exercise_1(460_800, r=8)


def test_exercise_3_auc_by_hand():
    assert not lesson10.check_exercise_3(None).answered
    assert lesson10.check_exercise_3(7 / 9)
    wrong = lesson10.check_exercise_3(0.5)
    assert not wrong and "3 × 3" in wrong.message


def test_exercise_4_shift_invariance():
    assert not lesson10.check_exercise_4(None).answered
    assert lesson10.check_exercise_4("No")
    assert not lesson10.check_exercise_4("yes")
