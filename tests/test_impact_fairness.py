"""Tests for course_utils.impact.fairness: hand-computed cases, library equivalence, bad inputs."""
import numpy as np
import pytest
from scipy import stats

from course_utils.impact.fairness import GroupGap, group_gap


# ---------------------------------------------------------------- group_gap
def test_group_gap_hand_computed_gap_and_exact_permutation_p():
    # 4 users, 2 per group: of the 6 ways to split them, 2 reach |gap| >= 0.8, so the exact p is 1/3.
    g = group_gap([1.0, 0.8, 0.2, 0.0], ["M", "M", "F", "F"], "M", "F", n_boot=4000, seed=1)
    assert isinstance(g, GroupGap)
    assert g.gap == pytest.approx(0.8)
    assert (g.n_a, g.n_b, g.a, g.b) == (2, 2, "M", "F")
    assert g.mean_a == pytest.approx(0.9) and g.mean_b == pytest.approx(0.1)
    assert g.p == pytest.approx(1 / 3, abs=0.03)
    # bootstrap means of a 2-user group lie in {min, mid, max}: the gap's interval is inside [0.6, 1.0]
    assert 0.6 - 1e-9 <= g.ci_low <= g.gap <= g.ci_high <= 1.0 + 1e-9
    assert not g.significant and g.sentence().case == "no gap"


def test_group_gap_matches_scipy_permutation_test_and_ignores_other_labels():
    rng = np.random.default_rng(0)
    x, y = rng.normal(0.30, 0.2, 60), rng.normal(0.22, 0.2, 50)
    values = np.concatenate([x, y, [5.0, 5.0]])  # two users of a third group must not count
    labels = ["a"] * 60 + ["b"] * 50 + ["c", "c"]
    g = group_gap(values, labels, "a", "b", n_boot=4000, seed=3)
    assert g.gap == pytest.approx(x.mean() - y.mean())
    ref = stats.permutation_test((x, y), lambda u, v: u.mean() - v.mean(), n_resamples=4000,
                                 alternative="two-sided", random_state=0)
    assert g.p == pytest.approx(ref.pvalue, abs=0.03)
    # the unpaired bootstrap interval is close to the normal (Welch) interval
    se = np.sqrt(x.var(ddof=1) / len(x) + y.var(ddof=1) / len(y))
    assert g.ci_low == pytest.approx(g.gap - 1.96 * se, abs=0.015)
    assert g.ci_high == pytest.approx(g.gap + 1.96 * se, abs=0.015)


def test_group_gap_detects_a_clear_gap_and_says_which_group():
    values = np.r_[np.full(30, 0.5), np.full(30, 0.1)] + np.tile([0.0, 0.01, 0.02], 20)
    g = group_gap(values, ["F"] * 30 + ["M"] * 30, "M", "F")
    assert g.gap < 0 and g.ci_high < 0 and g.p < 0.001 and g.significant
    s = g.sentence("NDCG@10")
    assert s.case == "b higher" and "**F**" in s.text and "p < 0.001" in s.text
    row = g.as_row()
    assert row["gap (A - B)"] == pytest.approx(g.gap) and row["n A"] == 30


def test_group_gap_is_reproducible_with_a_seed():
    values = np.linspace(0, 1, 40)
    labels = ["x", "y"] * 20
    assert group_gap(values, labels, "x", "y", seed=5) == group_gap(values, labels, "x", "y", seed=5)


@pytest.mark.parametrize("kwargs, message", [
    (dict(per_user=[0.1, np.nan, 0.3, 0.4]), "NaN"),
    (dict(per_user=[[0.1, 0.2], [0.3, 0.4]]), "1-D"),
    (dict(groups=["M", "F", "M"]), "one label per user"),
    (dict(b="M"), "must differ"),
    (dict(b="X"), "group 'X' has 0 users"),
    (dict(n_boot=10), "n_boot"),
    (dict(n_perm=10), "n_perm"),
    (dict(level=1.5), "level"),
])
def test_group_gap_bad_inputs_raise_clear_errors(kwargs, message):
    args = dict(per_user=[0.1, 0.2, 0.3, 0.4], groups=["M", "F", "M", "F"], a="M", b="F") | kwargs
    with pytest.raises(ValueError, match=message):
        group_gap(**args)
