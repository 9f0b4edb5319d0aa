import numpy as np
import pytest
import scipy.sparse as sp

from course_utils.data.splits import leave_one_out_split
from course_utils.evaluation import evaluate, top_k
from course_utils.metrics import intra_list_diversity
from course_utils.models.baselines import EASE
from course_utils.models.reranking import (MMRReranker, dominance_claim, list_to_scores, mmr_rerank,
                                           pareto_dominated)

# Items 0-2 share genre A, items 3-5 genre B, item 6 genre C.
FEATURES = np.array([[1, 0, 0]] * 3 + [[0, 1, 0]] * 3 + [[0, 0, 1]], dtype=np.float32)


def mmr_by_hand(scores, features, k, lam):
    """The textbook loop, one user at a time, over all items (no candidate cut)."""
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    rel = (scores - scores.min()) / (scores.max() - scores.min())
    chosen = []
    for _ in range(k):
        best, best_value = None, -np.inf
        for i in np.argsort(-scores, kind="stable"):
            if i in chosen:
                continue
            redundancy = max((unit[i] @ unit[j] for j in chosen), default=0.0)
            value = lam * rel[i] - (1 - lam) * redundancy
            if value > best_value + 1e-12:
                best, best_value = i, value
        chosen.append(best)
    return np.array(chosen)


def test_lambda_one_is_plain_top_k():
    scores = np.random.default_rng(0).normal(size=(5, 7))
    assert np.array_equal(mmr_rerank(scores, FEATURES, k=4, lam=1.0, n_candidates=7), top_k(scores, 4))


def test_small_lambda_spreads_the_list_over_genres():
    scores = np.array([[7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0]])
    assert np.array_equal(mmr_rerank(scores, FEATURES, k=3, lam=1.0, n_candidates=7), [[0, 1, 2]])
    assert np.array_equal(mmr_rerank(scores, FEATURES, k=3, lam=0.3, n_candidates=7), [[0, 3, 6]])


def test_matches_the_loop_by_hand_for_every_user():
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(6, 7))
    features = rng.random((7, 4)).astype(np.float32)
    for lam in (0.0, 0.4, 0.7, 1.0):
        fast = mmr_rerank(scores, features, k=5, lam=lam, n_candidates=7)
        for user in range(6):
            assert np.array_equal(fast[user], mmr_by_hand(scores[user], features, 5, lam)), (lam, user)


def test_excluded_items_and_candidate_cut():
    scores = np.array([[7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0]])
    exclude = sp.csr_matrix(np.array([[1, 0, 0, 1, 0, 0, 0]]))
    lists = mmr_rerank(scores, FEATURES, k=3, lam=0.3, exclude=exclude, n_candidates=7)
    assert not np.isin(lists, [0, 3]).any()
    assert set(mmr_rerank(scores, FEATURES, k=3, lam=0.0, n_candidates=3)[0]) == {0, 1, 2}, \
        "only the n_candidates best items may enter the list"
    with pytest.raises(ValueError, match="fewer than k"):
        mmr_rerank(scores, FEATURES, k=6, lam=0.5, exclude=exclude, n_candidates=7)


def test_bad_arguments_raise():
    scores = np.zeros((2, 7))
    with pytest.raises(ValueError, match="lam"):
        mmr_rerank(scores, FEATURES, k=3, lam=1.5)
    with pytest.raises(ValueError, match="n_candidates"):
        mmr_rerank(scores, FEATURES, k=3, lam=0.5, n_candidates=20)
    with pytest.raises(ValueError, match="item_vectors"):
        mmr_rerank(scores, FEATURES[:5], k=3, lam=0.5, n_candidates=5)
    with pytest.raises(TypeError, match="score"):
        MMRReranker(object(), FEATURES)


def test_reranker_trades_accuracy_for_diversity_on_real_lists(planted_ratings):
    split = leave_one_out_split(planted_ratings, tie_break="shuffle", seed=0)
    features = np.eye(4, dtype=np.float32)[(np.arange(split.n_items) // 5) % 4]
    ease = EASE(l2=10.0).fit(split.train_matrix())
    history = split.history("test")
    users = np.arange(split.n_users)
    greedy = MMRReranker(ease, features, k=5, lam=1.0, n_candidates=20, batch_size=7)
    diverse = MMRReranker(ease, features, k=5, lam=0.2, n_candidates=20, batch_size=7)
    assert np.array_equal(greedy.recommend(users, history),
                          top_k(ease.score(users, history), 5, history.matrix[users]))
    assert intra_list_diversity(diverse.recommend(users, history), features).mean() > \
        intra_list_diversity(greedy.recommend(users, history), features).mean()
    scores = diverse.score(users, history)
    assert np.array_equal(top_k(scores, 5, history.matrix[users]), diverse.recommend(users, history)), \
        "score() must rank the MMR list first, in order"
    assert evaluate(diverse.score, split, "test")["NDCG@10"] > 0


def test_list_to_scores_and_pareto():
    scores = list_to_scores(np.array([[3, 0]]), np.array([[0.0, 5.0, 9.0, 1.0]]))
    assert list(np.argsort(-scores[0])) == [3, 0, 2, 1]
    a = np.array([[0.8, 0.05], [0.9, 0.04]])
    b = np.array([[0.7, 0.05], [0.95, 0.03]])
    assert list(pareto_dominated(b, a)) == [True, False]
    assert list(pareto_dominated(a, b)) == [False, False]
    assert dominance_claim(a, b, "GFN", "MMR").case == "a dominates"
    assert dominance_claim(b, a, "MMR", "GFN").case == "b dominates"
    assert dominance_claim(a, b[1:], "GFN", "MMR").case == "neither"
    assert "Neither" in dominance_claim(a, b[1:], "GFN", "MMR").text
