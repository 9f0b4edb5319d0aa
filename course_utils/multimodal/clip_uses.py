"""What a shared image-text space is for in a shop (lesson 14): retrieval, cold start, composed queries.

All functions take embeddings as produced by ``clip.encode_images`` / ``clip.encode_texts``
(rows of unit length), so they work the same for the offline LiT model and for a
pretrained open_clip model.

* ``retrieval_ranks``: where each query's own match ranks (text→image, image→text).
* ``cold_start_split`` and ``ProfileRecommender``: new products, held out of the
  interaction log, scored from their image alone through the user's profile.
* ``evaluate_cold_start``: rank only the new products, against the shop's
  interactions (NDCG@10, HR@10) and against its ground-truth utility.
* ``composed_queries``: "like this one, but as a bag", scored by whether the results
  are bags *and* keep the reference's tone and pattern.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from course_utils.data.splits import Split
from course_utils.evaluation import ranks_of_targets, summarize_ranks
from course_utils.metrics import normalised_utility


def _unit_rows(x, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"{name} must be a non-empty (N, D) array, got shape {x.shape}")
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


# ---------------------------------------------------------------- retrieval
def retrieval_ranks(queries, targets) -> np.ndarray:
    """1-based rank of target i among all targets for query i (ties count against the match).

    queries, targets: (N, D) with row i of each describing the same product.
    """
    queries, targets = _unit_rows(queries, "queries"), _unit_rows(targets, "targets")
    if queries.shape != targets.shape:
        raise ValueError(f"queries and targets must pair up row by row, got {queries.shape} and {targets.shape}")
    similarity = queries @ targets.T
    return (similarity >= np.diag(similarity)[:, None]).sum(1)


def attribute_precision(similarity: np.ndarray, query_values, target_values, k: int = 10) -> np.ndarray:
    """Per query, the share of its top-k targets whose attribute equals the query's (e.g. category)."""
    top = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    return (np.asarray(target_values)[top] == np.asarray(query_values)[:, None]).mean(1)


