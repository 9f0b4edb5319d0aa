"""Generative adversarial networks for item recommendation (survey Section 2.3): IRGAN.

IRGAN (Wang et al., SIGIR 2017) plays a minimax game between two scorers of
(user, item) pairs:

* the **generator** G defines a softmax over the items a user has not seen,
  p_G(j | u) ∝ exp(g(u, j) / T), and tries to pick items the discriminator
  mistakes for real interactions;
* the **discriminator** D is an ordinary recommender trained to rank the
  user's real items above the generator's picks (BPR or logistic loss).

Items are discrete, so G cannot receive gradients through its samples; it is
trained by policy gradient (REINFORCE) with D's opinion of each sample as the
reward. After training, D is the recommender we keep and G is an adaptive
*negative sampler*. With ``negatives="uniform"`` the same class trains D with
uniformly drawn negatives and no generator: the plain BPR control with the same
architecture, budget and code path.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import nn

from course_utils.config import get_device
from course_utils.data.splits import History, check_interaction_matrix
from course_utils.models.baselines import bpr_loss, fold_in_users, sample_uniform_negatives
from course_utils.training import FitResult, check_finite, count_parameters, fit_loop

D_LOSSES = ("bpr", "logistic")
NEGATIVE_SOURCES = ("generator", "uniform")


class MFScorer(nn.Module):
    """Dot-product scorer s(u, i) = p_u · q_i + b_i, used for both the generator and the discriminator."""

    def __init__(self, n_users: int, n_items: int, dim: int, init_std: float = 0.1):
        super().__init__()
        self.user = nn.Embedding(n_users, dim)
        self.item = nn.Embedding(n_items, dim)
        self.item_bias = nn.Embedding(n_items, 1)
        nn.init.normal_(self.user.weight, std=init_std)
        nn.init.normal_(self.item.weight, std=init_std)
        nn.init.zeros_(self.item_bias.weight)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """users: (B,); items: (B,) or (B, S) -> scores with the shape of ``items``."""
        u = self.user(users)
        if items.dim() == 2:
            u = u.unsqueeze(1)
        return (u * self.item(items)).sum(-1) + self.item_bias(items).squeeze(-1)

    def all_items(self, users: torch.Tensor) -> torch.Tensor:
        """users: (B,) -> (B, n_items) scores of every item."""
        return self.user(users) @ self.item.weight.T + self.item_bias.weight.T

    def l2(self, users: torch.Tensor, *items: torch.Tensor) -> torch.Tensor:
        """Squared norm of the embeddings a batch touched, per training example."""
        total = self.user(users).pow(2).sum()
        for batch in items:
            total = total + self.item(batch).pow(2).sum()
        return total / len(users)


def discriminator_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor, kind: str = "bpr") -> torch.Tensor:
    """D's loss on real items vs sampled negatives: pairwise BPR or pointwise logistic (IRGAN's original)."""
    if kind == "bpr":
        return bpr_loss(pos_scores, neg_scores)
    if kind == "logistic":
        logsig = nn.functional.logsigmoid
        return -(logsig(pos_scores).mean() + logsig(-neg_scores).mean())
    raise ValueError(f"d_loss must be one of {D_LOSSES}, got {kind!r}")


def generator_reward(d_scores: torch.Tensor) -> torch.Tensor:
    """IRGAN's reward for a sampled item: -log(1 - D(j|u)) = log(1 + exp(s_D(u, j))), large when D is fooled."""
    return nn.functional.softplus(d_scores)


