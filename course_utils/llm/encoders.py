"""Dense retrieval with frozen sentence embeddings (lesson 07, survey section 3.1.1).

An item is a vector: the sentence embedding of its document (``documents``).
A user becomes a vector by *fusing* the vectors of the items in their history,
and the score of an item is the dot product of the two. This module holds the
fusion encoders (the mean of recent items, and a small learned one) and the
FAISS helpers the lesson uses to search the catalogue.

Every retriever follows the course's ``score(users, history)`` contract
(``course_utils.evaluation``): ``history.sequences[u]`` is user ``u``'s items
in time order, most recent last.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from course_utils.data.splits import History, Split, check_users


def check_item_embeddings(item_embeddings, n_items: int | None = None) -> np.ndarray:
    """``item_embeddings`` as a finite float32 (n_items × dim) array with no all-zero row; else ValueError."""
    array = np.asarray(item_embeddings)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"item_embeddings must be a 2-D array (n_items × dim), got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"item_embeddings must be numeric, got dtype {array.dtype}")
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise ValueError("item_embeddings contain NaN or inf")
    if n_items is not None and array.shape[0] != n_items:
        raise ValueError(f"item_embeddings has {array.shape[0]} rows, but the data has {n_items} items")
    if (np.linalg.norm(array, axis=1) == 0).any():
        bad = int(np.flatnonzero(np.linalg.norm(array, axis=1) == 0)[0])
        raise ValueError(f"item {bad} has an all-zero embedding: it has no direction to compare")
    return array


def l2_normalise(array: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32)."""
    array = np.asarray(array, dtype=np.float32)
    return array / np.linalg.norm(array, axis=1, keepdims=True)


def recent_items_matrix(users: np.ndarray, history: History, n_items: int, n_recent: int,
                        weighting: str = "mean") -> sp.csr_matrix:
    """A len(users) × n_items sparse matrix of each user's ``n_recent`` most recent history items.

    Row u has weight 1 / m on each of the user's last m = min(n_recent, len(history)) items
    (``weighting="mean"``), or 1 on each (``"sum"``). A user with an empty history gets an
    all-zero row. Built without a Python loop over the positions: one concatenation of the
    users' sequences, then position-from-the-end arithmetic.
    """
    if isinstance(n_recent, bool) or not isinstance(n_recent, (int, np.integer)) or n_recent <= 0:
        raise ValueError(f"n_recent must be a positive integer, got {n_recent!r}")
    if weighting not in ("mean", "sum"):
        raise ValueError(f"weighting must be 'mean' or 'sum', got {weighting!r}")
    if len(history.sequences) != history.matrix.shape[0]:
        raise ValueError(f"history has {len(history.sequences)} sequences but {history.matrix.shape[0]} "
                         "matrix rows")
    users = check_users(users, len(history.sequences))
    sequences = [np.asarray(history.sequences[u], dtype=np.int64) for u in users]
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    flat = np.concatenate(sequences) if lengths.sum() else np.zeros(0, np.int64)
    if flat.size and (flat.min() < 0 or flat.max() >= n_items):
        raise ValueError(f"history holds item ids outside [0, {n_items})")
    row = np.repeat(np.arange(len(users)), lengths)
    starts = np.cumsum(lengths) - lengths
    from_end = np.repeat(lengths, lengths) - (np.arange(len(flat)) - np.repeat(starts, lengths)) - 1
    keep = from_end < n_recent
    kept = np.minimum(lengths, n_recent)
    weights = np.ones(int(keep.sum()), np.float32)
    if weighting == "mean":
        weights = (1.0 / np.maximum(kept, 1)[row[keep]]).astype(np.float32)
    matrix = sp.csr_matrix((weights, (row[keep], flat[keep])), shape=(len(users), n_items), dtype=np.float32)
    matrix.sum_duplicates()  # an item seen twice among the recent ones counts twice, as in the mean
    return matrix


class MeanFusionRetriever:
    """Content-only dense retrieval: a user is the mean of their recent items' embeddings.

    ``item_embeddings`` (n_items × dim) are L2-normalised here, so each recent item
    counts equally whatever the encoder's scale. The user vector is the mean of the
    unit vectors of the user's ``n_recent`` most recent history items (time order,
    ``history.sequences``), and ``score`` returns its dot product with every item's
    unit vector: an item close to the user's recent taste scores high. Nothing is
    trained, so ``fit`` only checks that the data and the embeddings agree.

    A user with an empty history has the zero vector, so every item scores 0 (the
    evaluator then ranks by its fixed random tie order): content retrieval has
    nothing to go on, and says so with uniform scores rather than an error.
    """

    def __init__(self, item_embeddings: np.ndarray, n_recent: int = 10):
        if isinstance(n_recent, bool) or not isinstance(n_recent, (int, np.integer)) or n_recent <= 0:
            raise ValueError(f"n_recent must be a positive integer, got {n_recent!r}")
        self.item_vectors = l2_normalise(check_item_embeddings(item_embeddings))
        self.n_recent = int(n_recent)

    @property
    def n_items(self) -> int:
        return self.item_vectors.shape[0]

    @property
    def n_params(self) -> int:
        return 0  # nothing is learned from the interactions

    def fit(self, split) -> "MeanFusionRetriever":
        """Check that ``split`` (a Split, or a users × items matrix) has as many items as the embeddings."""
        n_items = split.n_items if isinstance(split, Split) else getattr(split, "shape", (None, None))[1]
        if n_items is None:
            raise ValueError(f"fit expects a Split or a users × items matrix, got {type(split).__name__}")
        if n_items != self.n_items:
            raise ValueError(f"the data has {n_items} items, the embeddings {self.n_items}")
        self.fitted_ = True
        return self

    def _check_history(self, history: History) -> None:
        if not isinstance(history, History):
            raise TypeError(f"history must be a splits.History, got {type(history).__name__}")
        if history.matrix.shape[1] != self.n_items:
            raise ValueError(f"history has {history.matrix.shape[1]} items, the embeddings {self.n_items}")

    def user_vectors(self, users: np.ndarray, history: History) -> np.ndarray:
        """len(users) × dim: the mean unit vector of each user's recent items (zeros for an empty history)."""
        self._check_history(history)
        weights = recent_items_matrix(users, history, self.n_items, self.n_recent, "mean")
        return np.asarray(weights @ self.item_vectors, dtype=np.float32)

    def score(self, users: np.ndarray, history: History) -> np.ndarray:
        """len(users) × n_items dot products between the user vectors and the item vectors."""
        return self.user_vectors(users, history) @ self.item_vectors.T
