"""ALBEF-style fusion (lesson 15): the three losses, the model's shapes, retrieval and cold-item helpers."""
import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from course_utils.data.splits import History
from course_utils.multimodal.fusion import (ALBEF, AlbefConfig, CaptionTokenizer, CategoryPopularity, ImageEncoder,
                                            ProfileRecommender, encode_items, fill_masked_word, fit_albef,
                                            image_tensor, itc_loss, itm_auc, itm_probability, mask_tokens,
                                            normalised_utility_at_k, product_captions, ranks_of_matches,
                                            rerank_ranks, sample_hard_negatives)

ITEMS = pd.DataFrame({
    "title": ["Dark plain dress by Miro", "Mid-tone textured coat by Umber", "Light plain bag by Kestrel"],
    "description": ["A dark dress from Miro with a plain finish and a relaxed cut.",
                    "Our slim coat in mid-tone, with a textured surface. Designed by Umber.",
                    "Kestrel makes this bag in a light shade. Plain and relaxed, yours for $20.99."],
    "tone": ["dark", "mid-tone", "light"],
})


@pytest.fixture(scope="module")
def tokenizer():
    from course_utils.hub import load_text_encoder

    return load_text_encoder("minilm", verbose=False)[0].tokenizer


@pytest.fixture(scope="module")
def tiny(tokenizer):
    captions = product_captions(ITEMS)
    words = CaptionTokenizer(tokenizer, captions)
    torch.manual_seed(0)
    model = ALBEF(AlbefConfig(vocab_size=words.vocab_size, dim=16, embed_dim=8, text_layers=1, fusion_layers=1,
                              heads=2), words.mask_token_id, words.pad_token_id)
    pixels = image_tensor(np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8))
    return words, model, pixels, words(captions)


def test_captions_write_the_tone_as_one_word_and_add_the_cut():
    assert product_captions(ITEMS) == ["Dark plain dress by Miro, relaxed cut", "Medium textured coat by Umber, slim cut",
                                       "Light plain bag by Kestrel, relaxed cut"]
    with pytest.raises(ValueError, match="title"):
        product_captions(ITEMS.drop(columns="title"))


def test_image_tensor_shape_range_and_bad_input():
    pixels = image_tensor(np.full((2, 28, 28), 255, np.uint8))
    assert pixels.shape == (2, 1, 28, 28) and float(pixels.max()) == 1.0
    with pytest.raises(ValueError, match="28, 28"):
        image_tensor(np.zeros((2, 32, 32), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        image_tensor(np.zeros((2, 28, 28), np.float32))
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\)"):
        ImageEncoder(8)(torch.zeros(2, 3, 28, 28))


def test_caption_tokenizer_keeps_only_the_pieces_it_saw(tokenizer):
    words = CaptionTokenizer(tokenizer, product_captions(ITEMS))
    batch = words(["Dark plain coat by Miro, slim cut", "Dark zebra coat"])
    assert batch["input_ids"].shape == batch["attention_mask"].shape == batch["special_tokens_mask"].shape
    assert int(batch["input_ids"].max()) < words.vocab_size
    assert words.unk_token_id in batch["input_ids"][1].tolist()       # "zebra" was never seen
    assert words.decode(batch["input_ids"][0]) == "dark plain coat by miro, slim cut"
    assert tokenizer.convert_ids_to_tokens(int(words.pieces[words.mask_token_id])) == "[MASK]"
    assert words.decode([words.word_id("medium")]) == "medium"
    with pytest.raises(ValueError, match="single word piece"):
        words.word_id("mid-tone")
    with pytest.raises(ValueError, match="non-empty"):
        words([])


def test_itc_loss_on_a_hand_computed_two_by_two_case():
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    text = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    loss, logits = itc_loss(image, text, temperature=0.5)      # logits [[2, 1.2], [0, 1.6]]
    assert torch.allclose(logits, torch.tensor([[2.0, 1.2], [0.0, 1.6]]))
    image_to_text = (-math.log(math.exp(2) / (math.exp(2) + math.exp(1.2)))
                     - math.log(math.exp(1.6) / (1 + math.exp(1.6)))) / 2
    text_to_image = (-math.log(math.exp(2) / (math.exp(2) + 1))
                     - math.log(math.exp(1.6) / (math.exp(1.2) + math.exp(1.6)))) / 2
    assert loss.item() == pytest.approx((image_to_text + text_to_image) / 2, abs=1e-6)
    with pytest.raises(ValueError, match="B >= 2"):
        itc_loss(image[:1], text[:1], 0.5)


def test_hard_negatives_never_pick_the_positive_and_follow_the_similarity():
    generator = torch.Generator().manual_seed(0)
    logits = torch.tensor([[5.0, 4.0, 0.0, 0.0], [1.0, 5.0, 1.0, 1.0], [0.0, 0.0, 5.0, 3.0], [0.0, 0.0, 3.0, 5.0]])
    same = torch.zeros(4, 4, dtype=torch.bool)
    same[0, 3] = same[3, 0] = True                                    # identical captions: not a negative either
    draws = torch.stack([sample_hard_negatives(logits, same, generator) for _ in range(2000)])
    assert not (draws == torch.arange(4)).any()
    assert not (draws[:, 0] == 3).any() and not (draws[:, 3] == 0).any()
    share = (draws[:, 0] == 1).float().mean().item()                  # softmax over columns 1, 2 of row 0
    assert share == pytest.approx(math.exp(4) / (math.exp(4) + 1), abs=0.02)
    with pytest.raises(ValueError, match="no negative"):
        sample_hard_negatives(torch.zeros(1, 1))
    with pytest.raises(ValueError, match="square"):
        sample_hard_negatives(torch.zeros(2, 3))


def test_mask_tokens_masks_only_ordinary_tokens_and_matches_transformers(tokenizer):
    from transformers import DataCollatorForLanguageModeling

    batch = tokenizer(["a dark coat by miro", "a light plain bag, relaxed cut"] * 20, padding=True,
                      return_tensors="pt", return_special_tokens_mask=True)
    ids, special = batch["input_ids"], batch["special_tokens_mask"]
    masked, labels = mask_tokens(ids, special, tokenizer.mask_token_id, len(tokenizer), 0.3,
                                 torch.Generator().manual_seed(7))
    assert (labels[special.bool()] == -100).all() and torch.equal(masked[special.bool()], ids[special.bool()])
    assert (labels != -100).any() and torch.equal(labels[labels != -100], ids[labels != -100])
    assert (masked[labels != -100] == tokenizer.mask_token_id).float().mean() > 0.6
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.3)
    collator.generator = torch.Generator().manual_seed(7)
    expected_ids, expected_labels = collator.torch_mask_tokens(ids.clone(), special_tokens_mask=special)
    assert torch.equal(masked, expected_ids) and torch.equal(labels, expected_labels)
    with pytest.raises(ValueError, match="probability"):
        mask_tokens(ids, special, 103, 100, probability=0.0)


