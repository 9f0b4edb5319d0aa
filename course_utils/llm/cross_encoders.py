"""Cross-encoders: one transformer reads the user and the item together (lesson 08, survey section 3.1.2).

A bi-encoder (``encoders``) embeds the user and the item separately and
compares the two vectors, so the catalogue can be embedded once, in advance. A
*cross-encoder* feeds the pair ``[CLS] user text [SEP] item text [SEP]`` through
one transformer and reads a relevance logit off the ``[CLS]`` position: every
user token can attend to every item token, but nothing can be computed ahead of
time, so each (user, item) pair costs a full forward pass. That is why it is
used to *rerank* a first stage's short list, never to search the catalogue.

The model is sentence-transformers' ``CrossEncoder`` (its ``model`` is a
``BertForSequenceClassification``), trained with the library's
``BinaryCrossEntropyLoss`` in a plain PyTorch loop (the library's trainer would
also need the ``datasets`` package). Offline it starts from the course's
all-MiniLM-L6-v2 weights, with a new one-logit head; online, any pretrained
reranker name goes through the same code path.

Every reranker follows the course's ``score(users, history)`` contract
(``course_utils.evaluation``): the first stage's top ``top_k`` items are put
first, in the cross-encoder's order, and every other item keeps the first
stage's order below them.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from course_utils import hub
from course_utils.config import get_device
from course_utils.data.splits import History, Split, check_users
from course_utils.evaluation import sample_negatives, top_k
from course_utils.llm.documents import history_text
from course_utils.models.reranking import list_to_scores


# ---------------------------------------------------------------------------
# The model and its scores
# ---------------------------------------------------------------------------

def load_cross_encoder(name: str = "minilm", max_length: int = 64, seed: int = 0, device=None,
                       text_encoder=None, verbose: bool = True):
    """A sentence-transformers ``CrossEncoder`` with one output logit, and where its weights came from.

    ``name`` is a course text encoder ("minilm": its weights come through
    ``course_utils.hub``, offline too, and the scoring head is new, initialised
    from ``seed``) or a pretrained reranker on the Hugging Face hub, e.g.
    "cross-encoder/ms-marco-MiniLM-L-6-v2" (online only). Pairs longer than
    ``max_length`` tokens are truncated. ``text_encoder``: the SentenceTransformer
    of ``name`` if the lesson has loaded it already (its weights are reused, not reloaded).
    """
    from sentence_transformers import CrossEncoder

    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"name must be a model name such as 'minilm', got {name!r}")
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 8:
        raise ValueError(f"max_length must be an integer of at least 8 tokens, got {max_length!r}")
    device = str(device or get_device())
    torch.manual_seed(seed)  # the new head's initial weights
    if "/" not in name:
        hub.get_spec(name, kind="text-encoder")  # a clear error for unknown or non-encoder names
        if text_encoder is None:
            text_encoder, source = hub.load_text_encoder(name, device=device, verbose=verbose)
        else:
            source = "the text encoder given"
        encoder = text_encoder
        weights = encoder[0].auto_model.config._name_or_path  # a local folder offline, a hub id online
        model = CrossEncoder(weights, num_labels=1, max_length=max_length, device=device)
        return model.eval(), f"{source}; new scoring head (seed {seed})"
    try:
        model = CrossEncoder(name, num_labels=1, max_length=max_length, device=device)
    except OSError as error:
        raise ValueError(f"could not load the reranker {name!r} ({error}); pretrained rerankers come from the "
                         "Hugging Face hub, so they need a connection. Offline, use name='minilm'.") from error
    return model.eval(), f"hub:{name}"


def pair_logits(model, queries, documents, batch_size: int = 64) -> np.ndarray:
    """The cross-encoder's raw logit for each (query, document) pair, as float64 (one value per pair)."""
    queries, documents = list(queries), list(documents)
    if len(queries) != len(documents):
        raise ValueError(f"got {len(queries)} queries but {len(documents)} documents; they are scored in pairs")
    if not queries:
        return np.zeros(0)
    if not all(isinstance(t, str) and t.strip() for t in queries + documents):
        raise ValueError("every query and document must be a non-empty string")
    logits = model.predict(list(zip(queries, documents)), batch_size=batch_size, show_progress_bar=False,
                           activation_fn=torch.nn.Identity(), convert_to_numpy=True)
    return np.asarray(logits, dtype=np.float64)


