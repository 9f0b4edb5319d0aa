import numpy as np
import pytest
import scipy.sparse as sp

from course_utils.data.splits import History
from course_utils.evaluation import evaluate
from course_utils.models.baselines import Popularity
from course_utils.models.sequence_baselines import MarkovChain, SessionKNN, _last_items, transition_evidence

N_ITEMS = 40


def toy_history(sequences, n_items=5):
    rows = np.repeat(np.arange(len(sequences)), [len(s) for s in sequences])
    cols = np.concatenate([np.asarray(s, np.int64) for s in sequences] + [np.zeros(0, np.int64)])
    matrix = sp.csr_matrix((np.ones(len(cols), np.float32), (rows, cols)), shape=(len(sequences), n_items))
    return History(matrix, [np.asarray(s, np.int64) for s in sequences])


def test_last_items_pads_on_the_left():
    history = toy_history([[0, 1, 2], [3], []])
    assert _last_items(history, np.array([0, 1, 2]), 2).tolist() == [[1, 2], [-1, 3], [-1, -1]]


def test_markov_chain_counts_transitions_by_hand():
    history = toy_history([[0, 1, 2], [0, 1, 3], [0, 2]])
    chain = MarkovChain(smoothing=1e-6).fit(history)
    counts = chain.transitions_.toarray()
    assert counts[0, 1] == 2 and counts[0, 2] == 1 and counts[1, 2] == 1 and counts[1, 3] == 1
    assert counts.sum() == 5
    scores = chain.score(np.array([0, 2]), history)   # last items 2 and 2: no successors -> popularity
    assert np.allclose(scores[0], chain.popularity_, atol=1e-5)
    p = chain.score(np.array([0]), toy_history([[4, 0]]))[0]
    assert np.isclose(p[1], 2 / 3, atol=1e-5) and np.isclose(p[2], 1 / 3, atol=1e-5)
    assert np.isclose(p.sum(), 1.0)                     # a proper distribution over the next item


def test_markov_chain_solves_the_planted_cycle_where_bag_of_items_models_cannot(cycle_split):
    chain = MarkovChain().fit(cycle_split)
    mc = evaluate(chain.score, cycle_split, "test")["NDCG@10"]
    assert mc > 0.95
    assert mc > evaluate(Popularity().fit(cycle_split.train_matrix()).score, cycle_split, "test")["NDCG@10"] + 0.5
    # the test item depends on the validation item: the history at test time is used
    evidence = transition_evidence(chain, cycle_split, "test")
    assert evidence["top successor"].mean() > 0.95
    assert (evidence["previous"].to_numpy() == cycle_split.valid.sort_values("user")["item"].to_numpy()).all()
    assert list(evidence.columns) == ["previous", "target", "count", "successors", "top successor", "seen transition"]


def test_session_knn_finds_sessions_that_continue_the_query(cycle_split):
    knn = SessionKNN(n_neighbors=20, session_len=4, query_len=3).fit(cycle_split)
    assert knn.sessions_.shape[1] == N_ITEMS
    assert np.all(knn.sessions_.getnnz(axis=1) <= 4)
    assert knn.sessions_.nnz == len(cycle_split.train)     # every training item sits in exactly one session
    ndcg = evaluate(knn.score, cycle_split, "test")["NDCG@10"]
    assert ndcg > 0.5
    assert ndcg > evaluate(Popularity().fit(cycle_split.train_matrix()).score, cycle_split, "test")["NDCG@10"] + 0.3


def test_session_knn_weights_recent_items_and_ignores_own_sessions():
    train = toy_history([[0, 1], [2, 3], [0, 4]])
    knn = SessionKNN(n_neighbors=1, session_len=2, query_len=2).fit(train)
    q = knn.query(np.array([0]), toy_history([[2, 0]]))
    assert np.allclose(q.toarray()[0], [1.0, 0, 0.5, 0, 0])   # most recent item weighs 1
    # user 0's query [2, 0]: the most similar other session is [2, 3] (weight .5) vs [0, 4] (weight 1)
    scores = knn.score(np.array([1]), toy_history([[], [2, 0], []]))[0]
    assert scores.argmax() in (0, 4) and scores[4] > scores[3]
    # a user's own sessions never vote: user 2 owns [0, 4]
    own = knn.score(np.array([2]), toy_history([[], [], [0]]))[0]
    assert own[4] < 1e-6 and own[1] > 0.1


def test_both_baselines_use_the_validation_item_at_test_time(ml_split):
    users = np.arange(50)
    for model in (MarkovChain().fit(ml_split), SessionKNN().fit(ml_split)):
        before = model.score(users, ml_split.history("valid"))
        after = model.score(users, ml_split.history("test"))
        assert before.shape == after.shape == (50, ml_split.n_items)
        assert np.abs(before - after).max(axis=1).min() > 0   # every user's scores moved


def test_on_movielens_the_markov_chain_beats_popularity(ml_split):
    pop = evaluate(Popularity().fit(ml_split.train_matrix()).score, ml_split, "valid")["NDCG@10"]
    assert evaluate(MarkovChain().fit(ml_split).score, ml_split, "valid")["NDCG@10"] > pop
    assert evaluate(SessionKNN().fit(ml_split).score, ml_split, "valid")["NDCG@10"] > pop


def test_errors_are_helpful():
    with pytest.raises(ValueError, match="smoothing"):
        MarkovChain(smoothing=0)
    with pytest.raises(ValueError, match="n_neighbors"):
        SessionKNN(n_neighbors=0)
    with pytest.raises(TypeError, match="Split"):
        MarkovChain().fit(np.zeros((3, 3)))
    with pytest.raises(RuntimeError, match="not fitted"):
        SessionKNN().score(np.array([0]), toy_history([[0]]))
    chain = MarkovChain().fit(toy_history([[0, 1]]))
    with pytest.raises(ValueError, match="items"):
        chain.score(np.array([0]), toy_history([[0]], n_items=7))