def test_albef_losses_and_shapes(tiny):
    words, model, pixels, tokens = tiny
    losses = model.losses(pixels, tokens["input_ids"], tokens["attention_mask"], tokens["special_tokens_mask"],
                          generator=torch.Generator().manual_seed(0))
    assert set(losses) == {"itc", "itm", "mlm"} and all(torch.isfinite(v) for v in losses.values())
    encoded = encode_items(model, pixels, tokens)
    assert encoded["image_tokens"].shape == (3, 17, 16) and encoded["image_emb"].shape == (3, 8)
    assert torch.allclose(encoded["text_emb"].norm(dim=1), torch.ones(3))
    p = itm_probability(model, encoded, [0, 1, 2], [0, 0, 1])
    assert p.shape == (3,) and ((p > 0) & (p < 1)).all()
    filled = fill_masked_word(model, pixels, tokens["input_ids"], tokens["attention_mask"], [1, 1, 1],
                              [words.word_id(w) for w in ("light", "medium", "dark")])
    assert filled.shape == (3, 3) and np.allclose(filled.sum(1), 1, atol=1e-5)
    with pytest.raises(ValueError, match="position"):
        fill_masked_word(model, pixels, tokens["input_ids"], tokens["attention_mask"], [0, 1, 1], [5])


def test_the_itc_only_ablation_has_no_fusion_encoder(tiny):
    words, _, pixels, tokens = tiny
    ablation = ALBEF(AlbefConfig(vocab_size=words.vocab_size, dim=16, embed_dim=8, text_layers=1, heads=2,
                                 fusion=False), words.mask_token_id)
    assert set(ablation.losses(pixels, tokens["input_ids"], tokens["attention_mask"],
                               tokens["special_tokens_mask"])) == {"itc"}
    with pytest.raises(ValueError, match="fusion=False"):
        ablation.fuse(torch.zeros(1, 2, 16), torch.ones(1, 2), torch.zeros(1, 17, 16))


def test_fit_albef_records_every_loss(tiny):
    words, model, pixels, tokens = tiny
    out = fit_albef(model, pixels, tokens, n_epochs=2, batch_size=3, groups=[0, 1, 2], seed=0)
    assert [row["epoch"] for row in out["history"]] == [1, 2]
    assert set(out["history"][0]) == {"epoch", "itc", "itm", "mlm"} and not model.training
    with pytest.raises(ValueError, match="n_epochs"):
        fit_albef(model, pixels, tokens, n_epochs=0)


