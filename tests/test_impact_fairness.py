"""Tests for course_utils.impact.fairness: hand-computed cases, library equivalence, bad inputs."""
import numpy as np
import pytest
from scipy import stats

import pandas as pd

from course_utils.impact.fairness import (GroupGap, attribute_messages, attribute_scores, group_gap, jaccard_at_k,
                                          list_similarity, prag_at_k, provider_exposure, sensitivity_test, serp_at_k,
                                          top_k_columns)


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
    (dict(b="X"), "has 0 users"),
    (dict(strata=["s", "t"]), "strata must hold one label per user"),
    (dict(n_boot=10), "n_boot"),
    (dict(n_perm=10), "n_perm"),
    (dict(level=1.5), "level"),
])
def test_group_gap_bad_inputs_raise_clear_errors(kwargs, message):
    args = dict(per_user=[0.1, 0.2, 0.3, 0.4], groups=["M", "F", "M", "F"], a="M", b="F") | kwargs
    with pytest.raises(ValueError, match=message):
        group_gap(**args)


def test_group_gap_within_strata_removes_a_confounded_gap():
    # Activity drives the metric; group a is mostly in the active stratum. Raw gap: large; within strata: none.
    rng = np.random.default_rng(0)
    active = np.r_[np.ones(80), np.zeros(20), np.ones(20), np.zeros(80)].astype(bool)
    group = np.array(["a"] * 100 + ["b"] * 100)
    values = np.where(active, 0.6, 0.1) + rng.normal(0, 0.05, 200)
    raw = group_gap(values, group, "a", "b", seed=1)
    adjusted = group_gap(values, group, "a", "b", seed=1, strata=np.where(active, "active", "quiet"))
    assert raw.significant and raw.gap == pytest.approx(0.3, abs=0.03)
    assert adjusted.strata == 2 and abs(adjusted.gap) < 0.03 and not adjusted.significant
    # hand computation: weights 100/200 per stratum, gap = mean of the within-stratum differences
    within = [values[(group == "a") & (active == s)].mean() - values[(group == "b") & (active == s)].mean()
              for s in (True, False)]
    assert adjusted.gap == pytest.approx(np.mean(within))
    assert "within 2 strata" in adjusted.sentence().text


def test_group_gap_with_a_single_stratum_equals_the_plain_gap():
    values, labels = np.linspace(0, 1, 30), ["x", "y", "z"] * 10
    plain = group_gap(values, labels, "x", "y", seed=2)
    one = group_gap(values, labels, "x", "y", seed=2, strata=["all"] * 30)
    assert plain == one


# ---------------------------------------------------------------- FaiRLLM metrics
def test_jaccard_serp_prag_hand_computed():
    s, n = [1, 2, 3, 4], [4, 1, 7, 8]
    assert jaccard_at_k(s, n, 4) == pytest.approx(2 / 6)           # {1, 4} of {1, 2, 3, 4, 7, 8}
    assert serp_at_k(s, n, 4) == pytest.approx((4 + 1) / 10)        # item 1 at rank 1 (weight 4), item 4 at rank 4 (1)
    # pairs of s (6): (1,2) 1 in N, 2 absent -> kept; (1,3) kept; (1,4) 1 after 4 in N -> no;
    # (2,x), (3,x): 2 and 3 absent from N -> no. So 2 / 6.
    assert prag_at_k(s, n, 4) == pytest.approx(2 / 6)
    # k cuts both lists: top-2 are [1, 2] and [4, 1]
    assert jaccard_at_k(s, n, 2) == pytest.approx(1 / 3)
    assert serp_at_k(s, n, 2) == pytest.approx(2 / 3)
    assert prag_at_k(s, n, 2) == pytest.approx(1.0)


