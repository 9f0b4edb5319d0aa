"""The section-4b probes of course_utils.efficiency_probes, each built at its lesson's FAST settings, profiled once."""
import numpy as np
import pytest
import torch

from course_utils import efficiency as E
from course_utils import efficiency_probes as P


@pytest.fixture(scope="module")
def split():
    from course_utils.data.movielens import load_movielens
    from course_utils.data.splits import leave_one_out_split
    return leave_one_out_split(load_movielens(verbose=False).ratings, tie_break="file")


def unit_rows(n, d=384, seed=0):
    """Random unit vectors in place of MiniLM's: loading MiniLM takes ~15 s, and no cost measured here depends on
    the vectors' values, only on their shape."""
    rows = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def item_vectors(split):
    return unit_rows(split.n_items)


@pytest.fixture(scope="module")
def shop():
    from course_utils.data.fashion_shop import make_fashion_shop
    return make_fashion_shop(n_users=500, seed=0)


def profiled(probe):
    """FAST mode's profile: one timed step per stage, no warm-up, one query, no profiler pass."""
    row = E.profile_probe(probe, n_steps=1, n_queries=1, warmup=0, memory=False)
    for key in ("s per step", "p50 ms (1 query)", "p95 ms (1 query)", "ms per query (batched)"):
        assert np.isfinite(row[key]) and row[key] > 0, key
    assert np.isnan(row["peak MB torch"])
    return row


def count_optimizer_steps(monkeypatch, optimizer=torch.optim.Adam):
    calls = []
    step = optimizer.step
    monkeypatch.setattr(optimizer, "step", lambda self, *a, **k: (calls.append(1), step(self, *a, **k))[1])
    return calls


def test_tiger_probe_costs_the_rqvae_and_the_t5(split, item_vectors):
    from course_utils.llm import semantic_ids as sid
    probe = P.tiger_probe(split, item_vectors, fast=True)
    row = profiled(probe)
    assert (row["model"], row["lesson"], row["dataset"], row["unit"]) == \
        ("TIGER (RQ-VAE 3x64 + T5, beam 10)", "12_llm_features", "ml-100k", "user")
    # The same deterministic build: k-means-initialised RQ-VAE -> unique IDs -> the lesson's FAST T5.
    cfg = P.tiger_settings(fast=True)
    torch.manual_seed(0)
    rqvae = sid.RQVAE(384, **cfg["RQ"])
    rqvae.kmeans_init(item_vectors, 0)
    ids = sid.SemanticIDs(sid.resolve_collisions(rqvae.codes(item_vectors)))
    t5 = sid.TIGERRecommender(sid.make_tiger(ids.vocab_size, **cfg["TIGER"]), ids, 5).n_params
    rq = (384 * 128 + 128) + (128 * 32 + 32) + (32 * 128 + 128) + (128 * 384 + 384) + 3 * 64 * 32   # MLPs + codebooks
    assert sum(p.numel() for p in rqvae.parameters()) == rq
    assert row["params"] == row["trainable params"] == rq + t5
    X, _ = sid.next_item_examples(split.history("valid").sequences, ids, n_recent=5, last_per_user=6)
    t5_steps = 2 * int(np.ceil(len(X) / 512))           # 2 epochs of batch 512
    assert probe.stages["T5"][1] == t5_steps and probe.stages["RQ-VAE"][1] == 150 + 50
    assert row["lesson steps"] == 150 + 50 + 1 + t5_steps and row["steps timed"] == 3
    assert probe.batch().shape == (64, split.n_items)
    ranked = probe.query(0)
    assert ranked.shape == (1, split.n_items) and np.isfinite(ranked).sum() == 10   # beam 10: ten ranked items


