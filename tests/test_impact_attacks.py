"""Tests for course_utils.impact.attacks: fake profiles, target ranks, the attack loop and the detector."""
import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.metrics import roc_auc_score

from course_utils.data.splits import History
from course_utils.impact.attacks import (ATTACKS, AttackResult, Detection, detect_fake_profiles, detection_quality, ease_refit,
                                         inject_profiles, item_counts, pick_targets, profile_features,
                                         shilling_attack, target_ranks)
from course_utils.models.baselines import EASE, ItemKNN


def genuine_matrix(n_users=120, n_items=60, seed=0):
    """Users whose items follow a long-tailed popularity, like real catalogues; item 59 is rare."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    X = (rng.random((n_users, n_items)) < 0.5 * popularity / popularity.max()).astype(np.float32)
    X[:, -1] = 0.0
    X[:3, -1] = 1.0  # the target: three real users have it
    X[:, 0] = np.maximum(X[:, 0], rng.random(n_users) < 0.9)
    return sp.csr_matrix(X)


# ---------------------------------------------------------------- inject_profiles
@pytest.mark.parametrize("attack", ATTACKS)
def test_profiles_hold_the_target_and_exactly_the_fillers(attack):
    X = genuine_matrix()
    fakes = inject_profiles(X, 59, 7, attack, filler_size=12, n_selected=5, seed=1)
    assert fakes.shape == (7, 60) and sp.isspmatrix_csr(fakes)
    dense = fakes.toarray()
    assert set(np.unique(dense)) == {0.0, 1.0}
    assert (dense[:, 59] == 1).all()
    assert (dense.sum(axis=1) == 13).all()  # 12 fillers + the target, no repeats
    again = inject_profiles(X, 59, 7, attack, filler_size=12, n_selected=5, seed=1)
    assert (again != fakes).nnz == 0  # same seed, same profiles


def test_bandwagon_profiles_all_contain_the_most_popular_items():
    X = genuine_matrix()
    popular = np.argsort(-item_counts(X), kind="stable")[:4]
    fakes = inject_profiles(X, 59, 10, "bandwagon", filler_size=8, n_selected=4, seed=0).toarray()
    assert (fakes[:, popular] == 1).all()
    # the other four fillers are random: not every profile is the same
    assert len({tuple(row) for row in fakes}) > 1


def test_average_attack_draws_fillers_by_popularity_and_random_does_not():
    X = genuine_matrix(n_users=400)
    counts = item_counts(X)
    mean_count = {a: (inject_profiles(X, 59, 300, a, filler_size=10, seed=2).toarray()[:, :59] @ counts[:59]).mean()
                  / 10 for a in ("random", "average")}
    assert mean_count["random"] == pytest.approx(counts[:59].mean(), rel=0.1)
    assert mean_count["average"] > 1.5 * mean_count["random"]


def test_inject_profiles_rejects_bad_input():
    X = genuine_matrix()
    with pytest.raises(ValueError, match="attack must be one of"):
        inject_profiles(X, 59, 3, "segment")
    with pytest.raises(ValueError, match="target must lie"):
        inject_profiles(X, 60, 3)
    with pytest.raises(ValueError, match="filler_size 60 exceeds"):
        inject_profiles(X, 59, 3, filler_size=60)
    with pytest.raises(ValueError, match="n_selected"):
        inject_profiles(X, 59, 3, "bandwagon", filler_size=5, n_selected=6)
    with pytest.raises(ValueError, match="n_profiles"):
        inject_profiles(X, 59, 0)
    with pytest.raises(TypeError, match="scipy sparse"):
        inject_profiles(X.toarray(), 59, 3)


def test_pick_targets_returns_distinct_unpopular_items():
    X = genuine_matrix()
    counts = item_counts(X)
    targets = pick_targets(X, 3, min_count=1, max_count=10, seed=0)
    assert len(set(targets)) == 3 and all(1 <= counts[t] <= 10 for t in targets)
    with pytest.raises(ValueError, match="only"):
        pick_targets(X, 3, min_count=1000, max_count=2000)


# ---------------------------------------------------------------- target_ranks
def test_target_ranks_hand_computed_with_ties_and_history():
    scores = np.array([[3.0, 1.0, 2.0, 2.0],    # one item above the target (2), one tied: 1 + 1 + 0.5
                       [3.0, 1.0, 2.0, 2.0],    # item 0 already seen: only the tie is left
                       [0.0, 0.0, 0.0, 0.0],    # all equal: the middle of the 4 unseen items
                       [9.0, 1.0, 2.0, 2.0]])   # already has the target
    history = sp.csr_matrix(np.array([[0, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0]], np.float32))
    ranks = target_ranks(scores, history, 2)
    np.testing.assert_allclose(ranks[:3], [2.5, 1.5, 2.5])
    assert np.isnan(ranks[3])


def test_target_ranks_rejects_bad_input():
    history = sp.csr_matrix((2, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="users × items"):
        target_ranks(np.zeros((2, 4)), history, 0)
    with pytest.raises(ValueError, match="NaN"):
        target_ranks(np.array([[0.0, np.nan, 1.0], [0, 0, 0]]), history, 0)
    with pytest.raises(ValueError, match="target must lie"):
        target_ranks(np.zeros((2, 3)), history, 3)


# ---------------------------------------------------------------- shilling_attack
def test_bandwagon_attack_promotes_the_target_on_ease_and_itemknn():
    X = genuine_matrix()
    for make in (lambda: EASE(l2=10.0), lambda: ItemKNN(n_neighbors=20, shrink=1.0)):
        small = shilling_attack(make, X, 59, 3, "bandwagon", filler_size=6, n_selected=6, seed=0)
        large = shilling_attack(make, X, 59, 24, "bandwagon", filler_size=6, n_selected=6, seed=0)
        assert isinstance(large, AttackResult)
        assert len(large.ranks_before) == 117  # the three users who have the target are not counted
        np.testing.assert_allclose(small.ranks_before, large.ranks_before)
        assert large.mean_rank_shift > small.mean_rank_shift > 0
        assert large.hr_after > large.hr_before
        np.testing.assert_allclose(large.rank_shift, large.ranks_before - large.ranks_after)


def test_clean_scores_give_the_same_result_as_refitting():
    X = genuine_matrix()
    clean = EASE(l2=10.0).fit(X).score(np.arange(X.shape[0]), History(X, []))
    a = shilling_attack(lambda: EASE(l2=10.0), X, 59, 5, "average", filler_size=8, seed=3)
    b = shilling_attack(lambda: EASE(l2=10.0), X, 59, 5, "average", filler_size=8, seed=3, clean_scores=clean)
    np.testing.assert_allclose(a.ranks_before, b.ranks_before)
    np.testing.assert_allclose(a.ranks_after, b.ranks_after)
    assert a.model == "EASE" and a.as_row()["target rank shift"] == pytest.approx(a.mean_rank_shift)


def test_detector_on_movielens_removes_the_fakes_and_undoes_the_push(ml_split):
    X = ml_split.train_matrix()
    target = int(pick_targets(X, 1, seed=0)[0])
    result = shilling_attack(lambda: ItemKNN(n_neighbors=100, shrink=10.0), X, target, 9, "bandwagon",
                             filler_size=50, n_selected=10, seed=0,
                             detector=lambda M: detect_fake_profiles(M, contamination=0.05))
    assert result.mean_rank_shift > 100  # 1% bandwagon fakes lift the rare target by hundreds of places
    assert result.detection["recall"] > 0.9 and result.detection["AUC"] > 0.95
    defended_shift = float((result.ranks_before - result.ranks_defended).mean())
    assert abs(defended_shift) < 0.25 * result.mean_rank_shift
    assert "detection AUC" in result.as_row()
    with pytest.raises(ValueError, match="stage"):
        result.hit_rate("during")


def test_defended_ranks_need_a_detector():
    with pytest.raises(ValueError, match="without a detector"):
        shilling_attack(lambda: EASE(l2=10.0), genuine_matrix(), 59, 2, seed=0).hr_defended


def test_ease_refit_equals_a_full_ease_fit_after_adding_and_dropping_users():
    X = genuine_matrix()
    fakes = inject_profiles(X, 59, 8, "bandwagon", filler_size=6, n_selected=3, seed=0)
    drop = np.zeros(X.shape[0], bool)
    drop[[0, 5, 17]] = True
    refit = ease_refit(X, l2=10.0)
    for added, dropped in [(fakes, None), (fakes, drop), (fakes[:0], drop), (fakes[:0], None)]:
        rows = X if dropped is None else X[~drop]
        expected = EASE(l2=10.0).fit(sp.vstack([rows, added]).tocsr()).B_
        np.testing.assert_allclose(refit(added, dropped).B_, expected, atol=2e-5)
    with pytest.raises(ValueError, match="boolean mask"):
        refit(fakes, drop[:5])
    with pytest.raises(ValueError, match="items"):
        refit(sp.csr_matrix((1, 3), dtype=np.float32))


def test_attack_with_ease_refit_gives_the_same_ranks_as_refitting_from_scratch():
    X = genuine_matrix()
    detect = lambda M: detect_fake_profiles(M, contamination=0.1, n_neighbors=5)
    slow = shilling_attack(lambda: EASE(l2=10.0), X, 59, 9, "average", filler_size=8, seed=1, detector=detect)
    fast = shilling_attack(lambda: EASE(l2=10.0), X, 59, 9, "average", filler_size=8, seed=1, detector=detect,
                           refit=ease_refit(X, 10.0))
    np.testing.assert_allclose(fast.ranks_after, slow.ranks_after)
    np.testing.assert_allclose(fast.ranks_defended, slow.ranks_defended)


# ---------------------------------------------------------------- detection
def test_profile_features_hand_computed():
    X = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1]], np.float32))
    f = profile_features(X, n_neighbors=1)
    np.testing.assert_allclose(f["profile length"], [2, 2, 1])
    np.testing.assert_allclose(f["DegSim"], [1.0, 1.0, 0.0], atol=1e-6)  # rows 0 and 1 identical, row 2 alone
    np.testing.assert_allclose(f["mean log popularity"], [np.log(3), np.log(3), np.log(2)], rtol=1e-6)
    np.testing.assert_allclose(f["sd log popularity"], [0, 0, 0], atol=1e-6)
    with pytest.raises(ValueError, match="n_neighbors"):
        profile_features(X, n_neighbors=3)


def test_detection_quality_hand_computed_and_equals_sklearn_auc():
    scores = np.array([0.9, 0.8, 0.3, 0.2, 0.7])
    flagged = np.array([True, True, False, False, True])
    is_fake = np.array([True, False, True, False, False])
    q = detection_quality(scores, flagged, is_fake)
    assert q["precision"] == pytest.approx(1 / 3) and q["recall"] == pytest.approx(1 / 2)
    assert q["AUC"] == pytest.approx(roc_auc_score(is_fake, scores)) == pytest.approx(4 / 6)
    assert detection_quality(scores, np.zeros(5, bool), is_fake)["precision"] == 0.0
    with pytest.raises(ValueError, match="both fake and genuine"):
        detection_quality(scores, flagged, np.ones(5, bool))
    with pytest.raises(ValueError, match="one length"):
        detection_quality(scores[:4], flagged, is_fake)


def test_detect_fake_profiles_flags_the_share_asked_and_rejects_bad_contamination():
    X = genuine_matrix()
    found = detect_fake_profiles(X, contamination=0.1, n_neighbors=5)
    assert isinstance(found, Detection) and found.flagged.sum() == 12  # 10% of 120 profiles
    assert found.scores.shape == (120,) and list(found.features.columns)[-1] == "DegSim"
    # the flagged profiles are the ones with the highest anomaly scores
    assert found.scores[found.flagged].min() >= found.scores[~found.flagged].max()
    with pytest.raises(ValueError, match="contamination"):
        detect_fake_profiles(X, contamination=0.9)
