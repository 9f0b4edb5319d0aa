"""Dense retrieval (lesson 07): fusion encoders, FAISS helpers, cold-start slices."""
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from course_utils.data.splits import History, leave_one_out_split
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