def reinforce_loss(log_probs: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
    """Policy-gradient surrogate for G. log_probs, rewards: (B, S), S samples per user.

    The baseline is the mean reward of the *other* S-1 samples of the same user,
    which keeps the estimator unbiased while removing most of its variance.
    """
    if log_probs.shape != rewards.shape or rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(f"need (B, S) log-probs and rewards with S >= 2 samples, got {tuple(log_probs.shape)} "
                         f"and {tuple(rewards.shape)}")
    n = rewards.shape[1]
    baseline = (rewards.sum(1, keepdim=True) - rewards) / (n - 1)
    return -(log_probs * (rewards - baseline).detach()).mean()


def masked_softmax(logits: torch.Tensor, forbidden: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Softmax over the allowed items of each row. logits, forbidden: (B, n_items)."""
    return torch.softmax((logits / temperature).masked_fill(forbidden, float("-inf")), dim=1)


class IRGAN:
    """IRGAN for implicit feedback: G samples negatives for D, G learns from D's rewards.

    ``negatives="uniform"`` trains the same D with uniform negatives (BPR), the control.
    ``uniform_mix`` blends a little uniform sampling into G's negatives so that D
    keeps seeing easy items too, and G cannot collapse onto a handful of items.
    """

    def __init__(self, dim: int = 64, lr: float = 1e-2, g_lr: float = 1e-3, l2: float = 1e-2,
                 g_l2: float = 1e-3, batch_size: int = 4096, n_epochs: int = 30, n_samples: int = 8,
                 temperature: float = 1.0, uniform_mix: float = 0.2, d_loss: str = "bpr",
                 negatives: str = "generator", patience: int = 4, seed: int = 0):
        if dim <= 0 or batch_size <= 0 or n_epochs <= 0:
            raise ValueError(f"need dim, batch_size and n_epochs > 0; got {dim}, {batch_size}, {n_epochs}")
        check_finite(lr=lr, g_lr=g_lr, l2=l2, g_l2=g_l2, temperature=temperature, uniform_mix=uniform_mix)
        if lr <= 0 or g_lr <= 0 or l2 < 0 or g_l2 < 0:
            raise ValueError(f"need lr, g_lr > 0 and l2, g_l2 >= 0; got {lr}, {g_lr}, {l2}, {g_l2}")
        if n_samples < 2:
            raise ValueError(f"n_samples must be at least 2 (the REINFORCE baseline uses the others), got {n_samples}")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if not 0 <= uniform_mix <= 1:
            raise ValueError(f"uniform_mix must lie in [0, 1], got {uniform_mix}")
        if d_loss not in D_LOSSES:
            raise ValueError(f"d_loss must be one of {D_LOSSES}, got {d_loss!r}")
        if negatives not in NEGATIVE_SOURCES:
            raise ValueError(f"negatives must be one of {NEGATIVE_SOURCES}, got {negatives!r}")
        self.dim, self.lr, self.g_lr, self.l2, self.g_l2 = dim, lr, g_lr, l2, g_l2
        self.batch_size, self.n_epochs, self.n_samples = batch_size, n_epochs, n_samples
        self.temperature, self.uniform_mix, self.d_loss = temperature, uniform_mix, d_loss
        self.negatives, self.patience, self.seed = negatives, patience, seed

    # --- one training step ----------------------------------------------------------------------

    def generator_log_probs(self, users: torch.Tensor) -> torch.Tensor:
        """(U,) users -> (U, n_items) log p_G(j | u) over unseen items (seen items get -inf)."""
        logits = self.generator_.all_items(users) / self.temperature
        return torch.log_softmax(logits.masked_fill(self.seen_[users], float("-inf")), dim=1)

    def negative_distribution(self, users: torch.Tensor, g_log_probs: torch.Tensor | None = None) -> torch.Tensor:
        """(U,) users -> (U, n_items) distribution D's negatives are drawn from (seen items get 0)."""
        uniform = self.uniform_[users]
        if self.negatives == "uniform":
            return uniform
        if g_log_probs is None:
            g_log_probs = self.generator_log_probs(users)
        return (1 - self.uniform_mix) * g_log_probs.detach().exp() + self.uniform_mix * uniform

    def _draw(self, probs: torch.Tensor, n: int) -> torch.Tensor:
        """n draws per row; PyTorch's n=1 path is ~20x slower on CPU, so draw at least 2 and keep n."""
        return torch.multinomial(probs, max(n, 2), replacement=True, generator=self.torch_rng_)[:, :n]

    def _train_step(self, u: torch.Tensor, i: torch.Tensor, uniform_negatives: np.ndarray) -> tuple[float, float]:
        """One D update on a batch of (user, item) pairs, then one REINFORCE update of G.

        Returns D's loss and G's mean reward (NaN without a generator).
        """
        batch_users, row = torch.unique(u, return_inverse=True)
        if self.negatives == "generator":
            g_log_probs = self.generator_log_probs(batch_users)    # one G forward serves both updates
            probs = self.negative_distribution(batch_users, g_log_probs)
            j = self._draw(probs[row], 1).squeeze(1)                # a whole batch in one call
        else:
            j = torch.as_tensor(uniform_negatives, dtype=torch.long, device=u.device)
        # 1. Discriminator: real items above the sampled ones.
        d_loss = discriminator_loss(self.discriminator_(u, i), self.discriminator_(u, j), self.d_loss)
        d_loss = d_loss + self.l2 * self.discriminator_.l2(u, i, j)
        self.d_optimizer_.zero_grad()
        d_loss.backward()
        self.d_optimizer_.step()
        if self.negatives == "uniform":
            return d_loss.item(), float("nan")
        # 2. Generator: sample S items per user, reward = how real the updated D finds them.
        samples = self._draw(g_log_probs.detach().exp(), self.n_samples)
        with torch.no_grad():
            rewards = generator_reward(self.discriminator_(batch_users, samples))
        g_loss = reinforce_loss(g_log_probs.gather(1, samples), rewards)
        g_loss = g_loss + self.g_l2 * self.generator_.l2(batch_users, samples)
        self.g_optimizer_.zero_grad()
        g_loss.backward()
        self.g_optimizer_.step()
        return d_loss.item(), float(rewards.mean())

    # --- training -------------------------------------------------------------------------------

    def fit(self, X, validate=None, init_from=None) -> "IRGAN":
        """Train on a users × items 0/1 matrix; ``validate(model) -> float`` enables early stopping.

        ``init_from``: a fitted model (an IRGAN, typically the uniform-negative BPR control) or an
        :class:`MFScorer` whose weights start *both* D and G, as the original IRGAN pre-trains its
        players: D starts as a good recommender, and G's softmax starts as an informative
        distribution over each user's unseen items instead of a near-uniform one.
        """
        X = check_interaction_matrix(X)
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        device = get_device()
        self.torch_rng_ = torch.Generator(device=device).manual_seed(self.seed)
        n_users, n_items = X.shape
        seen = X.toarray() > 0
        self.seen_ = torch.as_tensor(seen, device=device)
        self.uniform_ = torch.as_tensor(~seen / (~seen).sum(1, keepdims=True), dtype=torch.float32, device=device)
        self.item_counts_ = torch.as_tensor(seen.sum(0), device=device)
        self.discriminator_ = MFScorer(n_users, n_items, self.dim).to(device)
        self.generator_ = MFScorer(n_users, n_items, self.dim).to(device)
        if init_from is not None:
            state = _pretrained_state(init_from, n_users, n_items, self.dim)
            self.discriminator_.load_state_dict(state)
            self.generator_.load_state_dict(state)
        self.d_optimizer_ = torch.optim.Adam(self.discriminator_.parameters(), lr=self.lr)
        self.g_optimizer_ = torch.optim.Adam(self.generator_.parameters(), lr=self.g_lr)
        users_all, items_all = X.nonzero()
        self.train_matrix_, self._fold_in_cache = X, {}
        stats = []

        def train_epoch(epoch: int) -> float:
            order = rng.permutation(len(users_all))
            d_losses, rewards = [], []
            for start in range(0, len(order), self.batch_size):
                idx = order[start:start + self.batch_size]
                u = torch.as_tensor(users_all[idx], dtype=torch.long, device=device)
                i = torch.as_tensor(items_all[idx], dtype=torch.long, device=device)
                uniform = sample_uniform_negatives(X, users_all[idx], rng) if self.negatives == "uniform" else None
                d_loss, reward = self._train_step(u, i, uniform)
                d_losses.append(d_loss * len(idx))
                rewards.append(reward)
            # what the sampler does now, on a fixed sample of pairs, for the lesson's plots
            stats.append({"epoch": epoch, **self._sampler_stats(self.probe_users_), "G reward": np.mean(rewards)})
            return sum(d_losses) / len(order)

        probe = rng.choice(len(users_all), size=min(2048, len(users_all)), replace=False)
        self.probe_users_ = torch.as_tensor(users_all[probe], dtype=torch.long, device=device)
        with torch.no_grad():  # the sampler at the start, to measure how far G moves
            self.start_log_probs_ = self._sampler_log_probs(self.probe_users_)
        stats.append({"epoch": 0, **self._sampler_stats(self.probe_users_), "G reward": float("nan")})
        self.fit_result_: FitResult = fit_loop(
            train_epoch, self.n_epochs, None if validate is None else (lambda: validate(self)),
            patience=self.patience, module=self.discriminator_, desc=f"IRGAN ({self.negatives} negatives)")
        self.sampler_history_ = pd.DataFrame(stats)
        return self

    def _sampler_log_probs(self, users: torch.Tensor) -> torch.Tensor:
        """(U, n_items) log-probabilities of the negative sampler's own distribution (G, or uniform)."""
        if self.negatives == "uniform":
            return torch.log(self.uniform_[users])
        return self.generator_log_probs(users)

    @torch.no_grad()
    def _sampler_stats(self, users: torch.Tensor) -> dict:
        """What the generator (or the uniform sampler) picks for these users, for the lesson's plots.

        "KL from start" is KL(p_now || p_start) in nats, averaged over users: how far the
        sampler's distribution has moved since training began (0 for the uniform sampler).
        """
        log_probs = self._sampler_log_probs(users)
        probs = log_probs.exp()
        picks = self._draw(probs, 1)
        d_all = self.discriminator_.all_items(users).masked_fill(self.seen_[users], float("-inf"))
        allowed = (~self.seen_[users]).sum(1)
        rank_pct = (d_all > d_all.gather(1, picks)).sum(1) / allowed  # 0: D's favourite unseen item, 1: its least
        entropy = -(probs * log_probs.clamp_min(-1e4)).sum(1)
        moved = probs * (log_probs - self.start_log_probs_).nan_to_num(0.0, posinf=0.0, neginf=0.0)
        return {"negative popularity": float(self.item_counts_[picks].float().mean()),
                "sampler entropy": float(entropy.mean()),
                "negative rank under D (%)": 100 * float(rank_pct.mean()),
                "KL from start": float(moved.sum(1).mean())}

    # --- using the models -----------------------------------------------------------------------

    @torch.no_grad()
    def score(self, users: np.ndarray, history: History) -> np.ndarray:
        """Discriminator scores (the recommender we keep), user vectors folded in on ``history``: len(users) × n_items."""
        d = self.discriminator_
        user_factors = fold_in_users(self, d.user.weight, d.item.weight, d.item_bias.weight, history)
        users_t = torch.as_tensor(np.asarray(users), dtype=torch.long, device=self.seen_.device)
        return (user_factors[users_t] @ d.item.weight.T + d.item_bias.weight.T).cpu().numpy()

    @torch.no_grad()
    def generator_scores(self, users: np.ndarray) -> np.ndarray:
        """Generator logits g(u, i) / T: the generator's own view of what each user would pick."""
        users_t = torch.as_tensor(np.asarray(users), dtype=torch.long, device=self.seen_.device)
        return (self.generator_.all_items(users_t) / self.temperature).cpu().numpy()

    def pseudo_positives(self, users: np.ndarray, n_extra: int, seed: int = 0,
                         source: str = "generator") -> sp.csr_matrix:
        """An n_users × n_items 0/1 matrix with ``n_extra`` unseen items drawn for each of ``users``.

        ``source="generator"`` draws from G's softmax over what each user has not seen in
        training: synthetic interactions for data augmentation. ``source="uniform"`` draws
        uniformly among the same unseen items: the control that tells whether G's choices
        matter at all. Other users' rows stay empty.
        """
        if source not in NEGATIVE_SOURCES:
            raise ValueError(f"source must be one of {NEGATIVE_SOURCES}, got {source!r}")
        users = np.asarray(users)
        seen = sp.csr_matrix(self.seen_[torch.as_tensor(users, device=self.seen_.device)].cpu().numpy())
        logits = self.generator_scores(users) if source == "generator" else np.zeros(seen.shape, np.float32)
        rows = sample_pseudo_positives(logits, seen, n_extra, seed).tocoo()
        return sp.csr_matrix((rows.data, (users[rows.row], rows.col)), shape=tuple(self.seen_.shape))

    @property
    def n_params(self) -> int:
        """Parameters of D, the deployed recommender (G is a training-time helper)."""
        return count_parameters(self.discriminator_)

    @property
    def n_params_generator(self) -> int:
        return 0 if self.negatives == "uniform" else count_parameters(self.generator_)


def _pretrained_state(source, n_users: int, n_items: int, dim: int) -> dict:
    """The weights of a fitted IRGAN's discriminator (or of an MFScorer), checked against the new model's shape."""
    scorer = getattr(source, "discriminator_", source)
    if not isinstance(scorer, MFScorer):
        raise TypeError(f"init_from must be a fitted IRGAN or an MFScorer, got {type(source).__name__}")
    shape = (scorer.user.num_embeddings, scorer.item.num_embeddings, scorer.user.embedding_dim)
    if shape != (n_users, n_items, dim):
        raise ValueError(f"init_from has (users, items, dim) = {shape}, this model needs {(n_users, n_items, dim)}")
    return {name: tensor.detach().clone() for name, tensor in scorer.state_dict().items()}


def sample_pseudo_positives(logits: np.ndarray, exclude: sp.csr_matrix, n_extra: int,
                            seed: int = 0) -> sp.csr_matrix:
    """Draw ``n_extra`` distinct unseen items per row from softmax(logits): synthetic interactions.

    logits: (B, n_items) generator scores; exclude: (B, n_items) items the user already has.
    Returns a (B, n_items) 0/1 CSR matrix to add to the training data (GAN-based augmentation).
    """
    if n_extra < 0:
        raise ValueError(f"n_extra must be >= 0, got {n_extra}")
    if logits.shape != exclude.shape:
        raise ValueError(f"logits {logits.shape} and exclude {exclude.shape} must have the same shape")
    rows = logits.shape[0]
    if n_extra == 0 or rows == 0:
        return sp.csr_matrix(logits.shape, dtype=np.float32)
    forbidden = torch.as_tensor(exclude.toarray() > 0)
    probs = masked_softmax(torch.as_tensor(logits, dtype=torch.float32), forbidden)
    picked = torch.multinomial(probs, n_extra, replacement=False,
                               generator=torch.Generator().manual_seed(seed)).numpy()
    return sp.csr_matrix((np.ones(picked.size, np.float32), (np.repeat(np.arange(rows), n_extra), picked.ravel())),
                         shape=logits.shape)
