"""Dense retrieval (lesson 07): fusion encoders, FAISS helpers, cold-start slices."""
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from course_utils.data.splits import History
from course_utils.evaluation import evaluate
from course_utils.llm.encoders import MeanFusionRetriever, recent_items_matrix


def toy_history(sequences, n_items):
    rows = np.repeat(np.arange(len(sequences)), [len(s) for s in sequences])
    cols = np.concatenate([np.asarray(s, np.int64) for s in sequences]) if rows.size else np.zeros(0, np.int64)
    matrix = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(sequences), n_items))
    return History(matrix, [np.asarray(s, np.int64) for s in sequences])


# Four items in the plane; item 3 is not unit length, the retriever normalises it.
EMB = np.array([[1, 0], [0, 1], [1, 1], [0, -3]], dtype=np.float32)


def test_mean_fusion_scores_match_a_hand_computation():
    history = toy_history([[0, 1, 2], [3], []], 4)
    model = MeanFusionRetriever(EMB, n_recent=2).fit(sp.csr_matrix((3, 4)))
    scores = model.score(np.array([0, 1, 2]), history)
    unit = EMB / np.linalg.norm(EMB, axis=1, keepdims=True)
    user0 = (unit[1] + unit[2]) / 2  # only the 2 most recent items: 1 and 2, not 0
    assert scores.shape == (3, 4)
    np.testing.assert_allclose(scores[0], unit @ user0, rtol=1e-6)
    np.testing.assert_allclose(scores[1], unit @ unit[3], rtol=1e-6)  # item 3 is [0, -1] after normalising
    np.testing.assert_allclose(scores[1], [0, -1, -np.sqrt(0.5), 1], rtol=1e-6)
    assert np.array_equal(scores[2], np.zeros(4))  # empty history: zero scores, documented


def test_recent_items_matrix_keeps_the_last_items_in_time_order():
    history = toy_history([[3, 0, 2, 1], [2]], 4)
    weights = recent_items_matrix(np.array([1, 0]), history, 4, n_recent=3).toarray()
    np.testing.assert_allclose(weights, [[0, 0, 1, 0], [1 / 3, 1 / 3, 1 / 3, 0]])
    summed = recent_items_matrix(np.array([0]), history, 4, n_recent=2, weighting="sum").toarray()
    np.testing.assert_allclose(summed, [[0, 1, 1, 0]])


def test_mean_fusion_equals_a_per_user_loop_on_movielens_sized_random_data():
    rng = np.random.default_rng(0)
    seqs = [rng.choice(50, size=rng.integers(0, 30), replace=False) for _ in range(40)]
    emb = rng.normal(size=(50, 8)).astype(np.float32)
    model = MeanFusionRetriever(emb, n_recent=5)
    users = rng.permutation(40)[:25]
    got = model.score(users, toy_history(seqs, 50))
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    for row, user in enumerate(users):
        recent = seqs[user][-5:]
        expected = unit @ unit[recent].mean(axis=0) if len(recent) else np.zeros(50)
        np.testing.assert_allclose(got[row], expected, rtol=1e-5, atol=1e-6)


def test_mean_fusion_runs_under_the_course_evaluator(cycle_split):
    # Embeddings that place item i next to item i+1 on a circle: the mean of recent items points
    # at the next one, so this content model must do far better than chance on the cycle data.
    angles = 2 * np.pi * np.arange(40) / 40
    emb = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    result = evaluate(MeanFusionRetriever(emb, n_recent=1).fit(cycle_split).score, cycle_split, "test")
    assert result["HR@10"] > 0.9


def test_mean_fusion_rejects_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        MeanFusionRetriever(np.ones(4))
    with pytest.raises(ValueError, match="NaN"):
        MeanFusionRetriever(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="all-zero"):
        MeanFusionRetriever(np.array([[0.0, 0.0], [1.0, 0.0]]))
    with pytest.raises(ValueError, match="n_recent"):
        MeanFusionRetriever(EMB, n_recent=0)
    model = MeanFusionRetriever(EMB)
    with pytest.raises(ValueError, match="5 items"):
        model.fit(sp.csr_matrix((2, 5)))
    with pytest.raises(ValueError, match="5 items"):
        model.score(np.array([0]), toy_history([[0]], 5))
    with pytest.raises(ValueError, match="user ids"):
        model.score(np.array([3]), toy_history([[0]], 4))
    with pytest.raises(TypeError, match="History"):
        model.score(np.array([0]), sp.csr_matrix((1, 4)))
    with pytest.raises(ValueError, match="outside"):
        model.score(np.array([0]), History(sp.csr_matrix((1, 4)), [np.array([7])]))


