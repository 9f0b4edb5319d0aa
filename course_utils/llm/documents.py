"""Item documents and their sentence embeddings, shared by every Part 2 lesson.

An item document is the text a language model sees for an item: for MovieLens
the title, year and genres; for the fashion shop the title, description and
attributes. Embeddings are cached on disk, keyed by a SHA-256 of the encoder's
name and the exact texts, and the cached array is checked against its own
checksum before use: a damaged file is re-encoded, never silently used.
"""
from __future__ import annotations

import hashlib
import json
from typing import Sequence

import numpy as np
import pandas as pd

from ..config import cache_dir
from ..io import atomic_write, file_lock, remove_path, sha256_file


def movielens_documents(items) -> list[str]:
    """One document per MovieLens item (row order = item id): "Title (year). Genres: a, b."."""
    _check_columns(items, ("title", "year", "genres"), "MovieLens items")
    documents = []
    for title, year, genres in zip(items["title"], items["year"], items["genres"]):
        when = "" if pd.isna(year) else f" ({int(year)})"
        kinds = ", ".join(genres) if len(genres) else "unknown"
        documents.append(f"{title}{when}. Genres: {kinds}.")
    return documents


def fashion_documents(items, detail: str = "full") -> list[str]:
    """One document per fashion-shop item.

    ``detail="full"``: title, description and every attribute with the exact price.
    ``detail="short"``: title and attributes with the price rounded to $10, about half
    the tokens and fewer distinct texts (1,302 for the 3,000 products), so encoding
    costs about a fifth; lessons use it where the encoder's time matters more than
    the wording. ``detail="brief"``: the title and a price band (low < $30 <= mid < $70
    <= high), about ten tokens and 587 distinct texts: about a fifth of "short"'s cost.
    """
    _check_columns(items, ("title", "description", "category", "tone", "pattern", "brand", "price"),
                   "fashion-shop items")
    if detail == "short":
        return [f"{row.title}. Category: {row.category}; tone: {row.tone}; pattern: {row.pattern}; "
                f"price: about ${10 * round(row.price / 10):.0f}." for row in items.itertuples(index=False)]
    if detail == "brief":
        band = lambda price: "low" if price < 30 else "mid" if price < 70 else "high"
        return [f"{row.title}, {band(row.price)} price." for row in items.itertuples(index=False)]
    if detail != "full":
        raise ValueError(f"detail must be 'full', 'short' or 'brief', got {detail!r}")
    return [f"{row.title}. {row.description} Category: {row.category}; tone: {row.tone}; pattern: "
            f"{row.pattern}; brand: {row.brand}; price: ${row.price:.2f}."
            for row in items.itertuples(index=False)]


def history_text(titles: Sequence[str], max_items: int = 10) -> str:
    """A user's recent items as one line, most recent last: "A; B; C"."""
    titles = [str(t) for t in titles]
    if not titles:
        raise ValueError("the history is empty: a user needs at least one item to describe their taste")
    if max_items <= 0:
        raise ValueError(f"max_items must be positive, got {max_items!r}")
    return "; ".join(titles[-max_items:])


def _check_columns(frame, columns, what: str) -> None:
    missing = [c for c in columns if c not in getattr(frame, "columns", ())]
    if missing:
        raise ValueError(f"{what} need the columns {list(columns)}; missing {missing}")


def _texts_key(model_name: str, texts: Sequence[str]) -> str:
    digest = hashlib.sha256(model_name.encode())
    for text in texts:
        digest.update(b"\x00" + text.encode())
    return digest.hexdigest()[:24]


def encode_texts(texts: Sequence[str], encoder, model_name: str, batch_size: int = 128,
                 cache: bool = True, verbose: bool = True) -> np.ndarray:
    """L2-normalised float32 sentence embeddings of ``texts`` (one row per text), cached on disk.

    ``encoder`` is a sentence-transformers model (``hub.load_text_encoder``);
    ``model_name`` names it in the cache key, so two encoders never share a file.
    """
    texts = list(texts)
    if not texts:
        raise ValueError("no texts to encode")
    if not all(isinstance(t, str) and t.strip() for t in texts):
        raise ValueError("every text must be a non-empty string")
    if not cache:
        return _encode(texts, encoder, batch_size)
    folder = cache_dir("embeddings")
    key = _texts_key(model_name, texts)
    path, meta_path = folder / f"{key}.npy", folder / f"{key}.json"
    with file_lock(path):
        problem = _cache_problem(path, meta_path, len(texts))
        if problem is None:
            if verbose:
                print(f"[embeddings] {len(texts):,} texts from the cache ({model_name})")
            return np.load(path)
        if verbose and problem != "absent":
            print(f"[embeddings] cache {path.name} is {problem}; encoding again")
        remove_path(path)
        embeddings = _encode(texts, encoder, batch_size)
        with atomic_write(path) as handle:
            np.save(handle, embeddings)
        with atomic_write(meta_path, "w") as handle:
            json.dump({"model": model_name, "n": len(texts), "dim": int(embeddings.shape[1]),
                       "sha256": sha256_file(path)}, handle)
        if verbose:
            print(f"[embeddings] encoded {len(texts):,} texts with {model_name}")
        return embeddings


def _encode(texts: list[str], encoder, batch_size: int) -> np.ndarray:
    """Each distinct text is encoded once (catalogues repeat titles), then spread back to every row."""
    unique, rows = np.unique(np.asarray(texts, dtype=object).astype(str), return_inverse=True)
    out = encoder.encode(list(unique), batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True,
                         show_progress_bar=False)
    return np.ascontiguousarray(np.asarray(out, dtype=np.float32)[rows.ravel()])


def _cache_problem(path, meta_path, n: int) -> str | None:
    if not path.exists() or not meta_path.exists():
        return "absent"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return "unreadable (bad metadata)"
    if meta.get("n") != n or meta.get("sha256") != sha256_file(path):
        return "damaged (checksum or size differs)"
    return None
