"""CLIP for the fashion shop, built with open_clip (survey Section 4.3; lessons 14 and 18).

Offline there are no pretrained CLIP weights, so the course trains a *locked-text*
CLIP (LiT, Zhai et al. 2022): open_clip's ``CustomTextCLIP`` with a small vision
transformer trained from scratch on the shop's 28×28 product images, and the real
pretrained MiniLM as its text tower, frozen (only its linear projection learns).
Online, ``load_clip("ViT-B-32")`` takes LAION's pretrained ViT-B-32 instead; both
go through the same ``encode_images`` / ``encode_texts``.

Interface for other lessons (lesson 18 reuses the image encoder)::

    model, info = load_fashion_clip(config)    # trained once, then from the model cache
    images = encode_images(model, shop.images)  # (N, D) float32, rows L2-normalised
    texts = encode_texts(model, ["dark bag"])   # (M, D) float32, rows L2-normalised
    info["train_items"], info["heldout_items"]  # products CLIP did / did not see

Images are Fashion-MNIST's negated photos (background 0): ``encode_images`` turns
them back into dark-on-white photos, copies the grey channel three times, resizes
to the model's input size and normalises with CLIP's mean and standard deviation.
"""
from __future__ import annotations

import time
from typing import Sequence

import functools

import numpy as np
import open_clip
import pandas as pd
import torch
import torch.nn.functional as F
import transformers

from course_utils.config import get_device, is_fast
from course_utils.data.fashion_mnist import CLASS_NAMES
from course_utils.model_cache import load_or_train

MODEL_NAME = "fashion-lit"  # the offline model's name in the model cache
PRETRAINED = {"ViT-B-32": "laion2b_s34b_b79k"}  # online: open_clip architecture -> LAION weights tag
IMAGE_SHAPE = (28, 28)

FAST_CONFIG = {
    "embed_dim": 64, "vision": {"image_size": 28, "patch_size": 7, "layers": 2, "width": 64, "head_width": 32},
    "text": "minilm", "captions": "title", "epochs": 12, "batch_size": 256, "lr": 2e-3, "weight_decay": 0.05,
    "holdout": 0.2, "shop_seed": 42, "split_seed": 0, "seed": 0,
}
DEFAULT_CONFIG = {
    **FAST_CONFIG, "embed_dim": 128,
    "vision": {"image_size": 28, "patch_size": 4, "layers": 3, "width": 64, "head_width": 32}, "epochs": 25,
}
# Measured on the 600 held-out products (text→image Recall@10, chance 0.017): FAST_CONFIG 0.40;
# DEFAULT_CONFIG 0.44; a wider tower with 7×7 patches (width 96, 3 layers, 25 epochs) only 0.36:
# small patches matter more than width for the textures of 28×28 images.


def default_config(fast: bool | None = None) -> dict:
    """``FAST_CONFIG`` in FAST mode (``COURSE_FAST=1``), else ``DEFAULT_CONFIG`` (a copy)."""
    chosen = FAST_CONFIG if (is_fast() if fast is None else fast) else DEFAULT_CONFIG
    return {**chosen, "vision": dict(chosen["vision"])}


# ---------------------------------------------------------------- building the models
@functools.lru_cache(maxsize=1)
def minilm_folder() -> str:
    """Where the course's verified MiniLM lives (a local folder offline, a hub id online)."""
    from course_utils.hub import load_text_encoder

    encoder, _ = load_text_encoder("minilm", device="cpu", verbose=False)
    return encoder[0].auto_model.config._name_or_path


def build_lit_model(config: dict) -> open_clip.CustomTextCLIP:
    """An untrained LiT model: open_clip's CustomTextCLIP with a small ViT and a locked MiniLM."""
    _check_config(config)
    folder = minilm_folder()
    text_cfg = {"hf_model_name": folder, "hf_tokenizer_name": folder, "hf_pooler_type": "mean_pooler",
                "hf_proj_type": "linear"}
    torch.manual_seed(config["seed"])
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # MiniLM's unused pooler.dense weights are reported, harmlessly
    try:
        model = open_clip.CustomTextCLIP(embed_dim=config["embed_dim"], vision_cfg=dict(config["vision"]),
                                         text_cfg=text_cfg)
    finally:
        transformers.logging.set_verbosity(verbosity)
    model.lock_text_tower()  # MiniLM frozen, LayerNorms included; only text.proj learns on the text side
    model.course_tokenizer = open_clip.tokenizer.HFTokenizer(folder, context_length=64)
    model.course_pooled = {}  # text -> MiniLM's mean-pooled output: fixed while the tower is locked
    return model


def load_pretrained_clip(name: str = "ViT-B-32", pretrained: str | None = None):
    """An open_clip model with pretrained weights (needs the internet once). ``pretrained=""`` for random weights."""
    if name not in PRETRAINED and pretrained is None:
        raise ValueError(f"unknown CLIP model {name!r}: use 'fashion-lit' (offline) or one of {list(PRETRAINED)}")
    tag = PRETRAINED.get(name) if pretrained is None else (pretrained or None)
    model = open_clip.create_model(name, pretrained=tag)
    model.course_tokenizer = open_clip.get_tokenizer(name)
    return model.eval()


