"""LLM-made features for recommenders (survey Section 3.4, lesson 12).

Two ways a language model feeds a conventional recommender:

* **Text-initialised item embeddings** (LLM2-BERT4Rec, Harte et al., 2023): SASRec's item
  table is built from each item's sentence embedding through a learned projection,
  ``e_i = W t_i + r_i`` (``t_i`` the frozen MiniLM vector, ``W`` shared, ``r_i`` a free
  per-item residual that starts at zero). A rare item starts where its text puts it,
  next to similar items, instead of at random.
* **Query generation** (GPT4Rec, Li et al., 2023): an LLM reads the user's recent titles and
  writes a short search query; a retriever (BM25 over the item documents, or the dense
  MiniLM index) returns the items. The control that could refute "the LLM's query helps"
  is the same retriever fed the raw history text.
"""
from __future__ import annotations

import re
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from course_utils.claims import compare_models
from course_utils.data.splits import History, Split, check_users
from course_utils.model_cache import load_or_train
from course_utils.models.sequential import PAD, SASRec


# ---------------------------------------------------------------------------
# Text-initialised SASRec
# ---------------------------------------------------------------------------

class ProjectedItemEmbedding(nn.Module):
    """SASRec's item table computed from text: row i+1 = W t_i (+ r_i), row 0 (padding) = 0.

    text: (n_items, d_text) frozen sentence embeddings. ``weight`` is (n_items + 2, dim), the
    layout of ``TransformerNet.item_emb`` (the last row is BERT4Rec's unused [MASK]). W starts
    as a random projection with N(0, 1/dim) entries, so for unit text vectors the rows have
    the scale of SASRec's own initialisation and keep the texts' similarities.
    """

    def __init__(self, text: np.ndarray, dim: int, residual: bool = True):
        super().__init__()
        text = torch.as_tensor(np.asarray(text), dtype=torch.float32)
        if text.ndim != 2 or len(text) == 0 or not torch.isfinite(text).all():
            raise ValueError(f"text embeddings must be a finite (n_items, d) array, got shape {tuple(text.shape)}")
        self.register_buffer("text", text, persistent=False)
        self.projection = nn.Linear(text.shape[1], dim, bias=False)
        nn.init.normal_(self.projection.weight, std=dim ** -0.5)
        self.residual = nn.Parameter(torch.zeros(len(text), dim)) if residual else None
        self.embedding_dim = dim

    @property
    def weight(self) -> torch.Tensor:
        items = self.projection(self.text)
        if self.residual is not None:
            items = items + self.residual
        pad = items.new_zeros(1, items.shape[1])
        return torch.cat([pad, items, pad], dim=0)

    def forward(self, seqs: torch.Tensor) -> torch.Tensor:
        return F.embedding(seqs, self.weight, padding_idx=PAD)


class TextInitSASRec(SASRec):
    """SASRec whose item embeddings are ``W · text + residual`` (``residual=False``: text only).

    ``text``: (n_items, d_text) item sentence embeddings in item-id order. Everything else
    (blocks, loss, training loop, scoring) is SASRec's.
    """

    name = "TextInitSASRec"

    def __init__(self, text: np.ndarray, residual: bool = True, **sasrec_options):
        super().__init__(**sasrec_options)
        self.text, self.residual = np.asarray(text, dtype=np.float32), bool(residual)
        if self.text.ndim != 2:
            raise ValueError(f"text must be a 2-D (n_items, d) array, got shape {self.text.shape}")

    def _build(self, n_items):
        if len(self.text) != n_items:
            raise ValueError(f"{len(self.text)} text embeddings for a catalogue of {n_items} items")
        net = super()._build(n_items)
        net.item_emb = ProjectedItemEmbedding(self.text, self.dim, self.residual)
        return net