def user_texts(users, history: History, titles, n_recent: int = 5) -> list[str]:
    """One preference text per user: the titles of their ``n_recent`` most recent history items."""
    titles = np.asarray(titles, dtype=object)
    users = check_users(users, len(history.sequences))
    return [history_text(titles[np.asarray(history.sequences[u][-n_recent:], dtype=np.int64)], n_recent)
            for u in users]


def candidate_auc(scores) -> np.ndarray:
    """Per-row AUC of column 0 (the relevant item) against the other columns (ties count one half).

    scores: (n_users, 1 + n_negatives). 1.0 means the relevant item beat every negative.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[1] < 2:
        raise ValueError(f"scores must be (n_users, 1 + n_negatives) with at least one negative, got {scores.shape}")
    target, negatives = scores[:, :1], scores[:, 1:]
    return ((negatives < target).sum(axis=1) + 0.5 * (negatives == target).sum(axis=1)) / negatives.shape[1]


# ---------------------------------------------------------------------------
# Training pairs, validation candidates and the training loop
# ---------------------------------------------------------------------------

@dataclass
class PairSet:
    """Labelled (user text, item text) pairs: ``labels`` 1 for the next item, 0 for a negative."""

    queries: list
    documents: list
    labels: np.ndarray
    kinds: np.ndarray
    users: np.ndarray
    items: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame({"user text": self.queries, "item text": self.documents, "label": self.labels,
                             "kind": self.kinds})


def _flat_sequences(history: History):
    lengths = np.array([len(s) for s in history.sequences], dtype=np.int64)
    flat = np.concatenate([np.asarray(s, np.int64) for s in history.sequences])
    starts = np.cumsum(lengths) - lengths
    return flat, starts, lengths


def _stage_top(stage, rows_history: History, rows: np.ndarray, forbidden: sp.csr_matrix, k: int) -> np.ndarray:
    """Each row's top-k items by a first stage, never a forbidden one: (n_rows, k)."""
    scores = np.asarray(stage.score(rows, rows_history), dtype=np.float64)
    return top_k(scores, k, exclude=forbidden)


def sample_training_pairs(split: Split, item_texts, titles, first_stages: dict, n_prefixes: int,
                          rng: np.random.Generator, n_recent: int = 5, hard_top_k: int = 50,
                          n_random: int = 1) -> PairSet:
    """Training pairs from the *training* part of ``split`` only, grouped per history prefix.

    Each of ``n_prefixes`` prefixes is a random position t ≥ 1 of a user's training
    sequence: the user text comes from the items before t, the positive is item t.
    Each prefix also gets ``n_random`` uniform negatives and one *hard* negative per
    first stage (a random item of that stage's top ``hard_top_k`` for the prefix).
    A negative is never an item the user has anywhere in training, so a future
    item of the same user is not mislabelled as irrelevant.
    """
    if not first_stages:
        raise ValueError("first_stages is empty: give e.g. {'EASE': ease} for hard negatives")
    for name, value in (("n_prefixes", n_prefixes), ("n_recent", n_recent), ("hard_top_k", hard_top_k)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    history = split.history("valid")  # what the model may see: the training interactions
    if len(item_texts) != split.n_items or len(titles) != split.n_items:
        raise ValueError(f"need one text and one title per item ({split.n_items}), got {len(item_texts)} "
                         f"texts and {len(titles)} titles")
    flat, starts, lengths = _flat_sequences(history)
    owner = np.repeat(np.arange(len(lengths)), lengths)
    position = np.arange(len(flat)) - starts[owner]
    eligible = np.flatnonzero(position >= 1)
    if n_prefixes > len(eligible):
        raise ValueError(f"asked for {n_prefixes} prefixes, but the training part has only {len(eligible)}")
    chosen = np.sort(rng.choice(eligible, size=n_prefixes, replace=False))
    users, cut, targets = owner[chosen], position[chosen], flat[chosen]
    prefixes = [flat[starts[u]:starts[u] + t] for u, t in zip(users, cut)]
    rows = np.repeat(np.arange(n_prefixes), cut)
    prefix_matrix = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, np.concatenate(prefixes))),
                                  shape=(n_prefixes, split.n_items))
    prefix_matrix.data[:] = 1.0  # an item rated twice is still one interaction
    prefix_history = History(prefix_matrix, prefixes)
    forbidden = history.matrix[users].tocsr()
    columns, kinds = [targets[:, None], sample_negatives(forbidden, n_random, rng)], ["positive"] + ["random"] * n_random
    for name, stage in first_stages.items():
        top = _stage_top(stage, prefix_history, np.arange(n_prefixes), forbidden, hard_top_k)
        columns.append(top[np.arange(n_prefixes), rng.integers(0, hard_top_k, n_prefixes)][:, None])
        kinds.append(f"hard ({name})")
    items = np.concatenate(columns, axis=1)  # (n_prefixes, group size), the positive first
    group = items.shape[1]
    titles = np.asarray(titles, dtype=object)
    queries = [history_text(titles[p[-n_recent:]], n_recent) for p in prefixes]
    texts = np.asarray(item_texts, dtype=object)
    return PairSet(queries=[q for q in queries for _ in range(group)], documents=list(texts[items.ravel()]),
                   labels=np.tile(np.r_[1.0, np.zeros(group - 1)], n_prefixes).astype(np.float32),
                   kinds=np.tile(np.array(kinds), n_prefixes), users=np.repeat(users, group), items=items.ravel())


