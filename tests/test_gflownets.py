import numpy as np
import pytest
import torch

from course_utils import metrics
from course_utils.data.splits import leave_one_out_split
from course_utils.evaluation import evaluate
from course_utils.models.baselines import EASE, Popularity
from course_utils.models.gflownets import (GFN4Rec, intra_list_diversity, inverse_cdf_sample, list_log_reward,
                                           list_to_scores, standardized_scores, trajectory_balance_loss)

# Four "genres" in blocks of five items, so each half of the planted catalogue holds all four.
PLANTED_FEATURES = np.eye(4, dtype=np.float32)[(np.arange(40) // 5) % 4]


@pytest.fixture
def planted_split(planted_ratings):
    return leave_one_out_split(planted_ratings, tie_break="shuffle", seed=0)


@pytest.fixture
def planted_base(planted_split):
    return EASE(l2=10.0).fit(planted_split.train_matrix())


def fit_gfn(split, base, **kwargs):
    settings = dict(k=4, beta=6.0, hidden=16, lr=0.02, batch_size=20, n_epochs=30, seed=0)
    model = GFN4Rec(base, PLANTED_FEATURES, **{**settings, **kwargs})
    return model.fit(split.train_matrix(), split.history("valid"))


def test_reward_prefers_relevant_items_first_and_diverse_lists():
    z = torch.tensor([[3.0, 1.0, 0.0], [0.0, 1.0, 3.0]])
    same = torch.tensor([[1.0, 0.0]]).expand(3, 2)
    rewards = list_log_reward(z, same.expand(2, 3, 2), beta=1.0, gamma=0.0)
    assert rewards[0] > rewards[1]                     # DCG weights: the best item should come first
    varied = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]).expand(2, 3, 2)
    assert torch.all(list_log_reward(z, varied, 1.0, 2.0) > list_log_reward(z, same.expand(2, 3, 2), 1.0, 2.0))


def test_intra_list_diversity_matches_the_course_metric():
    rng = np.random.default_rng(0)
    vectors = rng.random((12, 5)).astype(np.float32)
    lists = rng.permutation(12)[:8].reshape(2, 4)
    ours = intra_list_diversity(torch.as_tensor(vectors[lists])).numpy()
    assert np.allclose(ours, metrics.intra_list_diversity(lists, vectors), atol=1e-5)


def test_trajectory_balance_is_zero_when_balanced():
    log_r = torch.tensor([1.0, -2.0])
    assert float(trajectory_balance_loss(torch.tensor([3.0, 3.0]), log_r - 3.0, log_r)) == 0.0
    assert float(trajectory_balance_loss(torch.zeros(2), torch.zeros(2), log_r)) > 0
    with pytest.raises(ValueError, match="one shape"):
        trajectory_balance_loss(torch.zeros(2), torch.zeros(3), torch.zeros(2))


def test_inverse_cdf_sampling_follows_the_probabilities():
    probs = torch.tensor([[0.0, 0.5, 0.0, 0.5], [0.1, 0.0, 0.9, 0.0]]).repeat(5000, 1)
    picks = inverse_cdf_sample(probs, torch.rand(len(probs), generator=torch.Generator().manual_seed(0)))
    counts = torch.stack([torch.bincount(picks[row::2], minlength=4) for row in (0, 1)]).float() / 5000
    assert torch.allclose(counts, probs[:2], atol=0.03)
    edges = inverse_cdf_sample(probs[:2], torch.tensor([0.0, 0.999999]))   # never a zero-probability item
    assert edges.tolist() == [1, 2]


def test_list_to_scores_ranks_the_list_first_in_order():
    fallback = np.array([[5.0, 4.0, 3.0, 2.0, 1.0]])
    scores = list_to_scores(np.array([[3, 0]]), fallback)
    assert list(np.argsort(-scores[0])) == [3, 0, 1, 2, 4]


