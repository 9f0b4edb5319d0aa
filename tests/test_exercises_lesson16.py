"""Lesson 16's exercise checkers: right, wrong and unanswered."""
import pytest
import torch

from course_utils.exercises.lesson16 import check_exercise_1, check_exercise_2, check_exercise_3, product_of_two
from course_utils.multimodal.mvae import product_of_experts


def test_exercise_1_product_of_two_experts():
    assert check_exercise_1([0.0, 1 / 3]).correct
    wrong = check_exercise_1([0.5, 0.75])                   # averaging means and variances
    assert not wrong.correct and "Precisions" in wrong.message
    assert not check_exercise_1([0.0, 1 / 3, 1.0]).correct  # wrong shape
    assert not check_exercise_1(None).answered
    # the checker's closed form agrees with the package's product of experts (without the prior)
    mu, logvar = product_of_experts(torch.tensor([[[2.0]], [[-1.0]]]), torch.log(torch.tensor([[[1.0]], [[0.5]]])),
                                    prior=False)
    assert torch.allclose(torch.tensor(product_of_two(2.0, 1.0, -1.0, 0.5)), torch.stack([mu[0, 0], logvar.exp()[0, 0]]))


def test_exercise_2_info_nce_at_chance():
    assert check_exercise_2(5.545).correct
    assert not check_exercise_2(1.0).correct
    assert not check_exercise_2(None).answered
    with pytest.raises(TypeError):
        check_exercise_2("log 256")


def test_exercise_3_product_ignores_disagreement():
    assert check_exercise_3("no").correct and check_exercise_3(" No ").correct
    assert not check_exercise_3("yes").correct
    assert not check_exercise_3(None).answered
