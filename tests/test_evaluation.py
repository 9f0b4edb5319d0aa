import numpy as np
import pytest
import scipy.sparse as sp

from course_utils.data.splits import leave_one_out_split
from course_utils.evaluation import (evaluate, evaluate_sampled, ranks_of_targets, recommend_top_k,
                                     sample_negatives, top_k)


def test_ranks_mask_history_and_break_ties_by_fixed_order():
    scores = np.array([[5.0, 4.0, 3.0, 3.0, 1.0]])
    targets = sp.csr_matrix(np.array([[0, 0, 1, 0, 0]]))
    exclude = sp.csr_matrix(np.array([[1, 0, 0, 0, 0]]))  # the top item is already in the history
    # Item 2 ties with item 3; the tie order puts item 3 first, so item 2 is third after item 1 and item 3.
    ranks = ranks_of_targets(scores, targets, exclude, tie_order=np.array([4, 3, 2, 1, 0]))
    assert ranks.tolist() == [[3.0]]
    ranks = ranks_of_targets(scores, targets, exclude, tie_order=np.array([0, 1, 2, 3, 4]))
    assert ranks.tolist() == [[2.0]]
    with pytest.raises(ValueError, match="overlaps"):
        ranks_of_targets(scores, targets, targets, np.arange(5))


def test_oracle_and_adversary_bound_the_metrics(ml_split):
    test = ml_split.targets("test").toarray()
    oracle = evaluate(lambda users, history: test[users], ml_split, "test")
    assert oracle["NDCG@10"] == 1.0 and oracle["HR@10"] == 1.0 and oracle["AUC"] == 1.0
    worst = evaluate(lambda users, history: -test[users], ml_split, "test")
    assert worst["HR@20"] == 0.0 and worst["AUC"] == 0.0


def test_evaluate_validates_score_function(ml_split):
    with pytest.raises(ValueError, match="shape"):
        evaluate(lambda users, history: np.zeros((len(users), 3)), ml_split)
    with pytest.raises(ValueError, match="NaN"):
        evaluate(lambda users, history: np.full((len(users), ml_split.n_items), np.nan), ml_split)
    with pytest.raises(ValueError, match="k must"):
        evaluate(lambda users, history: np.zeros((len(users), ml_split.n_items)), ml_split, ks=(0,))


def test_empty_test_set_is_an_error(planted_ratings):
    split = leave_one_out_split(planted_ratings, min_interactions=100)  # nobody qualifies for a test item
    with pytest.raises(ValueError, match="empty"):
        evaluate(lambda users, history: np.zeros((len(users), split.n_items)), split)


def test_sampled_negatives_are_distinct_and_allowed():
    rng = np.random.default_rng(0)
    forbidden = sp.csr_matrix(np.eye(6, 10))
    negatives = sample_negatives(forbidden, 5, rng)
    assert negatives.shape == (6, 5)
    assert all(len(set(row)) == 5 and i not in row for i, row in enumerate(negatives))
    popular = sample_negatives(sp.csr_matrix((2000, 10)), 1, rng, weights=np.array([100.0] + [1.0] * 9))
    assert (popular == 0).mean() > 0.8
    with pytest.raises(ValueError, match="cannot draw"):
        sample_negatives(forbidden, 10, rng)


def test_sampled_metrics_are_inflated_relative_to_full(ml_split):
    counts = np.asarray(ml_split.train_matrix().sum(axis=0)).ravel()
    popularity = lambda users, history: np.tile(counts, (len(users), 1))
    full = evaluate(popularity, ml_split)
    sampled = evaluate_sampled(popularity, ml_split, n_negatives=100)
    assert sampled["HR@10"] > 3 * full["HR@10"]
    with pytest.raises(ValueError, match="sampler"):
        evaluate_sampled(popularity, ml_split, sampler="magic")


def test_top_k_lists_skip_history(ml_split):
    scores = np.tile(np.arange(ml_split.n_items, dtype=float), (3, 1))
    lists = top_k(scores, 4)
    assert lists.tolist()[0] == [ml_split.n_items - 1 - i for i in range(4)]
    counts = np.asarray(ml_split.train_matrix().sum(axis=0)).ravel()
    recs = recommend_top_k(lambda users, history: np.tile(counts, (len(users), 1)), ml_split, k=10)
    history = ml_split.history("test").matrix
    assert recs.shape == (ml_split.n_users, 10)
    assert history[np.arange(ml_split.n_users)[:, None], recs].nnz == 0
