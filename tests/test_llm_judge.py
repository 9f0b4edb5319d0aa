"""The LLM judge: ground truth, Cohen's kappa (hand-computed and equal to scikit-learn's), agreement,
threshold calibration, position bias, and option scores equal to hub.sequence_log_likelihood (real SmolLM2)."""
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score

from course_utils.llm import conversational as cv
from course_utils.llm import judge as jg


def _items():
    rows = [("Coat", "dark", "plain", "Miro", 80.99), ("Coat", "light", "plain", "Miro", 60.99),
            ("Coat", "dark", "textured", "Kestrel", 99.99), ("Dress", "dark", "plain", "Umber", 40.99),
            ("Sandal", "light", "plain", "Umber", 30.99)]
    frame = pd.DataFrame(rows, columns=["category", "tone", "pattern", "brand", "price"])
    frame["title"] = [f"{t.capitalize()} {p} {c.lower()} by {b}" for c, t, p, b, _ in rows]
    return frame


def test_ground_truth_case_types():
    items = _items()
    assert jg.case_type([1, 2], 2, items) == "shows the target"
    assert jg.case_type([1, 0], 2, items) == "same category and tone"     # item 0: a dark coat
    assert jg.case_type([1, 3], 2, items) == "same category, other tone"  # item 1: a light coat
    assert jg.case_type([3, 4], 2, items) == "other category"
    assert [jg.is_relevant(s, 2, items) for s in ([2], [0], [1], [3])] == [True, True, False, False]
    assert jg.need_text(items, 4) == "light sandals"
    with pytest.raises(ValueError, match="empty"):
        jg.case_type([], 2, items)


def test_cohen_kappa_hand_computed_and_equal_to_sklearn():
    # p_o = 3/4; judge says 1 half the time, truth a quarter: p_e = .5*.25 + .5*.75 = .5 -> kappa .5
    assert jg.cohen_kappa([1, 1, 0, 0], [1, 0, 0, 0]) == pytest.approx(0.5)
    # the exercise's table: 40 agree-yes, 10 truth-yes/judge-no, 20 truth-no/judge-yes, 30 agree-no -> 0.4
    truth = np.array([1] * 50 + [0] * 50)
    judge = np.array([1] * 40 + [0] * 10 + [1] * 20 + [0] * 30)
    assert jg.cohen_kappa(judge, truth) == pytest.approx(0.4)
    rng = np.random.default_rng(0)
    for _ in range(5):
        a, b = rng.integers(0, 3, 40), rng.integers(0, 3, 40)
        assert jg.cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))
    assert jg.cohen_kappa(np.ones(6), [1, 0, 1, 0, 1, 1]) == 0.0  # always "Yes": chance agreement only
    assert np.isnan(jg.cohen_kappa(np.ones(4), np.ones(4)))
    with pytest.raises(ValueError, match="same length"):
        jg.cohen_kappa([1, 0], [1])


def test_agreement_reports_baseline_and_intervals():
    truth = np.array([True] * 6 + [False] * 4)
    always = jg.agreement(np.ones(10, bool), truth, n_boot=200)
    assert always["accuracy"] == pytest.approx(0.6) and always["kappa"] == 0.0
    assert always["majority baseline accuracy"] == pytest.approx(0.6) and always["judge says yes"] == 1.0
    perfect = jg.agreement(truth, truth, n_boot=200)
    assert perfect["kappa"] == 1.0 and perfect["accuracy CI low"] == 1.0
    with pytest.raises(ValueError, match="at least two"):
        jg.agreement([True], [True])


def test_calibrate_threshold_uses_the_margins_order():
    margins = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.8])
    truth = np.array([False, False, False, True, True, True])
    threshold = jg.calibrate_threshold(margins, truth)
    assert 0.3 < threshold < 0.6 and np.all((margins > threshold) == truth)
    assert jg.calibrate_threshold([-1.0, 1.0], [False, True]) == 0.0  # zero already separates: keep it


def test_position_bias_and_flips():
    # the better response is in slot A first, then in slot B
    slot_a_always = jg.position_bias([1.0, 0.5, 0.2], [0.3, 0.1, 0.4])
    assert slot_a_always["picks slot A"] == 1.0 and slot_a_always["follows position"] == 1.0
    assert slot_a_always["accuracy"] == 0.5 and slot_a_always["consistent CI high"] < 1
    fair = jg.position_bias([1.0, 0.5], [-1.0, -0.5])
    assert fair["consistent"] == 1.0 and fair["accuracy"] == 1.0 and fair["picks slot A"] == 0.5
    assert jg.verdict_flips(0.8, 0.3) and not jg.verdict_flips(0.8, -0.3)
    with pytest.raises(ValueError, match="one margin per pair"):
        jg.position_bias([1.0], [])


def test_judge_cases_and_pairs_from_dialogues():
    items = _items()
    dialogues = [cv.Dialogue(0, 2, [], [[0, 1, 2]], True, 1, ["rule"]),
                 cv.Dialogue(1, 4, [], [[3, 1, 0]], False, 1, ["rule"])]
    cases = jg.judge_cases(dialogues, items, 6, seed=0)
    assert len(cases) == 6 and cases["own target"].tolist() == [True, False] * 3
    for case in cases.itertuples():
        assert case.relevant == jg.is_relevant(case.shown, case.target, items)
    pairs = jg.judge_pairs(cases, items, 3, seed=0)
    for pair in pairs.itertuples():
        assert jg.is_relevant(pair.better, pair.target, items) and not jg.is_relevant(pair.worse, pair.target, items)
    with pytest.raises(ValueError, match="n_cases"):
        jg.judge_cases(dialogues, items, 1)


def test_prompts_carry_the_need_and_the_items():
    items = _items()
    messages = jg.relevance_messages(items, 2, [0, 3], padding=jg.FILLER)
    assert messages[0]["content"] == jg.RUBRIC
    assert messages[1]["content"] == ("The shopper wants: dark coat.\nShown:\n1. Dark plain coat\n2. Dark plain dress\n"
                                      + jg.FILLER)
    pair = jg.pairwise_messages(items, 2, [0], [3])[1]["content"]
    assert pair.index("A shows:\n1. Dark plain coat") < pair.index("B shows:\n1. Dark plain dress")



def test_option_scores_equal_the_hub_log_likelihood(llm):
    from course_utils.hub import sequence_log_likelihood
    from course_utils.llm.prompting import render_chat

    model, tokenizer = llm
    items = _items()
    conversations = [jg.relevance_messages(items, 2, [0, 1]), jg.relevance_messages(items, 4, [3])]
    scores = jg.option_scores(model, tokenizer, conversations, ["Yes", "No"])  # with the shared prefix cache
    assert scores.shape == (2, 2)
    for row, messages in zip(scores, conversations):
        reference = sequence_log_likelihood(model, tokenizer, render_chat(tokenizer, messages), ["Yes", "No"])
        np.testing.assert_allclose(row, reference, atol=1e-3)
    with pytest.raises(ValueError, match="at least two answers"):
        jg.option_scores(model, tokenizer, conversations, ["Yes"])
    with pytest.raises(ValueError, match="nothing to judge"):
        jg.option_scores(model, tokenizer, [], ["Yes", "No"])
