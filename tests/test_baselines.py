import numpy as np
import pytest
import scipy.sparse as sp

from course_utils.data.splits import leave_one_out_split
from course_utils.evaluation import evaluate
from course_utils.models.baselines import BPRMF, EASE, ItemKNN, Popularity, bpr_loss, cosine_similarity_topk


@pytest.fixture
def planted_split(planted_ratings):
    return leave_one_out_split(planted_ratings, tie_break="shuffle", seed=0)


@pytest.mark.parametrize("make", [lambda: ItemKNN(n_neighbors=10), lambda: EASE(l2=10.0),
                                  lambda: BPRMF(dim=8, lr=0.05, n_epochs=30, batch_size=256)])
def test_models_recover_planted_groups_better_than_popularity(planted_split, make):
    X = planted_split.train_matrix()
    pop = evaluate(Popularity().fit(X).score, planted_split, "test")["NDCG@10"]
    model = make().fit(X)
    scores = model.score(np.arange(60), planted_split.history("test"))
    assert scores.shape == (60, planted_split.n_items)
    # Users in group 0 should score their own half higher than the other half.
    own = scores[::2, :20].mean() - scores[::2, 20:40].mean()
    assert own > 0
    assert evaluate(model.score, planted_split, "test")["NDCG@10"] > pop


def test_ease_and_itemknn_beat_popularity_on_movielens(ml_split):
    X = ml_split.train_matrix()
    pop = evaluate(Popularity().fit(X).score, ml_split, "valid")["NDCG@10"]
    assert evaluate(EASE(500).fit(X).score, ml_split, "valid")["NDCG@10"] > 1.5 * pop
    assert evaluate(ItemKNN().fit(X).score, ml_split, "valid")["NDCG@10"] > pop


def test_ease_closed_form_has_zero_diagonal_and_solves_the_system():
    X = sp.csr_matrix(np.random.default_rng(0).random((30, 8)) > 0.6, dtype=np.float32)
    model = EASE(l2=2.0).fit(X)
    B = model.B_.astype(np.float64)
    assert np.allclose(np.diag(B), 0)
    G = (X.T @ X).toarray() + 2.0 * np.eye(8)
    # Stationarity: off-diagonal entries of G(B - I) vanish (the diagonal carries the Lagrange multipliers).
    residual = G @ (B - np.eye(8))
    assert np.allclose(residual - np.diag(np.diag(residual)), 0, atol=1e-3)


def test_itemknn_keeps_n_neighbors():
    X = sp.csr_matrix(np.random.default_rng(1).random((50, 20)) > 0.5, dtype=np.float32)
    sim = cosine_similarity_topk(X, n_neighbors=3).toarray()
    assert (np.count_nonzero(sim, axis=0) <= 3).all() and np.allclose(np.diag(sim), 0)


def test_bpr_loss_decreases_and_prefers_positives(planted_split):
    model = BPRMF(dim=8, lr=0.05, n_epochs=15, batch_size=256).fit(planted_split.train_matrix())
    history = model.fit_result_.history
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]
    assert float(bpr_loss(__import__("torch").tensor([3.0]), __import__("torch").tensor([0.0]))) < 0.1


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="l2"):
        EASE(l2=0)
    with pytest.raises(ValueError, match="n_neighbors"):
        ItemKNN(n_neighbors=0)
    with pytest.raises(ValueError, match="dim"):
        BPRMF(dim=-1)
    with pytest.raises(ValueError, match="no interactions"):
        EASE().fit(sp.csr_matrix((3, 3)))
    with pytest.raises(TypeError, match="sparse"):
        Popularity().fit(np.ones((3, 3)))
