"""The KV-cache likelihood ranker equals the naive one; candidate sets, ranks, timings file (lesson 09)."""
import numpy as np
import pytest

from course_utils.llm import ranking as R
from course_utils.llm.prompting import movie_titles, ranking_messages, render_chat



def test_cached_scores_equal_naive_scores(llm, movielens):
    model, tokenizer = llm
    titles = movie_titles(movielens.items)
    prompt = render_chat(tokenizer, ranking_messages([titles[i] for i in (0, 49, 180, 171)]))
    candidates = [titles[i] for i in range(100, 108)]
    cached = R.score_candidates(model, tokenizer, prompt, candidates, "sum")
    naive = R.score_candidates(model, tokenizer, prompt, candidates, "sum", method="naive")
    batched = R.score_candidates(model, tokenizer, prompt, candidates, "sum", method="batched")
    assert cached.shape == (8,) and np.all(cached < 0)
    np.testing.assert_allclose(cached, naive, atol=1e-4, rtol=0)
    np.testing.assert_allclose(batched, naive, atol=1e-4, rtol=0)
    # the packed sequence holds the candidates in the given order; the scores follow that order
    np.testing.assert_allclose(R.score_candidates(model, tokenizer, prompt, candidates[::-1], "sum"), cached[::-1],
                               atol=1e-4, rtol=0)
    # batched scoring sorts by length into several batches; the scores come back in the given order
    np.testing.assert_allclose(R.score_candidates(model, tokenizer, prompt, candidates[::-1], "sum", method="batched"),
                               cached[::-1], atol=1e-4, rtol=0)
    lengths = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in R.answer_texts(tokenizer, candidates)]
    np.testing.assert_allclose(R.score_candidates(model, tokenizer, prompt, candidates, "mean"), cached / lengths,
                               atol=1e-5)
    with pytest.raises(ValueError, match="duplicates"):
        R.score_candidates(model, tokenizer, prompt, ["Heat", "Fargo", "Heat"])
    with pytest.raises(ValueError, match="empty"):
        R.score_candidates(model, tokenizer, prompt, [])
    with pytest.raises(ValueError, match="normalise"):
        R.score_candidates(model, tokenizer, prompt, ["Heat"], "max")
    with pytest.raises(ValueError, match="context"):
        R.score_candidates(model, tokenizer, "word " * 9000, ["Heat"])
    with pytest.raises(ValueError, match="method"):
        R.score_candidates(model, tokenizer, prompt, ["Heat"], method="fast")


def test_shared_prefix_gives_the_naive_scores(llm, movielens):
    model, tokenizer = llm
    titles = movie_titles(movielens.items)
    prompts = [render_chat(tokenizer, ranking_messages([titles[i] for i in history]))
               for history in ((0, 49, 180), (7, 300), (11,))]
    prefix = R.PromptPrefix.from_prompts(model, tokenizer, prompts)
    assert prompts[0].startswith(prefix.text) and len(prefix) > 10
    candidates = [titles[i] for i in range(200, 206)]
    for prompt in prompts:
        assert prefix.reusable(tokenizer(prompt)["input_ids"]) > 10
        naive = R.score_candidates(model, tokenizer, prompt, candidates, "sum", method="naive")
        np.testing.assert_allclose(R.score_candidates(model, tokenizer, prompt, candidates, "sum", prefix=prefix),
                                   naive, atol=1e-4, rtol=0)
    # the cache is copied, not consumed: a second use gives the same numbers; an unrelated prompt reuses nothing
    again = R.score_candidates(model, tokenizer, prompts[0], candidates, "sum", prefix=prefix)
    np.testing.assert_allclose(again, R.score_candidates(model, tokenizer, prompts[0], candidates, "sum"), atol=1e-4)
    assert prefix.reusable(tokenizer("Hello there")["input_ids"]) == 0
    np.testing.assert_allclose(R.score_candidates(model, tokenizer, "Hello there", ["Heat"], "sum", prefix=prefix),
                               R.score_candidates(model, tokenizer, "Hello there", ["Heat"], "sum", method="naive"),
                               atol=1e-4)
    with pytest.raises(ValueError, match="two prompts"):
        R.PromptPrefix.from_prompts(model, tokenizer, prompts[:1])
    with pytest.raises(ValueError, match="only used"):
        R.score_candidates(model, tokenizer, prompts[0], ["Heat"], method="batched", prefix=prefix)


def test_expected_ratings_are_probabilities(llm):
    from course_utils.llm.prompting import rating_messages

    model, tokenizer = llm
    prompts = [render_chat(tokenizer, rating_messages(["Heat", "Fargo"], [5, 4], "Alien")),
               render_chat(tokenizer, rating_messages(["Heat"], [1], "Toy Story"))]
    probs, expected = R.expected_ratings(model, tokenizer, prompts)
    assert probs.shape == (2, 5)
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-6)
    np.testing.assert_allclose(expected, probs @ np.arange(1, 6))
    alone, _ = R.expected_ratings(model, tokenizer, prompts[1:])   # left padding must not change the answer
    np.testing.assert_allclose(alone[0], probs[1], atol=1e-4)