@pytest.mark.parametrize("metric", [jaccard_at_k, serp_at_k, prag_at_k])
def test_similarities_are_one_for_the_same_list_and_zero_for_disjoint(metric):
    assert metric([5, 6, 7], [5, 6, 7], 3) == pytest.approx(1.0)
    assert metric([5, 6, 7], [1, 2, 3], 3) == pytest.approx(0.0)
    assert metric([5], [5], 1) == pytest.approx(1.0)


def test_order_matters_for_serp_and_prag_but_not_jaccard():
    assert jaccard_at_k([1, 2, 3], [3, 2, 1], 3) == 1.0
    assert serp_at_k([1, 2, 3], [3, 2, 1], 3) == 1.0                # same items: SERP* only weighs the shared ones
    assert prag_at_k([1, 2, 3], [3, 2, 1], 3) == 0.0                # every pair reversed
    # SERP*: keeping the top item is worth more than keeping the bottom item
    assert serp_at_k([1, 2, 3], [1, 8, 9], 3) > serp_at_k([1, 2, 3], [3, 8, 9], 3)


def test_list_similarity_rows_and_errors():
    got = list_similarity([[1, 2], [3, 4]], [[1, 2], [4, 9]], 2, "Jaccard")
    np.testing.assert_allclose(got, [1.0, 1 / 3])
    with pytest.raises(ValueError, match="metric must be one of"):
        list_similarity([[1, 2]], [[1, 2]], 2, "cosine")
    with pytest.raises(ValueError, match="one neutral list per sensitive list"):
        list_similarity([[1, 2]], [], 2)
    with pytest.raises(ValueError, match="repeats an item"):
        jaccard_at_k([1, 1, 2], [1, 2, 3], 3)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        serp_at_k([1, 2], [1, 2], 0)
    with pytest.raises(TypeError, match="list of item ids"):
        prag_at_k("abc", [1, 2], 2)


# ---------------------------------------------------------------- SNSR / SNSV and the permutation test
def test_sensitivity_test_snsr_snsv_hand_computed():
    sims = pd.DataFrame({"a woman": [0.2, 0.4, 0.3], "a man": [0.8, 1.0, 0.9], "a child": [0.5, 0.5, 0.5]})
    t = sensitivity_test(sims, "gender", n_perm=500)
    np.testing.assert_allclose(t.means.values, [0.3, 0.9, 0.5])
    assert t.snsr == pytest.approx(0.6)
    assert t.snsv == pytest.approx(np.std([0.3, 0.9, 0.5]))          # population std, as FaiRLLM
    # 3 users x 3! orders: the observed range (every row in the same order) is rare, p about 6 * (1/6)^3 / ... < 0.1
    assert t.p < 0.1 and t.sentence().case == "unequal" and "'a woman'" in t.sentence().text


def test_sensitivity_test_finds_nothing_when_values_are_exchangeable():
    rng = np.random.default_rng(4)
    sims = pd.DataFrame(rng.random((60, 3)), columns=["x", "y", "z"])
    t = sensitivity_test(sims, "colour", seed=1)
    assert t.p > 0.05 and t.sentence().case == "no evidence"
    assert t.as_row()["SNSR"] == pytest.approx(t.snsr)


def test_sensitivity_test_bad_inputs():
    with pytest.raises(TypeError, match="DataFrame"):
        sensitivity_test(np.ones((3, 2)))
    with pytest.raises(ValueError, match="at least 2 users and 2 values"):
        sensitivity_test(pd.DataFrame({"x": [1.0, 0.5]}))
    with pytest.raises(ValueError, match="NaN"):
        sensitivity_test(pd.DataFrame({"x": [1.0, np.nan], "y": [0.5, 0.5]}))


