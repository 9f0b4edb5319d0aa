"""Property-based tests: random valid input keeps its invariants, random invalid input gets a clear error.

Hand-written examples test the cases we thought of; hypothesis generates the
ones we did not (a user with one rating, ties everywhere, an item nobody rated)
and shrinks any failure to a minimal frame. Invalid input must raise ValueError
or TypeError with a message, never a KeyError, IndexError or a numpy error.
"""
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from course_utils import metrics
from course_utils.data.movielens import validate_ratings
from course_utils.data.splits import interaction_matrix, leave_one_out_split, random_ratio_split, temporal_split
from course_utils.evaluation import evaluate, parse_metric, ranks_of_targets, summarize_ranks, top_k

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def ratings_frames(draw, min_rows=1):
    """A valid ratings frame: distinct (user, item) pairs, integer ids, ratings 1-5, integer timestamps (ties likely)."""
    n_users = draw(st.integers(1, 8))
    n_items = draw(st.integers(3, 12))
    pairs = draw(st.sets(st.tuples(st.integers(0, n_users - 1), st.integers(0, n_items - 1)),
                         min_size=min_rows, max_size=n_users * n_items))
    pairs = sorted(pairs, key=lambda _: draw(st.integers(0, 3)))  # shuffle a little, keep it reproducible
    users, items = (np.array(column, dtype=np.int64) for column in zip(*pairs))
    timestamps = np.array(draw(st.lists(st.integers(0, 5), min_size=len(pairs), max_size=len(pairs))))
    ratings = np.array(draw(st.lists(st.integers(1, 5), min_size=len(pairs), max_size=len(pairs))), float)
    return pd.DataFrame({"user": users, "item": items, "rating": ratings, "timestamp": timestamps})


def _rows(frame):
    return sorted(map(tuple, frame[["user", "item"]].to_numpy().tolist()))


@SETTINGS
@given(ratings_frames())
def test_leave_one_out_partitions_the_frame_and_keeps_time_order(frame):
    split = leave_one_out_split(frame)
    parts = pd.concat([split.train, split.valid, split.test])
    assert _rows(parts) == _rows(frame)  # nothing lost, nothing invented
    for user, test_row in split.test.set_index("user").iterrows():
        earlier = pd.concat([split.train, split.valid])
        assert (earlier.loc[earlier["user"] == user, "timestamp"] <= test_row["timestamp"]).all()
    assert split.n_users > frame["user"].max() and split.n_items > frame["item"].max()


@SETTINGS
@given(ratings_frames(min_rows=3), st.integers(0, 2**16))
def test_evaluation_invariants_on_random_scores(frame, seed):
    """Every target is ranked among the items outside the history, and 0 <= NDCG@k <= HR@k <= 1."""
    split = leave_one_out_split(frame)
    if split.test.empty:
        with pytest.raises(ValueError, match="empty"):
            evaluate(lambda users, history: np.zeros((len(users), split.n_items)), split)
        return
    rng = np.random.default_rng(seed)
    # Integer scores: plenty of ties, which the tie order must break without leaving the candidates.
    table = rng.integers(0, 3, size=(split.n_users, split.n_items)).astype(float)
    mean, per_user = evaluate(lambda users, history: table[users], split, ks=(1, 5), per_user=True)
    for k in (1, 5):
        assert np.all((0 <= per_user[f"NDCG@{k}"]) & (per_user[f"NDCG@{k}"] <= per_user[f"HR@{k}"] + 1e-12))
        assert np.all(per_user[f"HR@{k}"] <= 1)
    assert 0 <= mean["AUC"] <= 1 and 0 < mean["MRR"] <= 1
    history, targets = split.history("test"), split.targets("test")
    users = np.flatnonzero(targets.getnnz(axis=1))
    ranks = ranks_of_targets(table[users], targets[users], history.matrix[users],
                             np.random.default_rng(0).permutation(split.n_items))
    n_candidates = split.n_items - history.matrix[users].getnnz(axis=1)
    finite = np.isfinite(ranks)
    assert np.all(ranks[finite] >= 1) and np.all(ranks.max(axis=1, where=finite, initial=0) <= n_candidates)


