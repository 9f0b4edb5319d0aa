"""Generative flow networks for listwise recommendation (survey Section 2.5): a GFN4Rec-style list generator.

A GFlowNet (Bengio et al., 2021) builds an object step by step and is trained
so that it *samples* complete objects with probability proportional to a
reward, P(x) ∝ R(x), instead of only finding the single best one. GFN4Rec
(Liu et al., KDD 2023) applies this to recommendation lists: the object is an
ordered list of k items, built one item at a time by a policy
P_F(i_t | user, i_1..i_{t-1}).

Here the reward comes from a pre-trained scorer (e.g. EASE) and a list-level
diversity term:

    log R(u, L) = β · Σ_t z_u(i_t) / log2(t + 1)  +  γ · ILD(L)

z_u(i) are the scorer's scores standardised per user, weighted like DCG so
that the best items should come first (the list order is the ranking), and
ILD is the intra-list diversity of the items' feature vectors (genres).
Training uses the trajectory-balance loss (Malkin et al., 2022):

    ( log Z_u + Σ_t log P_F(i_t | s_t) - log R(u, L) )²

(a list is a sequence, so every partial list has one parent and P_B = 1).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from course_utils.config import get_device
from course_utils.data.splits import History
from course_utils.models.reranking import list_to_scores  # noqa: F401  (shared with the MMR re-ranker)
from course_utils.training import FitResult, check_finite, count_parameters, fit_loop


def standardized_scores(scores: np.ndarray, exclude: sp.csr_matrix) -> np.ndarray:
    """Per-user z-scores of a base scorer over the items the user has not seen; seen items get 0.

    scores: (B, n_items); exclude: (B, n_items) sparse 0/1. Standardising makes one
    reward scale fit every user, whatever the raw range of the scorer's numbers.
    """
    if scores.shape != exclude.shape:
        raise ValueError(f"scores {scores.shape} and exclude {exclude.shape} must have the same shape")
    seen = exclude.toarray() > 0
    masked = np.ma.masked_array(np.asarray(scores, np.float64), mask=seen)
    z = (masked - masked.mean(axis=1, keepdims=True)) / (masked.std(axis=1, keepdims=True) + 1e-8)
    return z.filled(0.0).astype(np.float32)


def dcg_weights(k: int) -> torch.Tensor:
    """1 / log2(t + 1) for positions t = 1..k."""
    return 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float32))


def intra_list_diversity(features: torch.Tensor) -> torch.Tensor:
    """(B, k, F) feature vectors of each list's items -> (B,) mean pairwise cosine distance."""
    unit = features / features.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    sims = unit @ unit.transpose(1, 2)
    k = features.shape[1]
    return 1.0 - (sims.sum((1, 2)) - sims.diagonal(dim1=1, dim2=2).sum(1)) / (k * (k - 1))


def list_log_reward(z_picked: torch.Tensor, features_picked: torch.Tensor, beta: float, gamma: float) -> torch.Tensor:
    """log R(u, L) = β · Σ_t z_u(i_t) / log2(t+1) + γ · ILD(L).  z_picked: (B, k); features_picked: (B, k, F)."""
    relevance = (z_picked * dcg_weights(z_picked.shape[1]).to(z_picked.device)).sum(1)
    diversity = intra_list_diversity(features_picked) if gamma else torch.zeros_like(relevance)
    return beta * relevance + gamma * diversity


def trajectory_balance_loss(log_z: torch.Tensor, sum_log_pf: torch.Tensor, log_reward: torch.Tensor) -> torch.Tensor:
    """Mean over lists of (log Z + Σ log P_F - log R)²; all inputs (B,)."""
    if not log_z.shape == sum_log_pf.shape == log_reward.shape:
        raise ValueError(f"log_z, sum_log_pf and log_reward must share one shape, got "
                         f"{tuple(log_z.shape)}, {tuple(sum_log_pf.shape)}, {tuple(log_reward.shape)}")
    return (log_z + sum_log_pf - log_reward).pow(2).mean()