# ---------------------------------------------------------------- provider exposure
def test_provider_exposure_hand_computed():
    providers = ["p", "p", "q", "r"]                                 # catalogue shares 1/2, 1/4, 1/4
    top = np.array([[0, 1], [0, 2], [1, 0]])                         # 6 slots: p 5, q 1, r 0
    table = provider_exposure(top, providers, item_counts=[10, 0, 5, 5], n_boot=500)
    np.testing.assert_allclose(table["catalogue share"], [0.5, 0.25, 0.25])
    np.testing.assert_allclose(table["exposure share"], [5 / 6, 1 / 6, 0.0])
    np.testing.assert_allclose(table["interaction share"], [0.5, 0.25, 0.25])
    np.testing.assert_allclose(table["exposure / catalogue"], [5 / 3, 2 / 3, 0.0])
    assert (table["CI low"] <= table["exposure share"] + 1e-12).all()
    assert (table["CI high"] >= table["exposure share"] - 1e-12).all()
    assert table.loc["r", "CI high"] == 0.0                          # never recommended: no interval above zero


def test_provider_exposure_bad_inputs():
    with pytest.raises(ValueError, match="outside"):
        provider_exposure(np.array([[0, 5]]), ["p", "q"])
    with pytest.raises(ValueError, match="integer array"):
        provider_exposure(np.array([0.0, 1.0]), ["p", "q"])
    with pytest.raises(ValueError, match="one non-negative count per item"):
        provider_exposure(np.array([[0, 1]]), ["p", "q"], item_counts=[1])


def test_sensitivity_sentence_when_every_value_is_equal():
    t = sensitivity_test(pd.DataFrame({"x": [1.0, 0.5], "y": [1.0, 0.5]}), "gender", n_perm=200)
    assert t.snsr == 0 and t.p == 1.0
    assert t.sentence().case == "no evidence" and "every value gives the same mean" in t.sentence().text


# ---------------------------------------------------------------- the LLM with and without a sensitive sentence
def test_attribute_messages_place_the_sentence_after_the_history():
    neutral = attribute_messages(["Heat", "Fargo"])
    woman = attribute_messages(["Heat", "Fargo"], "I am a woman.")
    assert neutral[0]["role"] == "system" and "About me" not in neutral[1]["content"]
    text = woman[1]["content"]
    assert text.index("Fargo") < text.index("About me: I am a woman.") < text.index("Which movie")
    assert text.startswith(neutral[1]["content"].split("Which movie")[0])   # the variants share their start
    with pytest.raises(ValueError, match="non-empty list of titles"):
        attribute_messages([])
    with pytest.raises(ValueError, match="non-empty sentence or None"):
        attribute_messages(["Heat"], "  ")


def test_top_k_columns_by_hand():
    np.testing.assert_array_equal(top_k_columns([[0.1, 0.9, 0.5], [2.0, 2.0, 1.0]], 2), [[1, 2], [0, 1]])
    with pytest.raises(ValueError, match="0 < k <= n_candidates"):
        top_k_columns([[0.1, 0.2]], 3)



def test_attribute_scores_equal_each_prompt_scored_alone(llm, movielens):
    from course_utils.llm.prompting import movie_titles, render_chat
    from course_utils.llm.ranking import score_candidates

    model, tokenizer = llm
    titles = movie_titles(movielens.items)
    histories = [[titles[i] for i in (0, 49, 180)], [titles[i] for i in (120, 7)]]
    candidates = [[titles[i] for i in (300, 301)], [titles[i] for i in (400, 401)]]
    sentences = {"neutral": None, "woman": "I am a woman."}
    scores = attribute_scores(model, tokenizer, histories, candidates, sentences)
    assert set(scores) == set(sentences) and scores["neutral"].shape == (2, 2)
    for name, about in sentences.items():       # the shared-prefix cache changes nothing
        for row in range(2):
            prompt = render_chat(tokenizer, attribute_messages(histories[row], about))
            alone = score_candidates(model, tokenizer, prompt, candidates[row], "mean", method="naive")
            np.testing.assert_allclose(scores[name][row], alone, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="one candidate list per history"):
        attribute_scores(model, tokenizer, histories, candidates[:1], sentences)
    with pytest.raises(ValueError, match="at least two prompt variants"):
        attribute_scores(model, tokenizer, histories, candidates, {"neutral": None})
