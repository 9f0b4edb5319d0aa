import numpy as np
import pytest
import scipy.sparse as sp
import torch

from course_utils.data.splits import leave_one_out_split
from course_utils.evaluation import evaluate
from course_utils.models.baselines import Popularity
from course_utils.models.gans import (IRGAN, MFScorer, discriminator_loss, generator_reward, masked_softmax,
                                      reinforce_loss, sample_pseudo_positives)


@pytest.fixture
def planted_split(planted_ratings):
    return leave_one_out_split(planted_ratings, tie_break="shuffle", seed=0)


def small_irgan(**kwargs):
    settings = dict(dim=8, lr=0.05, g_lr=0.05, l2=1e-4, batch_size=64, n_epochs=25, n_samples=4, seed=0)
    return IRGAN(**{**settings, **kwargs})


def test_mf_scorer_shapes():
    net = MFScorer(5, 7, dim=3)
    users = torch.tensor([0, 4])
    assert net(users, torch.tensor([1, 6])).shape == (2,)
    assert net(users, torch.tensor([[1, 2, 3], [4, 5, 6]])).shape == (2, 3)
    assert net.all_items(users).shape == (2, 7)
    assert torch.allclose(net.all_items(users)[:, [1, 2, 3]], net(users, torch.tensor([[1, 2, 3]] * 2)))


def test_losses_and_reward():
    pos, neg = torch.tensor([3.0, 2.0]), torch.tensor([0.0, -1.0])
    assert float(discriminator_loss(pos, neg, "bpr")) < float(discriminator_loss(neg, pos, "bpr"))
    assert float(discriminator_loss(pos, neg, "logistic")) < float(discriminator_loss(neg, pos, "logistic"))
    # The reward grows with D's score: items D takes for real are worth more to G.
    assert torch.all(torch.diff(generator_reward(torch.tensor([-2.0, 0.0, 2.0]))) > 0)
    probs = masked_softmax(torch.zeros(2, 4), torch.tensor([[True, False, False, False]] * 2))
    assert torch.allclose(probs, torch.tensor([[0.0, 1 / 3, 1 / 3, 1 / 3]] * 2))


def test_reinforce_moves_probability_towards_rewarded_items():
    logits = torch.zeros(1, 4, requires_grad=True)
    samples = torch.tensor([[0, 1, 2, 3]])
    rewards = torch.tensor([[0.0, 0.0, 0.0, 5.0]])
    loss = reinforce_loss(torch.log_softmax(logits, 1).gather(1, samples), rewards)
    loss.backward()
    with torch.no_grad():
        new = torch.softmax(logits - 0.5 * logits.grad, 1)
    assert new[0, 3] > 0.25 > new[0, 0]
    # Equal rewards carry no signal once the baseline is subtracted.
    flat = torch.zeros(1, 4, requires_grad=True)
    reinforce_loss(torch.log_softmax(flat, 1).gather(1, samples), torch.full((1, 4), 3.0)).backward()
    assert torch.allclose(flat.grad, torch.zeros(1, 4))


def test_irgan_learns_planted_structure_and_its_generator_finds_plausible_items(planted_split):
    X = planted_split.train_matrix()
    model = small_irgan().fit(X)
    history = model.fit_result_.history
    assert history["loss"].iloc[-5:].mean() < history["loss"].iloc[0]
    scores = model.score(np.arange(60), planted_split.history("test"))
    assert scores.shape == (60, 40)
    pop = evaluate(Popularity().fit(X).score, planted_split, "test")["NDCG@10"]
    assert evaluate(model.score, planted_split, "test")["NDCG@10"] > pop
    # G should put most of its mass on unseen items of the user's own half (uniform would give 1/3).
    probs = masked_softmax(torch.as_tensor(model.generator_scores(np.arange(60))), model.seen_)
    own_half = torch.zeros(60, 40, dtype=torch.bool)
    own_half[0::2, :20], own_half[1::2, 20:] = True, True
    assert float((probs * own_half).sum(1).mean()) > 0.5
    extra = model.pseudo_positives(np.array([0, 3]), n_extra=5, seed=1)
    assert extra.shape == X.shape and list(extra.getnnz(axis=1)[:4]) == [5, 0, 0, 5]
    assert extra.multiply(X).nnz == 0
    stats = model.sampler_history_
    assert {"negative popularity", "sampler entropy", "negative rank under D (%)", "G reward"} <= set(stats.columns)
    assert stats["sampler entropy"].iloc[-1] < stats["sampler entropy"].iloc[0]