# ---------------------------------------------------------------- cold start
def cold_start_split(shop, heldout_items, seed: int = 0) -> tuple[Split, np.ndarray, np.ndarray]:
    """Products in ``heldout_items`` leave the training log; half of them validate, half test.

    Returns ``(split, valid_items, test_items)``. The split's training part holds
    only interactions with the other products, so no model has seen a held-out
    product bought; ``split.history("test")`` adds the validation products' interactions.
    """
    heldout_items = np.unique(np.asarray(heldout_items))
    if len(heldout_items) < 2 or heldout_items.max() >= shop.n_items or heldout_items.min() < 0:
        raise ValueError(f"heldout_items must hold at least two item ids in 0..{shop.n_items - 1}")
    rng = np.random.default_rng(seed)
    category = shop.items["category"].to_numpy()[heldout_items]
    valid = np.concatenate([rng.permutation(heldout_items[category == c])[: (category == c).sum() // 2]
                            for c in np.unique(category)])
    valid, test = np.sort(valid), np.setdiff1d(heldout_items, valid)
    log = shop.interactions[["user", "item", "rating", "timestamp"]]
    parts = [log[~log["item"].isin(heldout_items)], log[log["item"].isin(valid)], log[log["item"].isin(test)]]
    split = Split(*(p.reset_index(drop=True) for p in parts), shop.n_users, shop.n_items,
                  protocol=f"cold-start-items[{len(heldout_items) / shop.n_items:.0%}]")
    return split, valid, test


class ProfileRecommender:
    """Score every item by its similarity to what the user bought, in an embedding space.

    ``temperature=None``: cosine to the user's *profile*, the mean of their items'
    embeddings. A number τ: a soft maximum over their items, τ·log Σ_j exp(cos(i, j)/τ),
    which approaches "the most similar item they bought" as τ → 0. Needs no
    interactions with the scored item, only its embedding: it can score new products.
    """

    def __init__(self, item_embeddings, temperature: float | None = None, name: str = "profile"):
        if temperature is not None and not temperature > 0:
            raise ValueError(f"temperature must be positive or None, got {temperature!r}")
        self.embeddings = _unit_rows(item_embeddings, "item_embeddings")
        self.temperature, self.name = temperature, name
        self.n_params = 0  # nothing is fitted on interactions

    def score(self, users, history) -> np.ndarray:
        bought = sp.csr_matrix(history.matrix[np.asarray(users)], dtype=np.float64)
        if bought.shape[1] != len(self.embeddings):
            raise ValueError(f"history has {bought.shape[1]} items, the embeddings {len(self.embeddings)}")
        counts = np.asarray(bought.sum(1))
        if self.temperature is None:
            profile = (bought @ self.embeddings) / np.maximum(counts, 1)
            scores = _unit_rows(profile + 1e-12, "profile") @ self.embeddings.T
        else:
            tau = self.temperature
            similarity = np.exp((self.embeddings @ self.embeddings.T - 1) / tau)  # shifted by the max, 1
            scores = 1 + tau * np.log(np.maximum(bought @ similarity, 1e-300))
        return np.where(counts > 0, scores, 0.0)  # a user with no history gets no preference


def _ranked(scores: np.ndarray, tie_order: np.ndarray) -> np.ndarray:
    """Column order per row, best first, ties broken by ``tie_order`` (never by id)."""
    return np.lexsort((np.broadcast_to(tie_order, scores.shape), -scores), axis=-1)


def evaluate_cold_start(score_fn, split: Split, stage: str, candidates, shop=None, k: int = 10,
                        seed: int = 0) -> dict[str, np.ndarray]:
    """Per-user metrics of ranking only the new products in ``candidates``.

    From the log: NDCG@k and HR@k over users who bought a candidate in ``stage``.
    From the shop's ground truth (when ``shop`` is given), over every user with a
    history: ``utility@k``, the mean true utility of the top k scaled so that a random
    order scores 0 and the best possible top k scores 1.
    """
    candidates = np.asarray(candidates)
    history = split.history(stage)
    tie_order = np.random.default_rng(seed).permutation(len(candidates))
    targets = split.targets(stage)[:, candidates].tocsr()
    users = np.flatnonzero(targets.getnnz(axis=1))
    if len(users) == 0:
        raise ValueError(f"nobody bought a candidate in the {stage} set: nothing to evaluate")
    scores = np.asarray(score_fn(users, history), dtype=np.float64)[:, candidates]
    empty = sp.csr_matrix(targets[users].shape)
    ranks = ranks_of_targets(scores, targets[users], empty, tie_order)
    per_user = {m: v for m, v in summarize_ranks(ranks, len(candidates), ks=(k,)).items()
                if m in (f"NDCG@{k}", f"HR@{k}")}
    if shop is not None:
        everyone = np.flatnonzero(history.matrix.getnnz(axis=1))
        scores = np.asarray(score_fn(everyone, history), dtype=np.float64)[:, candidates]
        utility = shop.true_utility(everyone, candidates)
        per_user[f"utility@{k}"] = normalised_utility(utility, _ranked(scores, tie_order)[:, :k])
    return per_user


# ---------------------------------------------------------------- composed queries
def compose(image_embeddings, text_embeddings, text_weight: float) -> np.ndarray:
    """Composed query: normalise(image + w · text), both parts unit rows; w = 0 is the image alone."""
    if not np.isfinite(text_weight) or text_weight < 0:
        raise ValueError(f"text_weight must be a finite number >= 0, got {text_weight!r}")
    return _unit_rows(_unit_rows(image_embeddings, "image_embeddings")
                      + text_weight * _unit_rows(text_embeddings, "text_embeddings"), "composed query")


def composed_queries(items: pd.DataFrame, pool, image_embeddings, category_text: dict, text_weight,
                     k: int = 10) -> pd.DataFrame:
    """Every product of ``pool`` as a reference, asked for in every *other* category; one row per query.

    ``image_embeddings``: (n_items, D); ``category_text``: category -> unit text embedding
    of its edit (e.g. of "bag"). ``text_weight=np.inf`` uses the text alone. A result
    succeeds when it is in the requested category *and* keeps the reference's tone and
    pattern; ``success`` is the share of such results in the top k (the reference excluded),
    ``chance`` the share of such products in the pool.
    """
    pool = np.asarray(pool)
    images = _unit_rows(image_embeddings, "image_embeddings")
    category, tone, pattern = (items[c].to_numpy() for c in ("category", "tone", "pattern"))
    rows = []
    for target, text in category_text.items():
        references = pool[category[pool] != target]
        text = np.broadcast_to(np.asarray(text, dtype=np.float64), (len(references), images.shape[1]))
        query = _unit_rows(text, "text") if np.isinf(text_weight) else compose(images[references], text, text_weight)
        similarity = query @ images[pool].T
        similarity[references[:, None] == pool[None, :]] = -np.inf  # never return the reference itself
        top = pool[np.argsort(-similarity, axis=1, kind="stable")[:, :k]]
        right_category = category[top] == target
        kept = (tone[top] == tone[references, None]) & (pattern[top] == pattern[references, None])
        wanted = (category[pool] == target)[None, :] & (tone[pool][None, :] == tone[references, None]) \
            & (pattern[pool][None, :] == pattern[references, None])
        rows.append(pd.DataFrame({"reference": references, "target": target,
                                  "category_hit": right_category.mean(1), "style_kept": kept.mean(1),
                                  "success": (right_category & kept).mean(1), "chance": wanted.mean(1)}))
    return pd.concat(rows, ignore_index=True)


def nearest_neighbour_agreement(embeddings, labels) -> float:
    """Share of products whose most similar *other* product (cosine) has the same label."""
    unit = _unit_rows(embeddings, "embeddings")
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    labels = np.asarray(labels)
    return float((labels[similarity.argmax(1)] == labels).mean())
