"""Greedy re-ranking for diversity: Maximal Marginal Relevance (Carbonell & Goldstein, SIGIR 1998; lesson 06).

MMR is the classic, non-generative way to make a top-k list more varied. It
takes a base scorer's candidates and builds the list greedily: at each position
it picks the candidate that maximises

    λ · rel_u(i)  -  (1 - λ) · max_{j ∈ L} sim(i, j),

where rel_u(i) is the scorer's score rescaled to [0, 1] over the user's
candidates, L is the list built so far and sim is the cosine similarity of item
feature vectors (e.g. genres). λ = 1 is plain greedy top-k; smaller λ trades
relevance for variety. It is the baseline a list generator such as GFN4Rec
must beat before its diversity gain can be credited to the generative model.

All users of a batch are re-ranked at once: one loop over the k positions,
none over users.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from course_utils.claims import Claim
from course_utils.data.splits import History


def list_to_scores(lists: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Scores that rank each list first, in its order, then every other item by ``fallback``.

    lists: (B, k) item ids; fallback: (B, n_items) base-scorer scores. List position t
    (0-based) gets k - t; the fallback is shifted below zero so it never outranks the list.
    This lets a list generator or re-ranker go through the course's full-ranking evaluator.
    """
    lists = np.asarray(lists)
    if lists.ndim != 2 or lists.shape[0] != np.shape(fallback)[0]:
        raise ValueError(f"lists must be (B, k) with one row per row of fallback; got {lists.shape} and "
                         f"{np.shape(fallback)}")
    fallback = np.asarray(fallback, np.float64)
    scores = fallback - fallback.max(axis=1, keepdims=True) - 1.0
    k = lists.shape[1]
    np.put_along_axis(scores, lists, np.arange(k, 0, -1, dtype=np.float64)[None, :].repeat(len(lists), 0), axis=1)
    return scores


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (all-zero rows stay zero, so they are similar to nothing)."""
    vectors = np.asarray(vectors, np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def mmr_rerank(scores: np.ndarray, item_vectors: np.ndarray, k: int, lam: float,
               exclude: sp.spmatrix | None = None, n_candidates: int = 100) -> np.ndarray:
    """Greedy MMR lists of length k for every row of ``scores`` (B, n_items) -> (B, k) item ids.

    Candidates are each user's ``n_candidates`` best items by ``scores`` outside ``exclude``
    (B, n_items sparse 0/1, e.g. the history). ``lam`` ∈ [0, 1] weighs relevance (min-max
    scaled to [0, 1] per user over the candidates) against the largest cosine similarity
    to an item already in the list. ``lam = 1`` returns the plain top-k.
    """
    scores = np.asarray(scores, np.float64)
    item_vectors = np.asarray(item_vectors, np.float32)
    if scores.ndim != 2:
        raise ValueError(f"scores must be a (B, n_items) array, got shape {scores.shape}")
    if item_vectors.ndim != 2 or item_vectors.shape[0] != scores.shape[1]:
        raise ValueError(f"item_vectors must be (n_items, F) with n_items = {scores.shape[1]}, "
                         f"got shape {item_vectors.shape}")
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam (λ) must lie in [0, 1], got {lam}")
    if not 1 <= k <= n_candidates <= scores.shape[1]:
        raise ValueError(f"need 1 <= k <= n_candidates <= n_items; got k={k}, n_candidates={n_candidates}, "
                         f"n_items={scores.shape[1]}")
    if exclude is not None:
        if exclude.shape != scores.shape:
            raise ValueError(f"exclude {exclude.shape} must have the shape of scores {scores.shape}")
        scores = np.where(exclude.toarray() > 0, -np.inf, scores)
    if (np.isfinite(scores).sum(axis=1) < k).any():
        raise ValueError(f"some user has fewer than k={k} items left to recommend")

    rows = np.arange(len(scores))[:, None]
    top = np.argpartition(-scores, n_candidates - 1, axis=1)[:, :n_candidates]
    candidates = np.take_along_axis(top, np.argsort(-scores[rows, top], axis=1, kind="stable"), axis=1)
    relevance = scores[rows, candidates]                                  # (B, N), best first
    available = np.isfinite(relevance)
    low = np.where(available, relevance, np.inf).min(axis=1, keepdims=True)
    high = relevance[:, :1]
    relevance = np.where(available, (relevance - low) / np.maximum(high - low, 1e-12), 0.0)

    unit = unit_rows(item_vectors)[candidates]                            # (B, N, F)
    similarity = unit @ unit.transpose(0, 2, 1)                           # (B, N, N)
    redundancy = np.zeros_like(relevance)                                 # max similarity to the list so far
    picked = np.empty((len(scores), k), dtype=np.int64)
    flat = np.arange(len(scores))
    for position in range(k):
        objective = np.where(available, lam * relevance - (1.0 - lam) * redundancy, -np.inf)
        choice = objective.argmax(axis=1)                                 # ties: the more relevant candidate
        picked[:, position] = candidates[flat, choice]
        available[flat, choice] = False
        redundancy = np.maximum(redundancy, similarity[flat, choice])
    return picked


class MMRReranker:
    """A base scorer's lists re-ranked by MMR, behind the course's ``score(users, history)`` interface.

    base: a fitted model with ``score(users, history)``; item_vectors: (n_items, F), e.g.
    genre indicators; lam: MMR's λ (1 = the base scorer's own top-k).
    """

    def __init__(self, base, item_vectors: np.ndarray, k: int = 10, lam: float = 0.8, n_candidates: int = 100,
                 batch_size: int = 256):
        if not callable(getattr(base, "score", None)):
            raise TypeError(f"base must be a fitted model with a score(users, history) method, got {type(base).__name__}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.base, self.item_vectors, self.k, self.lam = base, np.asarray(item_vectors, np.float32), k, lam
        self.n_candidates, self.batch_size = n_candidates, batch_size

    def recommend(self, users: np.ndarray, history: History) -> np.ndarray:
        """(len(users), k) MMR lists, the users' history excluded; batched to keep (B, N, N) small."""
        users = np.asarray(users)
        out = [mmr_rerank(self.base.score(batch, history), self.item_vectors, self.k, self.lam,
                          history.matrix[batch], self.n_candidates)
               for batch in np.array_split(users, max(1, int(np.ceil(len(users) / self.batch_size))))]
        return np.concatenate(out) if out else np.empty((0, self.k), dtype=np.int64)

    def score(self, users: np.ndarray, history: History) -> np.ndarray:
        """The MMR list first, in order, then the other items in the base scorer's order."""
        users = np.asarray(users)
        return list_to_scores(self.recommend(users, history), self.base.score(users, history))

    @property
    def n_params(self) -> int:
        return 0   # no parameters of its own: the base scorer's are counted where it is logged


