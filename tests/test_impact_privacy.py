"""Tests for course_utils.impact.privacy: membership AUC (hand-computed, sklearn), DeLong interval, the attack."""
import numpy as np
import pytest
import scipy.sparse as sp
from scipy import stats
from sklearn.metrics import roc_auc_score

from course_utils.impact.privacy import (MembershipTest, membership_attack, membership_auc, membership_test,
                                         own_item_auc, split_members)
from course_utils.models.baselines import EASE, Popularity


# ---------------------------------------------------------------- membership_auc
def test_membership_auc_hand_computed_with_a_tie():
    # pairs (member, non-member): 3>1, 3>2, 2>1, 2=2 -> (3 + 0.5) / 4
    assert membership_auc([3.0, 2.0], [1.0, 2.0]) == pytest.approx(3.5 / 4)


def test_membership_auc_perfect_separation_inverse_and_all_equal():
    assert membership_auc([5, 6, 7], [1, 2]) == 1.0
    assert membership_auc([1, 2], [5, 6, 7]) == 0.0
    assert membership_auc([4, 4, 4], [4, 4]) == 0.5


def test_membership_auc_equals_sklearn_on_random_scores_with_ties():
    rng = np.random.default_rng(0)
    members, nonmembers = rng.integers(0, 6, 70).astype(float), rng.integers(0, 5, 50).astype(float)
    labels = np.r_[np.ones(70), np.zeros(50)]
    assert membership_auc(members, nonmembers) == pytest.approx(roc_auc_score(labels, np.r_[members, nonmembers]))


def test_membership_auc_rejects_bad_input():
    with pytest.raises(ValueError, match="non-empty 1-D"):
        membership_auc([], [1.0])
    with pytest.raises(ValueError, match="NaN"):
        membership_auc([1.0, np.nan], [1.0])
    with pytest.raises(ValueError, match="1-D"):
        membership_auc([[1.0, 2.0]], [1.0])


# ---------------------------------------------------------------- membership_test (DeLong)
def test_delong_interval_hand_computed():
    # members [3, 2], non-members [1, 2]: placements of members (share of non-members beaten) = [1, 0.75],
    # of non-members (share of members above) = [1, 0.75]; var of each = 0.03125 (ddof 1); se = sqrt(2 * 0.03125 / 2)
    t = membership_test([3.0, 2.0], [1.0, 2.0])
    se = np.sqrt(0.03125 / 2 + 0.03125 / 2)
    assert t.auc == pytest.approx(0.875)
    assert t.low == pytest.approx(0.875 - 1.959964 * se, abs=1e-5)
    assert t.high == 1.0  # clipped
    assert t.p_value == pytest.approx(2 * stats.norm.sf(0.375 / se), abs=1e-9)


def test_delong_interval_covers_the_bootstrap_and_says_leaks_or_not():
    rng = np.random.default_rng(1)
    members, nonmembers = rng.normal(0.5, 1, 300), rng.normal(0.0, 1, 300)
    t = membership_test(members, nonmembers)
    boot = [membership_auc(rng.choice(members, 300), rng.choice(nonmembers, 300)) for _ in range(400)]
    assert t.low == pytest.approx(np.percentile(boot, 2.5), abs=0.015)
    assert t.high == pytest.approx(np.percentile(boot, 97.5), abs=0.015)
    assert t.verdict == "leaks" and t.sentence("EASE").case == "leaks" and "EASE" in t.sentence("EASE").text
    null = membership_test(rng.normal(0, 1, 200), rng.normal(0, 1, 200))
    assert null.low < 0.5 < null.high and null.verdict == "no evidence" and null.p_value > 0.05
    assert set(t.as_metrics()) == {"membership AUC", "membership AUC CI low", "membership AUC CI high",
                                   "membership AUC p"}


def test_all_equal_scores_give_auc_one_half_and_no_evidence():
    t = membership_test([1.0, 1.0, 1.0], [1.0, 1.0])
    assert isinstance(t, MembershipTest)
    assert (t.auc, t.low, t.high, t.p_value) == (0.5, 0.5, 0.5, 1.0)
    assert t.verdict == "no evidence"


def test_membership_test_rejects_too_few_users_and_bad_level():
    with pytest.raises(ValueError, match="at least 2"):
        membership_test([1.0], [0.0, 1.0])
    with pytest.raises(ValueError, match="level"):
        membership_test([1.0, 2.0], [0.0, 1.0], level=1.5)


# ---------------------------------------------------------------- own_item_auc and the attack
def test_own_item_auc_hand_computed():
    history = sp.csr_matrix(np.array([[1, 0, 1, 0], [0, 1, 0, 0]], np.float32))
    scores = np.array([[0.9, 0.1, 0.5, 0.5],    # own items 0 and 2 vs 1 and 3: 0.9 beats both, 0.5 beats 0.1, ties 0.5
                       [0.0, 0.0, 0.0, 0.0]])   # all tied: 0.5
    np.testing.assert_allclose(own_item_auc(scores, history), [3.5 / 4, 0.5])
    with pytest.raises(ValueError, match="users × items"):
        own_item_auc(scores[:, :3], history)
    with pytest.raises(ValueError, match="some of each"):
        own_item_auc(np.zeros((1, 2)), sp.csr_matrix(np.array([[1.0, 1.0]], np.float32)))


def test_split_members_is_a_seeded_half():
    mask = split_members(10, seed=3)
    assert mask.dtype == bool and mask.sum() == 5
    np.testing.assert_array_equal(mask, split_members(10, seed=3))
    with pytest.raises(ValueError, match="share"):
        split_members(10, share=1.0)
    with pytest.raises(ValueError, match="n_users"):
        split_members(2)


def test_attack_on_movielens_ease_leaks_more_with_less_regularisation_and_popularity_does_not(ml_split):
    X = ml_split.train_matrix()
    members = split_members(X.shape[0], seed=0)
    weak, signal = membership_attack(EASE(l2=20.0).fit(X[members]), X, members)
    strong, _ = membership_attack(EASE(l2=5000.0).fit(X[members]), X, members)
    control, _ = membership_attack(Popularity().fit(X[members]), X, members)
    assert signal.shape == (X.shape[0],)
    assert weak.auc > 0.95 and weak.verdict == "leaks"
    assert 0.5 < strong.auc < weak.auc
    assert control.low < 0.55 and abs(control.auc - 0.5) < 0.06
    with pytest.raises(ValueError, match="boolean mask"):
        membership_attack(EASE(l2=20.0).fit(X[members]), X, members[:10])