def load_clip(name: str = MODEL_NAME, config: dict | None = None, verbose: bool = True):
    """``(model, info)`` for ``name``: the offline "fashion-lit" (trained or cached) or a pretrained open_clip model.

    ``info`` always holds the product split of ``config`` (``train_items``, ``heldout_items``).
    """
    config = default_config() if config is None else config
    if name == MODEL_NAME:
        return load_fashion_clip(config, verbose=verbose)
    start = time.perf_counter()
    model = load_pretrained_clip(name)
    train_items, heldout_items = product_split(config)
    return model, {"source": f"open_clip:{name}/{PRETRAINED[name]}", "config": config,
                   "train_items": train_items, "heldout_items": heldout_items,
                   "train": {"seconds": time.perf_counter() - start}}


# ---------------------------------------------------------------- encoding
def images_to_tensor(model, images) -> torch.Tensor:
    """(N, 28, 28) uint8 Fashion-MNIST images -> (N, 3, S, S) float tensor ready for ``model.visual``."""
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE or images.dtype != np.uint8:
        raise ValueError(f"images must be a uint8 array of shape (N, 28, 28), got {images.dtype} {images.shape}")
    pixels = torch.as_tensor(255 - images, dtype=torch.float32).div_(255.0).unsqueeze(1)  # dark on white
    size = model.visual.image_size
    size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
    if size != IMAGE_SHAPE:
        pixels = F.interpolate(pixels, size=size, mode="bicubic", align_corners=False).clamp_(0, 1)
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    return (pixels.expand(-1, 3, -1, -1) - mean) / std


def encode_images(model, images, batch_size: int = 512) -> np.ndarray:
    """(N, 28, 28) uint8 images -> (N, D) float32 image embeddings, each row of unit length."""
    if len(np.shape(images)) == 3 and np.shape(images)[0] == 0:
        raise ValueError("no images to encode: got an empty array")
    pixels = images_to_tensor(model, images)
    device = next(model.parameters()).device
    with torch.inference_mode():
        out = [model.encode_image(pixels[i:i + batch_size].to(device), normalize=True).float().cpu()
               for i in range(0, len(pixels), batch_size)]
    return torch.cat(out).numpy()


def _check_texts(texts) -> list[str]:
    if isinstance(texts, str):
        raise ValueError("texts must be a list of strings, not one string (wrap it: [text])")
    texts = list(texts)
    if not texts:
        raise ValueError("the caption list is empty: give at least one text to encode")
    bad = [t for t in texts if not isinstance(t, str) or not t.strip()]
    if bad:
        raise ValueError(f"every caption must be a non-empty string, got {bad[0]!r}")
    return texts


def _is_locked_hf(model) -> bool:
    text = getattr(model, "text", None)
    return isinstance(text, open_clip.hf_model.HFTextEncoder) and not any(
        p.requires_grad for p in text.transformer.parameters())


def pooled_text(model, texts: Sequence[str], batch_size: int = 128) -> torch.Tensor:
    """MiniLM's mean-pooled outputs (M, 384) for a locked HF text tower, computed once per distinct text.

    The tower is frozen, so these never change: training and retrieval only apply
    ``model.text.proj`` to them. Padding columns are trimmed per batch, which the
    mean pooler's mask makes exact (``tests/test_multimodal_clip.py`` checks it
    against ``model.encode_text``).
    """
    texts = _check_texts(texts)
    cache, text = model.course_pooled, model.text
    missing = sorted(set(texts) - set(cache))
    device = next(text.parameters()).device
    with torch.inference_mode():
        was_training = text.transformer.training
        text.transformer.eval()  # the locked tower never drops out, in training or not
        for start in range(0, len(missing), batch_size):
            chunk = missing[start:start + batch_size]
            tokens = model.course_tokenizer(chunk)
            tokens = tokens[:, (tokens != text.config.pad_token_id).any(0)].to(device)
            mask = (tokens != text.config.pad_token_id).long()
            pooled = text.pooler(text.transformer(input_ids=tokens, attention_mask=mask), mask).float().cpu()
            cache.update(zip(chunk, pooled))
        text.transformer.train(was_training)
    return torch.stack([cache[t] for t in texts])


def encode_texts(model, texts: Sequence[str], batch_size: int = 128) -> np.ndarray:
    """A list of M strings -> (M, D) float32 text embeddings, each row of unit length."""
    texts = _check_texts(texts)
    device = next(model.parameters()).device
    with torch.inference_mode():
        if _is_locked_hf(model):
            pooled = pooled_text(model, texts, batch_size).to(device)
            return F.normalize(model.text.proj(pooled).float(), dim=-1).cpu().numpy()
        out = [model.encode_text(model.course_tokenizer(texts[i:i + batch_size]).to(device), normalize=True)
               .float().cpu() for i in range(0, len(texts), batch_size)]
    return torch.cat(out).numpy()