def validation_candidates(split: Split, first_stage, n_users: int, n_negatives: int, rng: np.random.Generator,
                          stage: str = "valid", top_k_items: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Users whose ``stage`` target is in ``first_stage``'s top ``top_k_items``, and their candidates.

    Returns ``(users, candidates)``: ``n_users`` users drawn among those whose target
    the first stage ranks in its top block (history excluded), and for each a row
    of ``1 + n_negatives`` items: the target, then films drawn from the *same*
    block. Only such users can be helped by reranking that block, and the AUC of
    the target against the rest of the block is what the reranker must improve:
    scored by the first stage itself, it is the bar the reranker has to clear.
    """
    history, targets = split.history(stage), split.targets(stage)
    pool = np.flatnonzero(targets.getnnz(axis=1) == 1)
    top = top_k(np.asarray(first_stage.score(pool, history), np.float64), top_k_items, history.matrix[pool])
    target_items = targets[pool].indices
    inside = (top == target_items[:, None]).any(axis=1)
    if isinstance(n_users, bool) or not isinstance(n_users, (int, np.integer)) or not 0 < n_users <= inside.sum():
        raise ValueError(f"n_users must lie in [1, {int(inside.sum())}] (users whose {stage} target is in the top "
                         f"{top_k_items}), got {n_users!r}")
    if not 0 < n_negatives < top_k_items:
        raise ValueError(f"n_negatives must lie in [1, {top_k_items - 1}], got {n_negatives!r}")
    chosen = np.sort(rng.choice(np.flatnonzero(inside), n_users, replace=False))
    block = np.zeros((n_users, split.n_items), dtype=bool)
    np.put_along_axis(block, top[chosen], True, axis=1)
    block[np.arange(n_users), target_items[chosen]] = False
    negatives = sample_negatives(sp.csr_matrix(~block), n_negatives, rng)
    return pool[chosen], np.concatenate([target_items[chosen][:, None], negatives], axis=1)


def candidate_logits(model, queries, item_texts, candidates, batch_size: int = 64) -> np.ndarray:
    """Cross-encoder logits for every user's candidate items: (n_users, n_candidates)."""
    candidates = np.asarray(candidates)
    if len(queries) != len(candidates):
        raise ValueError(f"one query per row of candidates: {len(queries)} queries, {len(candidates)} rows")
    texts = np.asarray(item_texts, dtype=object)
    flat = pair_logits(model, np.repeat(np.asarray(queries, dtype=object), candidates.shape[1]),
                       texts[candidates.ravel()], batch_size)
    return flat.reshape(candidates.shape)


def train_cross_encoder(model, pairs: PairSet, n_steps: int, batch_size: int = 32, lr: float = 5e-5,
                        warmup: float = 0.1, eval_steps=(), validate: Callable | None = None,
                        seed: int = 0, freeze_word_embeddings: bool = True) -> dict:
    """Fine-tune ``model`` on ``pairs`` with ``BinaryCrossEntropyLoss``; keep the best checkpoint by ``validate``.

    ``validate(model) -> float`` (higher is better) runs before training and after
    each step in ``eval_steps``; the weights of the best evaluated step (step 0
    excluded) are restored at the end. Returns the per-step losses, the validation
    curve, the chosen step and the training seconds (validation time excluded).
    ``freeze_word_embeddings`` keeps the 30k-row token table fixed: about half of
    MiniLM's parameters, with little to learn from a few thousand pairs, and
    skipping its update makes each step cheaper.
    """
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    if isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)) or n_steps <= 0:
        raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
    if batch_size <= 0 or batch_size > len(pairs):
        raise ValueError(f"batch_size must lie in [1, {len(pairs)}] (the number of pairs), got {batch_size}")
    eval_steps = sorted({int(s) for s in eval_steps})
    if eval_steps and (eval_steps[0] < 1 or eval_steps[-1] > n_steps):
        raise ValueError(f"eval_steps must lie in [1, {n_steps}], got {eval_steps}")
    if eval_steps and validate is None:
        raise ValueError("eval_steps given but no validate function")
    loss_fn = BinaryCrossEntropyLoss(model)
    frozen = model.model.get_input_embeddings().weight if freeze_word_embeddings else None
    if frozen is not None:
        frozen.requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.01)
    n_warmup = max(1, int(warmup * n_steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / n_warmup))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pairs))
    queries, documents = np.asarray(pairs.queries, dtype=object), np.asarray(pairs.documents, dtype=object)
    labels = torch.as_tensor(pairs.labels)
    curve = [(0, validate(model))] if validate else []
    best, losses, seconds, cursor = None, [], 0.0, 0
    for step in range(1, n_steps + 1):
        if cursor + batch_size > len(order):  # a new pass over the pairs, in a new order
            order, cursor = rng.permutation(len(pairs)), 0
        batch, cursor = order[cursor:cursor + batch_size], cursor + batch_size
        start = time.perf_counter()
        model.train()
        loss = loss_fn([list(queries[batch]), list(documents[batch])], labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        seconds += time.perf_counter() - start
        losses.append(float(loss.detach()))
        if step in eval_steps:
            model.eval()
            curve.append((step, validate(model)))
            if best is None or curve[-1][1] > best[1]:
                best = (step, curve[-1][1], copy.deepcopy(model.state_dict()))
    if best is not None:
        model.load_state_dict(best[2])
    if frozen is not None:
        frozen.requires_grad_(True)
    model.eval()
    return {"loss": losses, "valid": curve, "best_step": best[0] if best else n_steps, "seconds": seconds}


# ---------------------------------------------------------------------------
# Reranking a first stage
# ---------------------------------------------------------------------------

class PairScoreCache:
    """Cross-encoder logits already computed, keyed by (user text, item), and what they cost.

    Two rerankers of the same users share most pairs only when their blocks overlap;
    sharing the cache scores each pair once, and ``seconds / pairs`` is the measured
    cost of one forward pass per pair.
    """

    def __init__(self, model, item_texts, batch_size: int = 64):
        self.model, self.item_texts, self.batch_size = model, np.asarray(item_texts, dtype=object), batch_size
        self.scores: dict[tuple[str, int], float] = {}
        self.pairs, self.seconds = 0, 0.0

    def __call__(self, queries, blocks: np.ndarray) -> np.ndarray:
        keys = [(q, int(i)) for q, row in zip(queries, blocks) for i in row]
        missing = list(dict.fromkeys(k for k in keys if k not in self.scores))
        if missing:
            start = time.perf_counter()
            logits = pair_logits(self.model, [q for q, _ in missing], self.item_texts[[i for _, i in missing]],
                                 self.batch_size)
            self.seconds += time.perf_counter() - start
            self.pairs += len(missing)
            self.scores.update(zip(missing, logits))
        return np.array([self.scores[k] for k in keys]).reshape(blocks.shape)

    @property
    def ms_per_pair(self) -> float:
        if self.pairs == 0:
            raise ValueError("no pair scored yet: rerank some users first")
        return 1000 * self.seconds / self.pairs


def rerank_order(cross_scores, first_scores, alpha: float = 1.0) -> np.ndarray:
    """Positions that sort each block, best first, by α·z(cross-encoder) + (1 − α)·z(first stage).

    Both score sets are standardised per row (z-scores), so α weighs them on one
    scale: α = 1 is the cross-encoder alone, α = 0 the first stage's own order.
    Ties keep the block's incoming (first-stage) order.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    cross, first = np.asarray(cross_scores, np.float64), np.asarray(first_scores, np.float64)
    if cross.shape != first.shape or cross.ndim != 2:
        raise ValueError(f"cross_scores and first_scores must be the same (users, k) shape, got {cross.shape} "
                         f"and {first.shape}")

    def z(x):
        return (x - x.mean(axis=1, keepdims=True)) / np.maximum(x.std(axis=1, keepdims=True), 1e-12)

    combined = alpha * z(cross) + (1.0 - alpha) * z(first)
    return np.argsort(-combined, axis=1, kind="stable")


class CrossEncoderReranker:
    """A first stage's top ``top_k`` items reordered by a cross-encoder; the rest keep the first stage's order.

    ``score(users, history)`` returns scores whose ranking is: the reranked block
    first, then every other item in the first stage's order (``list_to_scores``).
    Metrics beyond the block (e.g. HR@100) are therefore the first stage's.
    """

    def __init__(self, first_stage, pair_scores: PairScoreCache, titles, n_recent: int = 5, top_k: int = 50,
                 alpha: float = 1.0):
        if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k <= 0:
            raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
        rerank_order(np.zeros((1, 2)), np.zeros((1, 2)), alpha)  # checks alpha now
        self.first_stage, self.pair_scores, self.titles = first_stage, pair_scores, np.asarray(titles, dtype=object)
        self.n_recent, self.top_k, self.alpha = n_recent, int(top_k), float(alpha)

    @property
    def n_params(self) -> int:
        return int(sum(p.numel() for p in self.pair_scores.model.parameters()))

    def blocks(self, users, history: History) -> tuple[np.ndarray, np.ndarray]:
        """The first stage's scores (users × items) and its top-k items per user, best first."""
        users = check_users(users, history.matrix.shape[0])
        base = np.asarray(self.first_stage.score(users, history), dtype=np.float64)
        return base, top_k(base, self.top_k, exclude=history.matrix[users])

    def score(self, users, history: History) -> np.ndarray:
        users = check_users(users, history.matrix.shape[0])
        base, block = self.blocks(users, history)
        cross = self.pair_scores(user_texts(users, history, self.titles, self.n_recent), block)
        order = rerank_order(cross, np.take_along_axis(base, block, axis=1), self.alpha)
        return list_to_scores(np.take_along_axis(block, order, axis=1), base)


def restrict_test_users(split: Split, users) -> Split:
    """The same split with test targets for ``users`` only: a fixed user subsample for an expensive model.

    Training and validation are untouched, so every model sees the same history;
    the protocol string records the subsample size, so its rows never mix with
    full-population rows on the leaderboard.
    """
    users = np.unique(check_users(users, split.n_users))
    if len(users) == 0:
        raise ValueError("no users given: the subsample would have no test targets")
    test = split.test[split.test["user"].isin(users)].reset_index(drop=True)
    if test["user"].nunique() != len(users):
        raise ValueError(f"{len(users) - test['user'].nunique()} of the users have no test target")
    return Split(split.train, split.valid, test, split.n_users, split.n_items,
                 protocol=f"{split.protocol}+{len(users)}-user-sample")


def sample_test_users(split: Split, n_users: int, seed: int) -> np.ndarray:
    """``n_users`` distinct users with a test target, drawn with ``seed`` (sorted)."""
    candidates = np.unique(split.test["user"].to_numpy())
    if isinstance(n_users, bool) or not isinstance(n_users, (int, np.integer)) or not 0 < n_users <= len(candidates):
        raise ValueError(f"n_users must lie in [1, {len(candidates)}] (users with a test target), got {n_users!r}")
    return np.sort(np.random.default_rng(seed).choice(candidates, n_users, replace=False))