@SETTINGS
@given(ratings_frames(), st.floats(0.05, 0.6), st.integers(0, 100))
def test_random_and_temporal_splits_never_crash_and_partition(frame, frac, seed):
    random_split = random_ratio_split(frame, test_frac=frac, seed=seed)
    assert _rows(pd.concat([random_split.train, random_split.valid, random_split.test])) == _rows(frame)
    random_split.history("test")  # works with or without timestamps
    temporal = temporal_split(frame, valid_frac=frac / 2, test_frac=frac / 2)
    assert len(temporal.train) + len(temporal.valid) + len(temporal.test) <= len(frame)


@st.composite
def rank_matrices(draw):
    """Valid rank matrices: distinct whole positions per user within n_candidates, padded with inf."""
    n_users, width = draw(st.integers(1, 6)), draw(st.integers(1, 4))
    n_candidates = draw(st.integers(width + 1, 30))
    rows = []
    for _ in range(n_users):
        n_rel = draw(st.integers(1, width))
        positions = draw(st.sets(st.integers(1, n_candidates), min_size=n_rel, max_size=n_rel))
        rows.append(sorted(positions, key=lambda _: draw(st.integers(0, 3))) + [np.inf] * (width - n_rel))
    return np.array(rows, dtype=float), n_candidates


@SETTINGS
@given(rank_matrices(), st.integers(1, 40))
def test_metrics_stay_in_range(ranks_and_candidates, k):
    ranks, n_candidates = ranks_and_candidates
    ndcg, hr = metrics.ndcg_at_k(ranks, k), metrics.hit_rate_at_k(ranks, k)
    assert np.all((0 <= ndcg) & (ndcg <= hr + 1e-12) & (hr <= 1))
    for values in (metrics.recall_at_k(ranks, k), metrics.precision_at_k(ranks, k), metrics.map_at_k(ranks, k),
                   metrics.mrr(ranks), metrics.auc(ranks, n_candidates)):
        assert np.all((0 <= values) & (values <= 1 + 1e-12))
    summary = summarize_ranks(ranks, n_candidates, ks=(k,))
    assert set(summary) >= {f"NDCG@{k}", f"HR@{k}", "AUC", "MRR"}


@pytest.mark.parametrize("ranks, n_candidates, message", [
    ([[1.0, 1.0]], 10, "distinct positions"),           # NDCG 1.23 before
    ([[2.5]], 10, "whole positions"),
    ([[0.0]], 10, "1-based"),
    ([[np.nan]], 10, "1-based"),
    ([[12.0]], 10, "only 10 candidates"),                # AUC -4.44 before... well, below 0
])
def test_impossible_rank_matrices_are_refused(ranks, n_candidates, message):
    with pytest.raises(ValueError, match=message):
        metrics.auc(np.array(ranks), n_candidates)
    if "candidates" not in message:
        with pytest.raises(ValueError, match=message):
            metrics.ndcg_at_k(np.array(ranks), 10)


@SETTINGS
@given(st.integers(1, 6), st.integers(1, 12), st.integers(1, 14), st.integers(0, 2**16))
def test_top_k_never_returns_excluded_items_and_refuses_too_large_k(n_users, n_items, k, seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 3, size=(n_users, n_items)).astype(float)
    exclude = sp.csr_matrix(rng.random((n_users, n_items)) < 0.3)
    available = n_items - exclude.getnnz(axis=1)
    if k > available.min():
        with pytest.raises(ValueError, match="k="):
            top_k(scores, k, exclude)
        return
    lists = top_k(scores, k, exclude)
    assert lists.shape == (n_users, k)
    for row, chosen in enumerate(lists):
        assert len(set(chosen)) == k and not exclude[row, chosen].toarray().any()
        best_left = np.max(np.where(exclude[row].toarray()[0], -np.inf, scores[row]))
        assert scores[row, chosen[0]] == best_left


