"""Text-initialised SASRec, frequency buckets, and GPT4Rec-style queries with BM25 / dense retrieval."""
import numpy as np
import pytest
import torch

from course_utils.llm import text_features as tf
from course_utils.models.sequential import SASRec

N_ITEMS = 40  # conftest's cycle_split


def test_projected_embedding_is_w_t_plus_r():
    rng = np.random.default_rng(0)
    text = rng.normal(size=(6, 10)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    emb = tf.ProjectedItemEmbedding(text, dim=4)
    with torch.no_grad():
        emb.residual += 0.5
        weight = emb.weight
        assert weight.shape == (8, 4) and weight[0].abs().sum() == 0 and weight[-1].abs().sum() == 0
        assert torch.allclose(weight[1:-1], torch.as_tensor(text) @ emb.projection.weight.T + 0.5, atol=1e-6)
        assert torch.allclose(emb(torch.tensor([[0, 3]]))[0, 1], weight[3])
    text_only = tf.ProjectedItemEmbedding(text, dim=4, residual=False)
    assert text_only.residual is None and "text" not in text_only.state_dict()   # the frozen text is not a weight
    with pytest.raises(ValueError, match="finite"):
        tf.ProjectedItemEmbedding(np.full((2, 3), np.nan), dim=4)


def test_text_init_sasrec_trains_its_projection(cycle_split):
    text = np.random.default_rng(1).normal(size=(N_ITEMS, 12)).astype(np.float32)
    model = tf.TextInitSASRec(text, max_len=8, dim=16, n_epochs=1, seed=0)
    assert isinstance(model, SASRec)
    model.fit(cycle_split, validate=False)
    emb = model.net_.item_emb
    assert isinstance(emb, tf.ProjectedItemEmbedding) and emb.residual.abs().sum() > 0   # the residual learnt
    history = cycle_split.history("test")
    assert model.score(np.arange(3), history).shape == (3, N_ITEMS)
    with pytest.raises(ValueError, match="text embeddings for a catalogue"):
        tf.TextInitSASRec(text[:5], max_len=8, dim=16, n_epochs=1).fit(cycle_split, validate=False)
    with pytest.raises(ValueError, match="2-D"):
        tf.TextInitSASRec(np.zeros(5), max_len=8, dim=16)


def test_cached_fit_trains_once_and_loads_the_same_model(cycle_split, tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    config = dict(max_len=8, dim=16, n_epochs=2, seed=0)
    first = tf.cached_fit(SASRec(**config), cycle_split, "test-sasrec", config, verbose=False)
    second = tf.cached_fit(SASRec(**config), cycle_split, "test-sasrec", config, verbose=False)
    assert (first.cache_source_, second.cache_source_) == ("trained", "cache")
    history = cycle_split.history("test")
    users = np.arange(5)
    assert np.allclose(first.score(users, history), second.score(users, history), atol=1e-5)
    assert second.fit_seconds_ == pytest.approx(first.fit_seconds_)


def test_frequency_buckets_and_paired_table(ml_split):
    buckets = tf.frequency_buckets(ml_split, (10, 50))
    counts = np.asarray(ml_split.history("test").matrix.sum(axis=0)).ravel()
    targets = ml_split.targets("test")
    users = np.flatnonzero(targets.getnnz(axis=1))
    target_counts = counts[targets[users].indices]
    assert len(buckets) == len(users)
    assert ((buckets == "0-10") == (target_counts <= 10)).all()
    assert ((buckets == ">50") == (target_counts > 50)).all()
    rng = np.random.default_rng(0)
    a, b = rng.random(len(users)), rng.random(len(users))
    table = tf.bucket_comparisons(a + 0.5, b, buckets, "A", "B")
    assert list(table.index) == ["0-10", "11-50", ">50", "all"]
    assert (table["verdict"] == "better").all() and table.loc["all", "users"] == len(users)
    with pytest.raises(ValueError, match="increasing"):
        tf.frequency_buckets(ml_split, (50, 10))
    with pytest.raises(ValueError, match="one value per user"):
        tf.bucket_comparisons(a[:-1], b, buckets, "A", "B")


def test_query_prompt_and_cleaning():
    messages = tf.query_messages(["Toy Story", "Heat"])
    assert messages[0]["role"] == "system" and "- Toy Story\n- Heat" in messages[1]["content"]
    with pytest.raises(ValueError, match="empty"):
        tf.query_messages(["  "])
    assert tf.clean_query('Query: "funny animated movies"\nmore text') == "funny animated movies"
    assert tf.clean_query("\n\n  space adventure ") == "space adventure"
    assert tf.clean_query("") == ""
    assert tf.clean_query("- Star Wars: space opera") == "Star Wars: space opera"
    assert tf.clean_query("1. heist thrillers") == "heist thrillers"


def test_bm25_finds_the_matching_document_and_query_recommender():
    docs = ["Toy Story (1995). Genres: Animation, Comedy.", "Heat (1995). Genres: Action, Crime, Thriller.",
            "Casino (1995). Genres: Drama, Thriller."]
    bm25 = tf.BM25Retriever(docs)
    scores = bm25.scores(["crime thriller", "animation"])
    assert scores.shape == (2, 3) and scores[0].argmax() == 1 and scores[1].argmax() == 0
    with pytest.raises(ValueError, match="list"):
        bm25.scores("crime")
    from course_utils.data.splits import History
    import scipy.sparse as sp
    history = History(sp.csr_matrix((3, 3)), [np.array([0]), np.array([1]), np.array([2])])
    rec = tf.QueryRecommender({0: "animation", 2: "drama"}, bm25)
    assert rec.score(np.array([2, 0]), history).argmax(axis=1).tolist() == [2, 0]
    with pytest.raises(ValueError, match="no query for users"):
        rec.score(np.array([1]), history)
    with pytest.raises(ValueError, match="non-empty"):
        tf.QueryRecommender({0: ""}, bm25)


def test_generate_queries_with_the_real_llm():
    from course_utils.hub import load_llm
    model, tokenizer, _ = load_llm("smollm2-135m", verbose=False)
    queries = tf.generate_queries(model, tokenizer, [["Toy Story", "Aladdin"], ["Heat", "Casino", "Goodfellas"]],
                                  max_new_tokens=8)
    assert len(queries) == 2 and all(isinstance(q, str) for q in queries)
    assert all(len(tokenizer(q)["input_ids"]) <= 10 for q in queries)
    with pytest.raises(ValueError, match="non-empty list"):
        tf.generate_queries(model, tokenizer, [])