# ---------------------------------------------------------------- the learned fusion encoder
from course_utils.llm.encoders import (LearnedFusionRetriever, TextHistoryRetriever, ann_tradeoff,  # noqa: E402
                                       attribute_precision, brute_force_top_k, build_index, cold_start_mask,
                                       next_item_examples, recall_against_exact, recent_items_array,
                                       query_results_markdown, utility_at_k, with_test_users)


def test_recent_items_array_orders_slots_from_the_most_recent():
    history = toy_history([[3, 0, 2, 1], [2], []], 4)
    assert recent_items_array(np.array([0, 1, 2]), history, 3).tolist() == [[1, 2, 0], [2, -1, -1], [-1, -1, -1]]


def test_next_item_examples_match_a_loop():
    seqs = [np.array([5, 6, 7, 8]), np.array([1]), np.array([2, 3])]
    contexts, targets, start, target_at, flat = next_item_examples(seqs, n_recent=2)
    assert targets.tolist() == [6, 7, 8, 3]
    assert contexts.tolist() == [[5, -1], [6, 5], [7, 6], [2, -1]]
    # the prefix of each example is every earlier item of the same user, not only the window
    assert [flat[s:t].tolist() for s, t in zip(start, target_at)] == [[5], [5, 6], [5, 6, 7], [2]]


def test_learned_fusion_learns_the_cycle_and_masks_the_prefix(cycle_split):
    angles = 2 * np.pi * np.arange(40) / 40
    rng = np.random.default_rng(0)
    emb = np.concatenate([np.cos(angles)[:, None], np.sin(angles)[:, None], rng.normal(size=(40, 6))], axis=1)
    model = LearnedFusionRetriever(emb, n_recent=4, dim=16, n_epochs=6, lr=1e-2, batch_size=256, patience=5, seed=0)
    model.fit(cycle_split)
    curve = model.fit_result_.history
    assert model.n_params > 0 and curve["loss"].iloc[-1] < 0.6 * curve["loss"].iloc[0]
    assert model.fit_result_.best_score > curve["valid"].iloc[0]  # training improved validation NDCG@10
    result = evaluate(model.score, cycle_split, "test")
    assert result["NDCG@10"] > 0.6  # the next item is fully determined by the last one
    same = model.score(np.array([3]), cycle_split.history("test"))[0]
    assert np.allclose(model.score(np.array([1, 3, 7]), cycle_split.history("test"))[1], same, atol=1e-5)
    assert np.array_equal(model.score(np.array([0]), toy_history([[]], 40)), np.zeros((1, 40)))


def test_attention_and_mean_pooling_differ_only_in_the_weights():
    emb = np.random.default_rng(1).normal(size=(12, 5)).astype(np.float32)
    pooled = LearnedFusionRetriever(emb, n_recent=3, dim=4, pooling="mean", seed=0).build()
    history = toy_history([[1, 2, 3]], 12)
    net = pooled.net_
    import torch
    with torch.no_grad():
        items = net.item_vectors()
        c = items[[3, 2, 1]].mean(0, keepdim=True)
        q = torch.nn.functional.normalize(c + net.mix(c), dim=-1)
        expected = (net.log_scale.exp() * q @ items.T).numpy()
    np.testing.assert_allclose(pooled.score(np.array([0]), history), expected, rtol=1e-5, atol=1e-6)


def test_learned_fusion_rejects_bad_input(cycle_split):
    with pytest.raises(ValueError, match="pooling"):
        LearnedFusionRetriever(EMB, pooling="max")
    with pytest.raises(ValueError, match="dim"):
        LearnedFusionRetriever(EMB, dim=0)
    with pytest.raises(ValueError, match="4 items|40 items"):
        LearnedFusionRetriever(EMB).fit(cycle_split)
    with pytest.raises(TypeError, match="Split"):
        LearnedFusionRetriever(EMB).fit(sp.csr_matrix((2, 4)))
    with pytest.raises(RuntimeError, match="fit"):
        LearnedFusionRetriever(EMB).score(np.array([0]), toy_history([[0]], 4))


