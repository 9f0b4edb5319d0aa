import pandas as pd
import pytest

from course_utils.data.splits import (heldout_users_split, interaction_matrix, item_id_order_signal,
                                      leave_one_out_split, random_ratio_split, temporal_split, user_sequences)


def _share_test_id_above_previous(split):
    signal = item_id_order_signal(split)
    return signal["test id > previous id"], signal["valid id > previous id"]


def test_leave_one_out_keeps_one_valid_and_one_test_per_user(ml_split, movielens):
    assert len(ml_split.test) == len(ml_split.valid) == movielens.n_users
    assert len(ml_split.train) + 2 * movielens.n_users == len(movielens.ratings)
    # Test comes last in time, validation just before it.
    last_train_time = ml_split.train.groupby("user")["timestamp"].max()
    assert (ml_split.valid.set_index("user")["timestamp"] >= last_train_time).all()
    assert (ml_split.test.set_index("user")["timestamp"] >= ml_split.valid.set_index("user")["timestamp"]).all()


def test_tie_breaking_by_file_order_shows_no_item_id_signal(movielens):
    file_order = leave_one_out_split(movielens.ratings, tie_break="file")
    shuffled = leave_one_out_split(movielens.ratings, tie_break="shuffle", seed=3)
    leaky = leave_one_out_split(movielens.ratings, tie_break="item_id")
    for split in (file_order, shuffled):
        test_share, valid_share = _share_test_id_above_previous(split)
        assert 0.42 < test_share < 0.58 and 0.42 < valid_share < 0.58
    # The leak this protects against is real: id tie-breaking pushes the share far above one half.
    assert _share_test_id_above_previous(leaky)[0] > 0.62


def test_history_for_test_includes_validation(ml_split):
    valid_history, test_history = ml_split.history("valid"), ml_split.history("test")
    assert valid_history.matrix.nnz == len(ml_split.train)
    assert test_history.matrix.nnz == len(ml_split.train) + len(ml_split.valid)
    user = int(ml_split.valid.loc[0, "user"])
    assert test_history.sequences[user][-1] == ml_split.valid.loc[0, "item"]
    with pytest.raises(ValueError, match="stage"):
        ml_split.history("train")


def test_interaction_matrix_and_sequences(planted_ratings):
    X = interaction_matrix(planted_ratings, 60, 40)
    assert X.shape == (60, 40) and X.nnz == len(planted_ratings) and X.max() == 1
    seqs = user_sequences(planted_ratings, 60)
    assert len(seqs) == 60 and list(seqs[0]) == list(planted_ratings[planted_ratings.user == 0].item)
    with pytest.raises(ValueError, match="positive"):
        interaction_matrix(planted_ratings, 0, 40)


def test_temporal_split_is_ordered_in_time(movielens):
    split = temporal_split(movielens.ratings, 0.1, 0.1)
    assert split.train["timestamp"].max() <= split.valid["timestamp"].min()
    assert split.valid["timestamp"].max() <= split.test["timestamp"].min()
    assert set(split.test["user"]) <= set(split.train["user"]) | set(split.valid["user"])
    with pytest.raises(ValueError, match="< 1"):
        temporal_split(movielens.ratings, 0.5, 0.5)


def test_random_ratio_split_fractions(movielens):
    split = random_ratio_split(movielens.ratings, test_frac=0.2, seed=1)
    per_user = split.test.groupby("user").size() / movielens.ratings.groupby("user").size()
    assert per_user.between(0.1, 0.21).all()
    both = pd.concat([split.train, split.test])
    assert not both.duplicated(["user", "item"]).any()
    with pytest.raises(ValueError):
        random_ratio_split(movielens.ratings, test_frac=1.2)


def test_heldout_users_split(movielens):
    split = heldout_users_split(movielens.ratings, n_heldout_users=100, seed=0)
    held = set(split.valid_fold_in.user) | set(split.test_fold_in.user)
    assert len(held) == 200 and not held & set(split.train.user)
    share = split.test_fold_in.groupby("user").size() / movielens.ratings[
        movielens.ratings.user.isin(split.test_fold_in.user)].groupby("user").size()
    assert share.between(0.79, 0.86).all()
    with pytest.raises(ValueError, match="n_heldout_users"):
        heldout_users_split(movielens.ratings, n_heldout_users=500)
    # The same evaluator serves this protocol: fold-in is the history, held-out items are the targets.
    from course_utils.evaluation import evaluate
    from course_utils.models.baselines import EASE, Popularity

    X = split.train_matrix()
    assert X[list(held)].nnz == 0 and split.history("test").matrix.nnz == len(split.test_fold_in)
    ease = evaluate(EASE(300).fit(X).score, split, "test", ks=(20,))
    pop = evaluate(Popularity().fit(X).score, split, "test", ks=(20,))
    assert ease["Recall@20"] > pop["Recall@20"]


def test_splits_validate_input():
    with pytest.raises(ValueError, match="timestamp"):
        leave_one_out_split(pd.DataFrame({"user": [0, 0, 0], "item": [0, 1, 2]}))
    with pytest.raises(ValueError, match="missing column"):
        leave_one_out_split(pd.DataFrame({"user": [0], "timestamp": [1]}), n_users=1, n_items=1)
