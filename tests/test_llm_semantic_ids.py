"""Semantic IDs: residual quantisation, the RQ-VAE, usage and collapse, collisions, the trie and
constrained beam search with a tiny T5."""
import numpy as np
import pytest
import torch

from course_utils.llm import semantic_ids as sid


def test_residual_quantise_hand_case():
    z = torch.tensor([[1.1, 0.0], [0.0, 0.9]])
    books = torch.tensor([[[1.0, 0.0], [0.0, 1.0]],          # level 1
                          [[0.1, 0.0], [0.0, -0.1]]])        # level 2
    codes, z_q, loss = sid.residual_quantise(z, books, beta=0.25)
    assert codes.tolist() == [[0, 0], [1, 1]]
    assert torch.allclose(z_q, torch.tensor([[1.1, 0.0], [0.0, 0.9]]))
    # level-1 residuals (0.1, 0) and (0, -0.1); level 2 quantises them exactly -> (1 + beta) * mean ||r||^2
    assert loss.item() == pytest.approx((1 + 0.25) * 0.01, rel=1e-5)
    with pytest.raises(ValueError, match="same d"):
        sid.residual_quantise(z, torch.zeros(2, 2, 3))


def test_rqvae_shapes_and_bad_inputs():
    model = sid.RQVAE(16, latent_dim=4, hidden=(8,), n_levels=3, codebook_size=5)
    out = model(torch.randn(7, 16))
    assert out["reconstruction"].shape == (7, 16) and out["codes"].shape == (7, 3)
    assert out["codes"].max() < 5 and out["loss"].item() == pytest.approx((out["recon_loss"] + out["quant_loss"]).item())
    with pytest.raises(ValueError, match=r"\(N, 16\)"):
        model(torch.randn(7, 15))
    with pytest.raises(ValueError, match="NaN"):
        model(torch.full((2, 16), float("nan")))
    with pytest.raises(ValueError, match="codebook_size"):
        sid.RQVAE(16, codebook_size=0)
    with pytest.raises(ValueError, match="beta"):
        sid.RQVAE(16, beta=-1.0)


def test_rqvae_reconstruction_improves_and_kmeans_uses_the_codebook():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(12, 24))
    x = (centres[rng.integers(0, 12, 400)] + 0.05 * rng.normal(size=(400, 24))).astype(np.float32)
    model = sid.RQVAE(24, latent_dim=6, hidden=(16,), n_levels=2, codebook_size=8)
    history = sid.fit_rqvae(model, x, n_steps=80, warmup_steps=20, batch_size=128, lr=5e-3, seed=0)
    assert np.mean(history["recon_loss"][-10:]) < 0.7 * np.mean(history["recon_loss"][:10])
    report = sid.usage_report(model.codes(x), 8)
    assert not report["collapsed"].any() and report.loc[1, "codes used"] >= 6
    with pytest.raises(ValueError, match="init"):
        sid.fit_rqvae(model, x, init="zeros")
    with pytest.raises(ValueError, match="n_steps"):
        sid.fit_rqvae(model, x, n_steps=0)


def test_usage_perplexity_and_collapse_flag():
    codes = np.array([[0, 0], [1, 0], [2, 0], [3, 0]])
    usage = sid.codebook_usage(codes, 4)
    assert usage.tolist() == [[1, 1, 1, 1], [4, 0, 0, 0]]
    report = sid.usage_report(codes, 8)           # flagged below a perplexity of 0.25 * 8 = 2
    assert report.loc[1, "perplexity"] == pytest.approx(4.0) and report.loc[2, "perplexity"] == pytest.approx(1.0)
    assert report["collapsed"].tolist() == [False, True] and report["dead codes"].tolist() == [4, 7]
    uneven = sid.usage_report(np.repeat([0, 1, 2], [50, 30, 20])[:, None], 4)
    assert uneven.loc[1, "perplexity"] == pytest.approx(np.exp(-(0.5 * np.log(0.5) + 0.3 * np.log(0.3) + 0.2 * np.log(0.2))))
    with pytest.raises(ValueError, match="outside the codebook"):
        sid.codebook_usage(codes, 3)
    with pytest.raises(ValueError, match="integer"):
        sid.codebook_usage(np.array([[0.5]]), 3)


