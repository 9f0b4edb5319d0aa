"""A two-modality VAE for recommendation, its latents aligned by a contrastive term (survey Section 4.4, lesson 16).

Item side. Each product has an image (28 × 28 grey pixels) and a text (a frozen
MiniLM embedding of its document). Each modality has its own small VAE: an
encoder gives a Gaussian posterior q_m(z | x_m) and a decoder reconstructs that
modality from z. Trained alone, the two VAEs are independent, so nothing makes
the same coordinate mean the same thing in both spaces. ContrastVAE's idea
(Wang et al., 2022) adds a contrastive term to the ELBO that pulls an item's
image and text posteriors together and pushes other items' apart (``info_nce``).
The item's posterior given whatever modalities it has is the product of the
experts (``product_of_experts``, as in MVAE, Wu & Goodman, 2018): precisions
add, so a missing modality simply drops out.

User side. ``MultimodalMultVAE`` is lesson 02's Mult-VAE with one change: the
decoder's vector for item i is a learned linear map of item i's multimodal
latent (plus a bias per item), and the encoder reads a history through the
same latents. Any item with an image or a text has a vector, so items nobody
has bought yet can be scored.
"""
from __future__ import annotations

import hashlib
import re
from typing import Callable

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F

from course_utils.data.splits import History, Split
from course_utils.metrics import normalised_utility
from course_utils.model_cache import load_or_train
from course_utils.models.autoencoders import _UserAutoEncoder, _check_positive, _check_rate, annealed_beta, \
    gaussian_kl, keep_mask
from course_utils.training import check_finite

IMAGE_SIZE = 28
MODALITIES = ("image", "text")


# --- inputs ------------------------------------------------------------------

def image_tensor(images) -> torch.Tensor:
    """uint8 (N, 28, 28) pixels, or floats in [0, 1], -> float tensor (N, 1, 28, 28) in [0, 1]."""
    array = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 3 or array.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE) or len(array) == 0:
        raise ValueError(f"images must have shape (N, {IMAGE_SIZE}, {IMAGE_SIZE}) or (N, 1, {IMAGE_SIZE}, "
                         f"{IMAGE_SIZE}) with N > 0 (Fashion-MNIST size); got {array.shape}")
    if array.dtype == np.uint8:
        array = array.astype(np.float32) / 255.0
    array = np.asarray(array, dtype=np.float32)
    if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
        raise ValueError("float images must hold finite pixel values in [0, 1]")
    return torch.from_numpy(np.ascontiguousarray(array[:, None]))


def _present_mask(present, n_experts: int, batch: int) -> torch.Tensor:
    if present is None:
        return torch.ones(n_experts, batch, dtype=torch.bool)
    present = torch.as_tensor(present, dtype=torch.bool)
    if present.shape == (n_experts,):  # one flag per expert, for every row
        present = present[:, None].expand(n_experts, batch)
    if present.shape != (n_experts, batch):
        raise ValueError(f"present must have shape ({n_experts},) or ({n_experts}, {batch}), got {tuple(present.shape)}")
    return present


# --- the three pieces of the objective ---------------------------------------------

