"""Evaluation metrics (survey Section 5.1.1), all vectorised over users.

Ranking metrics take a *rank matrix*: one row per user, one column per relevant
(held-out) item, holding that item's 1-based position in the user's ranking,
padded with ``np.inf`` where a user has fewer relevant items. Every metric
returns one value per user; evaluators average them.

Example: a user whose single test item sits at position 3 has
``ndcg_at_k(np.array([[3.0]]), 10) == 1 / log2(4) == 0.5``.
"""
from __future__ import annotations

import numpy as np


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


def _check_ranks(ranks) -> np.ndarray:
    ranks = np.asarray(ranks, dtype=np.float64)
    if ranks.ndim != 2:
        raise ValueError(f"ranks must be a 2-D array (users × relevant items), got shape {ranks.shape}")
    if ranks.shape[0] == 0:
        raise ValueError("ranks is empty: there are no users to evaluate")
    if np.isnan(ranks).any() or (ranks < 1).any() or (ranks == -np.inf).any():
        raise ValueError("ranks must be 1-based positions (>= 1), padded with np.inf")
    finite = np.isfinite(ranks)
    if (ranks[finite] != np.floor(ranks[finite])).any():
        raise ValueError("ranks must be whole positions (1, 2, 3, ...), got fractional values")
    n_relevant = finite.sum(axis=1)
    if (n_relevant == 0).any():
        raise ValueError(f"{int((n_relevant == 0).sum())} user(s) have no relevant item; drop them first")
    # Two relevant items cannot share a position: duplicates would push NDCG above 1.
    ordered = np.sort(ranks, axis=1)
    if ranks.shape[1] > 1 and ((ordered[:, 1:] == ordered[:, :-1]) & np.isfinite(ordered[:, 1:])).any():
        raise ValueError("a user's relevant items must sit at distinct positions; got a repeated rank")
    return ranks


def n_relevant(ranks) -> np.ndarray:
    """Number of relevant items per user (the finite entries of the rank matrix)."""
    return np.isfinite(_check_ranks(ranks)).sum(axis=1)


def hits_at_k(ranks, k: int) -> np.ndarray:
    """Number of relevant items in the top ``k``, per user."""
    return (_check_ranks(ranks) <= _check_k(k)).sum(axis=1)


def hit_rate_at_k(ranks, k: int) -> np.ndarray:
    """HR@k: 1 if any relevant item is in the top k, else 0."""
    return (hits_at_k(ranks, k) > 0).astype(np.float64)


def precision_at_k(ranks, k: int) -> np.ndarray:
    """Precision@k: relevant items in the top k, divided by k."""
    return hits_at_k(ranks, k) / _check_k(k)


def recall_at_k(ranks, k: int) -> np.ndarray:
    """Recall@k normalised by |test|: the share of a user's relevant items found in the top k."""
    return hits_at_k(ranks, k) / n_relevant(ranks)


def recall_at_k_capped(ranks, k: int) -> np.ndarray:
    """Recall@k normalised by min(k, |test|), as in Liang et al. (2018): 1.0 is reachable for every user."""
    return hits_at_k(ranks, k) / np.minimum(_check_k(k), n_relevant(ranks))


def _discount(positions: np.ndarray) -> np.ndarray:
    return 1.0 / np.log2(positions + 1.0)


def ndcg_at_k(ranks, k: int) -> np.ndarray:
    """NDCG@k with binary relevance: DCG of the hits over the DCG of a perfect top k."""
    ranks, k = _check_ranks(ranks), _check_k(k)
    dcg = np.where(ranks <= k, _discount(np.minimum(ranks, k)), 0.0).sum(axis=1)
    ideal_len = np.minimum(k, np.isfinite(ranks).sum(axis=1))
    ideal = np.cumsum(_discount(np.arange(1, k + 1)))[ideal_len - 1]
    return dcg / ideal


def map_at_k(ranks, k: int) -> np.ndarray:
    """Average precision cut at k, divided by |test| (trec_eval's ``map_cut``).

    For the j-th relevant item (in rank order) found at position r <= k, the
    precision there is j / r.
    """
    ranks, k = _check_ranks(ranks), _check_k(k)
    ordered = np.sort(ranks, axis=1)
    j = np.arange(1, ordered.shape[1] + 1)
    precision_at_hits = np.where(ordered <= k, j / np.minimum(ordered, k), 0.0)
    return precision_at_hits.sum(axis=1) / np.isfinite(ranks).sum(axis=1)


