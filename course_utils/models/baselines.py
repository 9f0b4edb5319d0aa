"""Non-generative baselines that every generative model in the course must beat (lesson 01).

Each model has ``fit(X)`` on a users × items 0/1 CSR matrix and
``score(users, history) -> users × items`` scores, so one evaluator serves all.
"""
from __future__ import annotations

import hashlib

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from course_utils.data.splits import History, check_interaction_matrix, check_users
from course_utils.training import FitResult, check_finite, count_parameters, fit_loop


class Popularity:
    """Recommend what most users interacted with: the same list for everyone."""

    def fit(self, X) -> "Popularity":
        self.counts_ = np.asarray(check_interaction_matrix(X).sum(axis=0)).ravel()
        return self

    def score(self, users: np.ndarray, history: History) -> np.ndarray:
        """Counts over the whole ``history``: at test time they include the validation interactions,
        as every model in the course may use them (lesson 01's protocol)."""
        if history.matrix.shape[1] != len(self.counts_):
            raise ValueError(f"history has {history.matrix.shape[1]} items, the model was fitted on {len(self.counts_)}")
        counts = np.asarray(history.matrix.sum(axis=0)).ravel()
        return np.broadcast_to(counts, (len(users), len(counts))).copy()

    @property
    def n_params(self) -> int:
        return len(self.counts_)


def cosine_similarity_topk(X: sp.csr_matrix, n_neighbors: int, shrink: float = 0.0) -> sp.csr_matrix:
    """Item-item cosine similarity, keeping only the ``n_neighbors`` largest per item (diagonal zeroed)."""
    co = (X.T @ X).toarray().astype(np.float64)
    norms = np.sqrt(np.diag(co))
    sim = co / (np.outer(norms, norms) + shrink + 1e-12)
    np.fill_diagonal(sim, 0.0)
    if n_neighbors < sim.shape[0]:
        cutoff = -np.partition(-sim, n_neighbors - 1, axis=0)[n_neighbors - 1]  # k-th largest per column
        sim[sim < cutoff[None, :]] = 0.0
    return sp.csr_matrix(sim.astype(np.float32))


class ItemKNN:
    """Item-based neighbourhood model (Sarwar et al., 2001): score = history · item-item similarity."""

    def __init__(self, n_neighbors: int = 100, shrink: float = 10.0):
        check_finite(shrink=shrink)
        if n_neighbors <= 0 or shrink < 0:
            raise ValueError(f"need n_neighbors > 0 and shrink >= 0, got {n_neighbors} and {shrink}")
        self.n_neighbors, self.shrink = n_neighbors, shrink

    def fit(self, X) -> "ItemKNN":
        self.sim_ = cosine_similarity_topk(check_interaction_matrix(X), self.n_neighbors, self.shrink)
        return self

    def score(self, users: np.ndarray, history: History) -> np.ndarray:
        return (history.matrix[users] @ self.sim_).toarray()

    @property
    def n_params(self) -> int:
        return int(self.sim_.nnz)


class EASE:
    """Embarrassingly Shallow Autoencoder (Steck, 2019): a closed-form item-item linear model.

    B = argmin ||X - XB||² + λ||B||² subject to diag(B) = 0, solved as
    B = I - P · diag(1 / diag(P)) with P = (XᵀX + λI)⁻¹.
    """

    def __init__(self, l2: float = 500.0):
        check_finite(l2=l2)
        if l2 <= 0:
            raise ValueError(f"l2 must be positive, got {l2}")
        self.l2 = l2

    def fit(self, X) -> "EASE":
        X = check_interaction_matrix(X)
        gram = (X.T @ X).toarray().astype(np.float64)
        gram[np.diag_indices_from(gram)] += self.l2
        P = np.linalg.inv(gram)
        B = -P / np.diag(P)[None, :]
        np.fill_diagonal(B, 0.0)
        self.B_ = B.astype(np.float32)
        return self

    def score(self, users: np.ndarray, history: History) -> np.ndarray:
        if not hasattr(self, "B_"):
            raise RuntimeError("EASE is not fitted yet: call fit(X) first")
        return history.matrix[check_users(users, history.matrix.shape[0])] @ self.B_

    @property
    def n_params(self) -> int:
        return int(self.B_.size)