def product_of_experts(mus: torch.Tensor, logvars: torch.Tensor, present=None,
                       prior: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Combine Gaussian experts N(mu_k, var_k) into one Gaussian: precisions add, means are precision-weighted.

    mus, logvars: experts × batch × d. ``present`` (experts,) or (experts × batch)
    bools: a missing expert contributes nothing. ``prior`` adds the N(0, I) expert,
    so a row with no expert at all falls back to the prior. Returns (mu, logvar), batch × d.
    """
    if mus.shape != logvars.shape or mus.ndim != 3:
        raise ValueError(f"mus and logvars must both be experts × batch × d, got {tuple(mus.shape)} and "
                         f"{tuple(logvars.shape)}")
    mask = _present_mask(present, mus.shape[0], mus.shape[1]).to(mus.device)[..., None].to(mus.dtype)
    precision = torch.exp(-logvars) * mask
    total = precision.sum(0) + (1.0 if prior else 0.0)
    if not prior and bool((mask.sum(0) == 0).any()):
        raise ValueError("some rows have no expert present; pass prior=True to fall back to N(0, I)")
    mu = (precision * mus).sum(0) / total
    return mu, -torch.log(total)


def mixture_of_experts_moments(mus: torch.Tensor, logvars: torch.Tensor, present=None):
    """Mean and variance (batch × d each) of the equal-weight mixture of the present experts.

    Unlike the product, the mixture's variance grows when the experts disagree:
    var = mean of the variances + variance of the means.
    """
    mask = _present_mask(present, mus.shape[0], mus.shape[1]).to(mus.device)[..., None].to(mus.dtype)
    weight = mask / mask.sum(0).clamp(min=1.0)
    mean = (weight * mus).sum(0)
    second = (weight * (torch.exp(logvars) + mus ** 2)).sum(0)
    return mean, second - mean ** 2


def gaussian_kl_per_row(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, e^logvar) || N(0, I)) for each row, summed over dimensions (lesson 02's term, per row)."""
    return 0.5 * (torch.exp(logvar) + mu ** 2 - 1.0 - logvar).sum(dim=1)


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Symmetric InfoNCE between paired rows of a and b (batch × d): row i of a belongs with row i of b.

    The similarity is -||a_i - b_j||² / temperature, so aligned pairs are pulled to the
    same *point* (which the product of experts needs), not only the same direction.
    """
    if a.shape != b.shape or a.ndim != 2 or len(a) < 2:
        raise ValueError(f"a and b must be batch × d with the same shape and batch >= 2, got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    logits = -torch.cdist(a, b).pow(2) / temperature
    target = torch.arange(len(a), device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


# --- the item model ------------------------------------------------------------------

class ImageEncoder(nn.Module):
    """A small CNN: (N, 1, 28, 28) -> (mu, logvar), each N × latent_dim."""

    def __init__(self, latent_dim: int, channels: int = 16):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, channels, 4, stride=2, padding=1), nn.ReLU(),            # 14 × 14
            nn.Conv2d(channels, 2 * channels, 4, stride=2, padding=1), nn.ReLU(),  # 7 × 7
            nn.Flatten(), nn.Linear(2 * channels * 49, 2 * latent_dim))

    def forward(self, images: torch.Tensor):
        if images.ndim != 4 or tuple(images.shape[1:]) != (1, IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(f"the image encoder expects (N, 1, {IMAGE_SIZE}, {IMAGE_SIZE}) pixels, "
                             f"got {tuple(images.shape)}")
        return self.body(images).chunk(2, dim=1)


class ImageDecoder(nn.Module):
    """z (N × latent_dim) -> pixel logits (N, 1, 28, 28): the transpose of the encoder."""

    def __init__(self, latent_dim: int, channels: int = 16):
        super().__init__()
        self.channels = channels
        self.start = nn.Linear(latent_dim, 2 * channels * 49)
        self.body = nn.Sequential(
            nn.ReLU(), nn.ConvTranspose2d(2 * channels, channels, 4, stride=2, padding=1),
            nn.ReLU(), nn.ConvTranspose2d(channels, 1, 4, stride=2, padding=1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(self.start(z).view(len(z), 2 * self.channels, 7, 7))


class TwoModalityVAE(nn.Module):
    """One VAE per modality (image pixels, text embedding), sharing only the latent space's size.

    ``experts(images, texts)`` -> (mus, logvars), each 2 × N × d (image first);
    ``posterior(images, texts, present)`` -> their product with the N(0, I) prior.
    """

    def __init__(self, text_dim: int = 384, latent_dim: int = 16, hidden_dim: int = 128, channels: int = 16):
        super().__init__()
        _check_positive(text_dim=text_dim, latent_dim=latent_dim, hidden_dim=hidden_dim, channels=channels)
        self.text_dim, self.latent_dim = text_dim, latent_dim
        self.image_encoder = ImageEncoder(latent_dim, channels)
        self.image_decoder = ImageDecoder(latent_dim, channels)
        self.text_encoder = nn.Sequential(nn.Linear(text_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 2 * latent_dim))
        self.text_decoder = nn.Sequential(nn.Linear(latent_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, text_dim))
        # Sentence embeddings of similar documents crowd into a small cone (mean cosine ~0.5 here), so the
        # text VAE sees them centred and scaled to unit variance per dimension; set by ``fit_text_scaling``.
        self.register_buffer("text_mean", torch.zeros(text_dim))
        self.register_buffer("text_scale", torch.ones(()))

    def fit_text_scaling(self, texts: torch.Tensor) -> None:
        self.text_mean.copy_(texts.mean(0))
        self.text_scale.copy_((texts - texts.mean(0)).pow(2).mean().sqrt())

    def standardise(self, texts: torch.Tensor) -> torch.Tensor:
        if texts.ndim != 2 or texts.shape[1] != self.text_dim:
            raise ValueError(f"texts must be N × {self.text_dim} embeddings, got {tuple(texts.shape)}")
        return (texts - self.text_mean) / self.text_scale

    def experts(self, images: torch.Tensor, texts: torch.Tensor):
        """images (N, 1, 28, 28), texts N × text_dim raw embeddings -> (mus, logvars), each 2 × N × d."""
        texts = self.standardise(texts)
        if len(texts) != len(images):
            raise ValueError(f"need one text per image: {len(images)} images, {len(texts)} texts")
        image_mu, image_logvar = self.image_encoder(images)
        text_mu, text_logvar = self.text_encoder(texts).chunk(2, dim=1)
        return torch.stack([image_mu, text_mu]), torch.stack([image_logvar, text_logvar])

    def posterior(self, images: torch.Tensor, texts: torch.Tensor, present=None):
        return product_of_experts(*self.experts(images, texts), present=present)


def item_vae_loss(model: TwoModalityVAE, images: torch.Tensor, texts: torch.Tensor, contrast_weight: float,
                  temperature: float = 1.0, text_sd: float = 0.5, beta: float = 1.0) -> dict[str, torch.Tensor]:
    """The two ELBOs (a sample from each modality's own posterior, decoded into that modality) plus λ · InfoNCE.

    Image likelihood: Bernoulli on pixel intensities; text: Gaussian with standard
    deviation ``text_sd`` on the standardised embedding. Terms are per item (batch means).
    """
    mus, logvars = model.experts(images, texts)
    z = mus + torch.randn_like(mus) * torch.exp(0.5 * logvars)
    image_nll = F.binary_cross_entropy_with_logits(model.image_decoder(z[0]), images, reduction="sum") / len(images)
    text_nll = ((model.text_decoder(z[1]) - model.standardise(texts)) ** 2).sum(1).mean() / (2 * text_sd ** 2)
    kl = gaussian_kl(mus[0], logvars[0]) + gaussian_kl(mus[1], logvars[1])
    contrast = info_nce(mus[0], mus[1], temperature)
    total = image_nll + text_nll + beta * kl + contrast_weight * contrast
    return {"loss": total, "image_nll": image_nll, "text_nll": text_nll, "kl": kl, "info_nce": contrast}


def train_item_vae(model: TwoModalityVAE, images, texts, *, contrast_weight: float, n_epochs: int = 30,
                   batch_size: int = 256, lr: float = 2e-3, temperature: float = 1.0, text_sd: float = 0.5,
                   seed: int = 0) -> dict:
    """Mini-batch Adam on ``item_vae_loss`` over all items; returns the per-epoch mean of every term."""
    check_finite(contrast_weight=contrast_weight, lr=lr, temperature=temperature, text_sd=text_sd)
    if contrast_weight < 0:
        raise ValueError(f"contrast_weight must be >= 0 (0 = two independent VAEs), got {contrast_weight}")
    _check_positive(n_epochs=n_epochs, batch_size=batch_size, lr=lr, text_sd=text_sd)
    images = image_tensor(images)
    texts = torch.as_tensor(np.asarray(texts, dtype=np.float32))
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model.fit_text_scaling(texts)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history: dict[str, list[float]] = {}
    model.train()
    for _ in range(n_epochs):
        order = torch.randperm(len(images), generator=generator)
        sums: dict[str, float] = {}
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            if len(batch) < 2:
                continue
            terms = item_vae_loss(model, images[batch], texts[batch], contrast_weight, temperature, text_sd)
            optimizer.zero_grad()
            terms["loss"].backward()
            optimizer.step()
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + value.item() * len(batch)
        for name, value in sums.items():
            history.setdefault(name, []).append(value / len(order))
    model.eval()
    return history


def load_or_train_item_vae(images, texts, *, contrast_weight: float, seed: int, n_epochs: int, latent_dim: int = 16,
                           channels: int = 8, temperature: float = 8.0, lr: float = 3e-3, text_model: str = "minilm",
                           verbose: bool = True):
    """``train_item_vae`` through the course's model cache, keyed by the settings and a hash of the data.

    Returns (model, info); ``info["train"]`` holds the per-epoch loss terms.
    """
    images, texts = image_tensor(images), torch.as_tensor(np.asarray(texts, dtype=np.float32))
    data = hashlib.sha256(images.numpy().tobytes() + texts.numpy().tobytes()).hexdigest()[:16]
    config = {"contrast_weight": float(contrast_weight), "seed": int(seed), "n_epochs": int(n_epochs),
              "latent_dim": latent_dim, "channels": channels, "temperature": temperature, "lr": lr,
              "text_model": text_model, "data": data}
    return load_or_train(
        "lesson16-two-modality-vae", config,
        lambda: TwoModalityVAE(texts.shape[1], latent_dim, channels=channels),
        lambda model: train_item_vae(model, images, texts, contrast_weight=contrast_weight, n_epochs=n_epochs,
                                     lr=lr, temperature=temperature, seed=seed), verbose=verbose)


@torch.no_grad()
def item_experts(model: TwoModalityVAE, images, texts) -> tuple[np.ndarray, np.ndarray]:
    """Every expert's posterior for every item: (mus, logvars), each 2 × n_items × d numpy arrays."""
    model.eval()
    mus, logvars = model.experts(image_tensor(images), torch.as_tensor(np.asarray(texts, dtype=np.float32)))
    return mus.numpy(), logvars.numpy()


def combine_experts(mus: np.ndarray, logvars: np.ndarray, use=MODALITIES, present=None):
    """The item posteriors (mu, logvar), n_items × d, from the experts named in ``use``.

    ``present`` (2 × n_items bools) can drop a modality for some items only.
    """
    unknown = set(use) - set(MODALITIES)
    if unknown or not use:
        raise ValueError(f"use must name some of {MODALITIES}, got {use}")
    mask = np.array([[m in use] for m in MODALITIES]) & (np.ones_like(mus[:, :, 0], bool) if present is None
                                                         else np.asarray(present, bool))
    mu, logvar = product_of_experts(torch.as_tensor(mus), torch.as_tensor(logvars), torch.as_tensor(mask))
    return mu.numpy(), logvar.numpy()


# --- the recommender ------------------------------------------------------------------------

class MultimodalMultVAENet(nn.Module):
    """Mult-VAE whose encoder and decoder see items through their multimodal latents.

    Encoder: [mean latent of the history's items, log(1 + history size)] -> tanh
    layer -> (mu_u, logvar_u). Decoder: logit_ui = z_u · (W m_i) + b_i, with m_i the
    item's latent (a sample in training, the mean at scoring time).
    """

    def __init__(self, item_mu: np.ndarray, item_logvar: np.ndarray, latent_dim: int, hidden_dim: int):
        super().__init__()
        self.register_buffer("item_mu", torch.as_tensor(item_mu, dtype=torch.float32))
        self.register_buffer("item_logvar", torch.as_tensor(item_logvar, dtype=torch.float32))
        item_dim = self.item_mu.shape[1]
        self.encoder = nn.Sequential(nn.Linear(item_dim + 1, hidden_dim), nn.Tanh(), nn.Linear(hidden_dim, 2 * latent_dim))
        self.item_map = nn.Linear(item_dim, latent_dim, bias=False)
        self.item_bias = nn.Parameter(torch.zeros(len(self.item_mu)))

    def item_latents(self, sample: bool) -> torch.Tensor:
        if not sample:
            return self.item_mu
        return self.item_mu + torch.randn_like(self.item_mu) * torch.exp(0.5 * self.item_logvar)

    def encode(self, x: torch.Tensor, items: torch.Tensor | None = None):
        items = self.item_mu if items is None else items
        size = x.sum(1, keepdim=True)
        profile = (x @ items) / size.clamp(min=1.0)
        return self.encoder(torch.cat([profile, torch.log1p(size)], dim=1)).chunk(2, dim=1)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None):
        items = self.item_latents(self.training)
        mu, logvar = self.encode(x if keep is None else x * keep, items)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        return z @ self.item_map(items).T + self.item_bias, mu, logvar


class MultimodalMultVAE(_UserAutoEncoder):
    """Lesson 02's Mult-VAE with item vectors made from the items' multimodal posteriors.

    item_mu, item_logvar: n_items × d (e.g. from ``combine_experts``). ``fit(X,
    validate, catalogue)``: ``catalogue`` (bool per item) lists the items on sale
    while training; the others are left out of the softmax, as new products would be.
    ``set_items`` swaps in other item posteriors (a missing modality, a perturbed
    image) without retraining.
    """

    def __init__(self, item_mu: np.ndarray, item_logvar: np.ndarray, latent_dim: int = 32, hidden_dim: int = 64,
                 dropout: float = 0.5, beta_cap: float = 0.2, anneal_steps: int = 200, lr: float = 3e-3,
                 weight_decay: float = 0.0, batch_size: int = 128, n_epochs: int = 100, patience: int = 5,
                 seed: int = 0, device=None, name: str = "multimodal Mult-VAE"):
        super().__init__(lr, weight_decay, batch_size, n_epochs, patience, seed, device)
        self.item_mu, self.item_logvar = _check_items(item_mu, item_logvar)
        _check_positive(latent_dim=latent_dim, hidden_dim=hidden_dim, anneal_steps=anneal_steps)
        check_finite(beta_cap=beta_cap)
        if beta_cap < 0:
            raise ValueError(f"beta_cap must be >= 0, got {beta_cap}")
        self.latent_dim, self.hidden_dim = latent_dim, hidden_dim
        self.dropout = _check_rate("dropout", dropout)
        self.beta_cap, self.anneal_steps, self.name = beta_cap, anneal_steps, name

    def fit(self, X, validate: Callable | None = None, catalogue=None) -> "MultimodalMultVAE":
        if X.shape[1] != len(self.item_mu):
            raise ValueError(f"X has {X.shape[1]} items but there are {len(self.item_mu)} item latents")
        catalogue = np.ones(X.shape[1], bool) if catalogue is None else np.asarray(catalogue, bool)
        if catalogue.shape != (X.shape[1],) or not catalogue.any():
            raise ValueError(f"catalogue must be {X.shape[1]} booleans with at least one True")
        if sp.csr_matrix(X)[:, ~catalogue].nnz:
            raise ValueError("X has interactions with items outside the catalogue")
        self.catalogue_ = torch.as_tensor(catalogue)
        return super().fit(X, validate)

    def _build(self, n_rows: int, n_cols: int) -> nn.Module:
        self.catalogue_ = self.catalogue_.to(self.device)
        return MultimodalMultVAENet(self.item_mu, self.item_logvar, self.latent_dim, self.hidden_dim)

    def _loss(self, x: torch.Tensor) -> torch.Tensor:
        logits, mu, logvar = self.net_(x, keep_mask(x, self.dropout, training=True))
        logits = logits.masked_fill(~self.catalogue_, float("-inf"))
        # lesson 02's multinomial likelihood, over the items on sale only
        log_probs = torch.log_softmax(logits, dim=1).masked_fill(~self.catalogue_, 0.0)
        nll = -(log_probs * x).sum(1).sum() / (x.sum(1) > 0).sum().clamp(min=1)
        return nll + annealed_beta(self.step_, self.anneal_steps, self.beta_cap) * gaussian_kl(mu, logvar)

    def set_items(self, item_mu: np.ndarray, item_logvar: np.ndarray) -> "MultimodalMultVAE":
        """Score with other item posteriors (same items, same d) from now on; training is untouched."""
        mu, logvar = _check_items(item_mu, item_logvar)
        if mu.shape != tuple(self.net_.item_mu.shape):
            raise ValueError(f"new item latents must have shape {tuple(self.net_.item_mu.shape)}, got {mu.shape}")
        self.net_.item_mu.copy_(torch.as_tensor(mu))
        self.net_.item_logvar.copy_(torch.as_tensor(logvar))
        return self

    @torch.no_grad()
    def encode_users(self, users: np.ndarray, history: History) -> tuple[np.ndarray, np.ndarray]:
        """Users' posteriors (mu, logvar), len(users) × latent_dim each."""
        self.net_.eval()
        x = torch.as_tensor(history.matrix[np.asarray(users)].toarray(), dtype=torch.float32, device=self.device)
        mu, logvar = self.net_.encode(x)
        return mu.cpu().numpy(), logvar.cpu().numpy()


def _check_items(item_mu, item_logvar) -> tuple[np.ndarray, np.ndarray]:
    mu, logvar = np.asarray(item_mu, np.float32), np.asarray(item_logvar, np.float32)
    if mu.ndim != 2 or mu.shape != logvar.shape or not len(mu):
        raise ValueError(f"item_mu and item_logvar must both be n_items × d, got {mu.shape} and {logvar.shape}")
    if not (np.isfinite(mu).all() and np.isfinite(logvar).all()):
        raise ValueError("item latents must be finite")
    return mu, logvar


class ContentProfile:
    """The simplest content baseline: cosine between an item's embedding and the mean embedding of the history."""

    name = "content profile"

    def __init__(self, item_vectors: np.ndarray):
        vectors = np.asarray(item_vectors, np.float64)
        if vectors.ndim != 2:
            raise ValueError(f"item_vectors must be n_items × d, got {vectors.shape}")
        self.vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)

    def fit(self, X=None) -> "ContentProfile":
        return self

    def score(self, users: np.ndarray, history: History) -> np.ndarray:
        profile = np.asarray(history.matrix[np.asarray(users)] @ self.vectors)
        profile /= np.maximum(np.linalg.norm(profile, axis=1, keepdims=True), 1e-12)
        return profile @ self.vectors.T

    n_params = 0


