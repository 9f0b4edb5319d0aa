"""DiffRec: a diffusion model over interaction vectors (Wang et al., SIGIR 2023; survey Section 2.4, lesson 05).

A user's row x_0 ∈ {0,1}^n_items is corrupted by Gaussian noise in T small steps,

    q(x_t | x_0) = N( sqrt(ᾱ_t) x_0, (1 - ᾱ_t) I ),   ᾱ_t = Π_{s≤t} (1 - β_s),

and an MLP f(x_t, t) learns to predict x_0 back (squared error). To recommend,
DiffRec does *not* start from pure noise, which would forget the user: it noises
the user's history only up to a step T' ≤ T and walks back to step 0, reading the
final x̂_0 as item scores.

The survey's second use of diffusion (Liu et al., CIKM 2023; Diff4Rec, Wu et al., MM 2023)
is data augmentation: generate extra interactions for users with little data.
``DiffRec.generate_interactions`` does that with the same denoiser, and offers the
uniform-random control that any such gain must beat.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from course_utils.config import get_device
from course_utils.data.splits import History, check_interaction_matrix
from course_utils.training import FitResult, check_finite, count_parameters, fit_loop

SCHEDULES = ("linear", "linear-var")
AUGMENTATION_SOURCES = ("diffrec", "uniform")


def noise_schedule(n_steps: int, noise_scale: float, noise_min: float, noise_max: float,
                   kind: str = "linear") -> np.ndarray:
    """β_1..β_T (length ``n_steps``) of DiffRec's noise schedule.

    ``"linear"``: β_t rises linearly from noise_scale·noise_min to noise_scale·noise_max.
    ``"linear-var"`` (the paper's Eq.): the total variance 1 - ᾱ_t rises linearly
    instead, and β_t is derived from it. ``noise_scale`` shrinks either one: DiffRec
    keeps the noise small so that the corrupted vector still says who the user is.
    """
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    if not 0 < noise_scale <= 1:
        raise ValueError(f"noise_scale must lie in (0, 1], got {noise_scale}")
    if not 0 < noise_min <= noise_max < 1:
        raise ValueError(f"need 0 < noise_min <= noise_max < 1, got {noise_min} and {noise_max}")
    if kind not in SCHEDULES:
        raise ValueError(f"kind must be one of {SCHEDULES}, got {kind!r}")
    ramp = np.linspace(noise_scale * noise_min, noise_scale * noise_max, n_steps, dtype=np.float64)
    if kind == "linear":
        return ramp
    alpha_bar = 1.0 - ramp
    return 1.0 - alpha_bar / np.concatenate([[1.0], alpha_bar[:-1]])


class GaussianDiffusion:
    """The fixed forward process and the posterior it implies, for steps t = 1..T (index 0 is 'no noise')."""

    def __init__(self, betas: np.ndarray, device=None):
        betas = np.asarray(betas, dtype=np.float64)
        if betas.ndim != 1 or len(betas) == 0 or (betas <= 0).any() or (betas >= 1).any():
            raise ValueError("betas must be a non-empty 1-D array of values in (0, 1)")
        self.n_steps = len(betas)
        alpha_bar = np.concatenate([[1.0], np.cumprod(1.0 - betas)])          # ᾱ_0 = 1, ..., ᾱ_T
        as_tensor = lambda a: torch.as_tensor(a, dtype=torch.float32, device=device)
        self.betas = as_tensor(np.concatenate([[0.0], betas]))
        self.alpha_bar = as_tensor(alpha_bar)
        # q(x_{t-1} | x_t, x_0) = N(c0·x_0 + ct·x_t, ·): the coefficients of its mean.
        self.coef_x0 = as_tensor(np.concatenate([[1.0], betas * np.sqrt(alpha_bar[:-1]) / (1.0 - alpha_bar[1:])]))
        self.coef_xt = as_tensor(np.concatenate(
            [[0.0], (1.0 - alpha_bar[:-1]) * np.sqrt(1.0 - betas) / (1.0 - alpha_bar[1:])]))

    def _check_steps(self, t: torch.Tensor) -> torch.Tensor:
        if (t < 0).any() or (t > self.n_steps).any():
            raise ValueError(f"steps must lie in 0..{self.n_steps}, got {t.min().item()}..{t.max().item()}")
        return t

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(ᾱ_t) x_0 + sqrt(1 - ᾱ_t) ε.   x0, noise: batch × n_items; t: batch of steps."""
        a = self.alpha_bar[self._check_steps(t)][:, None]
        return a.sqrt() * x0 + (1.0 - a).sqrt() * noise

    def posterior_mean(self, x_t: torch.Tensor, x0_hat: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Mean of q(x_{t-1} | x_t, x̂_0): where one reverse step lands, given the model's guess of x_0."""
        t = self._check_steps(t)
        return self.coef_x0[t][:, None] * x0_hat + self.coef_xt[t][:, None] * x_t

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        """Signal-to-noise ratio ᾱ_t / (1 - ᾱ_t) (infinite at t = 0)."""
        a = self.alpha_bar[self._check_steps(t)]
        return a / (1.0 - a)


def history_survival(betas: np.ndarray, X: sp.csr_matrix, seed: int = 0) -> float:
    """Share of each user's history still ranked on top after noising the rows of X to step T = len(betas).

    For each user with h items, rank all items by the noisy vector x_T alone and count how many
    of the first h are the user's own items; averaged over users. No model involved: it is the
    information the reverse process has left to work with.
    """
    x0 = torch.as_tensor(X.toarray(), dtype=torch.float32)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    x_T = GaussianDiffusion(betas).q_sample(x0, torch.full((len(x0),), len(betas)), noise)
    sizes = X.getnnz(axis=1)
    top = torch.argsort(x_T, dim=1, descending=True).numpy()
    hits = np.take_along_axis(X.toarray(), top, axis=1)                 # 1 where the ranked item is in the history
    on_top = hits * (np.arange(X.shape[1])[None, :] < sizes[:, None])    # only the first |history| ranks
    return float((on_top.sum(axis=1)[sizes > 0] / sizes[sizes > 0]).mean())


def denoiser_size(n_items: int, hidden_dim: int = 600, time_dim: int = 10) -> int:
    """Parameters of ``Denoiser``: time layer, n_items + time_dim -> hidden, hidden -> n_items (with biases)."""
    return time_dim * time_dim + time_dim + (n_items + time_dim) * hidden_dim + hidden_dim + hidden_dim * n_items + n_items


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of the step number (batch × dim), as in Transformers' positions."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None, :]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


class Denoiser(nn.Module):
    """f(x_t, t) -> x̂_0: an MLP over the noisy interaction vector and an embedding of t."""

    def __init__(self, n_items: int, hidden_dim: int, time_dim: int, dropout: float):
        super().__init__()
        self.time_dim = time_dim
        self.time = nn.Linear(time_dim, time_dim)
        self.net = nn.Sequential(nn.Linear(n_items + time_dim, hidden_dim), nn.Tanh(),
                                 nn.Linear(hidden_dim, n_items))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t: batch × n_items; t: batch of steps -> batch × n_items."""
        time = self.time(timestep_embedding(t, self.time_dim))
        return self.net(torch.cat([self.dropout(x_t), time], dim=1))


def x0_mse_loss(x0_hat: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """DiffRec's training loss: squared error of the predicted x_0, mean over items and users."""
    return ((x0_hat - x0) ** 2).mean()


class DiffRec:
    """DiffRec (Wang et al., 2023): train f(x_t, t) ≈ x_0; recommend by noising the history to T' and denoising.

    ``inference_steps`` (T') can be changed after training to compare 0 (no noise
    added, one denoising pass), small and large starting points. Inference noise
    comes from a generator seeded with ``seed``, so scores are reproducible.
    ``diffusion_noise=False`` is the ablation: the same network, steps and dropout,
    but x_t = x_0 in training and inference (no Gaussian noise at all).
    """

    name = "DiffRec"

    def __init__(self, n_steps: int = 10, noise_scale: float = 0.01, noise_min: float = 5e-4,
                 noise_max: float = 5e-3, schedule: str = "linear", inference_steps: int = 0,
                 hidden_dim: int = 600, time_dim: int = 10, dropout: float = 0.5, lr: float = 1e-3,
                 weight_decay: float = 0.0, batch_size: int = 128, n_epochs: int = 100, patience: int = 5,
                 seed: int = 0, diffusion_noise: bool = True, device=None):
        self.betas = noise_schedule(n_steps, noise_scale, noise_min, noise_max, schedule)
        check_finite(lr=lr, weight_decay=weight_decay, dropout=dropout)
        bad = {k: v for k, v in dict(hidden_dim=hidden_dim, time_dim=time_dim, lr=lr, batch_size=batch_size,
                                     n_epochs=n_epochs, patience=patience).items() if not v > 0}
        if bad:
            raise ValueError(f"these arguments must be positive: {bad}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        self.n_steps, self.hidden_dim, self.time_dim, self.dropout = n_steps, hidden_dim, time_dim, dropout
        self.inference_steps = inference_steps
        self.lr, self.weight_decay, self.batch_size = lr, weight_decay, batch_size
        self.n_epochs, self.patience, self.seed = n_epochs, patience, seed
        self.diffusion_noise = bool(diffusion_noise)
        self.device = torch.device(device) if device is not None else get_device()
        self.diffusion = GaussianDiffusion(self.betas, self.device)

    @property
    def inference_steps(self) -> int:
        return self._inference_steps

    @inference_steps.setter
    def inference_steps(self, value: int) -> None:
        if not 0 <= value <= self.n_steps:
            raise ValueError(f"inference_steps (T') must lie in 0..n_steps={self.n_steps}, got {value}")
        self._inference_steps = int(value)

    def fit(self, X, validate: Callable | None = None) -> "DiffRec":
        """Train on X (users × items); ``validate(model) -> float`` enables early stopping."""
        X = check_interaction_matrix(X)
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        rows = np.flatnonzero(X.getnnz(axis=1))
        self.net_ = Denoiser(X.shape[1], self.hidden_dim, self.time_dim, self.dropout).to(self.device)
        optimizer = torch.optim.Adam(self.net_.parameters(), lr=self.lr, weight_decay=self.weight_decay)

        def train_epoch(epoch: int) -> float:
            self.net_.train()
            order, total = rng.permutation(rows), 0.0
            for start in range(0, len(order), self.batch_size):
                batch = order[start:start + self.batch_size]
                x0 = torch.as_tensor(X[batch].toarray(), device=self.device)
                t = torch.randint(1, self.n_steps + 1, (len(batch),), device=self.device)
                x_t = self.diffusion.q_sample(x0, t, torch.randn_like(x0)) if self.diffusion_noise else x0
                loss = x0_mse_loss(self.net_(x_t, t), x0)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += loss.item() * len(batch)
            return total / len(order)

        self.fit_result_: FitResult = fit_loop(
            train_epoch, self.n_epochs, None if validate is None else (lambda: validate(self)),
            patience=self.patience, module=self.net_, desc=self.name)
        return self

    @torch.no_grad()
    def denoise(self, x0: torch.Tensor, start_step: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Noise x0 (batch × n_items) to ``start_step`` = T', then step back to 0; returns the final x̂_0."""
        self.net_.eval()
        steps = lambda s: torch.full((len(x0),), s, dtype=torch.long, device=self.device)
        noise = torch.randn(x0.shape, generator=generator).to(self.device)
        x_t = self.diffusion.q_sample(x0, steps(start_step), noise) if self.diffusion_noise else x0
        x0_hat = x_t
        for step in range(max(start_step, 1), 0, -1):  # T' steps (one pass when T' = 0)
            x0_hat = self.net_(x_t, steps(step))
            x_t = self.diffusion.posterior_mean(x_t, x0_hat, steps(step))
        return x0_hat

    def score(self, users: np.ndarray, history: History) -> np.ndarray:
        x0 = torch.as_tensor(history.matrix[np.asarray(users)].toarray(), device=self.device)
        generator = torch.Generator().manual_seed(self.seed)
        return self.denoise(x0, self.inference_steps, generator).cpu().numpy()

    def generate_interactions(self, users: np.ndarray, history: History, n_extra: int, source: str = "diffrec",
                              seed: int = 0) -> sp.csr_matrix:
        """An n_users × n_items 0/1 matrix with ``n_extra`` synthetic interactions for each of ``users``.

        ``source="diffrec"``: the unseen items with the highest x̂_0 after noising the user's
        history to T' and denoising (diffusion-based augmentation). ``source="uniform"``:
        unseen items drawn uniformly at random with ``seed``, the control. Other rows are empty.
        """
        if source not in AUGMENTATION_SOURCES:
            raise ValueError(f"source must be one of {AUGMENTATION_SOURCES}, got {source!r}")
        users = np.asarray(users)
        seen = history.matrix[users]
        if n_extra < 0 or n_extra > seen.shape[1] - seen.getnnz(axis=1).max(initial=0):
            raise ValueError(f"n_extra must lie between 0 and the number of unseen items, got {n_extra}")
        if source == "diffrec":
            scores = self.score(users, history)
        else:
            scores = np.random.default_rng(seed).random(seen.shape)
        scores = np.where(seen.toarray() > 0, -np.inf, scores)
        picked = np.argpartition(-scores, max(n_extra - 1, 0), axis=1)[:, :n_extra]
        rows = np.repeat(users, n_extra)
        return sp.csr_matrix((np.ones(rows.size, np.float32), (rows, picked.ravel())), shape=history.matrix.shape)

    @property
    def n_params(self) -> int:
        return count_parameters(self.net_)