def cached_fit(recommender, split: Split, name: str, config: dict, verbose: bool = True):
    """``recommender.fit(split)`` through ``model_cache.load_or_train``: trained once per configuration.

    Works for the course's sequential models (anything with ``_build``, ``net_`` and
    ``fit``). Sets ``fit_seconds_`` (the original training time) and ``cache_source_``.
    """
    def make():
        return recommender._build(split.n_items)

    def train(net):
        recommender.fit(split)
        net.load_state_dict(recommender.net_.state_dict())
        result = recommender.fit_result_
        return {"train_seconds": result.train_seconds, "best_epoch": result.best_epoch,
                "valid_ndcg": result.best_score, "epochs_run": len(result.history)}

    net, info = load_or_train(name, {**config, "n_items": split.n_items, "protocol": split.protocol}, make, train,
                              verbose=verbose)
    recommender.net_, recommender.n_items_ = net.to(recommender.device), split.n_items
    recommender.fit_seconds_ = float(info["train"]["train_seconds"])
    recommender.train_info_, recommender.cache_source_ = info["train"], info["source"]
    return recommender


def frequency_buckets(split: Split, edges: Sequence[int] = (10, 50, 150), stage: str = "test") -> np.ndarray:
    """The bucket label of every evaluated user's target, by its interactions in the ``stage`` history.

    Labels such as "0-10", "11-50", "51-150", ">150", in the evaluator's user order
    (users with a target, ascending id), so they align with ``evaluate(..., per_user=True)``.
    """
    edges = [int(e) for e in edges]
    if not edges or any(e < 0 for e in edges) or edges != sorted(set(edges)):
        raise ValueError(f"edges must be increasing non-negative integers, got {edges}")
    targets = split.targets(stage)
    users = np.flatnonzero(targets.getnnz(axis=1))
    if (targets[users].getnnz(axis=1) != 1).any():
        raise ValueError("frequency buckets need exactly one target per user (leave-one-out)")
    counts = np.asarray(split.history(stage).matrix.sum(axis=0)).ravel()[targets[users].indices]
    bounds = [-1, *edges]
    labels = [f"{lo + 1}-{hi}" for lo, hi in zip(bounds[:-1], bounds[1:])] + [f">{edges[-1]}"]
    return np.asarray(labels, dtype=object)[np.searchsorted(edges, counts, side="left")]


def bucket_comparisons(per_user_a, per_user_b, buckets, a: str, b: str, metric: str = "NDCG@10",
                       seed: int = 0) -> pd.DataFrame:
    """One paired comparison (bootstrap CI, t-test, verdict) of A against B per bucket, plus "all"."""
    per_user_a, per_user_b, buckets = np.asarray(per_user_a), np.asarray(per_user_b), np.asarray(buckets)
    if not len(per_user_a) == len(per_user_b) == len(buckets):
        raise ValueError(f"need one value per user in each array, got {len(per_user_a)}, {len(per_user_b)} "
                         f"and {len(buckets)}")
    rows = {}
    low_end = lambda label: int(str(label).lstrip(">").split("-")[0])
    for label in [*sorted(pd.unique(buckets), key=low_end), "all"]:
        keep = np.ones(len(buckets), bool) if label == "all" else buckets == label
        if keep.sum() < 2:
            continue
        c = compare_models(per_user_a[keep], per_user_b[keep], a, b, metric, seed=seed)
        rows[label] = {"users": int(keep.sum()), a: c.mean_a, b: c.mean_b, "A - B": c.diff, "CI low": c.low,
                       "CI high": c.high, "verdict": c.verdict}
    return pd.DataFrame(rows).T.rename_axis("target's interactions")


# ---------------------------------------------------------------------------
# GPT4Rec-style query generation and retrieval
# ---------------------------------------------------------------------------

QUERY_SYSTEM = "You write short search queries for a movie catalogue."