class ListPolicy(nn.Module):
    """The forward policy P_F(i_t | u, i_<t) over items, for all users of a batch at once.

    logits_t(i) = a_t · z_u(i) + ⟨ f([p_u, m_t]), e_i ⟩

    z_u: the scorer's standardised scores; e_i: item i's unit feature vector;
    p_u: mean feature vector of the user's history; m_t: mean feature vector
    of the items picked so far; a_t: a learned scale per position; f: a small
    MLP. The second term lets the policy move towards (or away from) features
    given the user's taste and what the list already holds.
    """

    def __init__(self, item_features: torch.Tensor, scale: torch.Tensor, hidden: int = 64):
        super().__init__()
        unit = item_features / item_features.norm(dim=1, keepdim=True).clamp_min(1e-12)
        self.register_buffer("features", unit)
        n_features = unit.shape[1]
        self.scale = nn.Parameter(scale.clone().float())   # (k,), one per list position
        self.context = nn.Sequential(nn.Linear(2 * n_features, hidden), nn.Tanh(), nn.Linear(hidden, n_features))
        nn.init.zeros_(self.context[-1].weight)            # start from the scorer alone
        nn.init.zeros_(self.context[-1].bias)

    def forward(self, z: torch.Tensor, profile: torch.Tensor, picked_mean: torch.Tensor, step: int) -> torch.Tensor:
        """z: (B, n_items); profile, picked_mean: (B, F) -> (B, n_items) logits (before masking)."""
        shift = self.context(torch.cat([profile, picked_mean], dim=1))
        return self.scale[step] * z + shift @ self.features.T


