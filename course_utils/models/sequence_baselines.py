"""Simple sequential baselines (lesson 03): what the *order* of a history buys without a neural network.

Before crediting SASRec's self-attention with "using order", check what the
simplest models that read order do:

* :class:`MarkovChain`: a first-order Markov chain. The next item depends only
  on the last one, through item-to-item transition counts from the training
  sequences (Rendle et al., 2010, use the same factor inside FPMC).
* :class:`SessionKNN`: a session-based nearest-neighbour model in the spirit of
  V-SkNN (Ludewig & Jannach, 2018). The user's most recent items, weighted by
  recency, are matched against short *sessions* cut from the training
  sequences; items of the most similar sessions are recommended.

Both follow the course contract: ``fit(train)`` with a ``Split`` (its training
part) or a ``History``, and ``score(users, history) -> len(users) × n_items``.
They read ``history.sequences`` (order) at scoring time, so the validation item
is used at test time like every other model does. Everything is vectorised
with sparse matrices: no loop over users or items.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from course_utils.data.splits import History, Split


def _training_history(train) -> History:
    """The history a baseline is fitted on: a Split's training part, or a History as given."""
    if isinstance(train, Split):
        return train.history("valid")
    if isinstance(train, History):
        return train
    raise TypeError(f"fit expects a Split (its training part is used) or a History, got {type(train).__name__}")


def _last_items(history: History, users: np.ndarray, n: int) -> np.ndarray:
    """(len(users), n) array of each user's last ``n`` items, most recent in the last column, -1 where absent."""
    out = np.full((len(users), n), -1, dtype=np.int64)
    seqs = [np.asarray(history.sequences[u], dtype=np.int64)[-n:] for u in users]
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    if lengths.sum():
        rows = np.repeat(np.arange(len(users)), lengths)
        cols = n - np.repeat(lengths, lengths) + (np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths))
        out[rows, cols] = np.concatenate(seqs)
    return out


def _check_users(users, history: History, n_items: int) -> np.ndarray:
    users = np.asarray(users, dtype=np.int64)
    if history.matrix.shape[1] != n_items:
        raise ValueError(f"history has {history.matrix.shape[1]} items, the model was fitted on {n_items}")
    if users.ndim != 1 or (len(users) and (users.min() < 0 or users.max() >= len(history.sequences))):
        raise ValueError(f"users must be a 1-D array of indices below {len(history.sequences)}")
    return users


class MarkovChain:
    """First-order Markov chain over items: p(next = j | last = i), from training transition counts.

    p(j | i) = (c(i, j) + α · pop(j)) / (c(i, ·) + α), where c(i, j) counts how often j
    directly followed i in a training sequence and pop is the item popularity
    distribution. ``smoothing`` α backs off to popularity for rare or unseen last items.
    """

    def __init__(self, smoothing: float = 1.0):
        if smoothing <= 0:
            raise ValueError(f"smoothing must be positive (it backs off to popularity), got {smoothing}")
        self.smoothing = smoothing

    def fit(self, train) -> "MarkovChain":
        history = _training_history(train)
        n_items = history.matrix.shape[1]
        seqs = [np.asarray(s, dtype=np.int64) for s in history.sequences if len(s) >= 1]
        if not seqs:
            raise ValueError("the training sequences are empty; cannot fit a Markov chain")
        previous = np.concatenate([s[:-1] for s in seqs])
        following = np.concatenate([s[1:] for s in seqs])
        self.transitions_ = sp.csr_matrix((np.ones(len(previous), np.float32), (previous, following)),
                                          shape=(n_items, n_items))  # repeated pairs are summed: counts
        self.transitions_.sum_duplicates()
        counts = np.bincount(np.concatenate(seqs), minlength=n_items).astype(np.float64)
        self.popularity_ = counts / counts.sum()
        self.n_items_ = n_items
        return self

    def transition_counts(self, previous: np.ndarray) -> np.ndarray:
        """(len(previous), n_items) training counts of what followed each item (zeros for -1)."""
        previous = np.asarray(previous, dtype=np.int64)
        counts = self.transitions_[np.maximum(previous, 0)].toarray().astype(np.float64)
        counts[previous < 0] = 0.0
        return counts

    def score(self, users: np.ndarray, history: History) -> np.ndarray:
        """Smoothed transition probabilities from each user's most recent item: len(users) × n_items."""
        if not hasattr(self, "transitions_"):
            raise RuntimeError("MarkovChain is not fitted yet: call fit(split) first")
        users = _check_users(users, history, self.n_items_)
        counts = self.transition_counts(_last_items(history, users, 1)[:, 0])
        return (counts + self.smoothing * self.popularity_) / (counts.sum(1, keepdims=True) + self.smoothing)

    @property
    def n_params(self) -> int:
        return int(self.transitions_.nnz)


