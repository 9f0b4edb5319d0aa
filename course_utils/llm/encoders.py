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
import torch
from torch import nn

from course_utils.data.splits import History, Split, check_users
from course_utils.evaluation import validation_metric
from course_utils.training import count_parameters, fit_loop


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


# ---------------------------------------------------------------------------
# A learned fusion encoder: attention pooling over the frozen item embeddings
# ---------------------------------------------------------------------------

def recent_items_array(users: np.ndarray, history: History, n_recent: int) -> np.ndarray:
    """len(users) × n_recent item ids, slot 0 the most recent item, padded with -1 (vectorised)."""
    users = check_users(users, len(history.sequences))
    sequences = [np.asarray(history.sequences[u], dtype=np.int64) for u in users]
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    flat = np.concatenate(sequences) if lengths.sum() else np.zeros(0, np.int64)
    ends = np.cumsum(lengths)
    slot = np.arange(n_recent)
    index = ends[:, None] - 1 - slot[None, :]  # position in ``flat`` of the slot-th most recent item
    valid = slot[None, :] < lengths[:, None]
    out = np.full((len(users), n_recent), -1, dtype=np.int64)
    out[valid] = flat[index[valid]]
    return out


def next_item_examples(sequences, n_recent: int, min_context: int = 1):
    """Every (recent context → next item) pair of time-ordered sequences, without a loop over positions.

    Returns ``(contexts, targets, prefix_start, target_at, flat)``: ``contexts`` is N × n_recent
    (slot 0 the item just before the target, -1 padding), ``targets`` (N,) the next items, and
    ``flat[prefix_start[r]:target_at[r]]`` holds *all* of example r's earlier items (``flat`` is
    the concatenated sequences), so training can mask them as evaluation masks a user's history.
    """
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    flat = np.concatenate([np.asarray(s, np.int64) for s in sequences]) if lengths.sum() else np.zeros(0, np.int64)
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    position = np.arange(len(flat)) - starts  # index of each interaction within its user's sequence
    keep = position >= min_context
    target_at = np.flatnonzero(keep)
    slot = np.arange(n_recent)
    index = target_at[:, None] - 1 - slot[None, :]
    valid = index >= starts[target_at][:, None]
    contexts = np.where(valid, flat[np.where(valid, index, 0)], -1)
    return contexts, flat[target_at], starts[target_at], target_at, flat


class FusionNet(nn.Module):
    """Item tower: a linear map of the frozen embedding. User tower: pooled item vectors + a residual MLP.

    ``forward(contexts)``: contexts is B × L item ids (slot 0 the most recent, -1 padding);
    returns B × n_items logits, scale · cos(user, item).
    """

    def __init__(self, item_embeddings: np.ndarray, dim: int, n_recent: int, pooling: str):
        super().__init__()
        self.pooling = pooling
        self.register_buffer("embeddings", torch.as_tensor(item_embeddings, dtype=torch.float32))
        self.project = nn.Linear(item_embeddings.shape[1], dim)
        self.recency = nn.Parameter(torch.zeros(n_recent, dim))  # one vector per recency slot
        self.attend = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, 1))
        self.mix = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.log_scale = nn.Parameter(torch.tensor(float(np.log(20.0))))

    def item_vectors(self):
        return nn.functional.normalize(self.project(self.embeddings), dim=-1)

    def user_vectors(self, contexts, items=None):
        items = self.item_vectors() if items is None else items
        mask = contexts >= 0
        h = items[contexts.clamp_min(0)]  # B × L × dim
        if self.pooling == "attention":
            logits = self.attend(h + self.recency[None, : contexts.shape[1]]).squeeze(-1)
            logits = logits.masked_fill(~mask, float("-inf"))
            weights = torch.softmax(logits, dim=1).nan_to_num(0.0)  # an empty history: all zero
        else:
            weights = mask.float() / mask.sum(1, keepdim=True).clamp_min(1)
        pooled = (weights.unsqueeze(-1) * h).sum(1)
        return nn.functional.normalize(pooled + self.mix(pooled), dim=-1) * mask.any(1, keepdim=True)

    def forward(self, contexts):
        items = self.item_vectors()
        return self.log_scale.exp() * self.user_vectors(contexts, items) @ items.T