def inverse_cdf_sample(probs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """One item per row of probs (B, n_items), chosen by the row's uniform number in [0, 1) (B,).

    The item whose slice of the cumulative distribution holds the uniform; zero-probability
    items own empty slices and are never chosen. Fixing one uniform per (user, position)
    makes a user's sampled list independent of which other users share the batch.
    """
    cdf = probs.cumsum(1)
    return torch.searchsorted(cdf, (uniforms * cdf[:, -1])[:, None], right=True).squeeze(1)


class GFN4Rec:
    """Generate top-k lists item by item with a GFlowNet trained by trajectory balance.

    base: a fitted scorer with ``score(users, history)`` (the reward's relevance and
    the policy's input); item_features: (n_items, F) array, e.g. genre indicators;
    beta, gamma: weights of relevance and diversity in log R; explore: share of
    uniform draws mixed into training roll-outs (trajectory balance allows off-policy
    training); temperature: decoding temperature used by ``score`` (0 = argmax).
    """

    def __init__(self, base, item_features: np.ndarray, k: int = 10, beta: float = 4.0, gamma: float = 0.0,
                 hidden: int = 64, lr: float = 1e-2, log_z_lr: float = 0.1, batch_size: int = 128,
                 n_epochs: int = 30, explore: float = 0.05, temperature: float = 0.0, eval_every: int = 5,
                 seed: int = 0):
        if not callable(getattr(base, "score", None)):
            raise TypeError(f"base must be a fitted model with a score(users, history) method, got {type(base).__name__}")
        item_features = np.asarray(item_features, np.float32)
        if item_features.ndim != 2 or item_features.shape[0] == 0:
            raise ValueError(f"item_features must be an (n_items, F) array, got shape {item_features.shape}")
        if k < 2:
            raise ValueError(f"k must be at least 2 (a list), got {k}")
        check_finite(beta=beta, gamma=gamma, lr=lr, log_z_lr=log_z_lr, explore=explore, temperature=temperature)
        if beta <= 0 or gamma < 0:
            raise ValueError(f"need beta > 0 and gamma >= 0, got {beta} and {gamma}")
        if lr <= 0 or log_z_lr <= 0 or hidden <= 0 or batch_size <= 0 or n_epochs <= 0 or eval_every <= 0:
            raise ValueError(f"need positive lr, log_z_lr, hidden, batch_size, n_epochs and eval_every; got "
                             f"{lr}, {log_z_lr}, {hidden}, {batch_size}, {n_epochs}, {eval_every}")
        if not 0 <= explore < 1:
            raise ValueError(f"explore must lie in [0, 1), got {explore}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = argmax decoding), got {temperature}")
        self.base, self.item_features, self.k, self.beta, self.gamma = base, item_features, k, beta, gamma
        self.hidden, self.lr, self.log_z_lr, self.batch_size, self.n_epochs = hidden, lr, log_z_lr, batch_size, n_epochs
        self.explore, self.temperature, self.eval_every, self.seed = explore, temperature, eval_every, seed

    # --- building lists -------------------------------------------------------------------------

    def policy_inputs(self, users: np.ndarray, history: History) -> tuple[torch.Tensor, ...]:
        """Policy inputs for these users: (B, n_items) z-scores, (B, F) history profile, (B, n_items) seen mask."""
        exclude = history.matrix[users]
        if exclude.shape[1] != self.item_features.shape[0]:
            raise ValueError(f"history has {exclude.shape[1]} items but item_features has {self.item_features.shape[0]}")
        z = standardized_scores(self.base.score(users, history), exclude)
        counts = np.maximum(exclude.getnnz(axis=1), 1)[:, None]
        profile = (exclude @ self.policy_.features.cpu().numpy()) / counts
        to_tensor = lambda a, dtype=torch.float32: torch.as_tensor(np.asarray(a), dtype=dtype, device=self.device_)
        return to_tensor(z), to_tensor(profile), to_tensor(exclude.toarray() > 0, torch.bool)

    def rollout(self, z: torch.Tensor, profile: torch.Tensor, forbidden: torch.Tensor, temperature: float = 1.0,
                explore: float = 0.0, uniforms: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Build one list per row: k steps, each a softmax over the items not yet used.

        uniforms: (B, k) numbers in [0, 1) that drive the sampling (fresh ones if None).
        Returns (B, k) items and (B,) Σ_t log P_F(i_t | s_t) under the *policy* (temperature 1),
        whatever temperature or exploration the items were drawn with.
        """
        if uniforms is None:
            uniforms = torch.rand(len(z), self.k, device=z.device)
        picked, sum_log_pf = [], torch.zeros(len(z), device=z.device)
        picked_sum = torch.zeros_like(profile)
        rows = torch.arange(len(z), device=z.device)
        for step in range(self.k):
            picked_mean = picked_sum / max(step, 1)
            logits = self.policy_(z, profile, picked_mean, step).masked_fill(forbidden, float("-inf"))
            log_pf = torch.log_softmax(logits, dim=1)
            with torch.no_grad():
                if temperature == 0:
                    choice = logits.argmax(1)
                else:
                    probs = torch.softmax(logits / temperature, dim=1)
                    if explore:
                        allowed = (~forbidden).float()
                        probs = (1 - explore) * probs + explore * allowed / allowed.sum(1, keepdim=True)
                    choice = inverse_cdf_sample(probs, uniforms[:, step])
            sum_log_pf = sum_log_pf + log_pf[rows, choice]
            forbidden = forbidden.clone()               # a fresh mask: the old one is kept for backward
            forbidden[rows, choice] = True              # no repeats
            picked_sum = picked_sum + self.policy_.features[choice]
            picked.append(choice)
        return torch.stack(picked, 1), sum_log_pf

    def log_reward(self, z: torch.Tensor, lists: torch.Tensor) -> torch.Tensor:
        """log R of each (B, k) list given the users' (B, n_items) z-scores."""
        return list_log_reward(z.gather(1, lists), self.policy_.features[lists], self.beta, self.gamma)

    @torch.no_grad()
    def estimate_log_z(self, z: torch.Tensor, profile: torch.Tensor, forbidden: torch.Tensor, n_lists: int = 16,
                       generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Importance-sampling estimate of log Z_u = log E_{L ~ P_F}[R(L) / P_F(L)], from n_lists per user.

        Also returns the spread (std) of log R - log P_F over each user's lists: zero exactly
        when P_F ∝ R, so it measures how far the sampler is from the GFlowNet's goal. Both (B,).
        """
        gaps = []
        for _ in range(n_lists):
            uniforms = torch.rand(len(z), self.k, generator=generator, device=z.device)
            lists, sum_log_pf = self.rollout(z, profile, forbidden, uniforms=uniforms)
            gaps.append(self.log_reward(z, lists) - sum_log_pf)
        gaps = torch.stack(gaps, 1)
        return torch.logsumexp(gaps, 1) - np.log(n_lists), gaps.std(1)

    def balance_gap(self, users: np.ndarray, history: History, n_lists: int = 16) -> np.ndarray:
        """Per-user std of log R - log P_F over n_lists sampled lists (0 = perfectly balanced)."""
        generator = torch.Generator(device=self.device_).manual_seed(self.seed)
        return self.estimate_log_z(*self.policy_inputs(np.asarray(users), history), n_lists, generator)[1].cpu().numpy()

    @torch.no_grad()
    def generate(self, users: np.ndarray, history: History, temperature: float | None = None,
                 seed: int | None = None) -> np.ndarray:
        """(len(users), k) lists for these users; temperature 0 = argmax decoding, 1 = the GFlowNet's sampler."""
        temperature = self.temperature if temperature is None else temperature
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        users = np.asarray(users)
        # One uniform per (user, position), drawn for every user of the history: the same user gets
        # the same list whichever batch they are scored in.
        generator = torch.Generator(device=self.device_).manual_seed(self.seed if seed is None else seed)
        uniforms = torch.rand(history.matrix.shape[0], self.k, generator=generator, device=self.device_)
        lists, _ = self.rollout(*self.policy_inputs(users, history), temperature=temperature,
                                uniforms=uniforms[torch.as_tensor(users, device=self.device_)])
        return lists.cpu().numpy()

    # --- training -------------------------------------------------------------------------------

    def build(self, n_users: int) -> "GFN4Rec":
        """Create the untrained policy and log Z table; ``fit`` calls this, and so can a lesson.

        The policy starts at P_F ∝ exp(β z / log2(t+1)) at step t, close to the solution for the
        relevance part of the reward: training mostly has to learn what the list-level term changes.
        """
        torch.manual_seed(self.seed)
        self.device_ = get_device()
        self.policy_ = ListPolicy(torch.as_tensor(self.item_features), self.beta * dcg_weights(self.k),
                                  self.hidden).to(self.device_)
        self.log_z_ = nn.Embedding(n_users, 1).to(self.device_)
        return self

    def fit(self, X, history: History, validate=None) -> "GFN4Rec":
        """Train on all users of X (n_users × n_items); ``history`` is what the policy conditions on.

        ``validate(model) -> float`` is recorded every ``eval_every`` epochs (e.g. validation NDCG@10).
        """
        if not sp.issparse(X) or X.nnz == 0:
            raise ValueError("X must be a non-empty scipy sparse users × items matrix")
        self.build(X.shape[0])
        rng = np.random.default_rng(self.seed)
        generator = torch.Generator(device=self.device_).manual_seed(self.seed)
        users_all = np.flatnonzero(X.getnnz(axis=1))
        inputs = self.policy_inputs(users_all, history)   # the scorer's z-scores do not change while we train
        with torch.no_grad():
            log_z, _ = self.estimate_log_z(*inputs, n_lists=8, generator=generator)
            self.log_z_.weight[torch.as_tensor(users_all, device=self.device_), 0] = log_z
        optimizer = torch.optim.Adam([{"params": self.policy_.parameters(), "lr": self.lr},
                                      {"params": self.log_z_.parameters(), "lr": self.log_z_lr}])
        self.reward_history_ = []

        def train_epoch(epoch: int) -> float:
            order = rng.permutation(len(users_all))
            losses, rewards = [], []
            for start in range(0, len(order), self.batch_size):
                idx = torch.as_tensor(order[start:start + self.batch_size], device=self.device_)
                z, profile, forbidden = (t[idx] for t in inputs)
                uniforms = torch.rand(len(idx), self.k, generator=generator, device=self.device_)
                lists, sum_log_pf = self.rollout(z, profile, forbidden, explore=self.explore, uniforms=uniforms)
                log_r = self.log_reward(z, lists)
                user_ids = torch.as_tensor(users_all, device=self.device_)[idx]
                loss = trajectory_balance_loss(self.log_z_(user_ids).squeeze(1), sum_log_pf, log_r)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(loss.item() * len(idx))
                rewards.append(float(log_r.mean()) * len(idx))
            self.reward_history_.append(sum(rewards) / len(order))
            return sum(losses) / len(order)

        # Validation is tracked for the learning curves but picks no weights: the GFlowNet's goal is to
        # sample lists in proportion to the reward, which a top-10 accuracy metric does not measure.
        self.fit_result_: FitResult = fit_loop(
            train_epoch, self.n_epochs, None if validate is None else (lambda: validate(self)),
            patience=self.n_epochs, eval_every=self.eval_every, module=None, desc="GFN4Rec")
        return self

    # --- ranking interface ----------------------------------------------------------------------

    def score(self, users: np.ndarray, history: History) -> np.ndarray:
        """Scores that put the generated list first, in order (k - position), then the base scorer's order.

        This is what lets a list generator go through the course's full-ranking evaluator:
        HR@k and NDCG@k (k = the list length) depend only on the generated list.
        """
        users = np.asarray(users)
        return list_to_scores(self.generate(users, history), self.base.score(users, history))

    @property
    def n_params(self) -> int:
        """Policy and log Z parameters; the base scorer's are not counted."""
        return count_parameters(self.policy_) + count_parameters(self.log_z_)