def test_collisions_are_counted_and_resolved():
    codes = np.array([[0, 1], [0, 1], [2, 2], [0, 1], [2, 3]])
    assert sid.collision_rate(codes) == pytest.approx(3 / 5)
    resolved = sid.resolve_collisions(codes)
    assert resolved[:, -1].tolist() == [0, 1, 0, 2, 0]
    assert len(np.unique(resolved, axis=0)) == len(codes)
    with pytest.raises(ValueError, match="unique"):
        sid.SemanticIDs(codes)


@pytest.fixture(scope="module")
def ids():
    return sid.SemanticIDs(sid.resolve_collisions(np.array([[0, 1], [0, 1], [1, 0], [2, 1], [1, 1]])))


def test_semantic_id_tokens_trie_and_history(ids):
    assert ids.depth == 3 and ids.vocab_size == 2 + 3 + 2 + 2
    assert ids.tokens[1].tolist() == [2, 6, 8]                     # codes (0, 1, 1) + offsets (2, 5, 7)
    assert all(ids.item_of(row) == item for item, row in enumerate(ids.tokens))
    assert sorted(ids.trie.next_tokens([2])) == [6]
    assert ids.trie.next_tokens([ids.vocab_size + 1]) == []
    with pytest.raises(ValueError, match="not the ID"):
        ids.item_of([2, 5, 7])
    tokens = ids.history_tokens([np.array([3]), np.array([0, 1, 2])], n_recent=2)
    assert tokens.shape == (2, 6) and tokens[0, :3].tolist() == [0, 0, 0] and tokens[0, 3:].tolist() == ids.tokens[3].tolist()
    with pytest.raises(ValueError, match="n_recent"):
        ids.history_tokens([np.array([1])], 0)
    allowed = ids.allowed_tokens_fn()
    assert allowed(0, torch.tensor([0])) == ids.trie.next_tokens([])


def test_constrained_beam_search_returns_only_items(ids):
    torch.manual_seed(0)
    model = sid.make_tiger(ids.vocab_size, d_model=16, n_heads=2, d_ff=32, n_layers=1)
    inputs = ids.history_tokens([np.array([0, 3]), np.array([4]), np.array([1, 2, 3])], n_recent=2)
    items, scores = sid.constrained_beam_search(model, ids, inputs, num_beams=5)
    assert items.shape == scores.shape == (3, 5)
    assert (items >= 0).all() and (items < ids.n_items).all()
    assert all(len(set(row)) == 5 for row in items.tolist())         # the 5 beams are the 5 items
    assert (np.diff(scores, axis=1) <= 1e-6).all()                     # best first
    rec = sid.TIGERRecommender(model, ids, n_recent=2, num_beams=3)
    from course_utils.data.splits import History
    import scipy.sparse as sp
    history = History(sp.csr_matrix((2, 5)), [np.array([0, 3]), np.array([4])])
    s = rec.score(np.array([0, 1]), history)
    assert s.shape == (2, 5) and (np.isfinite(s).sum(axis=1) == 3).all()
    with pytest.raises(ValueError, match="num_beams"):
        sid.constrained_beam_search(model, ids, inputs, num_beams=0)


def test_tiger_learns_a_planted_next_item(ids):
    # item t is always followed by item (t + 1) % 5: a tiny T5 should learn it
    sequences = [np.arange(start, start + 8) % 5 for start in range(5)] * 8
    X, Y = sid.next_item_examples(sequences, ids, n_recent=2)
    assert X.shape == (len(Y), 6) and Y.shape[1] == 3
    torch.manual_seed(0)
    model = sid.make_tiger(ids.vocab_size, d_model=32, n_heads=2, d_ff=64, n_layers=1, dropout=0.0)
    history = sid.fit_tiger(model, X, Y, n_epochs=15, batch_size=32, lr=1e-2)
    assert history["loss"][-1] < 0.3 * history["loss"][0]
    items, _ = sid.constrained_beam_search(model, ids, ids.history_tokens([np.array([1, 2])], 2), num_beams=1)
    assert items[0, 0] == 3
    with pytest.raises(ValueError, match="no sequence"):
        sid.next_item_examples([np.array([1])], ids, n_recent=2)
