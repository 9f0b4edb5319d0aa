"""Beyond-accuracy metrics added for lesson 19 (survey Section 5.1.3): hand-computed cases."""
import numpy as np
import pytest

from course_utils import metrics


def _gini_pairs(x):
    x = np.asarray(x, float)
    return np.abs(x[:, None] - x[None, :]).sum() / (2 * x.size ** 2 * x.mean())


def test_gini_hand_computed():
    assert metrics.gini([1, 1, 1, 1]) == pytest.approx(0.0)
    assert metrics.gini([5]) == pytest.approx(0.0)
    assert metrics.gini([0, 0, 0, 1]) == pytest.approx(0.75)
    assert metrics.gini([1, 2, 3]) == pytest.approx(2 / 9)
    assert metrics.gini([3, 1, 2]) == pytest.approx(2 / 9)       # order does not matter
    assert metrics.gini(np.array([2, 4, 6])) == pytest.approx(2 / 9)  # scale does not matter


def test_gini_equals_mean_absolute_difference_form():
    rng = np.random.default_rng(0)
    x = rng.poisson(3.0, size=50).astype(float)
    assert metrics.gini(x) == pytest.approx(_gini_pairs(x))


def test_gini_approaches_one_when_concentrated():
    x = np.zeros(1000)
    x[0] = 7
    assert metrics.gini(x) == pytest.approx(0.999)


@pytest.mark.parametrize("bad, words", [
    ([], "empty"),
    ([1, -1, 2], "non-negative"),
    ([0, 0], "all-zero"),
    ([[1, 2], [3, 4]], "1-D"),
    ([1, np.nan], "finite"),
])
def test_gini_bad_input(bad, words):
    with pytest.raises(ValueError, match=words):
        metrics.gini(bad)


def test_exposure_counts_and_gini_hand_computed():
    lists = np.array([[0, 1], [1, 2]])
    assert metrics.exposure_counts(lists, 4).tolist() == [1, 2, 1, 0]
    assert metrics.exposure_gini(lists, 4) == pytest.approx(0.375)    # gini([0, 1, 1, 2]) = 6 / 16
    same_for_all = np.tile(np.arange(10), (50, 1))
    assert metrics.exposure_gini(same_for_all, 1000) == pytest.approx(0.99)  # 10 of 1000 items, equally often


def test_long_tail_share_hand_computed():
    counts = np.array([10, 5, 1, 0, 3])            # head (40% of 5 items) = items 0 and 1
    lists = np.array([[0, 2], [3, 4], [0, 1]])
    assert metrics.long_tail_share(lists, counts, head_share=0.4).tolist() == [0.5, 1.0, 0.0]
    with pytest.raises(ValueError, match="head_share"):
        metrics.long_tail_share(lists, counts, head_share=1.0)
    with pytest.raises(ValueError, match="item indices"):
        metrics.long_tail_share(np.array([[0, 7]]), counts)


def test_popularity_lift_hand_computed():
    counts = np.array([10, 5, 1, 0])
    lists = np.array([[0, 1], [0, 1]])                         # ARP 7.5 for both users
    profiles = np.array([[0, 0, 1, 1], [1, 1, 0, 0]])           # profile popularity 0.5 and 7.5
    assert metrics.popularity_lift(lists, profiles, counts) == pytest.approx([14.0, 0.0])
    import scipy.sparse as sp
    assert metrics.popularity_lift(lists, sp.csr_matrix(profiles), counts) == pytest.approx([14.0, 0.0])
    with pytest.raises(ValueError, match="users × items"):
        metrics.popularity_lift(lists, profiles[:1], counts)
    with pytest.raises(ValueError, match="empty profile"):
        metrics.popularity_lift(lists, np.array([[0, 0, 0, 0], [1, 0, 0, 0]]), counts)


def test_serendipity_hand_computed():
    relevant = np.zeros((2, 5), int)
    relevant[0, [1, 3]] = 1
    relevant[1, 4] = 1
    lists = np.array([[1, 3, 0], [2, 4, 1]])
    # user 0: hits 1 and 3, but popularity also shows 1 -> one serendipitous hit of 3
    assert metrics.serendipity(lists, relevant, np.array([[1, 0], [0, 1]])) == pytest.approx([1 / 3, 1 / 3])
    # user 1's hit (item 4) was expected too -> no serendipity
    assert metrics.serendipity(lists, relevant, np.array([[1, 0], [4, 1]])) == pytest.approx([1 / 3, 0.0])
    # a list identical to the primitive one is never serendipitous
    assert metrics.serendipity(lists, relevant, lists).tolist() == [0.0, 0.0]


def test_serendipity_bad_input():
    relevant = np.zeros((2, 5), int)
    with pytest.raises(ValueError, match="one row per user"):
        metrics.serendipity(np.array([[1, 2]]), relevant, np.array([[0, 1]]))
    with pytest.raises(ValueError, match="non-empty 2-D"):
        metrics.serendipity(np.zeros((0, 3), int), relevant, np.array([[0, 1]]))
    with pytest.raises(ValueError, match="users × items"):
        metrics.serendipity(np.array([[1, 2]]), np.zeros(5), np.array([[0, 1]]))


def test_existing_beyond_accuracy_metrics_hand_computed():
    lists = np.array([[0, 1], [0, 2]])
    assert metrics.catalog_coverage(lists, 4) == pytest.approx(0.75)
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    assert metrics.intra_list_diversity(lists, vectors) == pytest.approx([1.0, 0.0])
    assert metrics.novelty(lists, np.array([0.5, 0.25, 1.0, 0.1])) == pytest.approx([1.5, 0.5])
    with pytest.raises(ValueError, match="positive integer"):
        metrics.recall_at_k(np.array([[1.0]]), 0)
