"""The claim helpers: sentences follow the numbers, and paired intervals are right on hand-made data."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from course_utils.claims import (Claim, best_claim, claim, compare_models, compare_table, evidence_disagrees,
                                 join_claims, paired_bootstrap_ci, paired_verdict, seed_spread_claim)


def test_claim_returns_the_text_of_the_case_that_held():
    assert claim(0.07 > 0.04, "yes", "no") == Claim("yes", True)
    assert claim(0.03 > 0.04, "yes", "no") == Claim("no", False)
    joined = join_claims(claim(True, "A.", "B."), "and", claim(False, "C.", "D."))
    assert joined.text == "A. and D." and joined.case == (True, False)
    assert claim(True, "**x**", "y")._repr_markdown_() == "**x**"


def test_bootstrap_interval_of_a_hand_computed_example():
    # Differences 0 and 1 in equal numbers: the mean is 0.5 and a bootstrap mean over n users is
    # Binomial(n, 0.5) / n, whose 2.5% and 97.5% quantiles are known exactly.
    diff = np.array([0.0, 1.0] * 50)
    low, high = paired_bootstrap_ci(diff, n_boot=20000, seed=1)
    exact_low, exact_high = stats.binom.ppf([0.025, 0.975], 100, 0.5) / 100
    assert low == pytest.approx(exact_low, abs=0.011) and high == pytest.approx(exact_high, abs=0.011)
    assert paired_bootstrap_ci(np.full(10, 0.3)) == pytest.approx((0.3, 0.3))


def test_compare_models_verdicts_on_hand_made_numbers():
    rng = np.random.default_rng(0)
    base = rng.random(500)
    better = compare_models(base + 0.05, base, "A", "B")
    assert better.verdict == "better" and better.diff == pytest.approx(0.05) and better.low > 0
    assert "is **better** than" in better.sentence() and "CI" in better.sentence()
    worse = compare_models(base, base + 0.05, "A", "B")
    assert worse.verdict == "worse" and worse.high < 0
    noise = rng.normal(0, 1, 500)
    level = compare_models(base + noise, base + noise[::-1], "A", "B")
    assert level.verdict == "level" and level.low < 0 < level.high
    assert "no significant difference" in level.sentence()
    assert level.p_value == pytest.approx(stats.ttest_rel(base + noise, base + noise[::-1]).pvalue)
    same = compare_models(base, base, "A", "B")
    assert same.verdict == "level" and same.p_value == 1.0


def test_compare_models_rejects_unpaired_or_broken_input():
    with pytest.raises(ValueError, match="same users"):
        compare_models(np.ones(5), np.ones(6))
    with pytest.raises(ValueError, match="NaN"):
        compare_models(np.array([1.0, np.nan]), np.ones(2))
    with pytest.raises(ValueError, match="at least 2"):
        compare_models(np.ones(1), np.ones(1))
    with pytest.raises(TypeError):
        compare_models(["a", "b"], [1, 2])


def test_compare_table_lists_every_model_against_the_reference():
    rng = np.random.default_rng(1)
    base = rng.random(300)
    table = compare_table({"EASE": base, "good": base + 0.1, "same": base.copy()}, "EASE")
    assert list(table.index) == ["good", "same"]
    assert table.loc["good", "verdict"] == "better" and table.loc["same", "verdict"] == "level"
    with pytest.raises(ValueError, match="reference"):
        compare_table({"a": base}, "b")


def test_seed_spread_claim_cases():
    assert seed_spread_claim([0.10, 0.11, 0.12], [0.05, 0.06, 0.05], "A", "B").case == "beyond spread"
    within = seed_spread_claim([0.10, 0.13, 0.07], [0.09, 0.10, 0.11], "A", "B")
    assert within.case == "within spread" and "smaller than" in within.text
    assert seed_spread_claim([0.1], [0.2], "A", "B").case == "one seed"


def test_best_claim_names_the_winner_and_runner_up():
    result = best_claim(pd.Series({"EASE": 0.07, "Pop": 0.04, "VAE": 0.074}))
    assert result.case == "VAE" and "ahead of EASE" in result.text
    assert best_claim({"a": 3.0, "b": 1.0}, metric="RMSE", higher_is_better=False).case == "b"
    with pytest.raises(ValueError):
        best_claim({})


def test_compare_models_names_what_was_paired():
    a, b = np.array([0.5, 0.7, 0.9]), np.array([0.1, 0.2, 0.3])
    assert compare_models(a, b).sentence().endswith("3 users).")
    assert compare_models(a, b, unit="reviews").sentence().endswith("3 reviews).")


def test_borderline_case_where_bootstrap_and_t_test_disagree_is_level_and_says_so():
    # Eight paired differences: the percentile bootstrap interval sits above zero,
    # the paired t-test does not reject (p = 0.064). One rule: no win.
    diff = np.array([1.55, 2.28, -2.05, 0.36, 1.51, 1.85, 1.15, 2.0])
    result = compare_models(diff, np.zeros(8), "A", "B")
    assert result.low > 0 and result.p_value == pytest.approx(0.0643, abs=1e-3)
    assert result.verdict == "level"
    assert "borderline" in result.sentence() and "t-test does not reject" in result.sentence()
    assert evidence_disagrees(result.low, result.high, result.p_value)
    assert not evidence_disagrees(0.1, 0.2, 0.01) and not evidence_disagrees(-0.1, 0.2, 0.4)


def test_paired_verdict_rule_and_bad_input():
    assert paired_verdict(0.1, 0.3, 0.01) == "better"
    assert paired_verdict(-0.3, -0.1, 0.001) == "worse"
    assert paired_verdict(0.1, 0.3, 0.2) == "level"  # interval alone is not enough
    assert paired_verdict(-0.1, 0.3, 0.01) == "level"  # test alone is not enough
    assert paired_verdict(0.1, 0.3, 0.08, level=0.9) == "better"
    with pytest.raises(ValueError, match="level"):
        paired_verdict(0.1, 0.3, 0.01, level=1.5)
    with pytest.raises(ValueError, match="above high"):
        paired_verdict(0.3, 0.1, 0.01)
