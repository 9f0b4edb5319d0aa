import numpy as np
import pytest
import scipy.sparse as sp
import torch

from course_utils.data.splits import leave_one_out_split
from course_utils.evaluation import evaluate
from course_utils.models.baselines import Popularity
from course_utils.models.diffusion import DiffRec, GaussianDiffusion, noise_schedule, timestep_embedding


@pytest.fixture
def planted_split(planted_ratings):
    return leave_one_out_split(planted_ratings, tie_break="shuffle", seed=0)


def test_schedules_rise_linearly_in_beta_or_in_variance():
    betas = noise_schedule(5, 0.5, 0.01, 0.05, kind="linear")
    assert np.allclose(betas, 0.5 * np.linspace(0.01, 0.05, 5))
    betas = noise_schedule(5, 0.5, 0.01, 0.05, kind="linear-var")
    variance = 1 - np.cumprod(1 - betas)
    assert np.allclose(variance, 0.5 * np.linspace(0.01, 0.05, 5))
    assert (betas > 0).all()


def test_forward_process_has_the_closed_form_moments():
    diffusion = GaussianDiffusion(noise_schedule(10, 1.0, 0.01, 0.2))
    x0 = torch.tensor([[1.0, 0.0, 1.0]]).repeat(20_000, 1)
    t = torch.full((len(x0),), 7)
    torch.manual_seed(0)
    x_t = diffusion.q_sample(x0, t, torch.randn_like(x0))
    a = diffusion.alpha_bar[7]
    assert torch.allclose(x_t.mean(0), a.sqrt() * x0[0], atol=0.02)
    assert torch.allclose(x_t.var(0), (1 - a).expand(3), atol=0.02)
    assert torch.equal(diffusion.q_sample(x0[:2], torch.zeros(2, dtype=torch.long), torch.randn(2, 3)), x0[:2])
    snr = diffusion.snr(torch.arange(1, 11))
    assert (snr[1:] < snr[:-1]).all(), "the signal-to-noise ratio must fall as noise is added"


def test_posterior_mean_follows_the_noise_free_path():
    diffusion = GaussianDiffusion(noise_schedule(6, 1.0, 0.05, 0.3, kind="linear-var"))
    x0 = torch.rand(4, 5)
    for step in range(1, 7):
        t = torch.full((4,), step)
        on_path = diffusion.alpha_bar[step].sqrt() * x0
        previous = diffusion.posterior_mean(on_path, x0, t)
        assert torch.allclose(previous, diffusion.alpha_bar[step - 1].sqrt() * x0, atol=1e-5)
    with pytest.raises(ValueError, match="steps must lie in 0..6"):
        diffusion.q_sample(x0, torch.full((4,), 7), torch.randn(4, 5))


def test_timestep_embedding_tells_steps_apart():
    emb = timestep_embedding(torch.arange(1, 6), 10)
    assert emb.shape == (5, 10)
    assert torch.cdist(emb, emb).add(torch.eye(5)).min() > 0.01


def test_diffrec_learns_the_planted_groups(planted_split):
    X = planted_split.train_matrix()
    model = DiffRec(n_steps=5, noise_scale=0.1, hidden_dim=32, lr=1e-2, batch_size=16, n_epochs=30,
                    patience=30, device="cpu").fit(X)
    history = planted_split.history("test")
    scores = model.score(np.arange(60), history)
    assert scores.shape == (60, planted_split.n_items) and np.isfinite(scores).all()
    loss = model.fit_result_.history["loss"]
    assert loss.iloc[-5:].mean() < loss.iloc[:3].mean()
    assert scores[::2, :20].mean() > scores[::2, 20:40].mean()
    assert scores[1::2, 20:40].mean() > scores[1::2, :20].mean()
    pop = evaluate(Popularity().fit(X).score, planted_split, "test")["NDCG@10"]
    for start in (0, 5):
        model.inference_steps = start
        assert evaluate(model.score, planted_split, "test")["NDCG@10"] > pop
    assert np.array_equal(model.score(np.arange(4), history), model.score(np.arange(4), history)), \
        "seeded inference noise keeps scores reproducible"
    model.inference_steps = 0
    clean = model.score(np.arange(4), history)
    model.inference_steps = 5
    assert not np.allclose(clean, model.score(np.arange(4), history)), "T' > 0 should add noise"


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="noise_scale"):
        noise_schedule(5, 0.0, 0.01, 0.02)
    with pytest.raises(ValueError, match="noise_min <= noise_max"):
        noise_schedule(5, 0.1, 0.05, 0.01)
    with pytest.raises(ValueError, match="kind must be"):
        noise_schedule(5, 0.1, 0.01, 0.02, kind="cosine")
    with pytest.raises(ValueError, match="n_steps"):
        DiffRec(n_steps=0)
    with pytest.raises(ValueError, match="inference_steps"):
        DiffRec(n_steps=5, inference_steps=6)
    with pytest.raises(ValueError, match="dropout"):
        DiffRec(dropout=1.0)
    with pytest.raises(ValueError, match="hidden_dim"):
        DiffRec(hidden_dim=0)
    with pytest.raises(ValueError, match="betas"):
        GaussianDiffusion(np.array([0.1, 1.5]))
    with pytest.raises(ValueError, match="no interactions"):
        DiffRec().fit(sp.csr_matrix((3, 3), dtype=np.float32))


def test_noise_off_ablation_and_generated_interactions(planted_split):
    X = planted_split.train_matrix()
    model = DiffRec(n_steps=5, noise_scale=1.0, noise_max=0.2, hidden_dim=32, lr=1e-2, batch_size=16, n_epochs=15,
                    patience=15, diffusion_noise=False, device="cpu").fit(X)
    history = planted_split.history("valid")
    assert np.isfinite(model.score(np.arange(6), history)).all()
    x0 = torch.as_tensor(X[:3].toarray())
    assert torch.allclose(model.denoise(x0, 1, torch.Generator().manual_seed(0)),
                          model.denoise(x0, 1, torch.Generator().manual_seed(1))), "no noise: the generator is unused"
    sparse = np.array([0, 1, 7])
    extra = model.generate_interactions(sparse, history, n_extra=3)
    assert extra.shape == X.shape and extra.nnz == 9
    assert set(np.flatnonzero(extra.getnnz(axis=1))) == set(sparse)
    assert extra.multiply(X).nnz == 0, "synthetic interactions must be items the user has not seen"
    even = extra[::2][:, :20].sum() + extra[1::2][:, 20:40].sum()
    assert even >= 6, "DiffRec's synthetic items should come from the user's own half of the catalogue"
    uniform = model.generate_interactions(sparse, history, n_extra=3, source="uniform", seed=1)
    assert uniform.nnz == 9 and uniform.multiply(X).nnz == 0
    assert model.generate_interactions(sparse, history, 0).nnz == 0
    with pytest.raises(ValueError, match="source"):
        model.generate_interactions(sparse, history, 2, source="gan")
    with pytest.raises(ValueError, match="n_extra"):
        model.generate_interactions(sparse, history, -1)
