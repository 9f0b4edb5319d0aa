"""Lesson 14's CLIP: the loss by hand, open_clip equivalence, shapes, bad inputs, the model cache."""
import math

import numpy as np
import open_clip
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from course_utils.data.fashion_shop import make_fashion_shop
from course_utils.data.splits import History
from course_utils.model_cache import cached_path
from course_utils.multimodal import clip, clip_uses

TINY = {**clip.FAST_CONFIG, "embed_dim": 16, "epochs": 3, "holdout": 0.9,
        "vision": {"image_size": 28, "patch_size": 14, "layers": 1, "width": 32, "head_width": 16}}


@pytest.fixture(scope="module")
def tiny_model():
    return clip.build_lit_model(TINY).eval()


def test_contrastive_loss_on_a_two_by_two_batch_by_hand():
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    texts = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    # logits = I Tᵀ = [[1, 0.6], [0, 0.8]]; rows score each image over the texts, columns each text.
    image_rows = -math.log(math.e / (math.e + math.exp(0.6))) - math.log(math.exp(0.8) / (1 + math.exp(0.8)))
    text_rows = -math.log(math.e / (math.e + 1)) - math.log(math.exp(0.8) / (math.exp(0.6) + math.exp(0.8)))
    expected = (image_rows / 2 + text_rows / 2) / 2
    assert clip.contrastive_loss(images, texts, 1.0).item() == pytest.approx(expected, rel=1e-6)
    assert open_clip.ClipLoss()(images, texts, 1.0).item() == pytest.approx(expected, rel=1e-6)


def test_contrastive_loss_equals_open_clip_on_random_batches():
    generator = torch.Generator().manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(8, 5, generator=generator), dim=-1)
    b = torch.nn.functional.normalize(torch.randn(8, 5, generator=generator), dim=-1)
    assert torch.isclose(clip.contrastive_loss(a, b, 14.3), open_clip.ClipLoss()(a, b, 14.3))
    with pytest.raises(ValueError, match="same shape"):
        clip.contrastive_loss(a, b[:4], 1.0)


def test_encoders_return_unit_rows_of_the_embedding_size(tiny_model):
    images = np.random.default_rng(0).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    features = clip.encode_images(tiny_model, images)
    assert features.shape == (5, 16) and features.dtype == np.float32
    assert np.allclose(np.linalg.norm(features, axis=1), 1, atol=1e-5)
    texts = clip.encode_texts(tiny_model, ["Dark plain bag by Miro", "a light coat", "Dark plain bag by Miro"])
    assert texts.shape == (3, 16) and np.allclose(np.linalg.norm(texts, axis=1), 1, atol=1e-5)
    assert np.allclose(texts[0], texts[2])


def test_pooled_shortcut_equals_open_clips_text_tower(tiny_model):
    # encode_texts runs the locked MiniLM once per text and trims padding; open_clip pads to 64.
    texts = ["Dark plain bag by Miro", "Our slim pair of trousers in light, clean and plain. Designed by Umber."]
    with torch.no_grad():
        reference = tiny_model.encode_text(tiny_model.course_tokenizer(texts), normalize=True).numpy()
    assert np.allclose(clip.encode_texts(tiny_model, texts), reference, atol=1e-5)
    assert not any(p.requires_grad for p in tiny_model.text.transformer.parameters()), "MiniLM must be locked"
    assert tiny_model.text.proj.weight.requires_grad


