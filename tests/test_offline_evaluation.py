"""Lesson 19's evaluation helpers: hand-computed cases, agreement with the course evaluator, bad inputs."""
import numpy as np
import pandas as pd
import pytest

from course_utils import metrics
from course_utils import offline_evaluation as OE
from course_utils.data.splits import leave_one_out_split
from course_utils.evaluation import evaluate, evaluate_sampled, summarize_ranks


def _ratings(n_users=6, n_items=12, per_user=8, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        for t, i in enumerate(rng.choice(n_items, size=per_user, replace=False)):
            rows.append((u, int(i), 4.0, 1000 * u + t))
    return pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])


class ItemIdScore:
    """Scores every item by its id (a deterministic stand-in that ranks high ids first)."""

    def __init__(self, n_items, sign=1.0):
        self.n_items, self.sign = n_items, sign

    def score(self, users, history):
        return np.tile(self.sign * np.arange(self.n_items, dtype=float), (len(users), 1))


def test_per_user_temporal_split_takes_the_last_share_of_each_user():
    ratings = _ratings(per_user=10)
    split = OE.per_user_temporal_split(ratings, test_frac=0.2, valid_frac=0.1)
    assert split.protocol == "user-temporal[0.7/0.1/0.2]"
    assert split.test.groupby("user").size().tolist() == [2] * 6     # floor(10 * 0.2)
    assert split.valid.groupby("user").size().tolist() == [1] * 6    # floor(10 * 0.1)
    for u, frame in ratings.groupby("user"):
        ordered = frame.sort_values("timestamp")["item"].tolist()
        assert split.test[split.test.user == u]["item"].tolist() == ordered[-2:]
        assert split.valid[split.valid.user == u]["item"].tolist() == ordered[-3:-2]
    assert len(split.train) + len(split.valid) + len(split.test) == len(ratings)


def test_per_user_temporal_split_keeps_short_users_in_training_and_checks_arguments():
    ratings = _ratings(per_user=4)
    split = OE.per_user_temporal_split(ratings, min_interactions=5)
    assert len(split.test) == 0 and len(split.train) == len(ratings)
    for bad in [dict(test_frac=0.0), dict(test_frac=1.2), dict(test_frac=0.6, valid_frac=0.5), dict(min_interactions=2)]:
        with pytest.raises(ValueError):
            OE.per_user_temporal_split(ratings, **bad)


def test_target_ranks_match_the_course_evaluator():
    split = OE.per_user_temporal_split(_ratings(per_user=10, n_items=30, seed=1))
    model = ItemIdScore(split.n_items)
    ranks = OE.target_ranks(model.score, split, "test", seed=3)
    _, per_user = evaluate(model.score, split, "test", per_user=True, seed=3)
    n_candidates = split.n_items - split.history("test").matrix.getnnz(axis=1)
    mine = summarize_ranks(ranks, n_candidates[np.flatnonzero(split.targets("test").getnnz(axis=1))])
    for name in ["NDCG@10", "Recall@10", "MAP@10", "AUC"]:
        assert np.allclose(mine[name], per_user[name]), name


def test_target_ranks_hand_computed():
    # One user, items 0..4; history {4}; test {1, 3}; scores = item id, so the order is 3, 2, 1, 0.
    frame = pd.DataFrame({"user": [0] * 5, "item": [4, 0, 2, 3, 1], "timestamp": [1, 2, 3, 4, 5]})
    split = leave_one_out_split(frame)   # train {4, 0, 2}, valid {3}, test {1}
    ranks = OE.target_ranks(ItemIdScore(5).score, split, "test")
    assert ranks.tolist() == [[1.0]]     # only item 1 is left outside the history {4, 0, 2, 3}