def test_loss_weights_train_itm_alone_and_skip_mlm(tiny):
    words, _, pixels, tokens = tiny
    torch.manual_seed(0)
    model = ALBEF(AlbefConfig(vocab_size=words.vocab_size, dim=16, embed_dim=8, text_layers=1, fusion_layers=1,
                              heads=2), words.mask_token_id, words.pad_token_id)
    before = model.log_scale.detach().clone()
    out = fit_albef(model, pixels, tokens, n_epochs=1, batch_size=3, groups=[0, 1, 2], seed=0,
                    loss_weights={"itc": 0.0, "mlm": 0.0})
    assert set(out["history"][0]) == {"epoch", "itc", "itm"}          # MLM is not even computed
    assert torch.equal(model.log_scale.detach(), before)              # ITC at weight 0: its temperature gets no gradient
    for bad in ({"itx": 1.0}, {"itm": -1.0}):
        with pytest.raises(ValueError, match="loss_weights"):
            fit_albef(model, pixels, tokens, n_epochs=1, loss_weights=bad)


def test_itm_auc_on_fixed_pairs(tiny):
    _, model, pixels, tokens = tiny
    encoded = encode_items(model, pixels, tokens)
    out = itm_auc(model, encoded, [0, 1, 2], seed=0)
    assert set(out) == {"vs a random caption", "vs the hardest caption", "P(match) spread (sd)"}
    assert 0 <= out["vs a random caption"] <= 1 and 0 <= out["vs the hardest caption"] <= 1
    with pytest.raises(ValueError, match="similarity"):
        itm_auc(model, encoded, [0, 1, 2], similarity=np.eye(2))
    with pytest.raises(ValueError, match="outside its look-alike"):
        itm_auc(model, encoded, [0, 0, 0])


def test_ranks_and_reranking(tiny):
    _, model, pixels, tokens = tiny
    similarity = np.array([[0.9, 0.1, 0.5], [0.8, 0.2, 0.1], [0.3, 0.3, 0.3]])
    assert ranks_of_matches(similarity).tolist() == [1, 2, 3]       # a tie counts against the match
    encoded = encode_items(model, pixels, tokens)
    assert rerank_ranks(model, encoded, similarity, 1, "image").tolist() == [1, 2, 3]   # top-1: nothing to reorder
    itm = itm_probability(model, encoded, np.repeat(np.arange(3), 3), np.tile(np.arange(3), 3)).reshape(3, 3)
    assert rerank_ranks(model, encoded, similarity, 3, "image").tolist() == ranks_of_matches(itm).tolist()
    with pytest.raises(ValueError, match="queries"):
        rerank_ranks(model, encoded, similarity, 2, "audio")
    with pytest.raises(ValueError, match="k must be"):
        rerank_ranks(model, encoded, similarity, 4, "text")


def test_profile_recommender_and_category_popularity_score_only_candidates():
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1], [0.1, 1.0]])
    history = History(sp.csr_matrix(np.array([[1, 0, 0, 0], [0, 1, 0, 0]], dtype=np.float32)), [])
    scores = ProfileRecommender(vectors, [2, 3]).score(np.array([0, 1]), history)
    assert np.isneginf(scores[:, :2]).all() and scores[0, 2] > scores[0, 3] and scores[1, 3] > scores[1, 2]
    bought = sp.csr_matrix(np.array([[0, 1, 1, 0], [1, 1, 0, 0]], dtype=np.float32))   # bags 3 times, coats once
    popular = CategoryPopularity(["coat", "bag", "bag", "coat"], [2, 3]).fit(bought)
    assert popular.score(np.array([0]), history)[0, 2] > popular.score(np.array([0]), history)[0, 3]
    with pytest.raises(ValueError, match="finite"):
        ProfileRecommender(np.array([[np.nan, 0.0]]), [0])


def test_normalised_utility_is_one_for_the_best_list_and_zero_on_average():
    utility = np.array([[3.0, 1.0, 2.0, 0.0], [0.0, 1.0, 2.0, 3.0]])
    assert np.allclose(normalised_utility_at_k(utility, utility, np.arange(4), k=2), 1.0)
    worst = normalised_utility_at_k(-utility, utility, np.arange(4), k=2)
    assert np.allclose(worst, -1.0)
    assert np.allclose(normalised_utility_at_k(utility, utility, [1, 2], k=1), [1.0, 1.0])
    with pytest.raises(ValueError, match="k must be"):
        normalised_utility_at_k(utility, utility, np.arange(4), k=4)