# ---------------------------------------------------------------- FAISS
def test_exact_faiss_equals_numpy_and_ivf_with_all_cells_is_exact():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(300, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = rng.normal(size=(20, 16)).astype(np.float32)
    scores, ids = brute_force_top_k(queries, vectors, 5)
    faiss_scores, faiss_ids = build_index(vectors, "flat").search(queries, 5)
    np.testing.assert_allclose(faiss_scores, scores, atol=1e-5)
    assert np.array_equal(faiss_ids, ids)  # random vectors: no ties
    ivf = build_index(vectors, "ivf", n_lists=8)
    ivf.nprobe = 8
    assert recall_against_exact(ivf.search(queries, 5)[1], ids) == 1.0
    table = ann_tradeoff(vectors, queries, k=5, ef_search=(4, 64), n_probe=(1, 8), n_lists=8, repeats=1)
    assert list(table["index"]) == ["flat (exact)", "HNSW", "HNSW", "IVF (8 lists)", "IVF (8 lists)"]
    assert table["recall@5"].iloc[-1] == 1.0 and table["recall@5"].between(0, 1).all()
    with pytest.raises(ValueError, match="kind"):
        build_index(vectors, "lsh")
    with pytest.raises(ValueError, match="k must"):
        brute_force_top_k(queries, vectors, 0)


def test_recall_against_exact_by_hand():
    assert recall_against_exact(np.array([[1, 2], [3, 4]]), np.array([[2, 1], [3, 9]])) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="same shape"):
        recall_against_exact(np.zeros((2, 2)), np.zeros((2, 3)))


# ---------------------------------------------------------------- text users, slices, shop helpers
class WordCountEncoder:
    def encode(self, texts, **kwargs):
        out = np.array([[t.count("a") + 1.0, t.count("b") + 1.0] for t in texts])
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_text_history_retriever_embeds_the_recent_titles(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    model = TextHistoryRetriever(WordCountEncoder(), "toy", ["a", "b", "ab", "bb"], EMB, n_recent=2)
    history = toy_history([[0, 1, 3], []], 4)
    assert model.queries(np.array([0, 1]), history) == ["b; bb", None]
    scores = model.score(np.array([0, 1]), history)
    query = np.array([1.0, 4.0]) / np.linalg.norm([1.0, 4.0])
    unit = EMB / np.linalg.norm(EMB, axis=1, keepdims=True)
    np.testing.assert_allclose(scores[0], unit @ query, rtol=1e-5)
    assert np.array_equal(scores[1], np.zeros(4))
    with pytest.raises(ValueError, match="titles"):
        TextHistoryRetriever(WordCountEncoder(), "toy", ["a"], EMB)


def test_cold_start_mask_and_user_subsample(cycle_split):
    mask, counts = cold_start_mask(cycle_split, 1000)
    assert mask.all() and len(counts) == cycle_split.test["user"].nunique()
    history_counts = np.asarray(cycle_split.history("test").matrix.sum(axis=0)).ravel()
    first = cycle_split.test.sort_values("user")["item"].iloc[0]
    assert counts[0] == history_counts[first]
    low = int(counts.min())
    assert np.array_equal(cold_start_mask(cycle_split, low)[0], counts <= low)
    with pytest.raises(ValueError, match="non-negative"):
        cold_start_mask(cycle_split, -1)
    sub = with_test_users(cycle_split, [3, 1, 3])
    assert sorted(sub.test["user"]) == [1, 3] and "2 test users" in sub.protocol
    assert len(evaluate(MeanFusionRetriever(np.eye(40) + 0.1).score, sub, "test", per_user=True)[1]["NDCG@10"]) == 2


def test_attribute_precision_utility_and_markdown():
    items = pd.DataFrame({"category": ["Coat", "Coat", "Bag"], "tone": ["dark", "light", "dark"]})
    assert attribute_precision([0, 1], items, category="Coat", tone="dark") == 0.5
    with pytest.raises(ValueError, match="no column"):
        attribute_precision([0], items, colour="red")
    with pytest.raises(ValueError, match="at least one"):
        attribute_precision([0], items)
    utility = np.array([[1.0, 5.0, 3.0]])
    assert utility_at_k(utility, np.array([[0.0, 1.0, 2.0]]), sp.csr_matrix([[0, 0, 1]]), k=1)[0] == 5.0
    text = query_results_markdown("q", [2, 0], [0.9, 0.1], ["x", "y", "a|b"])
    assert "| 1 | 0.900 | a/b |" in text and "*q*" in text