def test_recall_normalisations_hand_computed():
    # user 0: 30 relevant, 8 in the top 20 (ranks 1..8); user 1: 2 relevant, one at rank 3
    ranks = np.full((2, 30), np.inf)
    ranks[0, :8] = np.arange(1, 9)
    ranks[0, 8:] = np.arange(21, 43)
    ranks[1, :2] = [3, 50]
    table = OE.recall_normalisations(ranks, 20)
    assert table["Recall@20 (/|rel|)"].tolist() == pytest.approx([8 / 30, 0.5])
    assert table["Recall@20 (/min(k,|rel|))"].tolist() == pytest.approx([8 / 20, 0.5])
    assert table["best possible Recall@20 (/|rel|)"].tolist() == pytest.approx([20 / 30, 1.0])
    with pytest.raises(ValueError, match="positive integer"):
        OE.recall_normalisations(ranks, 0)


def test_order_flips():
    a = pd.Series({"x": 0.3, "y": 0.2, "z": 0.1})
    b = pd.Series({"x": 0.1, "y": 0.2, "z": 0.05})
    assert OE.order_flips(a, b) == [("x", "y")]
    assert OE.order_flips(a, a) == []
    with pytest.raises(ValueError, match="same models"):
        OE.order_flips(a, b.iloc[::-1])
    with pytest.raises(ValueError, match="at least 2"):
        OE.order_flips(a.iloc[:1], b.iloc[:1])


def test_sampled_evaluation_returns_per_user_values_consistent_with_the_means():
    split = leave_one_out_split(_ratings(n_users=8, n_items=200, per_user=8))
    model = ItemIdScore(split.n_items)
    means, per_user = evaluate_sampled(model.score, split, "test", n_negatives=20, seed=5, per_user=True)
    assert means == evaluate_sampled(model.score, split, "test", n_negatives=20, seed=5)
    assert {k: float(v.mean()) for k, v in per_user.items()} == pytest.approx(means)
    assert len(per_user["HR@10"]) == 8


def _per_user():
    rng = np.random.default_rng(0)
    base = rng.random(400)
    return {"good": base + 0.3, "mid": base + 0.1 + rng.normal(0, 0.01, 400), "bad": base}


def test_pairwise_comparisons_cover_every_pair_once():
    table = OE.pairwise_comparisons(_per_user(), "NDCG@10")
    assert list(table.index) == [("good", "mid"), ("good", "bad"), ("mid", "bad")]
    assert (table["verdict"] == "better").all()
    assert table.loc[("good", "bad"), "A - B"] == pytest.approx(0.3)
    with pytest.raises(ValueError, match="at least 2 models"):
        OE.pairwise_comparisons({"only": np.ones(3)}, "NDCG@10")


def test_rank_reversals_and_their_sentences():
    full = _per_user()
    sampled = {"good": full["good"], "mid": full["mid"] + 0.5, "bad": full["bad"]}    # mid jumps above good
    table = OE.rank_reversals(full, sampled, "NDCG@10", "HR@10")
    assert table.loc[("good", "mid"), "reversed"] and table.loc[("good", "mid"), "significant reversal"]
    assert not table.loc[("good", "bad"), "reversed"]
    sentence = OE.reversal_claim(table, "NDCG@10", "HR@10")
    assert sentence.case == "significant reversal" and "**good** vs **mid**" in sentence.text
    kept = OE.rank_reversals(full, full, "NDCG@10", "HR@10")
    assert not kept["reversed"].any() and kept["shrink"].tolist() == pytest.approx([1.0, 1.0, 1.0])
    assert OE.reversal_claim(kept, "NDCG@10", "HR@10").case == "no reversal"
    with pytest.raises(ValueError, match="same models"):
        OE.rank_reversals(full, {"good": full["good"]}, "NDCG@10", "HR@10")


