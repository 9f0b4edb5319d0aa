import numpy as np
import pytest
import pytrec_eval
from sklearn.metrics import roc_auc_score

from course_utils import metrics as M

INF = np.inf


def test_hand_computed_single_user():
    ranks = np.array([[2.0, 5.0, INF]])  # two relevant items, found at positions 2 and 5
    assert M.hit_rate_at_k(ranks, 1)[0] == 0 and M.hit_rate_at_k(ranks, 2)[0] == 1
    assert M.precision_at_k(ranks, 5)[0] == pytest.approx(2 / 5)
    assert M.recall_at_k(ranks, 2)[0] == pytest.approx(1 / 2)
    assert M.recall_at_k_capped(ranks, 1)[0] == 0
    assert M.recall_at_k_capped(np.array([[1.0, 2.0, 3.0]]), 2)[0] == 1.0  # min(k, |test|) = 2
    assert M.recall_at_k(np.array([[1.0, 2.0, 3.0]]), 2)[0] == pytest.approx(2 / 3)
    ideal = 1 + 1 / np.log2(3)
    assert M.ndcg_at_k(ranks, 5)[0] == pytest.approx((1 / np.log2(3) + 1 / np.log2(6)) / ideal)
    assert M.map_at_k(ranks, 5)[0] == pytest.approx((1 / 2 + 2 / 5) / 2)
    assert M.mrr(ranks)[0] == 0.5
    # 10 candidates, 2 relevant: 8 negatives; 1 negative above the first hit, 3 above the second.
    assert M.auc(ranks, 10)[0] == pytest.approx(1 - (1 + 3) / 16)


def test_ndcg_single_target_formula():
    assert M.ndcg_at_k(np.array([[3.0]]), 10)[0] == pytest.approx(0.5)
    assert M.ndcg_at_k(np.array([[11.0]]), 10)[0] == 0.0


def _ranks_from_run(scores, relevant):
    order = np.argsort(-scores)
    position = np.empty_like(order)
    position[order] = np.arange(1, len(scores) + 1)
    return position[relevant].astype(float)


def test_agrees_with_pytrec_eval_on_random_rankings():
    rng = np.random.default_rng(0)
    n_users, n_items, k = 40, 60, 10
    qrels, run, rows, aucs = {}, {}, [], []
    width = 8
    for u in range(n_users):
        scores = rng.permutation(n_items).astype(float)  # distinct scores: no ties
        relevant = rng.choice(n_items, size=rng.integers(1, width + 1), replace=False)
        qrels[f"u{u}"] = {f"i{i}": 1 for i in relevant}
        run[f"u{u}"] = {f"i{i}": float(s) for i, s in enumerate(scores)}
        ranks = _ranks_from_run(scores, relevant)
        rows.append(np.pad(ranks, (0, width - len(ranks)), constant_values=INF))
        labels = np.zeros(n_items)
        labels[relevant] = 1
        aucs.append(roc_auc_score(labels, scores))
    ranks = np.vstack(rows)
    measures = {f"ndcg_cut_{k}", f"P_{k}", f"recall_{k}", f"map_cut_{k}", "recip_rank"}
    ref = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    ref_col = lambda name: np.array([ref[f"u{u}"][name] for u in range(n_users)])
    np.testing.assert_allclose(M.ndcg_at_k(ranks, k), ref_col(f"ndcg_cut_{k}"), atol=1e-6)
    np.testing.assert_allclose(M.precision_at_k(ranks, k), ref_col(f"P_{k}"), atol=1e-6)
    np.testing.assert_allclose(M.recall_at_k(ranks, k), ref_col(f"recall_{k}"), atol=1e-6)
    np.testing.assert_allclose(M.map_at_k(ranks, k), ref_col(f"map_cut_{k}"), atol=1e-6)
    np.testing.assert_allclose(M.mrr(ranks), ref_col("recip_rank"), atol=1e-6)
    np.testing.assert_allclose(M.auc(ranks, n_items), aucs, atol=1e-9)


@pytest.mark.parametrize("k", [0, -3, 2.5, True])
def test_bad_k_is_rejected(k):
    with pytest.raises(ValueError, match="k must be a positive integer"):
        M.ndcg_at_k(np.array([[1.0]]), k)


def test_bad_ranks_are_rejected():
    with pytest.raises(ValueError, match="2-D"):
        M.mrr(np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="empty"):
        M.mrr(np.zeros((0, 1)))
    with pytest.raises(ValueError, match="no relevant"):
        M.mrr(np.array([[INF]]))
    with pytest.raises(ValueError, match="1-based"):
        M.mrr(np.array([[0.0]]))


def test_rating_metrics():
    assert M.rmse([1, 2, 3], [1, 2, 5]) == pytest.approx(np.sqrt(4 / 3))
    assert M.mae([1, 2, 3], [2, 2, 2]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="same shape"):
        M.rmse([1, 2], [1])
    with pytest.raises(ValueError, match="empty"):
        M.mae([], [])


def test_beyond_accuracy_metrics():
    lists = np.array([[0, 1], [0, 2]])
    assert M.catalog_coverage(lists, n_items=4) == 0.75
    vectors = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    np.testing.assert_allclose(M.intra_list_diversity(lists, vectors), [0.0, 1.0])
    np.testing.assert_allclose(M.novelty(lists, [0.5, 0.25, 0.125, 1.0]), [1.5, 2.0])
    np.testing.assert_allclose(M.average_recommended_popularity(lists, [10, 2, 4, 0]), [6, 7])
    with pytest.raises(ValueError, match="lie in"):
        M.catalog_coverage(np.array([[0, 9]]), n_items=4)
    with pytest.raises(ValueError, match="at least 2"):
        M.intra_list_diversity(np.array([[0]]), vectors)


def test_normalised_utility_scales_random_to_zero_and_best_to_one():
    from course_utils.metrics import normalised_utility

    utility = np.array([[3.0, 1.0, 2.0, 0.0]])
    assert normalised_utility(utility, [[0, 2]])[0] == pytest.approx(1.0)           # the best two
    # mean 1.5, best 2.5, shown (1 + 0) / 2 = 0.5: (0.5 - 1.5) / (2.5 - 1.5) = -1
    assert normalised_utility(utility, [[1, 3]])[0] == pytest.approx(-1.0)
    allowed = np.array([[False, True, True, True]])                                   # item 0 is out
    # mean 1, best two of {1, 2, 0} = 1.5, shown item 2 and 1: 1.5 -> 1
    assert normalised_utility(utility, [[2, 1]], allowed)[0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="not allowed"):
        normalised_utility(utility, [[0, 1]], allowed)
    with pytest.raises(ValueError, match="at least k"):
        normalised_utility(utility, [[1, 2, 3, 0]], allowed)
    with pytest.raises(ValueError, match="same users"):
        normalised_utility(utility, [1, 2])