def mrr(ranks) -> np.ndarray:
    """Reciprocal rank of the first relevant item (over the full ranking, no cut-off)."""
    return 1.0 / _check_ranks(ranks).min(axis=1)


def auc(ranks, n_candidates) -> np.ndarray:
    """Per-user AUC: the share of (relevant, non-relevant) pairs ranked in the right order.

    ``n_candidates`` is the number of items each user's ranking ran over
    (scalar or one per user), relevant items included.
    """
    ranks = _check_ranks(ranks)
    n_rel = np.isfinite(ranks).sum(axis=1)
    n_neg = np.broadcast_to(np.asarray(n_candidates, dtype=np.float64), n_rel.shape) - n_rel
    if (n_neg <= 0).any():
        raise ValueError("n_candidates must exceed the number of relevant items for every user")
    worst = np.where(np.isfinite(ranks), ranks, 0).max(axis=1)
    if (worst > n_neg + n_rel).any():
        user = int(np.argmax(worst > n_neg + n_rel))
        raise ValueError(f"user {user} has a relevant item at rank {worst[user]:.0f}, but the ranking ran over only "
                         f"{n_neg[user] + n_rel[user]:.0f} candidates")
    ordered = np.sort(ranks, axis=1)
    # The j-th relevant item (0-based) has rank-1 items above it, j of them relevant.
    negatives_above = np.where(np.isfinite(ordered), ordered - 1 - np.arange(ordered.shape[1]), 0.0)
    return 1.0 - negatives_above.sum(axis=1) / (n_rel * n_neg)


# --- rating prediction --------------------------------------------------------

def normalised_utility(utility, picked, allowed=None) -> np.ndarray:
    """Per user, the ground-truth utility of a top-k list on a scale from random (0) to the best k (1).

    ``utility`` (users × items) is a simulator's true utility, ``picked`` (users × k) the
    item ids each user was shown, ``allowed`` (users × items, bool) the items that could
    have been shown (default: all). Score = (mean utility of ``picked`` − mean over the
    allowed items) / (mean of the k best allowed items − that mean). Each lesson ranks
    in its own way (ties, candidate sets); they share this scale.
    """
    utility = np.asarray(utility, dtype=np.float64)
    picked = np.asarray(picked)
    if utility.ndim != 2 or picked.ndim != 2 or len(picked) != len(utility):
        raise ValueError(f"utility must be users × items and picked users × k with the same users; got "
                         f"{utility.shape} and {picked.shape}")
    allowed = np.ones(utility.shape, bool) if allowed is None else np.asarray(allowed, bool)
    if allowed.shape != utility.shape:
        raise ValueError(f"allowed {allowed.shape} must match utility {utility.shape}")
    k = picked.shape[1]
    if k == 0 or (allowed.sum(1) < k).any():
        raise ValueError(f"every user needs at least k={k} >= 1 allowed items")
    if not np.take_along_axis(allowed, picked, 1).all():
        raise ValueError("picked contains items that are not allowed for that user")
    shown = np.take_along_axis(utility, picked, 1).mean(1)
    best = -np.sort(-np.where(allowed, utility, -np.inf), axis=1)[:, :k].mean(1)
    mean = np.where(allowed, utility, 0.0).sum(1) / allowed.sum(1)
    return (shown - mean) / np.maximum(best - mean, 1e-12)