class _MatrixFactorization(nn.Module):
    def __init__(self, n_users: int, n_items: int, dim: int):
        super().__init__()
        self.user = nn.Embedding(n_users, dim)
        self.item = nn.Embedding(n_items, dim)
        nn.init.normal_(self.user.weight, std=0.1)
        nn.init.normal_(self.item.weight, std=0.1)


def bpr_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """Bayesian Personalised Ranking: -log σ(s(u,i) - s(u,j)), averaged over triples."""
    return -nn.functional.logsigmoid(pos_scores - neg_scores).mean()


def sample_uniform_negatives(X: sp.csr_matrix, users: np.ndarray, rng: np.random.Generator,
                             n_retries: int = 5) -> np.ndarray:
    """One random item per user that the user has not interacted with (vectorised rejection sampling)."""
    negatives = rng.integers(0, X.shape[1], size=len(users))
    for _ in range(n_retries):
        clash = np.asarray(X[users, negatives]).ravel() > 0
        if not clash.any():
            break
        negatives[clash] = rng.integers(0, X.shape[1], size=int(clash.sum()))
    return negatives


def _history_key(matrix: sp.csr_matrix) -> tuple:
    """An exact fingerprint of a history's 0/1 pattern (sums of indices could collide)."""
    matrix = matrix.tocsr()
    if not matrix.has_sorted_indices:
        matrix = matrix.sorted_indices()  # a copy: the caller's history is left as it is
    digest = hashlib.sha256(np.ascontiguousarray(matrix.indptr, np.int64).tobytes())
    digest.update(np.ascontiguousarray(matrix.indices, np.int64).tobytes())
    return matrix.shape, digest.hexdigest()


def fold_in_users(model, user_factors: torch.Tensor, item_factors: torch.Tensor, item_bias: torch.Tensor | None,
                  history: History, n_steps: int = 30) -> torch.Tensor:
    """User vectors that account for interactions made after training (the *fold-in* step of MF).

    A matrix-factorisation model stores one vector per user, learned from the
    training matrix only. At test time the course protocol gives every model the
    validation interaction too (EASE and SASRec read it from ``history``), so, for
    the users whose history holds interactions the model was not trained on, we
    re-fit their vectors on the whole history with the BPR loss, the items frozen,
    starting from the trained vectors: ``n_steps`` full-batch Adam steps at the
    model's learning rate and L2. Users whose history equals the training matrix
    keep their trained vectors, so validation (early stopping) is unchanged.
    Vectorised over all the users at once; cached per history.
    """
    train = model.train_matrix_
    matrix = history.matrix
    if matrix.shape != train.shape:
        raise ValueError(f"history has shape {matrix.shape}, the model was trained on {train.shape}")
    key = _history_key(matrix)
    cache = model.__dict__.setdefault("_fold_in_cache", {})
    if key in cache:
        return cache[key]
    new = ((matrix > 0).astype(np.int8) - (train > 0).astype(np.int8)).tocsr()
    new.eliminate_zeros()
    changed = np.flatnonzero(new.getnnz(axis=1))
    if len(changed) == 0:  # the training history itself (validation, early stopping): the live vectors
        return user_factors.detach()
    device, grad_was_enabled = item_factors.device, torch.is_grad_enabled()
    users = user_factors.detach().clone()
    rows = matrix[changed].tocsr()
    pos_user, pos_item = rows.nonzero()
    generator = torch.Generator().manual_seed(getattr(model, "seed", 0))
    changed_t = torch.as_tensor(changed, dtype=torch.long, device=device)
    vectors = users[changed_t].clone().requires_grad_(True)
    items = item_factors.detach()
    bias = torch.zeros(items.shape[0], device=device) if item_bias is None else item_bias.detach().reshape(-1)
    optimizer = torch.optim.Adam([vectors], lr=model.lr)
    seen = torch.as_tensor(rows.toarray() > 0, device=device)
    u_t = torch.as_tensor(pos_user, dtype=torch.long, device=device)  # row in ``vectors``, one per positive pair
    i_t = torch.as_tensor(pos_item, dtype=torch.long, device=device)
    per_user = torch.bincount(u_t, minlength=len(changed)).to(items.dtype)
    for _ in range(n_steps):  # each step covers all changed users at once, not a loop over users
        torch.set_grad_enabled(True)  # score() may be called under no_grad; restored below
        j_t = torch.randint(0, items.shape[0], (len(u_t),), generator=generator).to(device)
        retry = torch.randint(0, items.shape[0], (len(u_t),), generator=generator).to(device)
        j_t = torch.where(seen[u_t, j_t], retry, j_t)  # one retry: a rare seen negative only adds noise
        # One matrix product scores every item for every changed user; the pairs then only pick entries
        # (far cheaper than multiplying 64-dim vectors pair by pair).
        scores = vectors @ items.T + bias[None, :]
        loss = bpr_loss(scores[u_t, i_t], scores[u_t, j_t])
        # The training L2 (per example, on the user vector of each pair), summed per user.
        loss = loss + model.l2 * (per_user[:, None] * vectors.pow(2)).sum() / len(u_t)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch.set_grad_enabled(grad_was_enabled)
    users[changed_t] = vectors.detach()
    cache.clear()  # keep one entry: the evaluator asks for the same history batch after batch
    cache[key] = users
    return users