# ---------------------------------------------------------------- the loss and training
def contrastive_loss(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale) -> torch.Tensor:
    """CLIP's symmetric InfoNCE on a batch of B matched pairs (features (B, D), already normalised).

    logits = scale · I Tᵀ; the loss averages the cross-entropy of each image over the
    texts (rows) and of each text over the images (columns), the match on the diagonal.
    """
    if image_features.shape != text_features.shape or image_features.ndim != 2 or len(image_features) == 0:
        raise ValueError(f"need two (B, D) feature matrices of the same shape, got "
                         f"{tuple(image_features.shape)} and {tuple(text_features.shape)}")
    logits = logit_scale * image_features @ text_features.T
    labels = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def train_clip(model, images: np.ndarray, captions: Sequence[str], config: dict, device=None) -> dict:
    """Train the vision tower, the text projection and the temperature with open_clip's ``ClipLoss``.

    images: (N, 28, 28) uint8; captions: N strings, caption i describes image i.
    Returns the mean loss per epoch and the seconds taken.
    """
    captions = _check_texts(captions)
    if len(captions) != len(images):
        raise ValueError(f"need one caption per image, got {len(captions)} captions for {len(images)} images")
    device = get_device() if device is None else device
    pixels = images_to_tensor(model, images)
    pooled = pooled_text(model, captions)  # locked MiniLM: run once, not every epoch
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config["lr"], weight_decay=config["weight_decay"])
    batch, epochs = config["batch_size"], config["epochs"]
    steps = epochs * int(np.ceil(len(pixels) / batch))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config["lr"], total_steps=steps, pct_start=0.1)
    loss_fn, rng, losses, start = open_clip.ClipLoss(), np.random.default_rng(config["seed"]), [], time.perf_counter()
    model.visual.train()
    for _ in range(epochs):
        order, total = torch.as_tensor(rng.permutation(len(pixels))), 0.0
        for chunk in order.split(batch):
            image_features = model.encode_image(pixels[chunk].to(device), normalize=True)
            text_features = F.normalize(model.text.proj(pooled[chunk].to(device)), dim=-1)
            loss = loss_fn(image_features, text_features, model.logit_scale.exp())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, np.log(100))  # CLIP caps the temperature at 1/100
            total += loss.item() * len(chunk)
        losses.append(total / len(pixels))
    model.eval().cpu()
    return {"losses": losses, "seconds": time.perf_counter() - start}


# ---------------------------------------------------------------- the shop's products
def product_split(config: dict, labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(train_items, heldout_items): ``config["holdout"]`` of each category held out, drawn with ``split_seed``."""
    if labels is None:
        from course_utils.data.fashion_mnist import load_fashion_mnist
        labels = load_fashion_mnist(subset=True, verbose=False).labels
    rng = np.random.default_rng(config["split_seed"])
    held = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        held.append(rng.choice(members, size=int(round(config["holdout"] * len(members))), replace=False))
    held = np.sort(np.concatenate(held))
    return np.setdiff1d(np.arange(len(labels)), held), held


def captions_of(items, config: dict) -> list[str]:
    """The training caption of every item: its shop title (or description), from ``config["captions"]``."""
    return items[config["captions"]].astype(str).tolist()


def load_fashion_clip(config: dict | None = None, verbose: bool = True, shop=None):
    """The offline LiT model trained on the shop's training products, from the model cache or trained now.

    Returns ``(model, info)``; ``info`` has ``source`` ("cache" or "trained"), ``train``
    (losses, seconds), ``config``, ``train_items`` and ``heldout_items``.
    """
    config = default_config() if config is None else config
    _check_config(config)
    if shop is None:
        from course_utils.data.fashion_shop import make_fashion_shop
        shop = make_fashion_shop(n_users=1, seed=config["shop_seed"])
    elif shop.seed != config["shop_seed"]:
        raise ValueError(f"the shop was built with seed {shop.seed}, the config asks for {config['shop_seed']}")
    labels = pd.Categorical(shop.items["category"], categories=CLASS_NAMES).codes.astype(np.int64)
    train_items, heldout_items = product_split(config, labels)
    captions = captions_of(shop.items, config)

    def train(model):
        return train_clip(model, shop.images[train_items], [captions[i] for i in train_items], config)

    model, info = load_or_train(MODEL_NAME, config, lambda: build_lit_model(config), train, verbose=verbose)
    return model, {**info, "config": config, "train_items": train_items, "heldout_items": heldout_items}


def _check_config(config: dict) -> None:
    missing = sorted(set(FAST_CONFIG) - set(config))
    if missing:
        raise ValueError(f"the CLIP config lacks {missing}; start from FAST_CONFIG or DEFAULT_CONFIG")
    if config["text"] != "minilm":
        raise ValueError(f"the offline text tower is 'minilm', got {config['text']!r}")
    if config["vision"].get("image_size") != 28 or 28 % config["vision"].get("patch_size", 0) != 0:
        raise ValueError(f"the vision tower needs image_size 28 and a patch size dividing 28, got {config['vision']}")
    if not 0 < config["holdout"] < 1:
        raise ValueError(f"holdout must be a fraction in (0, 1), got {config['holdout']!r}")