def pareto_dominated(points: np.ndarray, others: np.ndarray) -> np.ndarray:
    """For each (x, y) row of ``points``, whether some row of ``others`` is at least as good on both
    coordinates and strictly better on one (higher is better on both). Returns a bool array."""
    points, others = np.atleast_2d(np.asarray(points, float)), np.atleast_2d(np.asarray(others, float))
    if points.shape[1] != 2 or others.shape[1] != 2:
        raise ValueError(f"points and others must be (n, 2) arrays, got {points.shape} and {others.shape}")
    at_least = (others[None, :, :] >= points[:, None, :]).all(axis=2)
    strictly = (others[None, :, :] > points[:, None, :]).any(axis=2)
    return (at_least & strictly).any(axis=1)


def dominance_claim(points_a: np.ndarray, points_b: np.ndarray, a: str, b: str, x: str = "ILD",
                    y: str = "NDCG@10") -> Claim:
    """Which trade-off curve dominates the other? Points are (n, 2) arrays of (x, y), higher better on both.

    The case is "a dominates" when no point of A is dominated by a point of B while some point
    of B is dominated by A; "b dominates" the reverse; "neither" otherwise.
    """

    a_beaten, b_beaten = pareto_dominated(points_a, points_b), pareto_dominated(points_b, points_a)
    counts = (f"settings dominated by the other method (no worse on {y} and {x}, better on one): "
              f"{b_beaten.sum()} of {len(b_beaten)} for {b}, {a_beaten.sum()} of {len(a_beaten)} for {a}")
    if not a_beaten.any() and b_beaten.any():
        return Claim(f"**{a} dominates {b}** on this trade-off: {counts}.", "a dominates")
    if not b_beaten.any() and a_beaten.any():
        return Claim(f"**{b} dominates {a}** on this trade-off: {counts}.", "b dominates")
    return Claim(f"**Neither {a} nor {b} dominates** the other on this trade-off: {counts}.", "neither")