def test_reversal_of_means_only_is_not_called_significant():
    base = np.linspace(0, 1, 200)
    wiggle = np.tile([0.3, -0.3], 100)
    full = {"a": base + 0.1, "b": base}                                # a better for every user
    sampled = {"a": base, "b": base + 0.01 + wiggle}                   # b ahead by 0.01 in the mean, noisily
    table = OE.rank_reversals(full, sampled, "NDCG@10", "HR@10")
    row = table.iloc[0]
    assert row["reversed"] and not row["significant reversal"]
    assert (row["full verdict"], row["sampled verdict"]) == ("better", "level")
    sentence = OE.reversal_claim(table, "NDCG@10", "HR@10")
    assert sentence.case == "reversal" and "no reversal is significant" in sentence.text


def test_beyond_accuracy_table_hand_computed():
    profiles = np.array([[1, 1, 0, 0, 0], [1, 0, 1, 0, 0]])
    counts = profiles.sum(axis=0)                               # [2, 1, 1, 0, 0]
    relevant = np.array([[0, 0, 0, 1, 0], [0, 0, 0, 0, 1]])
    lists = {"popular": np.array([[2, 3], [1, 3]]), "niche": np.array([[3, 4], [3, 4]])}
    genres = np.eye(5)
    table, per_user = OE.beyond_accuracy(lists, relevant=relevant, profiles=profiles, item_counts=counts,
                                         item_vectors={"genres": genres}, expected_items=lists["popular"],
                                         head_share=0.4)
    assert table.loc["popular", "coverage"] == pytest.approx(3 / 5)
    assert table.loc["niche", "coverage"] == pytest.approx(2 / 5)
    assert table.loc["niche", "exposure Gini"] == pytest.approx(metrics.gini([0, 0, 0, 2, 2]))
    assert per_user["niche"]["serendipity"].tolist() == [0.0, 0.5]   # item 3 was expected for both; 4 was not
    assert per_user["popular"]["serendipity"].tolist() == [0.0, 0.0]
    assert table.loc["niche", "ILD (genres)"] == pytest.approx(1.0)
    assert per_user["popular"]["ARP"].tolist() == [0.5, 0.5]
    with pytest.raises(ValueError, match="no lists"):
        OE.beyond_accuracy({}, relevant=relevant, profiles=profiles, item_counts=counts,
                           item_vectors={"genres": genres}, expected_items=lists["popular"])


def test_explanation_cases_change_only_the_genre_in_the_wrong_one():
    items = pd.DataFrame({"title": ["Alien (1979)", "Toy Story (1995)", "Heat (1995)"],
                          "genres": [["Horror", "Sci-Fi"], ["Animation", "Comedy"], ["Action", "Crime"]]})
    cases = OE.explanation_cases(items, 3, seed=0)
    for _, row in cases.iterrows():
        assert row["wrong genre"] not in items.set_index("title").loc[row["title"], "genres"]
        ref, wrong = row["reference"].split(), row["fluent but wrong"].split()
        changed = [(a, b) for a, b in zip(ref, wrong) if a != b]
        assert len(ref) == len(wrong) and 2 <= len(changed) <= 3           # the genre twice, maybe its article
        assert {a for a, _ in changed} <= {row["genre"], "a", "an"}
        assert {b for _, b in changed} <= {row["wrong genre"], "a", "an"}
        assert row["genres"] == items.set_index("title").loc[row["title"], "genres"]
        assert row["genre"] not in row["correct paraphrase"] and row["title"] in row["correct paraphrase"]
    with pytest.raises(ValueError, match="only 3 movies"):
        OE.explanation_cases(items, 4)
    with pytest.raises(ValueError, match="positive integer"):
        OE.explanation_cases(items, 0)
    with pytest.raises(ValueError, match="columns"):
        OE.explanation_cases(items[["title"]], 1)


def test_sentence_bleu_scores():
    scores = OE.sentence_bleu_scores(["the cat sat on the mat", "a b"], ["the cat sat on the mat", "x y z w"])
    assert scores[0] == pytest.approx(100.0) and scores[1] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="pair one to one"):
        OE.sentence_bleu_scores(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="empty"):
        OE.sentence_bleu_scores([], [])