def test_candidate_sets(ml_split):
    users = np.array([3, 10, 500])
    cands, col = R.candidate_sets(ml_split, users, seed=1)
    assert cands.shape == (3, 20)
    target = np.asarray(ml_split.targets("test")[users].argmax(axis=1)).ravel()
    np.testing.assert_array_equal(cands[np.arange(3), col], target)
    seen = ml_split.history("test").matrix
    for row, user in enumerate(users):
        assert len(set(cands[row])) == 20
        negatives = np.delete(cands[row], col[row])
        assert not seen[user, negatives].toarray().any()
    again, col2 = R.candidate_sets(ml_split, users, seed=1)
    np.testing.assert_array_equal(again, cands)
    with pytest.raises(ValueError, match="distinct"):
        R.candidate_sets(ml_split, [3, 3])


def test_target_ranks_and_metrics_by_hand():
    scores = np.array([[0.1, 0.9, 0.5], [3.0, 1.0, 2.0]])
    np.testing.assert_array_equal(R.target_ranks(scores, [2, 0]), [2, 1])
    values = R.candidate_metrics([2, 1], n_candidates=3, ks=(1,))
    np.testing.assert_allclose(values["HR@1"], [0, 1])
    np.testing.assert_allclose(values["MRR"], [0.5, 1])
    assert R.chance_hit_rate(10, 20) == 0.5
    tied = R.target_ranks(np.zeros((2000, 20)), np.zeros(2000, int))
    assert abs(tied.mean() - 10.5) < 0.5                     # ties broken at random, not in the target's favour
    with pytest.raises(ValueError, match="exceeds"):
        R.candidate_metrics([21], n_candidates=20)


def test_position_orders():
    orders = R.position_orders(2, 5, [3, 0], n_shuffles=2, seed=0)
    assert orders.shape == (4, 2, 5)
    assert orders[0, 0, 0] == 3 and orders[1, 0, -1] == 3 and orders[0, 1, 0] == 0
    np.testing.assert_array_equal(orders[0, :, 1:], orders[1, :, :-1])   # the others keep their order
    assert all(sorted(o) == list(range(5)) for o in orders.reshape(-1, 5))


def test_compare_lower_is_better():
    a, b = np.full(50, 1.0) + np.linspace(0, 0.1, 50), np.full(50, 2.0)
    assert R.compare_lower_is_better(a, b, "A", "B", "error").case == "better"
    assert R.compare_lower_is_better(b, a, "B", "A", "error").case == "worse"


def test_write_timings_section_replaces_only_its_own_section(tmp_path):
    path = tmp_path / "timings.md"
    path.write_text("# Lesson timings\n\n| a | b |\n")
    R.write_timings_section("## Ranker\n\nfirst", path)
    R.write_timings_section("## Other\n\nkept", path, name="other")
    R.write_timings_section("## Ranker\n\nsecond", path)
    text = path.read_text()
    assert text.startswith("# Lesson timings\n\n| a | b |\n")
    assert "second" in text and "first" not in text and "kept" in text
    assert text.count("begin section: llm-ranker") == 1
    with pytest.raises(ValueError, match="plain text"):
        R.write_timings_section("x", path, name="a<b")


def test_timings_markdown():
    import pandas as pd

    table = pd.DataFrame({"candidates": [20, 20], "prompt tokens": [90, 100], "prefix tokens": [30, 30],
                          "naive s": [6.0, 5.0], "packed s": [1.0, 0.5], "packed max diff": [1e-5, 2e-5]})
    text = R.timings_markdown(table, "smollm2-135m", threads=1)
    assert "| 5.50 | 1.0× |" in text and "| 0.75 | 7.3× | 2.0e-05 |" in text and "shared prefix 30 tokens" in text
    assert "batched" not in text                                   # rankers not measured get no row
    with pytest.raises(ValueError, match="naive"):
        R.timings_markdown(table.drop(columns="naive s"), "smollm2-135m", threads=1)


def test_length_batch_size_by_hand():
    assert R.length_batch_size([2, 2, 2, 2, 20, 20]) == 4        # 4*2 + 2*20 + 2*12 = 72 < 6*20 + 12
    assert R.length_batch_size([5] * 20) == 20                     # equal lengths: one batch
    assert R.length_batch_size([1, 30], overhead=0) == 1           # free batches: no padding at all
    with pytest.raises(ValueError, match="at least one"):
        R.length_batch_size([])
    with pytest.raises(ValueError, match="overhead"):
        R.length_batch_size([3], overhead=-1)


def test_benchmark_bad_settings():
    with pytest.raises(ValueError, match="threads"):
        R.benchmark_ranker(None, None, ["p"], [["a"]], threads=0)
    with pytest.raises(ValueError, match="repeats"):
        R.benchmark_ranker(None, None, ["p"], [["a"]], repeats=0)
