import numpy as np
import pytest
import scipy.sparse as sp
import torch

from course_utils.data.splits import leave_one_out_split, user_sequences
from course_utils.evaluation import evaluate, validation_metric
from course_utils.models import autoencoders
from course_utils.models.autoencoders import (AutoRec, ListCVAE, MultDAE, MultVAE, annealed_beta, gaussian_kl,
                                              gaussian_kl_between, multinomial_nll, simulate_slates)
from course_utils.models.baselines import Popularity

SMALL = dict(n_epochs=30, patience=30, batch_size=16, lr=1e-2, device="cpu")
MAKERS = {
    "U-AutoRec": lambda: AutoRec("user", hidden_dim=16, **SMALL),
    "I-AutoRec": lambda: AutoRec("item", hidden_dim=16, **SMALL),
    "Mult-DAE": lambda: MultDAE(hidden_dims=(32,), latent_dim=8, **SMALL),
    "masked-item DAE": lambda: MultDAE(hidden_dims=(32,), latent_dim=8, dropout=0.3, loss_on="masked", **SMALL),
    "Mult-VAE": lambda: MultVAE(hidden_dims=(32,), latent_dim=8, anneal_steps=50, **SMALL),
}


@pytest.fixture
def planted_split(planted_ratings):
    return leave_one_out_split(planted_ratings, tie_break="shuffle", seed=0)


@pytest.mark.parametrize("name", MAKERS)
def test_models_learn_the_planted_groups(planted_split, name):
    X = planted_split.train_matrix()
    model = MAKERS[name]().fit(X)
    scores = model.score(np.arange(60), planted_split.history("test"))
    assert scores.shape == (60, planted_split.n_items) and np.isfinite(scores).all()
    loss = model.fit_result_.history["loss"]
    assert loss.iloc[-5:].mean() < loss.iloc[:3].mean(), "training loss should go down"
    # Users of group 0 (even ids) like items 0-19: their own half should score higher.
    assert scores[::2, :20].mean() > scores[::2, 20:40].mean()
    assert scores[1::2, 20:40].mean() > scores[1::2, :20].mean()
    pop = evaluate(Popularity().fit(X).score, planted_split, "test")["NDCG@10"]
    assert evaluate(model.score, planted_split, "test")["NDCG@10"] > pop


def test_training_is_reproducible_and_early_stopping_keeps_the_best(planted_split):
    X = planted_split.train_matrix()
    validate = validation_metric(planted_split)
    first = MultVAE(hidden_dims=(16,), latent_dim=4, n_epochs=8, patience=3, seed=3).fit(X, validate)
    second = MultVAE(hidden_dims=(16,), latent_dim=4, n_epochs=8, patience=3, seed=3).fit(X, validate)
    history = planted_split.history("valid")
    assert np.allclose(first.score(np.arange(5), history), second.score(np.arange(5), history))
    assert np.isclose(validate(first), first.fit_result_.best_score)


def test_multinomial_and_kl_terms():
    x = torch.tensor([[1.0, 0.0, 1.0]])
    uniform = torch.zeros(1, 3)
    assert torch.isclose(multinomial_nll(uniform, x), torch.tensor(2 * np.log(3.0), dtype=torch.float32))
    confident = torch.tensor([[5.0, -5.0, 5.0]])
    assert multinomial_nll(confident, x) < multinomial_nll(uniform, x)
    zeros = torch.zeros(2, 4)
    assert float(gaussian_kl(zeros, zeros)) == 0.0
    assert float(gaussian_kl(torch.ones(2, 4), zeros)) == pytest.approx(2.0)   # 0.5 · Σ mu² = 0.5 · 4
    q = (torch.randn(3, 4), torch.randn(3, 4))
    assert torch.isclose(gaussian_kl_between(q, (zeros[:1].expand(3, 4), zeros[:1].expand(3, 4))),
                         gaussian_kl(*q))


def test_beta_annealing_rises_then_caps():
    assert annealed_beta(0, 100, 0.3) == 0.0
    assert annealed_beta(10, 100, 0.3) == pytest.approx(0.1)
    assert annealed_beta(10_000, 100, 0.3) == 0.3
    model = MultVAE(hidden_dims=(8,), latent_dim=4, anneal_steps=4, beta_cap=0.5, n_epochs=3, batch_size=64,
                    device="cpu").fit(sp.csr_matrix(np.eye(10, dtype=np.float32)))
    assert model.beta_history_ == [0.25, 0.5, 0.5]   # one update per epoch