class SessionKNN:
    """Session-based k-nearest neighbours (V-SkNN style) on sessions cut from the training sequences.

    Each training sequence is cut into consecutive sessions of ``session_len`` items.
    A user's query is their last ``query_len`` items, weighted linearly by recency
    (the most recent weighs 1, the oldest 1/query_len). Similarity is the weighted
    overlap divided by sqrt(session size); the ``n_neighbors`` most similar sessions
    of *other* users vote for their items with their similarity. A tiny popularity
    term only breaks ties among items no neighbour holds.
    """

    def __init__(self, n_neighbors: int = 100, session_len: int = 10, query_len: int = 10):
        if n_neighbors <= 0 or session_len <= 0 or query_len <= 0:
            raise ValueError(f"need n_neighbors, session_len, query_len > 0; got {n_neighbors}, {session_len}, "
                             f"{query_len}")
        self.n_neighbors, self.session_len, self.query_len = n_neighbors, session_len, query_len

    def fit(self, train) -> "SessionKNN":
        history = _training_history(train)
        n_items = history.matrix.shape[1]
        lengths = np.array([len(s) for s in history.sequences], dtype=np.int64)
        if lengths.sum() == 0:
            raise ValueError("the training sequences are empty; cannot fit a session-kNN")
        items = np.concatenate([np.asarray(s, dtype=np.int64) for s in history.sequences])
        position = np.arange(len(items)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        chunk = position // self.session_len
        n_chunks = -(-lengths // self.session_len)  # ceil: sessions per user
        session = np.repeat(np.cumsum(n_chunks) - n_chunks, lengths) + chunk
        self.sessions_ = sp.csr_matrix((np.ones(len(items), np.float32), (session, items)),
                                       shape=(int(n_chunks.sum()), n_items))
        self.sessions_.data[:] = 1.0  # a repeated item counts once in a session
        self.owner_ = np.repeat(np.arange(len(lengths)), n_chunks)
        self.norms_ = np.sqrt(np.asarray(self.sessions_.getnnz(axis=1), dtype=np.float64)).clip(min=1.0)
        self.sessions_t_ = self.sessions_.T.tocsr()
        popularity = np.bincount(items, minlength=n_items).astype(np.float64)
        self.tie_break_ = 1e-9 * popularity / popularity.max()
        self.n_items_ = n_items
        return self

    def query(self, users: np.ndarray, history: History) -> sp.csr_matrix:
        """(len(users), n_items) recency weights of each user's last ``query_len`` items."""
        last = _last_items(history, users, self.query_len)
        weights = np.broadcast_to(np.arange(1, self.query_len + 1) / self.query_len, last.shape)
        keep = last >= 0
        rows = np.broadcast_to(np.arange(len(users))[:, None], last.shape)
        q = sp.csr_matrix((weights[keep], (rows[keep], last[keep])), shape=(len(users), self.n_items_))
        q.sum_duplicates()
        return q

    def score(self, users: np.ndarray, history: History) -> np.ndarray:
        """Similarity-weighted votes of the nearest sessions: len(users) × n_items."""
        if not hasattr(self, "sessions_"):
            raise RuntimeError("SessionKNN is not fitted yet: call fit(split) first")
        users = _check_users(users, history, self.n_items_)
        sims = np.asarray((self.query(users, history) @ self.sessions_t_).todense()) / self.norms_[None, :]
        sims[self.owner_[None, :] == users[:, None]] = 0.0  # neighbours are other users' sessions
        k = min(self.n_neighbors, sims.shape[1])
        if k < sims.shape[1]:
            cutoff = -np.partition(-sims, k - 1, axis=1)[:, k - 1:k]  # the k-th largest similarity per row
            sims[sims < cutoff] = 0.0
        return (sp.csr_matrix(sims) @ self.sessions_).toarray().astype(np.float64) + self.tie_break_[None, :]

    @property
    def n_params(self) -> int:
        return int(self.sessions_.nnz)


def transition_evidence(chain: MarkovChain, split: Split, stage: str = "test") -> pd.DataFrame:
    """How much a first-order transition explains each held-out item, one row per evaluated user.

    Columns: ``previous`` (the last item of the history), ``target``, ``count`` (how
    often target directly followed previous in training), ``successors`` (distinct
    items that ever followed previous), ``top successor`` (target is previous's most
    frequent successor, count > 0) and ``seen transition`` (count > 0). Rows follow
    the evaluator's user order, so they align with per-user metric arrays.
    """
    targets, history = split.targets(stage), split.history(stage)
    users = np.flatnonzero(targets.getnnz(axis=1))
    target = np.asarray(targets[users].argmax(axis=1)).ravel()  # leave-one-out: one target per user
    previous = _last_items(history, users, 1)[:, 0]
    counts = chain.transition_counts(previous)
    count = counts[np.arange(len(users)), target]
    return pd.DataFrame({"previous": previous, "target": target, "count": count,
                         "successors": (counts > 0).sum(1),
                         "top successor": (count > 0) & (count == counts.max(1)),
                         "seen transition": count > 0}, index=pd.Index(users, name="user"))