def test_listcvae_probe_counts_the_frozen_parts_it_runs(split, monkeypatch):
    probe = P.listcvae_probe(split, fast=True)
    row = profiled(probe)
    assert (row["model"], row["lesson"], row["dataset"], row["unit"]) == \
        ("ListCVAE", "02_autoencoders", "ml-100k", "slate")
    n, k, latent, hidden, vae_latent = split.n_items, 10, 32, 256, 200
    cond = vae_latent + k
    mlp = lambda a, b, c: a * b + b + b * c + c
    trainable = mlp(k * vae_latent + cond, hidden, 2 * latent) + mlp(cond, hidden, 2 * latent) \
        + mlp(latent + cond, hidden, k * vae_latent)
    frozen = 2 * (n * vae_latent + vae_latent) + n * vae_latent + n   # to_mu, to_logvar; item vectors and biases
    assert row["trainable params"] == trainable == 1_229_136            # lesson 02's logged count
    assert row["params"] == trainable + frozen
    eligible = sum(len(s) >= 15 for s in split.history("valid").sequences)
    assert row["lesson steps"] == 3 * int(np.ceil(4 * eligible / 128))   # 3 FAST epochs, 4 slates per user
    slate = probe.query(0)
    assert slate.shape == (1, 10) and len(set(slate[0])) == 10
    run_steps = probe.stages["slate CVAE"][0]
    calls = count_optimizer_steps(monkeypatch)
    run_steps(2)
    assert len(calls) == 2
    with pytest.raises(ValueError, match=f"{eligible}"):
        run_steps(eligible)


def test_convrec_probe_serves_whole_dialogues(shop):
    from course_utils.models.baselines import ItemKNN
    probe = P.convrec_probe(shop, unit_rows(shop.n_items), lambda queries: unit_rows(len(queries)), fast=True)
    row = profiled(probe)
    assert (row["model"], row["lesson"], row["dataset"], row["unit"]) == \
        ("ConvRec: full", "13_conversational", "fashion-shop", "dialogue")
    log = shop.interactions
    import scipy.sparse as sp
    X = sp.csr_matrix((np.ones(len(log)), (log["user"], log["item"])), shape=(shop.n_users, shop.n_items))
    assert row["params"] == row["trainable params"] == ItemKNN(100, 10.0).fit(X).n_params
    assert row["lesson steps"] == 1 and probe.batch_size == 60
    dialogue = probe.query(0)
    assert 1 <= dialogue.turns <= 4 and all(0 <= i < shop.n_items for i in dialogue.items_named)


def test_probes_name_both_sizes_when_the_vectors_do_not_fit(split, shop):
    wrong = unit_rows(split.n_items - 2)
    with pytest.raises(ValueError, match=rf"{split.n_items} items, got {split.n_items - 2} rows"):
        P.tiger_probe(split, wrong, fast=True)
    with pytest.raises(ValueError, match=rf"{shop.n_items} items, got 5 rows"):
        P.convrec_probe(shop, unit_rows(5), lambda q: q, fast=True)
    with pytest.raises(ValueError, match="encode must be a function"):
        P.convrec_probe(shop, unit_rows(shop.n_items), "minilm", fast=True)


def test_gpt4rec_probe_writes_one_query_per_user_and_retrieves(split, llm):
    from course_utils.data.movielens import load_movielens
    llm, tokenizer = llm
    items = load_movielens(verbose=False).items
    probe = P.gpt4rec_probe(split, items, llm, tokenizer, fast=True)
    row = profiled(probe)
    assert (row["model"], row["lesson"], row["dataset"], row["unit"]) == \
        ("GPT4Rec query + BM25", "12_llm_features", "ml-100k", "user")
    assert row["params"] == sum(p.numel() for p in llm.parameters()) and row["trainable params"] == 0
    assert row["lesson steps"] == 1 and row["MFLOP per query"] > 0
    assert probe.query(0).shape == (1, split.n_items)
    with pytest.raises(ValueError, match=rf"{split.n_items} items, got 10 rows"):
        P.gpt4rec_probe(split, items.head(10), llm, tokenizer, fast=True)


def test_llm_manager_probe_costs_one_turn_of_smollm2(shop, llm):
    llm, tokenizer = llm
    vectors, encode = unit_rows(shop.n_items), lambda queries: unit_rows(len(queries))
    probe = P.llm_manager_probe(shop, vectors, encode, llm, tokenizer, fast=True, serve_batch=2)
    row = profiled(probe)
    assert (row["model"], row["lesson"], row["unit"]) == ("ConvRec: LLM manager", "13_conversational", "manager turn")
    assert row["trainable params"] == 0 and row["params"] > sum(p.numel() for p in llm.parameters())
    turn = probe.query(1)
    assert len(turn) == 1 and turn[0].source in {"llm", "llm after retry", "fallback"} and turn[0].text
    with pytest.raises(ValueError, match="serve_batch"):
        P.llm_manager_probe(shop, vectors, encode, llm, tokenizer, fast=True, serve_batch=0)