# --- protocols: new items, and the shop's ground truth -----------------------------------------

def cold_item_split(split: Split, fraction: float = 0.15, seed: int = 0) -> tuple[Split, np.ndarray]:
    """Pretend a random ``fraction`` of the catalogue is new: no interaction with it is ever trained on.

    Train and validation keep the leave-one-out split's rows with the other items;
    the test set is every interaction with a new item. Returns (split, new-item mask).
    Score with ``only_items(score, new)`` so that new items compete only with each other.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must lie strictly between 0 and 1, got {fraction}")
    rng = np.random.default_rng(seed)
    new = np.zeros(split.n_items, bool)
    new[rng.choice(split.n_items, size=max(1, round(fraction * split.n_items)), replace=False)] = True
    old = lambda frame: frame[~new[frame["item"].to_numpy()]].reset_index(drop=True)
    every = pd.concat([split.train, split.valid, split.test], ignore_index=True)
    test = every[new[every["item"].to_numpy()]].sort_values(["user", "timestamp"], kind="stable")
    cold = Split(old(split.train), old(split.valid), test.reset_index(drop=True), split.n_users, split.n_items,
                 protocol=f"cold-items[{fraction:.0%}]")
    return cold, new


def only_items(score_fn: Callable, allowed: np.ndarray) -> Callable:
    """A score function that ranks only the ``allowed`` items (the others get -inf)."""
    allowed = np.asarray(allowed, bool)

    def score(users, history):
        scores = np.array(score_fn(users, history), dtype=np.float64)
        scores[:, ~allowed] = -np.inf
        return scores
    return score


def true_utility_at_k(score_fn: Callable, utility: np.ndarray, split: Split, stage: str = "test", k: int = 10,
                      candidates: np.ndarray | None = None) -> np.ndarray:
    """Per user: how good the model's top-k is by the shop's *true* utility, 0 = random pick, 1 = the best k.

    (mean utility of the top-k - mean over the candidates) / (mean of the k best - mean over the candidates),
    over the items outside the user's history (and inside ``candidates``). Same users, same order as
    ``evaluate(..., per_user=True)``, so ``compare_models`` can pair them.
    """
    utility = np.asarray(utility, np.float64)
    if utility.shape != (split.n_users, split.n_items):
        raise ValueError(f"utility must be n_users × n_items = {(split.n_users, split.n_items)}, got {utility.shape}")
    history = split.history(stage)
    users = np.flatnonzero(split.targets(stage).getnnz(axis=1))
    allowed = np.ones(split.n_items, bool) if candidates is None else np.asarray(candidates, bool)
    out = []
    for start in range(0, len(users), 256):
        batch = users[start:start + 256]
        ok = allowed[None, :] & ~history.matrix[batch].toarray().astype(bool)
        if (ok.sum(1) < k).any():
            raise ValueError(f"some users have fewer than k={k} candidate items")
        scores = np.where(ok, np.asarray(score_fn(batch, history), np.float64), -np.inf)
        out.append(normalised_utility(utility[batch], top_k_items(scores, k), ok))
    return np.concatenate(out)


def top_k_items(scores: np.ndarray, k: int) -> np.ndarray:
    """users × k: the items of the k highest scores per row, ties to the lower item id.

    The same *set* as ``np.argsort(-scores, kind="stable")[:, :k]`` (in item order, not score
    order), found by a partial sort: the robustness curves call this dozens of times.
    """
    scores = np.asarray(scores)
    kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1:k]          # the k-th highest score per row
    above, tied = scores > kth, scores == kth
    room = k - above.sum(1, keepdims=True)                            # places left for the tied items
    chosen = above | (tied & (np.cumsum(tied, axis=1) <= room))
    return np.nonzero(chosen)[1].reshape(len(scores), k)


# --- perturbations for the robustness curves ------------------------------------------------------

def noisy_images(images, sd: float, seed: int = 0) -> np.ndarray:
    """Images in [0, 1] plus Gaussian pixel noise of standard deviation ``sd``, clipped back to [0, 1]."""
    pixels = image_tensor(images)[:, 0].numpy()
    noise = np.random.default_rng(seed).normal(0.0, sd, pixels.shape) if sd > 0 else 0.0
    return np.clip(pixels + noise, 0.0, 1.0).astype(np.float32)


def occluded_images(images, fraction: float, seed: int = 0) -> np.ndarray:
    """Blank a square covering about ``fraction`` of each image, at a random place per image."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must lie in [0, 1], got {fraction}")
    pixels = image_tensor(images)[:, 0].numpy().copy()
    side = int(round(IMAGE_SIZE * np.sqrt(fraction)))
    if side:
        rng = np.random.default_rng(seed)
        rows, cols = rng.integers(0, IMAGE_SIZE - side + 1, size=(2, len(pixels)))
        grid = np.arange(IMAGE_SIZE)
        inside = ((grid[None, :] >= rows[:, None]) & (grid[None, :] < rows[:, None] + side))[:, :, None] & \
                 ((grid[None, :] >= cols[:, None]) & (grid[None, :] < cols[:, None] + side))[:, None, :]
        pixels[inside] = 0.0
    return pixels


def word_dropout(texts: list[str], rate: float, seed: int = 0) -> list[str]:
    """Drop each word with probability ``rate`` (keeping at least one word per text)."""
    if not 0 <= rate < 1:
        raise ValueError(f"rate must lie in [0, 1), got {rate}")
    rng = np.random.default_rng(seed)
    out = []
    for text in texts:  # one pass over a few hundred short documents, outside any training loop
        words = re.findall(r"\S+", text)
        keep = rng.random(len(words)) >= rate
        keep[rng.integers(len(words))] |= not keep.any()
        out.append(" ".join(w for w, k in zip(words, keep) if k))
    return out