class LearnedFusionRetriever:
    """Dense retrieval with a *learned* user encoder over frozen sentence embeddings.

    The item side stays content-only: an item's vector is a learned linear map of its
    frozen MiniLM embedding (unit length), so an item never seen in training still has
    a vector. The user side pools the vectors of the user's ``n_recent`` most recent
    items, with attention weights that depend on the item and its recency slot
    (``pooling="attention"``) or with equal weights (``pooling="mean"``, the ablation),
    then adds a small residual MLP. Trained with a full softmax over the catalogue to
    predict each next training interaction from the items before it, the user's
    earlier items masked out (as the evaluator masks them), with early stopping on
    validation NDCG@10. There are no per-item or per-user parameters.
    """

    def __init__(self, item_embeddings: np.ndarray, n_recent: int = 20, dim: int = 128, pooling: str = "attention",
                 lr: float = 3e-3, weight_decay: float = 1e-4, n_epochs: int = 20, batch_size: int = 512,
                 examples_per_epoch: int | None = None, patience: int = 2, seed: int = 0):
        if pooling not in ("attention", "mean"):
            raise ValueError(f"pooling must be 'attention' or 'mean', got {pooling!r}")
        for name, value in (("n_recent", n_recent), ("dim", dim), ("n_epochs", n_epochs), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if examples_per_epoch is not None and examples_per_epoch <= 0:
            raise ValueError(f"examples_per_epoch must be positive or None, got {examples_per_epoch!r}")
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr!r}")
        self.item_vectors = l2_normalise(check_item_embeddings(item_embeddings))
        self.n_recent, self.dim, self.pooling = int(n_recent), int(dim), pooling
        self.lr, self.weight_decay, self.n_epochs, self.batch_size = lr, weight_decay, int(n_epochs), int(batch_size)
        self.examples_per_epoch, self.patience, self.seed = examples_per_epoch, patience, int(seed)

    @property
    def n_items(self) -> int:
        return self.item_vectors.shape[0]

    @property
    def n_params(self) -> int:
        return count_parameters(self.net_)

    def build(self) -> "LearnedFusionRetriever":
        torch.manual_seed(self.seed)
        self.net_ = FusionNet(self.item_vectors, self.dim, self.n_recent, self.pooling)
        return self

    def fit(self, split: Split, validate=None) -> "LearnedFusionRetriever":
        """Train on ``split``'s training interactions; early-stop on validation NDCG@10 (``validate``)."""

        if not isinstance(split, Split):
            raise TypeError(f"fit expects a splits.Split, got {type(split).__name__}")
        if split.n_items != self.n_items:
            raise ValueError(f"the data has {split.n_items} items, the embeddings {self.n_items}")
        self.build()
        contexts, targets, prefix_start, target_at, flat = next_item_examples(split.history("valid").sequences,
                                                                               self.n_recent)
        if len(targets) == 0:
            raise ValueError("no training examples: every user needs at least two training interactions")
        net, rng = self.net_, np.random.default_rng(self.seed)
        optimizer = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        contexts_t, targets_t = torch.as_tensor(contexts), torch.as_tensor(targets)
        validate = validation_metric(split, "NDCG@10") if validate is None else validate

        def train_epoch(epoch: int) -> float:
            net.train()
            n = len(targets) if self.examples_per_epoch is None else min(self.examples_per_epoch, len(targets))
            order = rng.permutation(len(targets))[:n]
            total = 0.0
            for start in range(0, n, self.batch_size):
                batch = order[start:start + self.batch_size]
                logits = net(contexts_t[batch])
                rows, cols = _prefix_pairs(prefix_start[batch], target_at[batch], flat)
                logits = logits.index_put((torch.as_tensor(rows), torch.as_tensor(cols)),
                                          torch.tensor(float("-inf")))
                loss = torch.nn.functional.cross_entropy(logits, targets_t[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += loss.item() * len(batch)
            net.eval()
            return total / n

        self.fit_result_ = fit_loop(train_epoch, self.n_epochs, validate=lambda: validate(self),
                                    patience=self.patience, module=net, desc=f"fusion ({self.pooling})")
        net.eval()
        return self

    def _checked(self, history: History) -> None:
        if not hasattr(self, "net_"):
            raise RuntimeError("the encoder is not built yet: call fit(split) (or build()) first")
        if not isinstance(history, History):
            raise TypeError(f"history must be a splits.History, got {type(history).__name__}")
        if history.matrix.shape[1] != self.n_items:
            raise ValueError(f"history has {history.matrix.shape[1]} items, the embeddings {self.n_items}")

    def score(self, users: np.ndarray, history: History) -> np.ndarray:
        """len(users) × n_items scores; a user with an empty history scores 0 everywhere."""
        self._checked(history)
        contexts = torch.as_tensor(recent_items_array(users, history, self.n_recent))
        with torch.no_grad():
            return self.net_(contexts).numpy()


def _prefix_pairs(prefix_start: np.ndarray, target_at: np.ndarray, flat: np.ndarray):
    """(row, item) of every earlier item of each example: row r gets flat[prefix_start[r]:target_at[r]]."""
    lengths = target_at - prefix_start
    rows = np.repeat(np.arange(len(lengths)), lengths)
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return rows, flat[np.repeat(prefix_start, lengths) + offsets]


class TextHistoryRetriever:
    """A user as *text*: the titles of their ``n_recent`` latest items in one line, embedded by the encoder.

    The query is ``documents.history_text`` of the user's history, encoded with the same
    sentence encoder as the items (cached by ``documents.encode_texts``); scores are dot
    products with the unit item vectors. An empty history scores 0 everywhere.
    """

    def __init__(self, encoder, model_name: str, titles, item_embeddings: np.ndarray, n_recent: int = 10):
        if isinstance(n_recent, bool) or not isinstance(n_recent, (int, np.integer)) or n_recent <= 0:
            raise ValueError(f"n_recent must be a positive integer, got {n_recent!r}")
        self.item_vectors = l2_normalise(check_item_embeddings(item_embeddings))
        self.titles = [str(t) for t in titles]
        if len(self.titles) != self.item_vectors.shape[0]:
            raise ValueError(f"{len(self.titles)} titles for {self.item_vectors.shape[0]} item embeddings")
        self.encoder, self.model_name, self.n_recent = encoder, model_name, int(n_recent)
        self.n_params = 0

    def fit(self, split) -> "TextHistoryRetriever":
        return self

    def queries(self, users: np.ndarray, history: History) -> list[str | None]:
        """The query text of each user (None for an empty history)."""
        recent = recent_items_array(users, history, self.n_recent)
        return ["; ".join(self.titles[i] for i in row[::-1] if i >= 0) or None for row in recent]

    def score(self, users: np.ndarray, history: History) -> np.ndarray:
        from course_utils.llm.documents import encode_texts
        if history.matrix.shape[1] != self.item_vectors.shape[0]:
            raise ValueError(f"history has {history.matrix.shape[1]} items, the embeddings "
                             f"{self.item_vectors.shape[0]}")
        texts = self.queries(users, history)
        vectors = np.zeros((len(texts), self.item_vectors.shape[1]), np.float32)
        present = [i for i, t in enumerate(texts) if t is not None]
        if present:
            vectors[present] = encode_texts([texts[i] for i in present], self.encoder, self.model_name,
                                            verbose=False)
        return vectors @ self.item_vectors.T


# ---------------------------------------------------------------------------
# FAISS: exact and approximate inner-product search
# ---------------------------------------------------------------------------

def build_index(vectors: np.ndarray, kind: str = "flat", *, hnsw_m: int = 16, ef_construction: int = 40,
                n_lists: int = 32, seed: int = 0):
    """A FAISS inner-product index over ``vectors`` (n × d float32, unit rows give cosine).

    ``kind``: "flat" (exact, IndexFlatIP), "hnsw" (graph, IndexHNSWFlat; set
    ``index.hnsw.efSearch`` at query time) or "ivf" (``n_lists`` k-means cells,
    IndexIVFFlat; set ``index.nprobe``).
    """
    import faiss

    vectors = np.ascontiguousarray(check_item_embeddings(vectors))
    d = vectors.shape[1]
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
    elif kind == "ivf":
        if not 0 < n_lists <= len(vectors):
            raise ValueError(f"n_lists must lie in [1, {len(vectors)}], got {n_lists}")
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, n_lists, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.train(vectors)
    else:
        raise ValueError(f"kind must be 'flat', 'hnsw' or 'ivf', got {kind!r}")
    index.add(vectors)
    return index


def brute_force_top_k(queries: np.ndarray, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids) of the k largest inner products per query, best first: the numpy reference."""
    queries, vectors = np.asarray(queries, np.float32), np.asarray(vectors, np.float32)
    if queries.ndim != 2 or vectors.ndim != 2 or queries.shape[1] != vectors.shape[1]:
        raise ValueError(f"queries {queries.shape} and vectors {vectors.shape} must be 2-D with the same width")
    if not 0 < k <= len(vectors):
        raise ValueError(f"k must lie in [1, {len(vectors)}], got {k}")
    scores = queries @ vectors.T
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    ids = np.take_along_axis(part, order, axis=1)
    return np.take_along_axis(scores, ids, axis=1), ids


def recall_against_exact(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of the exact top-k that the approximate search also returned (ids; -1 = nothing)."""
    found, exact = np.asarray(found), np.asarray(exact)
    if found.shape != exact.shape:
        raise ValueError(f"found {found.shape} and exact {exact.shape} must have the same shape")
    hits = (found[:, :, None] == exact[:, None, :]) & (exact[:, None, :] >= 0)
    return float(hits.any(axis=1).sum(axis=1).mean() / exact.shape[1])


def ann_tradeoff(vectors: np.ndarray, queries: np.ndarray, k: int = 10, ef_search=(8, 16, 32, 64, 128),
                 n_probe=(1, 2, 4, 8, 16), n_lists: int = 32, repeats: int = 3, seed: int = 0):
    """Recall@k against exact search and query time (µs per query) for a sweep of HNSW and IVF settings.

    Each setting is timed ``repeats`` times over all queries (one thread) and the fastest run kept.
    Returns a DataFrame with columns index, setting, value, recall@k, µs/query.
    """
    import time

    import faiss
    import pandas as pd

    queries = np.ascontiguousarray(queries, dtype=np.float32)
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        def timed(index):
            best, result = np.inf, None
            for _ in range(repeats):
                start = time.perf_counter()
                result = index.search(queries, k)[1]
                best = min(best, time.perf_counter() - start)
            return result, 1e6 * best / len(queries)

        flat = build_index(vectors, "flat")
        exact, flat_us = timed(flat)
        rows = [{"index": "flat (exact)", "setting": "-", "value": 0, f"recall@{k}": 1.0, "µs/query": flat_us}]
        hnsw = build_index(vectors, "hnsw")
        for ef in ef_search:
            hnsw.hnsw.efSearch = int(ef)
            found, us = timed(hnsw)
            rows.append({"index": "HNSW", "setting": "efSearch", "value": int(ef),
                         f"recall@{k}": recall_against_exact(found, exact), "µs/query": us})
        ivf = build_index(vectors, "ivf", n_lists=n_lists, seed=seed)
        for probe in n_probe:
            ivf.nprobe = int(probe)
            found, us = timed(ivf)
            rows.append({"index": f"IVF ({n_lists} lists)", "setting": "nprobe", "value": int(probe),
                         f"recall@{k}": recall_against_exact(found, exact), "µs/query": us})
    finally:
        faiss.omp_set_num_threads(threads)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------
# Showing and checking retrieved items
# ---------------------------------------------------------------------------

def query_results_markdown(query: str, ids, scores, labels, k: int | None = None) -> str:
    """A Markdown table of one query's results: rank, score, item label."""
    ids, scores = np.asarray(ids)[:k], np.asarray(scores)[:k]
    rows = "\n".join(f"| {r} | {s:.3f} | {str(labels[i]).replace('|', '/')} |"
                     for r, (i, s) in enumerate(zip(ids, scores), start=1))
    return f"**Query:** *{query}*\n\n| rank | cosine | item |\n|---:|---:|---|\n{rows}\n"


def attribute_precision(ids, items, **wanted) -> float:
    """Share of the retrieved ``ids`` whose ``items`` rows have every wanted attribute (column=value)."""
    if not wanted:
        raise ValueError("name at least one attribute, e.g. category='Coat'")
    missing = [c for c in wanted if c not in items.columns]
    if missing:
        raise ValueError(f"items have no column(s) {missing}; available: {list(items.columns)}")
    rows = items.iloc[np.asarray(ids).ravel()]
    match = np.ones(len(rows), bool)
    for column, value in wanted.items():
        match &= (rows[column] == value).to_numpy()
    return float(match.mean())


# ---------------------------------------------------------------------------
# The cold-start slice
# ---------------------------------------------------------------------------

def cold_start_mask(split: Split, max_interactions: int, stage: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """Which evaluated users have a *cold* target: one with at most ``max_interactions`` in the history.

    The history is what every model sees at ``stage`` (training, plus validation for the test).
    Returns (mask over the evaluator's users, in its order; each user's target count).
    """
    if isinstance(max_interactions, bool) or not isinstance(max_interactions, (int, np.integer)) \
            or max_interactions < 0:
        raise ValueError(f"max_interactions must be a non-negative integer, got {max_interactions!r}")
    targets = split.targets(stage)
    users = np.flatnonzero(targets.getnnz(axis=1))
    if (targets[users].getnnz(axis=1) != 1).any():
        raise ValueError("the cold-start slice needs exactly one target per user (leave-one-out)")
    counts = np.asarray(split.history(stage).matrix.sum(axis=0)).ravel()
    target_counts = counts[targets[users].indices]
    return target_counts <= max_interactions, target_counts


def with_test_users(split: Split, users) -> Split:
    """The same split with its test stage restricted to ``users`` (histories unchanged): a fixed user subsample."""
    users = np.unique(check_users(np.asarray(users), split.n_users))
    test = split.test[split.test["user"].isin(users)].reset_index(drop=True)
    if len(test) == 0:
        raise ValueError("none of the given users has a test interaction")
    return Split(split.train, split.valid, test, split.n_users, split.n_items,
                 protocol=f"{split.protocol}[{test['user'].nunique()} test users]")


def utility_at_k(utility: np.ndarray, scores: np.ndarray, seen, k: int = 10) -> np.ndarray:
    """Per user, the mean ground-truth ``utility`` of the top-k items by ``scores``, seen items excluded."""
    from course_utils.evaluation import top_k
    utility = np.asarray(utility, dtype=np.float64)
    if utility.shape != np.shape(scores):
        raise ValueError(f"utility {utility.shape} and scores {np.shape(scores)} must have the same shape")
    ids = top_k(scores, k, exclude=seen)
    return np.take_along_axis(utility, ids, axis=1).mean(axis=1)