def test_masked_loss_only_scores_the_hidden_items(monkeypatch):
    model = MultDAE(hidden_dims=(8,), latent_dim=4, dropout=0.5, loss_on="masked", device="cpu")
    model.net_ = model._build(1, 6)
    x = torch.tensor([[1.0, 1.0, 1.0, 0.0, 0.0, 0.0]])
    keep = torch.tensor([[1.0, 0.0, 1.0, 1.0, 1.0, 1.0]])          # item 1 is hidden from the encoder
    monkeypatch.setattr(autoencoders, "keep_mask", lambda x, dropout, training: keep)
    log_pi = torch.log_softmax(model.net_(x, keep), dim=1)
    assert torch.isclose(model._loss(x), -log_pi[0, 1])
    model.loss_on = "all"
    assert torch.isclose(model._loss(x), -log_pi[0, :3].sum())
    model.loss_on = "masked"
    monkeypatch.setattr(autoencoders, "keep_mask", lambda x, dropout, training: torch.ones_like(x))
    assert model._loss(x).item() == 0.0, "nothing masked: nothing to predict, and no NaN"


def test_item_autorec_refuses_a_history_of_other_users(planted_split):
    model = AutoRec("item", hidden_dim=4, n_epochs=1, device="cpu").fit(planted_split.train_matrix())
    other = planted_split.history("test")
    other = type(other)(other.matrix[:10], other.sequences[:10])
    with pytest.raises(ValueError, match="trained on 60 users"):
        model.score(np.arange(3), other)


def test_simulated_slates_mix_future_items_and_skips():
    rng = np.random.default_rng(0)
    sequences = [np.arange(20) + 20 * u for u in range(4)] + [np.arange(3)]
    users, context, slates, responses = simulate_slates(sequences, 100, 5, rng, skip_prob=0.4)
    assert list(users) == [0, 1, 2, 3]                       # user 4 is too short
    assert slates.shape == responses.shape == (4, 5) and context.shape == (4, 100)
    for row, user in enumerate(users):
        seen = set(np.flatnonzero(context[row].toarray()))
        assert seen and seen < set(sequences[user])          # the context is a prefix of the history
        clicked = slates[row][responses[row] == 1]
        assert set(clicked) <= set(sequences[user]) - seen   # clicked slots come after the cut
    assert 0 < responses.mean() < 1


def test_listcvae_generates_valid_slates(planted_split):
    X = planted_split.train_matrix()
    sequences = user_sequences(planted_split.train, planted_split.n_users)
    model = ListCVAE(slate_size=4, embed_dim=8, hidden_dim=32, latent_dim=4, skip_prob=0.3, n_epochs=100, patience=100,
                     lr=1e-2, batch_size=16, device="cpu").fit(X, sequences)
    history = planted_split.history("test")
    slates = model.generate(np.arange(60), history)
    assert slates.shape == (60, 4)
    assert all(len(set(s)) == 4 for s in slates), "a slate never repeats an item"
    assert not history.matrix.toarray()[np.arange(60)[:, None], slates].any(), "never recommend a seen item"
    own_half = np.where(np.arange(60)[:, None] % 2 == 0, slates < 20, (slates >= 20) & (slates < 40))
    assert own_half.mean() > 0.8, "slates should come from the user's own group of items"
    assert not np.array_equal(model.generate(np.arange(60), history, seed=1),
                              model.generate(np.arange(60), history, seed=2)), "sampling z should vary slates"
    assert model.score(np.arange(60), history).shape == (60, planted_split.n_items)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="kind must be"):
        AutoRec(kind="both")
    with pytest.raises(ValueError, match="dropout"):
        MultDAE(dropout=-0.1)
    with pytest.raises(ValueError, match="loss_on"):
        MultDAE(loss_on="some")
    with pytest.raises(ValueError, match="needs dropout > 0"):
        MultDAE(dropout=0.0, loss_on="masked")
    with pytest.raises(ValueError, match="beta_cap"):
        MultVAE(beta_cap=-1)
    with pytest.raises(ValueError, match="latent_dim"):
        MultVAE(latent_dim=0)
    with pytest.raises(ValueError, match="lr"):
        MultVAE(lr=0)
    with pytest.raises(ValueError, match="at least 2 items"):
        ListCVAE(slate_size=1)
    with pytest.raises(ValueError, match="no interactions"):
        MultVAE().fit(sp.csr_matrix((3, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="one sequence per user"):
        ListCVAE().fit(sp.csr_matrix(np.eye(3, dtype=np.float32)), [np.arange(2)])
    with pytest.raises(ValueError, match="metric must be NAME@k"):
        validation_metric(None, "NDCG")
