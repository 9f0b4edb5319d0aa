"""Lesson 04's exercise checkers: right answers pass, wrong ones get a hint."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from course_utils.exercises import NOT_ANSWERED
from course_utils.exercises.lesson04 import check_exercise_5, check_exercise_6, leave_one_out_baselines
from course_utils.models.gans import reinforce_loss


def test_exercise_5_matches_the_package_baseline():
    assert np.allclose(leave_one_out_baselines([1, 2, 3, 6]), [11 / 3, 10 / 3, 3, 2])
    # the same baseline as reinforce_loss: its gradient w.r.t. log-probs is -(r - b) / S
    log_probs = torch.zeros(1, 4, requires_grad=True)
    reinforce_loss(log_probs, torch.tensor([[1.0, 2.0, 3.0, 6.0]])).backward()
    assert np.allclose(-4 * log_probs.grad.numpy()[0], np.array([1, 2, 3, 6]) - leave_one_out_baselines([1, 2, 3, 6]))
    assert check_exercise_5([11 / 3, 10 / 3, 3, 2]).correct
    mean_of_all = check_exercise_5([3, 3, 3, 3])
    assert not mean_of_all.correct and "leave that sample out" in mean_of_all.message
    assert not check_exercise_5([1, 2, 3, 6]).correct
    assert check_exercise_5(None) is NOT_ANSWERED


def test_exercise_6_uniform_entropy():
    X = sp.csr_matrix(np.array([[1, 0, 1, 0, 0], [0, 0, 0, 0, 1]], dtype=np.float32))
    assert check_exercise_6(np.log(3), X).correct
    assert check_exercise_6(np.log(4), X, user=1).correct
    wrong = check_exercise_6(np.log(5), X)
    assert not wrong.correct and "ln(n)" in wrong.message
    with pytest.raises(TypeError):
        check_exercise_6("ln 3", X)
