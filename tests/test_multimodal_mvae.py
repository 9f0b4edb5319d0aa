"""Lesson 16's multimodal VAE: the closed forms, shapes, bad inputs, and a tiny end-to-end fit."""
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from course_utils.data.splits import History, leave_one_out_split
from course_utils.evaluation import evaluate
from course_utils.models.autoencoders import gaussian_kl
from course_utils.multimodal.mvae import (ContentProfile, MultimodalMultVAE, TwoModalityVAE, cold_item_split,
                                          combine_experts, gaussian_kl_per_row, image_tensor, info_nce, item_experts,
                                          item_vae_loss, load_or_train_item_vae, mixture_of_experts_moments, noisy_images, occluded_images,
                                          only_items, product_of_experts, train_item_vae, true_utility_at_k,
                                          word_dropout)


def test_product_of_experts_matches_the_closed_form_by_hand():
    mus = torch.tensor([[[2.0, 0.0]], [[-1.0, 4.0]]])              # 2 experts, 1 row, 2 dims
    variances = torch.tensor([[[1.0, 0.5]], [[0.5, 2.0]]])
    mu, logvar = product_of_experts(mus, variances.log(), prior=False)
    # dim 0: precisions 1 + 2 = 3, mean (2·1 - 1·2)/3 = 0; dim 1: precisions 2 + 0.5, mean (0·2 + 4·0.5)/2.5 = 0.8
    assert torch.allclose(mu, torch.tensor([[0.0, 0.8]]))
    assert torch.allclose(logvar.exp(), torch.tensor([[1 / 3, 1 / 2.5]]))
    mu_p, logvar_p = product_of_experts(mus, variances.log())         # with the N(0, 1) expert: one more precision
    assert torch.allclose(logvar_p.exp(), torch.tensor([[1 / 4, 1 / 3.5]]))
    assert torch.allclose(mu_p, torch.tensor([[0.0, 2.0 / 3.5]]))


def test_product_of_experts_missing_expert_and_prior_fallback():
    mus, logvars = torch.randn(2, 5, 3), torch.randn(2, 5, 3)
    only_first = product_of_experts(mus, logvars, present=torch.tensor([True, False]))
    alone = product_of_experts(mus[:1], logvars[:1])
    assert torch.allclose(only_first[0], alone[0]) and torch.allclose(only_first[1], alone[1])
    both = product_of_experts(mus, logvars)
    assert (both[1] <= only_first[1] + 1e-6).all(), "an extra expert can only shrink the variance"
    mu, logvar = product_of_experts(mus, logvars, present=torch.zeros(2, 5, dtype=torch.bool))
    assert torch.allclose(mu, torch.zeros(5, 3)) and torch.allclose(logvar, torch.zeros(5, 3))
    with pytest.raises(ValueError, match="no expert present"):
        product_of_experts(mus, logvars, present=torch.tensor([False, False]), prior=False)
    with pytest.raises(ValueError, match="experts × batch × d"):
        product_of_experts(mus[0], logvars[0])
    with pytest.raises(ValueError, match="present must have shape"):
        product_of_experts(mus, logvars, present=torch.ones(3, dtype=torch.bool))


def test_mixture_variance_grows_with_disagreement():
    logvars = torch.log(torch.full((2, 1, 1), 0.1))
    agree = mixture_of_experts_moments(torch.zeros(2, 1, 1), logvars)[1]
    disagree = mixture_of_experts_moments(torch.tensor([[[-2.0]], [[2.0]]]), logvars)[1]
    assert torch.isclose(agree, torch.tensor(0.1)).all() and torch.isclose(disagree, torch.tensor(4.1)).all()


def test_kl_terms_equal_torch_distributions():
    mu, logvar = torch.randn(6, 4), torch.randn(6, 4)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    library = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum(1)
    assert torch.allclose(gaussian_kl_per_row(mu, logvar), library, atol=1e-5)
    assert torch.isclose(gaussian_kl(mu, logvar), library.mean(), atol=1e-5)