def test_uniform_control_uses_no_generator_and_runs_are_reproducible(planted_split):
    X = planted_split.train_matrix()
    control = small_irgan(negatives="uniform", n_epochs=5).fit(X)
    assert control.n_params_generator == 0
    assert control.n_params == (60 + 40) * 8 + 40   # user and item embeddings plus item biases
    assert np.allclose(control.sampler_history_["sampler entropy"], control.sampler_history_["sampler entropy"].iloc[0])
    again = small_irgan(negatives="uniform", n_epochs=5).fit(X)
    users = np.arange(60)
    assert np.allclose(control.score(users, planted_split.history("test")), again.score(users, planted_split.history("test")))
    first, second = small_irgan(n_epochs=3).fit(X), small_irgan(n_epochs=3).fit(X)
    assert np.allclose(first.score(users, planted_split.history("test")), second.score(users, planted_split.history("test")))


def test_sample_pseudo_positives_avoids_seen_items():
    rng = np.random.default_rng(0)
    exclude = sp.csr_matrix(rng.random((6, 30)) < 0.3, dtype=np.float32)
    extra = sample_pseudo_positives(rng.normal(size=(6, 30)), exclude, n_extra=4, seed=1)
    assert extra.shape == (6, 30) and (extra.getnnz(axis=1) == 4).all()
    assert extra.multiply(exclude).nnz == 0
    assert sample_pseudo_positives(np.zeros((6, 30)), exclude, n_extra=0).nnz == 0
    with pytest.raises(ValueError, match="n_extra"):
        sample_pseudo_positives(np.zeros((6, 30)), exclude, n_extra=-1)
    with pytest.raises(ValueError, match="same shape"):
        sample_pseudo_positives(np.zeros((5, 30)), exclude, n_extra=1)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="n_samples"):
        IRGAN(n_samples=1)
    with pytest.raises(ValueError, match="temperature"):
        IRGAN(temperature=0)
    with pytest.raises(ValueError, match="uniform_mix"):
        IRGAN(uniform_mix=1.5)
    with pytest.raises(ValueError, match="d_loss"):
        IRGAN(d_loss="hinge")
    with pytest.raises(ValueError, match="negatives"):
        IRGAN(negatives="popular")
    with pytest.raises(ValueError, match="dim"):
        IRGAN(dim=0)
    with pytest.raises(ValueError, match="d_loss"):
        discriminator_loss(torch.zeros(2), torch.zeros(2), "hinge")
    with pytest.raises(ValueError, match="S >= 2"):
        reinforce_loss(torch.zeros(3, 1), torch.zeros(3, 1))
    with pytest.raises(ValueError, match="no interactions"):
        IRGAN().fit(sp.csr_matrix((3, 3)))
    with pytest.raises(TypeError, match="sparse"):
        IRGAN().fit(np.ones((3, 3)))


def test_pretrained_players_start_from_the_given_scorer_and_the_generator_moves(planted_split):
    X = planted_split.train_matrix()
    start = small_irgan(negatives="uniform", n_epochs=10).fit(X)
    model = small_irgan(n_epochs=6, g_lr=0.05).fit(X, init_from=start)
    history = model.sampler_history_
    assert history["epoch"].iloc[0] == 0 and history["KL from start"].iloc[0] == 0.0
    # G starts as the pre-trained scorer's softmax: informative, well below the uniform entropy
    uniform_entropy = start.sampler_history_["sampler entropy"].iloc[0]
    assert history["sampler entropy"].iloc[0] < uniform_entropy - 0.05
    assert history["KL from start"].iloc[-1] > 0.01               # and adversarial training moves it
    assert (start.sampler_history_["KL from start"] == 0).all()   # the uniform sampler never moves
    # the pseudo-positive controls: uniform draws avoid seen items too
    extra = model.pseudo_positives(np.arange(4), 3, seed=0, source="uniform")
    assert list(extra.getnnz(axis=1)[:5]) == [3, 3, 3, 3, 0] and extra.multiply(X).nnz == 0
    with pytest.raises(ValueError, match="source"):
        model.pseudo_positives(np.arange(4), 3, source="popular")
    with pytest.raises(ValueError, match="dim"):
        small_irgan(dim=4).fit(X, init_from=start)
    with pytest.raises(TypeError, match="init_from"):
        small_irgan().fit(X, init_from="weights.pt")
