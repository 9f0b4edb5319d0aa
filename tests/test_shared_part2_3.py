"""Shared pieces of Parts 2-4: item documents and cached embeddings, text metrics, the model cache."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from course_utils.llm.documents import encode_texts, fashion_documents, history_text, movielens_documents
from course_utils.model_cache import cached_path, config_key, load_or_train
from course_utils.text_metrics import bleu, faithfulness, mentions, rouge_l


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    return tmp_path


def test_movielens_documents_name_title_year_and_genres():
    items = pd.DataFrame({"title": ["Toy Story", "Nameless"], "year": pd.array([1995, None], dtype="Int64"),
                          "genres": [("Animation", "Comedy"), ()]})
    assert movielens_documents(items) == ["Toy Story (1995). Genres: Animation, Comedy.",
                                          "Nameless. Genres: unknown."]


def test_fashion_documents_and_bad_frames():
    items = pd.DataFrame({"title": ["Dark plain coat by Umber"], "description": ["Warm."], "category": ["Coat"],
                          "tone": ["dark"], "pattern": ["plain"], "brand": ["Umber"], "price": [80.99]})
    (doc,) = fashion_documents(items)
    assert doc.startswith("Dark plain coat by Umber. Warm.") and "price: $80.99" in doc
    with pytest.raises(ValueError, match="missing"):
        fashion_documents(items.drop(columns="tone"))


def test_history_text_keeps_the_most_recent_and_rejects_empty():
    assert history_text(["a", "b", "c"], max_items=2) == "b; c"
    with pytest.raises(ValueError, match="empty"):
        history_text([])


class CountingEncoder:
    calls = 0

    def encode(self, texts, **kwargs):
        CountingEncoder.calls += 1
        out = np.array([[len(t), 1.0] for t in texts], dtype=np.float64)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_embeddings_are_cached_and_a_damaged_cache_is_rebuilt(tmp_cache):
    CountingEncoder.calls = 0
    first = encode_texts(["ab", "abc"], CountingEncoder(), "toy", verbose=False)
    again = encode_texts(["ab", "abc"], CountingEncoder(), "toy", verbose=False)
    assert CountingEncoder.calls == 1 and first.dtype == np.float32 and np.array_equal(first, again)
    (npy,) = (tmp_cache / "embeddings").glob("*.npy")
    npy.write_bytes(npy.read_bytes()[:-8])
    rebuilt = encode_texts(["ab", "abc"], CountingEncoder(), "toy", verbose=False)
    assert CountingEncoder.calls == 2 and np.array_equal(rebuilt, first)
    with pytest.raises(ValueError, match="non-empty"):
        encode_texts(["ok", " "], CountingEncoder(), "toy")
    with pytest.raises(ValueError, match="no texts"):
        encode_texts([], CountingEncoder(), "toy")


def test_bleu_and_rouge_on_hand_examples():
    assert bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(100.0)
    assert bleu(["completely different words here"], ["the cat sat on the mat"]) < 5
    # LCS of "a dark coat" and "the dark coat" is "dark coat": P = 2/3, R = 2/3, F = 2/3.
    assert rouge_l(["a dark coat"], ["the dark coat"]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="empty"):
        bleu([], [])
    with pytest.raises(ValueError, match="pair one to one"):
        rouge_l(["a"], ["a", "b"])


def test_faithfulness_counts_true_and_false_mentions():
    assert mentions("A Dark-toned T-shirt", ["dark", "shirt", "T-shirt", "light"]) == ["dark", "T-shirt"]
    result = faithfulness(["A dark plain coat", "light dress", "nice"],
                          [["dark", "coat", "plain"], ["dark", "dress"], ["coat"]],
                          ["dark", "light", "coat", "dress", "plain"])
    assert result == {"precision": 0.8, "any_false": pytest.approx(1 / 3), "mentioning": pytest.approx(2 / 3)}


def test_model_cache_trains_once_loads_then_rebuilds_when_damaged(tmp_cache):
    calls = []

    def train(model):
        calls.append(1)
        torch.nn.init.constant_(model.weight, 0.5)
        return {"loss": [1.0]}

    model, info = load_or_train("toy", {"width": 3}, lambda: torch.nn.Linear(3, 2), train, verbose=False)
    assert info["source"] == "trained" and info["train"] == {"loss": [1.0]}
    model, info = load_or_train("toy", {"width": 3}, lambda: torch.nn.Linear(3, 2), train, verbose=False)
    assert info["source"] == "cache" and len(calls) == 1 and torch.all(model.weight == 0.5)
    assert not model.training
    path = cached_path("toy", {"width": 3})
    path.write_bytes(path.read_bytes() + b"junk")
    _, info = load_or_train("toy", {"width": 3}, lambda: torch.nn.Linear(3, 2), train, verbose=False)
    assert info["source"] == "trained" and len(calls) == 2
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["config"] == {"width": 3}
    assert config_key("toy", {"width": 3}) != config_key("toy", {"width": 4})
    with pytest.raises(ValueError, match="JSON"):
        config_key("toy", {"bad": object()})


def test_repeated_texts_are_encoded_once_and_short_documents_are_shorter(tmp_cache):
    seen = []

    class Recording(CountingEncoder):
        def encode(self, texts, **kwargs):
            seen.extend(texts)
            return super().encode(texts, **kwargs)

    out = encode_texts(["bb", "a", "bb"], Recording(), "toy", cache=False)
    assert sorted(seen) == ["a", "bb"] and np.array_equal(out[0], out[2]) and not np.array_equal(out[0], out[1])
    items = pd.DataFrame({"title": ["Dark plain coat by Umber"], "description": ["Warm and long."],
                          "category": ["Coat"], "tone": ["dark"], "pattern": ["plain"], "brand": ["Umber"],
                          "price": [84.99]})
    (short,) = fashion_documents(items, detail="short")
    assert short == "Dark plain coat by Umber. Category: Coat; tone: dark; pattern: plain; price: about $80."
    assert len(short) < len(fashion_documents(items)[0])
    assert fashion_documents(items, detail="brief") == ["Dark plain coat by Umber, high price."]
    with pytest.raises(ValueError, match="detail"):
        fashion_documents(items, detail="long")