def test_benchmarks_and_dataset_statistics():
    table = OE.benchmark_markdown()
    assert table.count("\n") == len(OE.BENCHMARKS) + 1 and "MovieLens" in table and "MIND" in table
    frame = pd.DataFrame({"user": [0, 0, 1, 1, 2], "item": [0, 1, 0, 2, 0], "timestamp": [1, 1, 2, 3, 4]})
    stats = OE.dataset_statistics(frame, n_items=4, top_share=0.25)
    assert stats["density"] == pytest.approx(5 / 12)
    assert stats["Gini of item popularity"] == pytest.approx(metrics.gini([3, 1, 1, 0]))
    assert stats["top 25% items' share of interactions"] == pytest.approx(3 / 5)
    assert stats["consecutive ratings in the same second"] == pytest.approx(0.5)   # user 0: gap 0; user 1: gap 1
    with pytest.raises(ValueError, match="top_share"):
        OE.dataset_statistics(frame, top_share=1.0)


@pytest.mark.parametrize("fit, settings", [
    (OE.fit_sasrec, dict(max_len=4, dim=8, n_epochs=2, batch_size=4)),
    (OE.fit_multvae, dict(hidden_dims=(8,), latent_dim=4, n_epochs=2, batch_size=4)),
])
def test_cached_fits_train_once_then_load_the_same_weights(fit, settings, tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    split = leave_one_out_split(_ratings(n_users=10, n_items=15, per_user=8))
    first = fit(split, seed=3, **settings)
    second = fit(split, seed=3, **settings)
    assert (first.cache_source_, second.cache_source_) == ("trained", "cache")
    users = np.arange(split.n_users)
    assert np.allclose(first.score(users, split.history("test")), second.score(users, split.history("test")), atol=1e-6)
    assert second.fit_seconds_ == pytest.approx(first.fit_seconds_)
    assert fit(split, seed=4, **settings).cache_source_ == "trained"     # another seed is another model


# --- claims.adjust_p_values (added for lesson 19) -------------------------------------------------

def test_adjust_p_values_hand_computed():
    from course_utils.claims import adjust_p_values

    p = [0.01, 0.015, 0.03, 0.2]
    assert adjust_p_values(p, "bonferroni") == pytest.approx([0.04, 0.06, 0.12, 0.8])
    assert adjust_p_values(p, "holm") == pytest.approx([0.04, 0.045, 0.06, 0.2])
    # input order is kept: 0.02 is the smallest (x 3 = 0.06), then 0.03 (x 2 = 0.06), then 0.5 (x 1)
    assert adjust_p_values([0.03, 0.02, 0.5], "holm") == pytest.approx([0.06, 0.06, 0.5])
    assert adjust_p_values([0.5, 0.9], "bonferroni") == pytest.approx([1.0, 1.0])


@pytest.mark.parametrize("method", ["holm", "bonferroni"])
def test_adjust_p_values_equals_statsmodels(method):
    from statsmodels.stats.multitest import multipletests

    from course_utils.claims import adjust_p_values

    rng = np.random.default_rng(0)
    for size in [2, 5, 28]:
        p = np.concatenate([rng.random(size - 2) ** 3, [0.2, 0.2]])        # with a tie
        assert np.allclose(adjust_p_values(p, method), multipletests(p, method=method)[1])


def test_adjust_p_values_bad_input():
    from course_utils.claims import adjust_p_values

    with pytest.raises(ValueError, match="at least 2 p-values"):
        adjust_p_values([0.01])                      # a single comparison (two models) needs no correction
    with pytest.raises(ValueError, match="non-empty"):
        adjust_p_values([])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        adjust_p_values([0.2, 1.5])
    with pytest.raises(ValueError, match="method"):
        adjust_p_values([0.1, 0.2], "fdr")
    with pytest.raises(ValueError, match="NaN"):
        adjust_p_values([0.1, np.nan])