def test_standardized_scores_ignore_seen_items():
    import scipy.sparse as sp
    z = standardized_scores(np.array([[100.0, 1.0, 2.0, 3.0]]), sp.csr_matrix(np.array([[1, 0, 0, 0]])))
    assert z[0, 0] == 0.0 and np.allclose(z[0, 1:], [-1.2247, 0.0, 1.2247], atol=1e-3)


def test_gfn_learns_and_beats_popularity_on_planted_data(planted_split, planted_base):
    model = fit_gfn(planted_split, planted_base, gamma=5.0)   # a diversity term leaves something to learn
    history = model.fit_result_.history
    assert history["loss"].iloc[-5:].mean() < history["loss"].iloc[:3].mean()
    lists = model.generate(np.arange(60), planted_split.history("test"), temperature=1.0)
    assert lists.shape == (60, 4) and all(len(set(row)) == 4 for row in lists)   # no repeated items
    own_half = np.where(np.arange(60)[:, None] % 2 == 0, lists < 20, lists >= 20)
    assert own_half.mean() > 0.9
    seen = planted_split.history("test").matrix.toarray() > 0
    assert not seen[np.arange(60)[:, None], lists].any()
    pop = evaluate(Popularity().fit(planted_split.train_matrix()).score, planted_split, "test")["NDCG@10"]
    assert evaluate(model.score, planted_split, "test")["NDCG@10"] > pop
    assert model.score(np.arange(5), planted_split.history("test")).shape == (5, 40)


def test_diversity_reward_makes_lists_more_varied(planted_split, planted_base):
    users, history = np.arange(60), planted_split.history("test")
    plain = fit_gfn(planted_split, planted_base, gamma=0.0).generate(users, history, temperature=0)
    varied = fit_gfn(planted_split, planted_base, gamma=20.0).generate(users, history, temperature=0)
    assert (metrics.intra_list_diversity(varied, PLANTED_FEATURES).mean()
            > metrics.intra_list_diversity(plain, PLANTED_FEATURES).mean() + 0.05)


def test_training_brings_the_sampler_closer_to_the_reward(planted_split, planted_base):
    users, history = np.arange(60), planted_split.history("valid")
    trained = fit_gfn(planted_split, planted_base, gamma=20.0)
    start = GFN4Rec(planted_base, PLANTED_FEATURES, k=4, beta=6.0, gamma=20.0, hidden=16, seed=0).build(60)
    assert trained.balance_gap(users, history).mean() < 0.7 * start.balance_gap(users, history).mean()


def test_runs_are_reproducible_and_lists_do_not_depend_on_the_batch(planted_split, planted_base):
    users, history = np.arange(60), planted_split.history("test")
    model = fit_gfn(planted_split, planted_base, n_epochs=3)
    first = model.generate(users, history, temperature=1.0)
    second = fit_gfn(planted_split, planted_base, n_epochs=3).generate(users, history, temperature=1.0)
    assert np.array_equal(first, second)
    assert np.array_equal(model.generate(users[40:], history, temperature=1.0), first[40:])


def test_bad_arguments_raise(planted_base):
    with pytest.raises(TypeError, match="score"):
        GFN4Rec(object(), PLANTED_FEATURES)
    with pytest.raises(ValueError, match="item_features"):
        GFN4Rec(planted_base, np.ones(40))
    with pytest.raises(ValueError, match="k must be"):
        GFN4Rec(planted_base, PLANTED_FEATURES, k=1)
    with pytest.raises(ValueError, match="beta"):
        GFN4Rec(planted_base, PLANTED_FEATURES, beta=0)
    with pytest.raises(ValueError, match="explore"):
        GFN4Rec(planted_base, PLANTED_FEATURES, explore=1.0)
    with pytest.raises(ValueError, match="temperature"):
        GFN4Rec(planted_base, PLANTED_FEATURES, temperature=-1)
    with pytest.raises(ValueError, match="lr"):
        GFN4Rec(planted_base, PLANTED_FEATURES, lr=0)