def test_info_nce_on_a_2x2_case_by_hand():
    a = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    b = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    # squared distances [[1, 2], [2, 1]]: each row and column has loss -log(e^-1 / (e^-1 + e^-2)) = log(1 + e^-1)
    assert torch.isclose(info_nce(a, b, temperature=1.0), torch.log1p(torch.exp(torch.tensor(-1.0))))
    # temperature 2 halves the logits
    assert torch.isclose(info_nce(a, b, temperature=2.0), torch.log1p(torch.exp(torch.tensor(-0.5))))
    swapped = info_nce(a, b.flip(0), temperature=1.0)           # wrong pairing costs more
    assert swapped > info_nce(a, b, temperature=1.0)
    with pytest.raises(ValueError, match="same shape"):
        info_nce(a, b[:1])
    with pytest.raises(ValueError, match="temperature"):
        info_nce(a, b, temperature=0.0)


def test_images_of_the_wrong_size_are_refused_clearly():
    with pytest.raises(ValueError, match="28"):
        image_tensor(np.zeros((3, 32, 32), np.uint8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        image_tensor(np.full((2, 28, 28), 2.0, np.float32))
    model = TwoModalityVAE(text_dim=8, latent_dim=3, hidden_dim=8, channels=2)
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        model.image_encoder(torch.zeros(2, 1, 27, 27))
    with pytest.raises(ValueError, match="texts must be N × 8"):
        model.experts(torch.zeros(2, 1, 28, 28), torch.zeros(2, 5))
    with pytest.raises(ValueError, match="one text per image"):
        model.experts(torch.zeros(2, 1, 28, 28), torch.zeros(3, 8))


def test_two_modality_vae_shapes_loss_terms_and_training():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(12, 28, 28), dtype=np.uint8)
    texts = rng.normal(size=(12, 8)).astype(np.float32)
    model = TwoModalityVAE(text_dim=8, latent_dim=3, hidden_dim=8, channels=2)
    assert image_tensor(images).shape == (12, 1, 28, 28)
    history = train_item_vae(model, images, texts, contrast_weight=1.0, n_epochs=2, batch_size=6, seed=0)
    assert set(history) == {"loss", "image_nll", "text_nll", "kl", "info_nce"} and len(history["loss"]) == 2
    mus, logvars = item_experts(model, images, texts)
    assert mus.shape == logvars.shape == (2, 12, 3)
    assert model.image_decoder(torch.zeros(4, 3)).shape == (4, 1, 28, 28)
    terms = item_vae_loss(model, image_tensor(images), torch.as_tensor(texts), contrast_weight=0.0)
    assert torch.isfinite(terms["loss"]) and terms["loss"] > 0
    mu, logvar = combine_experts(mus, logvars, use=("text",))
    expected = product_of_experts(torch.as_tensor(mus[1:]), torch.as_tensor(logvars[1:]))
    assert np.allclose(mu, expected[0].numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="use must name"):
        combine_experts(mus, logvars, use=("audio",))
    with pytest.raises(ValueError, match="contrast_weight"):
        train_item_vae(model, images, texts, contrast_weight=-1.0, n_epochs=1)


@pytest.fixture(scope="module")
def tiny_shop():
    rng = np.random.default_rng(1)
    n_users, n_items = 30, 40
    rows = [(u, i, t) for u in range(n_users) for t, i in enumerate(rng.choice(n_items, size=8, replace=False))]
    frame = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
    return leave_one_out_split(frame, n_users, n_items), rng.normal(size=(n_users, n_items))


def test_recommender_scores_every_item_and_respects_the_catalogue(tiny_shop):
    split, _ = tiny_shop
    rng = np.random.default_rng(2)
    item_mu, item_logvar = rng.normal(size=(40, 4)), np.full((40, 4), -2.0)
    cold, new = cold_item_split(split, 0.25, seed=0)
    assert cold.protocol == "cold-items[25%]" and new.sum() == 10
    assert not new[cold.train["item"]].any() and new[cold.test["item"]].all()
    model = MultimodalMultVAE(item_mu, item_logvar, latent_dim=3, hidden_dim=8, n_epochs=2, batch_size=8, seed=0)
    model.fit(cold.train_matrix(), catalogue=~new)
    scores = model.score(np.arange(5), cold.history("test"))
    assert scores.shape == (5, 40) and np.isfinite(scores).all()
    restricted = only_items(model.score, new)(np.arange(5), cold.history("test"))
    assert np.isneginf(restricted[:, ~new]).all() and np.isfinite(restricted[:, new]).all()
    assert evaluate(only_items(model.score, new), cold, "test")["NDCG@10"] >= 0
    before = model.score(np.arange(3), split.history("test"))
    model.set_items(item_mu + 1.0, item_logvar)
    assert not np.allclose(before, model.score(np.arange(3), split.history("test")))
    mu_u, logvar_u = model.encode_users(np.arange(3), split.history("test"))
    assert mu_u.shape == logvar_u.shape == (3, 3)
    with pytest.raises(ValueError, match="outside the catalogue"):
        MultimodalMultVAE(item_mu, item_logvar, n_epochs=1).fit(split.train_matrix(), catalogue=~new)
    with pytest.raises(ValueError, match="item latents"):
        MultimodalMultVAE(item_mu[:5], item_logvar[:5], n_epochs=1).fit(split.train_matrix())
    with pytest.raises(ValueError, match="new item latents"):
        model.set_items(item_mu[:, :2], item_logvar[:, :2])
    with pytest.raises(ValueError, match="fraction"):
        cold_item_split(split, 1.0)


def test_true_utility_at_k_is_one_for_the_oracle_and_near_zero_for_noise(tiny_shop):
    split, utility = tiny_shop
    oracle = true_utility_at_k(lambda users, history: utility[users], utility, split, k=3)
    assert np.allclose(oracle, 1.0)
    worst = true_utility_at_k(lambda users, history: -utility[users], utility, split, k=3)
    assert (worst < 0).all()
    assert len(oracle) == split.targets("test").getnnz(axis=1).astype(bool).sum()
    with pytest.raises(ValueError, match="n_users × n_items"):
        true_utility_at_k(lambda u, h: utility[u], utility[:, :5], split)


def test_perturbations_and_content_profile():
    images = np.full((3, 28, 28), 200, np.uint8)
    assert np.allclose(noisy_images(images, 0.0), 200 / 255)
    noisy = noisy_images(images, 0.5, seed=0)
    assert noisy.min() >= 0 and noisy.max() <= 1 and not np.allclose(noisy, 200 / 255)
    half = occluded_images(images, 0.5, seed=0)
    side = round(28 * np.sqrt(0.5))
    assert ((half == 0).sum(axis=(1, 2)) == side * side).all()
    with pytest.raises(ValueError, match="fraction"):
        occluded_images(images, 1.5)
    texts = ["a red cotton shirt by Miro", "shoes"]
    assert word_dropout(texts, 0.0) == texts
    dropped = word_dropout(texts, 0.9, seed=0)
    assert all(1 <= len(d.split()) <= len(t.split()) for d, t in zip(dropped, texts))
    with pytest.raises(ValueError, match="rate"):
        word_dropout(texts, 1.0)
    profile = ContentProfile(np.eye(3))
    history = History(sp.csr_matrix(np.array([[1.0, 0, 0]])), [np.array([0])])
    assert np.allclose(profile.score(np.array([0]), history), [[1.0, 0.0, 0.0]])


def test_item_vae_is_cached_by_configuration(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, size=(6, 28, 28), dtype=np.uint8)
    texts = rng.normal(size=(6, 8)).astype(np.float32)
    settings = dict(contrast_weight=1.0, seed=0, n_epochs=1, latent_dim=2, channels=2, verbose=False)
    first, info = load_or_train_item_vae(images, texts, **settings)
    again, info_again = load_or_train_item_vae(images, texts, **settings)
    assert (info["source"], info_again["source"]) == ("trained", "cache")
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    _, other = load_or_train_item_vae(images, texts, **{**settings, "contrast_weight": 0.0})
    assert other["source"] == "trained", "another λ is another model"


def test_top_k_items_is_the_stable_argsort_set():
    from course_utils.multimodal.mvae import top_k_items

    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, (50, 40)).astype(float)               # many ties
    scores[:, :3] = -np.inf
    for k in (1, 7, 10):
        expected = np.sort(np.argsort(-scores, axis=1, kind="stable")[:, :k], axis=1)
        assert np.array_equal(top_k_items(scores, k), expected)