def test_bad_inputs_give_clear_errors(tiny_model):
    with pytest.raises(ValueError, match=r"shape \(N, 28, 28\)"):
        clip.encode_images(tiny_model, np.zeros((2, 32, 32), dtype=np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        clip.encode_images(tiny_model, np.zeros((2, 28, 28), dtype=np.float32))
    with pytest.raises(ValueError, match="caption list is empty"):
        clip.encode_texts(tiny_model, [])
    with pytest.raises(ValueError, match="not one string"):
        clip.encode_texts(tiny_model, "a bag")
    with pytest.raises(ValueError, match="non-empty string"):
        clip.encode_texts(tiny_model, ["a bag", "  "])
    with pytest.raises(ValueError, match="one caption per image"):
        clip.train_clip(tiny_model, np.zeros((3, 28, 28), dtype=np.uint8), ["a", "b"], TINY)
    with pytest.raises(ValueError, match="lacks"):
        clip.load_fashion_clip({"embed_dim": 8})
    with pytest.raises(ValueError, match="patch size"):
        clip.build_lit_model({**TINY, "vision": {**TINY["vision"], "patch_size": 5}})
    with pytest.raises(ValueError, match="unknown CLIP model"):
        clip.load_clip("ViT-Q-99")


def test_product_split_holds_out_a_share_of_every_category():
    labels = np.repeat(np.arange(10), 30)
    train, held = clip.product_split({**TINY, "holdout": 0.2}, labels)
    assert len(np.intersect1d(train, held)) == 0 and len(train) + len(held) == 300
    assert np.all(np.bincount(labels[held], minlength=10) == 6)
    again, _ = clip.product_split({**TINY, "holdout": 0.2}, labels)
    assert np.array_equal(train, again)


def test_fashion_clip_trains_then_loads_from_cache_and_retrains_when_damaged(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    model, info = clip.load_fashion_clip(TINY, verbose=False)
    assert info["source"] == "trained" and len(info["train"]["losses"]) == 3
    assert info["train"]["losses"][-1] < info["train"]["losses"][0], "training should lower the contrastive loss"
    assert len(info["train_items"]) == 300 and len(info["heldout_items"]) == 2700  # 10% of each category trains
    probe = np.random.default_rng(1).integers(0, 256, size=(4, 28, 28), dtype=np.uint8)
    again, info_again = clip.load_fashion_clip(TINY, verbose=False)
    assert info_again["source"] == "cache"
    assert np.allclose(clip.encode_images(model, probe), clip.encode_images(again, probe), atol=1e-6)
    path = cached_path(clip.MODEL_NAME, TINY)
    path.write_bytes(path.read_bytes()[:1000])  # a truncated weights file
    rebuilt, info_rebuilt = clip.load_fashion_clip(TINY, verbose=False)
    assert info_rebuilt["source"] == "trained"
    assert np.allclose(clip.encode_images(rebuilt, probe), clip.encode_images(model, probe), atol=1e-5), \
        "a seeded retraining gives the same model"


def test_pretrained_architecture_goes_through_the_same_encoders():
    model = clip.load_pretrained_clip("ViT-B-32", pretrained="")  # random weights: the online path's shapes
    images = np.random.default_rng(0).integers(0, 256, size=(2, 28, 28), dtype=np.uint8)
    assert clip.images_to_tensor(model, images).shape == (2, 3, 224, 224)
    assert clip.encode_images(model, images).shape == (2, 512)
    assert clip.encode_texts(model, ["a dark bag"]).shape == (1, 512)


# ---------------------------------------------------------------- the uses of the shared space


def test_retrieval_ranks_by_hand():
    queries, targets = np.array([[1.0, 0.0], [1.0, 0.0]]), np.array([[1.0, 0.0], [0.0, 1.0]])
    assert clip_uses.retrieval_ranks(queries, targets).tolist() == [1, 2]
    assert clip_uses.retrieval_ranks(np.eye(3), np.eye(3)).tolist() == [1, 1, 1]
    with pytest.raises(ValueError, match="pair up"):
        clip_uses.retrieval_ranks(np.eye(3), np.eye(2))


def _history(rows):
    matrix = sp.csr_matrix(np.array(rows, dtype=np.float32))
    return History(matrix, [np.flatnonzero(r) for r in rows])


def test_profile_recommender_mean_and_soft_max_by_hand():
    embeddings = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    history = _history([[1, 0, 0], [1, 1, 0], [0, 0, 0]])
    mean = clip_uses.ProfileRecommender(embeddings).score(np.arange(3), history)
    assert np.allclose(mean[0], [1, 0, np.sqrt(0.5)]) and np.allclose(mean[1], [np.sqrt(0.5), np.sqrt(0.5), 1])
    assert np.all(mean[2] == 0), "no history, no preference"
    soft = clip_uses.ProfileRecommender(embeddings, temperature=1e-3).score(np.arange(2), history)
    assert np.allclose(soft[1], [1, 1, np.sqrt(0.5)], atol=1e-2), "a small τ approaches the most similar bought item"
    with pytest.raises(ValueError, match="temperature"):
        clip_uses.ProfileRecommender(embeddings, temperature=0.0)


@pytest.fixture(scope="module")
def small_shop():
    return make_fashion_shop(n_users=60, seed=3)


def test_cold_start_split_hides_new_products_and_the_oracle_scores_one(small_shop):
    held = np.arange(0, small_shop.n_items, 5)
    split, valid, test = clip_uses.cold_start_split(small_shop, held)
    assert not split.train["item"].isin(held).any()
    assert set(split.valid["item"]) <= set(valid) and set(split.test["item"]) <= set(test)
    assert len(np.intersect1d(valid, test)) == 0 and len(valid) + len(test) == len(held)

    def oracle(users, history):
        return small_shop.true_utility(users)

    def constant(users, history):
        return np.zeros((len(users), small_shop.n_items))

    best = clip_uses.evaluate_cold_start(oracle, split, "test", test, shop=small_shop)
    flat = clip_uses.evaluate_cold_start(constant, split, "test", test, shop=small_shop)
    assert np.allclose(best["utility@10"], 1.0)
    assert abs(flat["utility@10"].mean()) < 0.15, "a random order is near 0 on average"
    assert set(best) == {"NDCG@10", "HR@10", "utility@10"} and len(best["NDCG@10"]) == len(flat["NDCG@10"])


def test_composed_queries_on_planted_embeddings():
    items = pd.DataFrame({"category": np.repeat(["A", "B"], 6), "tone": np.tile(np.repeat(["dark", "light"], 3), 2),
                          "pattern": "plain"})
    onehot = np.concatenate([pd.get_dummies(items["category"]).to_numpy(float),
                             pd.get_dummies(items["tone"]).to_numpy(float)], axis=1)
    edits = {"A": np.array([1.0, 0, 0, 0]), "B": np.array([0, 1.0, 0, 0])}
    pool = np.arange(12)
    composed = clip_uses.composed_queries(items, pool, onehot, edits, 1.0, k=3)
    image_only = clip_uses.composed_queries(items, pool, onehot, edits, 0.0, k=3)
    assert len(composed) == 12 and np.allclose(composed["success"], 1.0)
    assert image_only["category_hit"].max() < 1 and np.allclose(composed["chance"], 3 / 12)
    with pytest.raises(ValueError, match="text_weight"):
        clip_uses.compose(onehot[:1], edits["A"][None], -1.0)
    assert clip_uses.nearest_neighbour_agreement(onehot, items["category"]) == 1.0