def _paired(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred must have the same shape, got {y_true.shape} and {y_pred.shape}")
    if y_true.size == 0:
        raise ValueError("y_true is empty")
    return y_true, y_pred


def rmse(y_true, y_pred) -> float:
    """Root mean squared error of predicted ratings."""
    y_true, y_pred = _paired(y_true, y_pred)
    return float(np.sqrt(np.mean((y_true - y_pred) ** 2)))


def mae(y_true, y_pred) -> float:
    """Mean absolute error of predicted ratings."""
    y_true, y_pred = _paired(y_true, y_pred)
    return float(np.mean(np.abs(y_true - y_pred)))


# --- beyond accuracy ----------------------------------------------------------

def _check_lists(top_items, n_items: int | None = None) -> np.ndarray:
    top_items = np.asarray(top_items)
    if top_items.ndim != 2 or top_items.size == 0:
        raise ValueError(f"top_items must be a non-empty 2-D array (users × k), got shape {top_items.shape}")
    if not np.issubdtype(top_items.dtype, np.integer):
        raise ValueError(f"top_items must hold integer item indices, got dtype {top_items.dtype}")
    if top_items.min() < 0 or (n_items is not None and top_items.max() >= n_items):
        raise ValueError(f"item indices must lie in [0, {n_items}), got [{top_items.min()}, {top_items.max()}]")
    return top_items


def catalog_coverage(top_items, n_items: int) -> float:
    """Share of the catalogue that appears in at least one user's list."""
    top_items = _check_lists(top_items, n_items)
    return float(np.unique(top_items).size / n_items)


def intra_list_diversity(top_items, item_vectors) -> np.ndarray:
    """Mean pairwise cosine *distance* between the items of each list (higher = more varied)."""
    top_items = _check_lists(top_items, len(item_vectors))
    if top_items.shape[1] < 2:
        raise ValueError("intra-list diversity needs lists of at least 2 items")
    vectors = np.asarray(item_vectors, np.float64)
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    lists = unit[top_items]                          # users × k × d
    sims = np.einsum("ukd,ujd->ukj", lists, lists)   # users × k × k
    k = top_items.shape[1]
    off_diagonal = (sims.sum(axis=(1, 2)) - np.trace(sims, axis1=1, axis2=2)) / (k * (k - 1))
    return 1.0 - off_diagonal


def novelty(top_items, item_popularity) -> np.ndarray:
    """Mean self-information -log2 p(i) of recommended items, p(i) = share of users who saw i."""
    popularity = np.asarray(item_popularity, np.float64)
    top_items = _check_lists(top_items, len(popularity))
    if popularity.min() < 0 or popularity.max() > 1:
        raise ValueError("item_popularity must be a share of users in [0, 1]")
    return -np.log2(np.maximum(popularity[top_items], 1e-12)).mean(axis=1)


def average_recommended_popularity(top_items, item_counts) -> np.ndarray:
    """ARP: mean training interaction count of the recommended items, per user."""
    counts = np.asarray(item_counts, np.float64)
    return counts[_check_lists(top_items, len(counts))].mean(axis=1)


# --- popularity bias and concentration -----------------------------------------

def gini(values) -> float:
    """Gini index of a non-negative vector (e.g. how often each item is recommended).

    0 means every entry is equal (exposure spread evenly); the value approaches 1 as
    everything concentrates on one entry (exactly ``(n - 1) / n`` for one non-zero
    entry among ``n``). Computed from the sorted values ``x_1 <= ... <= x_n`` as
    ``G = 2 * sum_i i * x_i / (n * sum x) - (n + 1) / n``, which equals the mean
    absolute difference over all ordered pairs divided by twice the mean.

    Example: ``gini([0, 0, 0, 1]) == 0.75`` and ``gini([1, 2, 3]) == 2 / 9``.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"gini expects a 1-D vector of counts, got shape {x.shape}")
    if x.size == 0:
        raise ValueError("gini of an empty vector is undefined: pass at least one value")
    if not np.isfinite(x).all():
        raise ValueError("gini expects finite values; got NaN or infinity")
    if (x < 0).any():
        raise ValueError(f"gini expects non-negative values (counts), got minimum {x.min()}")
    total = x.sum()
    if total == 0:
        raise ValueError("gini of an all-zero vector is undefined: nothing was counted")
    n = x.size
    ordered = np.sort(x)
    positions = np.arange(1, n + 1, dtype=np.float64)
    return float(2.0 * (positions * ordered).sum() / (n * total) - (n + 1.0) / n)


def exposure_counts(top_items, n_items: int) -> np.ndarray:
    """How many lists each item appears in (length ``n_items``): the input of an exposure Gini."""
    top_items = _check_lists(top_items, n_items)
    return np.bincount(top_items.ravel(), minlength=n_items)


def exposure_gini(top_items, n_items: int) -> float:
    """Gini index of how often each catalogue item is recommended (0: all equally, near 1: a few items only).

    Items never recommended count as zero exposure, so a system that shows the
    same ten items to everyone scores close to 1 on a large catalogue.
    """
    return gini(exposure_counts(top_items, n_items))


def _head_items(item_counts, head_share: float) -> np.ndarray:
    counts = np.asarray(item_counts, np.float64)
    if counts.ndim != 1 or counts.size == 0 or (counts < 0).any() or not np.isfinite(counts).all():
        raise ValueError("item_counts must be a non-empty 1-D vector of non-negative counts")
    if not 0 < head_share < 1:
        raise ValueError(f"head_share must lie strictly between 0 and 1, got {head_share}")
    n_head = max(1, int(round(head_share * counts.size)))
    head = np.zeros(counts.size, bool)
    head[np.argsort(-counts, kind="stable")[:n_head]] = True  # ties: the lower item id enters the head
    return head


def long_tail_share(top_items, item_counts, head_share: float = 0.2) -> np.ndarray:
    """Per user, the share of recommended items from the long tail.

    The *head* is the ``head_share`` most popular items of the catalogue (by
    training interactions; 20% by default); everything else is the tail.
    """
    head = _head_items(item_counts, head_share)
    return (~head[_check_lists(top_items, head.size)]).mean(axis=1)


def popularity_lift(top_items, profiles, item_counts) -> np.ndarray:
    """Per user, how much more popular the recommendations are than the user's own history.

    ``(ARP of the list - mean popularity of the profile) / mean popularity of the profile``,
    a per-user version of Abdollahpouri et al.'s (2021) popularity lift: 0 means the
    list is as mainstream as the user, +1 means twice as popular. ``profiles`` is a
    users × items 0/1 matrix (dense or scipy sparse) in the same row order as the lists.
    """
    counts = np.asarray(item_counts, np.float64)
    top_items = _check_lists(top_items, len(counts))
    profiles = profiles.toarray() if hasattr(profiles, "toarray") else np.asarray(profiles)
    if profiles.shape != (top_items.shape[0], counts.size):
        raise ValueError(f"profiles must be users × items = ({top_items.shape[0]}, {counts.size}), "
                         f"got {profiles.shape}")
    sizes = (profiles > 0).sum(axis=1)
    if (sizes == 0).any():
        raise ValueError(f"{int((sizes == 0).sum())} user(s) have an empty profile; drop them first")
    profile_pop = ((profiles > 0) * counts).sum(axis=1) / sizes
    if (profile_pop == 0).any():
        raise ValueError("a profile holds only items with zero interactions: the lift is undefined")
    return (counts[top_items].mean(axis=1) - profile_pop) / profile_pop


def serendipity(top_items, relevant, expected_items) -> np.ndarray:
    """Per user, the share of the list that is both relevant and unexpected (Ge et al., 2010).

    An item is *unexpected* when a primitive recommender (e.g. popularity) does
    not also recommend it to that user: ``expected_items`` holds those primitive
    lists (users × m item ids). ``relevant`` is a users × items 0/1 matrix (dense or
    sparse) of the held-out items. Serendipity = |relevant ∩ list \\ expected| / k.
    """
    top_items = np.asarray(top_items)
    relevant = relevant.toarray() if hasattr(relevant, "toarray") else np.asarray(relevant)
    if relevant.ndim != 2:
        raise ValueError(f"relevant must be a users × items matrix, got shape {relevant.shape}")
    top_items = _check_lists(top_items, relevant.shape[1])
    expected_items = _check_lists(expected_items, relevant.shape[1])
    if relevant.shape[0] != top_items.shape[0] or expected_items.shape[0] != top_items.shape[0]:
        raise ValueError(f"one row per user everywhere: lists {top_items.shape[0]}, relevant {relevant.shape[0]}, "
                         f"expected lists {expected_items.shape[0]}")
    rows = np.arange(top_items.shape[0])[:, None]
    hit = relevant[rows, top_items] > 0
    expected = (top_items[:, :, None] == expected_items[:, None, :]).any(axis=2)
    return (hit & ~expected).sum(axis=1) / top_items.shape[1]
