"""Lesson 19's exercise checkers: right, wrong and unanswered, against values computed independently."""
import numpy as np
import pytest
from scipy.stats import hypergeom

from course_utils.exercises import lesson19


def _simulated_sampled_hit(rank, n_candidates, n_negatives, k, n=20000, seed=0):
    rng = np.random.default_rng(seed)
    others = n_candidates - 1                      # items 0..rank-2 rank above the test item
    draws = np.argsort(rng.random((n, others)), axis=1)[:, :n_negatives]
    return float(((draws < rank - 1).sum(axis=1) <= k - 1).mean())


def test_sampled_hit_probability_matches_a_simulation():
    exact = lesson19.sampled_hit_probability(30, 300, 20, 3)
    assert exact == pytest.approx(_simulated_sampled_hit(30, 300, 20, 3), abs=0.01)
    assert lesson19.sampled_hit_probability(1, 1600) == 1.0
    assert lesson19.sampled_hit_probability(150, 1600) == pytest.approx(hypergeom(1599, 149, 100).cdf(9))
    with pytest.raises(ValueError, match="rank"):
        lesson19.sampled_hit_probability(0, 1600)


def test_exercise_1():
    assert lesson19.check_exercise_1(None).message.startswith("No answer yet")
    assert lesson19.check_exercise_1(0.54)
    wrong = lesson19.check_exercise_1(10 / 1600)
    assert not wrong and "hypergeometric" in wrong.message
    with pytest.raises(TypeError):
        lesson19.check_exercise_1("0.5")


def test_exercise_2_holm_by_hand():
    assert lesson19.check_exercise_2(None).message.startswith("No answer yet")
    right = lesson19.check_exercise_2(2)
    assert right and "1 by Bonferroni" in right.message
    wrong = lesson19.check_exercise_2(1)        # the Bonferroni count
    assert not wrong and "stop at the first" in wrong.message


def test_exercise_3_recall_ceiling():
    assert lesson19.check_exercise_3(None).message.startswith("No answer yet")
    assert lesson19.check_exercise_3(0.4)
    assert not lesson19.check_exercise_3(1.0)
    assert lesson19.check_exercise_3(1.0, n_relevant=5)


def test_exercise_4_gini_by_hand():
    assert lesson19.check_exercise_4(None).message.startswith("No answer yet")
    assert lesson19.check_exercise_4(0.625)
    wrong = lesson19.check_exercise_4(0.5)
    assert not wrong and "Sort the counts" in wrong.message