class BPRMF:
    """Matrix factorisation trained with the BPR loss (Rendle et al., 2009)."""

    def __init__(self, dim: int = 64, lr: float = 5e-3, l2: float = 1e-5, batch_size: int = 4096,
                 n_epochs: int = 50, patience: int = 3, seed: int = 0):
        check_finite(lr=lr, l2=l2)
        if dim <= 0 or lr <= 0 or l2 < 0 or batch_size <= 0:
            raise ValueError(f"need dim > 0, lr > 0, l2 >= 0, batch_size > 0; got {dim}, {lr}, {l2}, {batch_size}")
        self.dim, self.lr, self.l2, self.batch_size = dim, lr, l2, batch_size
        self.n_epochs, self.patience, self.seed = n_epochs, patience, seed

    def fit(self, X, validate=None) -> "BPRMF":
        """Train on X; ``validate(model) -> float`` enables early stopping on a validation metric."""
        X = check_interaction_matrix(X)
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        self.net_ = _MatrixFactorization(X.shape[0], X.shape[1], self.dim)
        optimizer = torch.optim.Adam(self.net_.parameters(), lr=self.lr)
        users_all, items_all = X.nonzero()
        self.train_matrix_ = X
        self._fold_in_cache = {}

        def train_epoch(epoch: int) -> float:
            order = rng.permutation(len(users_all))
            total = 0.0
            for start in range(0, len(order), self.batch_size):
                idx = order[start:start + self.batch_size]
                u, i = users_all[idx], items_all[idx]
                j = sample_uniform_negatives(X, u, rng)
                u_t, i_t, j_t = (torch.as_tensor(a, dtype=torch.long) for a in (u, i, j))
                eu, ei, ej = self.net_.user(u_t), self.net_.item(i_t), self.net_.item(j_t)
                loss = bpr_loss((eu * ei).sum(1), (eu * ej).sum(1))
                loss = loss + self.l2 * (eu.pow(2).sum() + ei.pow(2).sum() + ej.pow(2).sum()) / len(idx)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += loss.item() * len(idx)
            return total / len(order)

        self.fit_result_: FitResult = fit_loop(
            train_epoch, self.n_epochs, None if validate is None else (lambda: validate(self)),
            patience=self.patience, module=self.net_, desc="BPR-MF")
        return self

    def score(self, users: np.ndarray, history: History) -> np.ndarray:
        """Scores with each user's vector folded in on ``history`` (see :func:`fold_in_users`)."""
        user_factors = fold_in_users(self, self.net_.user.weight, self.net_.item.weight, None, history)
        users_t = torch.as_tensor(np.asarray(users), dtype=torch.long)
        with torch.no_grad():
            return (user_factors[users_t] @ self.net_.item.weight.T).numpy()

    @property
    def n_params(self) -> int:
        return count_parameters(self.net_)