def query_messages(titles: Sequence[str]) -> list[dict]:
    """Chat messages asking for ONE short search query from the user's recent titles (most recent last)."""
    titles = [str(t).strip() for t in titles if str(t).strip()]
    if not titles:
        raise ValueError("the history is empty: a query needs at least one watched title")
    listing = "\n".join(f"- {t}" for t in titles)
    return [{"role": "system", "content": QUERY_SYSTEM},
            {"role": "user", "content": f"I recently watched:\n{listing}\n\nWrite one search query of at most "
                                        "8 words (genres, themes, mood) to find movies I would like next. "
                                        "Answer with the query only."}]


def clean_query(text: str) -> str:
    """The first line of a generated answer, without quotes or a leading "Query:" label."""
    line = next((l for l in str(text).splitlines() if l.strip()), "")
    line = re.sub(r"^\s*(?:[-*•]|\d+[.)])\s*", "", line)               # a list marker
    line = re.sub(r"^\s*(search\s+)?query\s*:\s*", "", line, flags=re.IGNORECASE)
    return line.strip().strip("\"'“”").strip()


def generate_queries(model, tokenizer, histories: Sequence[Sequence[str]], max_new_tokens: int = 16,
                     context: int | None = None) -> list[str]:
    """One greedy query per history, all in ONE batched ``generate`` call."""
    from course_utils.llm.prompting import generate, render_chat
    if isinstance(histories, str) or not len(histories):
        raise ValueError("histories must be a non-empty list of title lists, one per user")
    prompts = [render_chat(tokenizer, query_messages(titles), context) for titles in histories]
    return [clean_query(answer) for answer in generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens)]


def bm25_tokens(text: str) -> list[str]:
    """Lower-case word tokens (letters and digits) for BM25."""
    return re.findall(r"[a-z0-9]+", str(text).lower())


class BM25Retriever:
    """BM25 (``rank_bm25.BM25Okapi``) over item documents; ``scores(queries)`` -> (n_queries, n_items)."""

    def __init__(self, documents: Sequence[str]):
        from rank_bm25 import BM25Okapi
        documents = [str(d) for d in documents]
        if not documents:
            raise ValueError("BM25 needs at least one document")
        self.n_items = len(documents)
        self.index = BM25Okapi([bm25_tokens(d) for d in documents])

    def scores(self, queries: Sequence[str]) -> np.ndarray:
        if isinstance(queries, str):
            raise ValueError("queries must be a list of strings, not one string")
        return np.stack([self.index.get_scores(bm25_tokens(q)) for q in queries]) if len(queries) else \
            np.zeros((0, self.n_items))


class DenseQueryRetriever:
    """Queries embedded by the sentence encoder (cached), scored by dot product with unit item vectors."""

    def __init__(self, encoder, model_name: str, item_vectors: np.ndarray):
        self.encoder, self.model_name = encoder, model_name
        self.item_vectors = np.asarray(item_vectors, dtype=np.float32)
        self.n_items = len(self.item_vectors)

    def scores(self, queries: Sequence[str]) -> np.ndarray:
        from course_utils.llm.documents import encode_texts
        return encode_texts(list(queries), self.encoder, self.model_name, verbose=False) @ self.item_vectors.T


class QueryRecommender:
    """``score(users, history)`` from one fixed query text per user and a retriever.

    ``queries``: {user: query text}. Scoring a user without a query is an error, not a silent zero row.
    """

    def __init__(self, queries: dict, retriever, name: str = "query"):
        if not queries or not all(isinstance(q, str) and q.strip() for q in queries.values()):
            raise ValueError("queries must be a non-empty {user: non-empty text} dict")
        self.queries, self.retriever, self.name, self.n_params = dict(queries), retriever, name, 0

    def fit(self, split) -> "QueryRecommender":
        return self

    def score(self, users: np.ndarray, history: History) -> np.ndarray:
        users = check_users(users, len(history.sequences))
        missing = [int(u) for u in users if int(u) not in self.queries]
        if missing:
            raise ValueError(f"no query for users {missing[:5]}{'...' if len(missing) > 5 else ''}")
        return self.retriever.scores([self.queries[int(u)] for u in users])