# --- invalid input: ValueError or TypeError with a message, never anything else ----------------------

def _damage(frame, how, draw):
    frame = frame.copy()
    if how == "drop-column":
        return frame.drop(columns=draw(st.sampled_from(["user", "item"])))
    if how == "empty":
        return frame.iloc[0:0]
    if how == "nan-timestamp":
        return frame.assign(timestamp=frame["timestamp"].astype(float).where(frame.index != frame.index[0]))
    if how == "nan-rating":
        return frame.assign(rating=frame["rating"].where(frame.index != frame.index[0]))
    if how == "negative-id":
        return frame.assign(user=frame["user"] - frame["user"].max() - 1)
    if how == "float-ids":
        return frame.assign(item=frame["item"] + 0.5)
    if how == "nullable-na":
        return frame.assign(user=pd.array([None, *frame["user"].iloc[1:]], dtype="Int64"))
    if how == "duplicate-pair":
        return pd.concat([frame, frame.iloc[:1]], ignore_index=True)
    if how == "string-ids":
        return frame.assign(user=frame["user"].astype(str))
    if how == "not-a-frame":
        return frame.to_numpy()
    raise AssertionError(how)


DAMAGES = ["drop-column", "empty", "nan-timestamp", "nan-rating", "negative-id", "float-ids", "nullable-na",
           "duplicate-pair", "string-ids", "not-a-frame"]


@SETTINGS
@given(ratings_frames(), st.sampled_from(DAMAGES), st.sampled_from(["loo", "temporal", "random", "matrix"]),
       st.data())
def test_invalid_frames_get_a_clear_error(frame, how, function, data):
    bad = _damage(frame, how, data.draw)
    call = {"loo": lambda: leave_one_out_split(bad), "temporal": lambda: temporal_split(bad),
            "random": lambda: random_ratio_split(bad),
            "matrix": lambda: interaction_matrix(bad, 20, 20, binary=False)}[function]
    if how == "empty" and function == "matrix":
        assert call().nnz == 0  # an empty frame is a valid, empty matrix
        return
    with pytest.raises((ValueError, TypeError)) as error:
        call()
    assert len(str(error.value)) > 20


def test_missing_timestamps_are_named_and_random_split_works_without_them(planted_ratings):
    untimed = planted_ratings.drop(columns="timestamp")
    with pytest.raises(ValueError, match="needs a 'timestamp' column"):
        leave_one_out_split(untimed)
    split = random_ratio_split(untimed, test_frac=0.25)
    scores = evaluate(lambda users, history: np.zeros((len(users), split.n_items)), split)  # failed here before
    assert 0 <= scores["NDCG@10"] <= scores["HR@10"] <= 1


def test_duplicate_ratings_are_not_summed(planted_ratings):
    twice = pd.concat([planted_ratings, planted_ratings.iloc[:1]], ignore_index=True)
    with pytest.raises(ValueError, match="drop_duplicates"):
        interaction_matrix(twice, 60, 40, binary=False)
    assert interaction_matrix(twice, 60, 40).max() == 1  # binary: the pair counts once


@pytest.mark.parametrize("metric", ["NDCG@ten", "Foo@10", "NDCG@0", "NDCG", "ndcg@10", 10])
def test_bad_metric_names_are_refused_at_once(metric):
    with pytest.raises((ValueError, TypeError), match="metric must"):
        parse_metric(metric)


def test_validate_ratings_accepts_clean_nullable_ids():
    frame = pd.DataFrame({"user": pd.array([0, 1, 1], dtype="Int64"), "item": pd.array([0, 0, 1], dtype="Int64"),
                          "timestamp": [1, 2, 3]})
    validate_ratings(frame)
    assert leave_one_out_split(frame).n_users == 2
