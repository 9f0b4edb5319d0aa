"""Align before fuse (ALBEF, Li et al., 2021) at the size of the fashion shop.

Two unimodal encoders (a small CNN over 28×28 product images, a small BERT over
product captions) are first *aligned* by an image–text contrastive loss (ITC),
as in CLIP. A fusion encoder then lets the caption's tokens attend to the image
patches (cross-attention) and is trained with two more losses:

* image–text matching (ITM): does this caption belong to this image? Its
  negatives are *hard*, drawn from the ITC similarity of the batch;
* masked language modelling (MLM): fill masked caption tokens, seeing the image.

``ALBEF(config, special_ids)`` with ``config.fusion=False`` is the same pair of
encoders trained with ITC alone: the CLIP-style late-fusion ablation.
Tensors: images (B, 1, 28, 28) in [0, 1]; token ids and attention masks (B, L).
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertConfig, BertModel

from course_utils.data.splits import Split
from course_utils.metrics import normalised_utility

# The shop writes the middle tone as "mid-tone", three word pieces (mid - tone). A masked
# tone would then be one [MASK] for light/dark and three for mid-tone: the count of masks
# would give the answer away. "medium" is one word piece, like "light" and "dark".
CAPTION_TONE_WORDS = {"light": "light", "mid-tone": "medium", "dark": "dark"}


# ---------------------------------------------------------------- data
def product_captions(items: pd.DataFrame) -> list[str]:
    """One short caption per item: its title and cut, e.g. "Dark plain dress by Saltmarsh, relaxed cut".

    The cut (relaxed or slim, from how much of the frame the garment fills) is only in the
    shop's descriptions; the tone is written as one word (see ``CAPTION_TONE_WORDS``).
    """
    missing = [c for c in ("title", "description", "tone") if c not in getattr(items, "columns", ())]
    if missing:
        raise ValueError(f"items need the columns title, description and tone (the fashion shop's items); "
                         f"missing {missing}")
    cut = np.where(items["description"].str.contains("relaxed"), "relaxed", "slim")
    return [f"{title.replace('Mid-tone', 'Medium')}, {fit} cut" for title, fit in zip(items["title"], cut)]


def image_tensor(images) -> torch.Tensor:
    """(N, 28, 28) uint8 images as a float tensor (N, 1, 28, 28) in [0, 1]."""
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8 or len(images) == 0:
        raise ValueError(f"images must be a non-empty uint8 array of shape (N, 28, 28), got {images.dtype} "
                         f"{images.shape}")
    return torch.as_tensor(images, dtype=torch.float32).unsqueeze(1) / 255.0


class CaptionTokenizer:
    """MiniLM's word pieces, keeping only the pieces the training captions use.

    The shop's captions use about a hundred of MiniLM's 30,522 word pieces. An embedding
    table and an MLM output layer over all of them would spend most of every step on
    words that never occur, so ids are renumbered 0..V-1 over the pieces seen in
    ``captions`` (plus the special tokens); any other piece becomes [UNK].
    """

    def __init__(self, tokenizer, captions, max_length: int = 40):
        self.tokenizer, self.max_length = tokenizer, max_length
        seen = tokenizer(_checked_captions(captions), truncation=True, max_length=max_length)["input_ids"]
        special = [tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id,
                   tokenizer.mask_token_id]
        self.pieces = np.array(special + sorted({i for row in seen for i in row} - set(special)))
        self._compact = {int(piece): n for n, piece in enumerate(self.pieces)}
        self.pad_token_id, self.unk_token_id, self.mask_token_id = 0, 1, 4

    @property
    def vocab_size(self) -> int:
        return len(self.pieces)

    def __call__(self, captions) -> dict[str, torch.Tensor]:
        """input_ids (compact), attention_mask and special_tokens_mask, each (B, L), padded to the longest."""
        batch = self.tokenizer(_checked_captions(captions), padding=True, truncation=True, max_length=self.max_length,
                               return_tensors="pt", return_special_tokens_mask=True)
        ids = batch["input_ids"].apply_(lambda piece: self._compact.get(piece, self.unk_token_id))
        return {"input_ids": ids, "attention_mask": batch["attention_mask"],
                "special_tokens_mask": batch["special_tokens_mask"]}

    def word_id(self, word: str) -> int:
        """The compact id of a word that is one word piece (e.g. 'dark')."""
        pieces = self.tokenizer.tokenize(word)
        if len(pieces) != 1 or self.tokenizer.convert_tokens_to_ids(pieces[0]) not in self._compact:
            raise ValueError(f"{word!r} is not a single word piece of the captions (it splits into {pieces})")
        return self._compact[self.tokenizer.convert_tokens_to_ids(pieces[0])]

    def decode(self, ids) -> str:
        return self.tokenizer.decode(self.pieces[np.asarray(ids)], skip_special_tokens=True)


def _checked_captions(captions) -> list[str]:
    captions = list(captions)
    if not captions or not all(isinstance(c, str) and c.strip() for c in captions):
        raise ValueError("captions must be a non-empty list of non-empty strings")
    return captions


# ---------------------------------------------------------------- the three losses
def itc_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, temperature) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric InfoNCE over a batch of matching pairs; returns (loss, logits B×B, image rows).

    image_emb, text_emb: (B, D), L2-normalised; pair i is (image i, text i).
    """
    if image_emb.shape != text_emb.shape or image_emb.ndim != 2 or len(image_emb) < 2:
        raise ValueError(f"need two (B, D) embeddings of one shape with B >= 2, got {tuple(image_emb.shape)} "
                         f"and {tuple(text_emb.shape)}")
    logits = image_emb @ text_emb.T / temperature
    target = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2, logits


def sample_hard_negatives(logits: torch.Tensor, same: torch.Tensor | None = None,
                          generator: torch.Generator | None = None) -> torch.Tensor:
    """One negative column per row, drawn with probability softmax(row) over the non-matching columns.

    logits: (B, B) similarities, row i's positive on the diagonal; same: optional (B, B)
    bool of other pairs that also match (identical captions), never drawn either.
    """
    if logits.ndim != 2 or logits.shape[0] != logits.shape[1]:
        raise ValueError(f"logits must be square (B, B), got {tuple(logits.shape)}")
    forbidden = torch.eye(len(logits), dtype=torch.bool, device=logits.device)
    if same is not None:
        forbidden = forbidden | same.to(torch.bool)
    if forbidden.all(dim=1).any():
        raise ValueError("some row has no negative to draw: every column matches it (batch too small, or all "
                         "captions identical)")
    weights = torch.softmax(logits.detach().float().masked_fill(forbidden, float("-inf")), dim=1)
    return torch.multinomial(weights, 1, generator=generator).squeeze(1)


def mask_tokens(input_ids: torch.Tensor, special_tokens_mask: torch.Tensor, mask_id: int, vocab_size: int,
                probability: float = 0.15, generator: torch.Generator | None = None):
    """BERT's masking: pick non-special tokens with ``probability``; of those 80% [MASK], 10% random, 10% kept.

    Returns (masked ids, labels) with labels -100 where nothing is predicted. Draws the
    random numbers in the same order as transformers' DataCollatorForLanguageModeling.
    """
    if not 0 < probability < 1:
        raise ValueError(f"probability must be in (0, 1), got {probability}")
    ids, labels = input_ids.clone(), input_ids.clone()
    chance = torch.full(ids.shape, probability).masked_fill(special_tokens_mask.bool(), 0.0)
    picked = torch.bernoulli(chance, generator=generator).bool()
    labels[~picked] = -100
    as_mask = torch.bernoulli(torch.full(ids.shape, 0.8), generator=generator).bool() & picked
    ids[as_mask] = mask_id
    as_random = torch.bernoulli(torch.full(ids.shape, 0.5), generator=generator).bool() & picked & ~as_mask
    random_ids = torch.randint(vocab_size, ids.shape, dtype=torch.long, generator=generator)
    ids[as_random] = random_ids[as_random]
    return ids, labels


# ---------------------------------------------------------------- the model
@dataclass(frozen=True)
class AlbefConfig:
    """Sizes of the model. ``fusion=False`` keeps only the two encoders (ITC only, the CLIP-style ablation)."""

    vocab_size: int = 30522
    dim: int = 128
    embed_dim: int = 64
    text_layers: int = 2
    fusion_layers: int = 2
    heads: int = 4
    max_length: int = 40
    dropout: float = 0.0
    fusion: bool = True

    def as_dict(self) -> dict:
        return asdict(self)


class ImageEncoder(nn.Module):
    """A small CNN: (B, 1, 28, 28) -> (B, 1 + 16, dim) tokens, a 4×4 grid after a global (mean) token."""

    def __init__(self, dim: int):
        super().__init__()
        # Strided convolutions (28 -> 14 -> 7 -> 4) cost a quarter of convolution + pooling on a CPU.
        self.conv = nn.Sequential(nn.Conv2d(1, 32, 3, stride=2, padding=1), nn.GELU(),
                                  nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.GELU(),
                                  nn.Conv2d(64, dim, 3, stride=2, padding=1))
        self.position = nn.Parameter(torch.zeros(1, 16, dim))
        self.norm = nn.LayerNorm(dim)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        if pixels.ndim != 4 or pixels.shape[1:] != (1, 28, 28):
            raise ValueError(f"images must be (B, 1, 28, 28), got {tuple(pixels.shape)}")
        patches = self.conv(pixels).flatten(2).transpose(1, 2) + self.position
        return self.norm(torch.cat([patches.mean(1, keepdim=True), patches], dim=1))


class ALBEF(nn.Module):
    """Image encoder, text encoder (BERT), fusion encoder with cross-attention, and the ITC/ITM/MLM heads.

    special_ids: the tokenizer's ``mask_token_id`` and ``pad_token_id``.
    """

    def __init__(self, config: AlbefConfig, mask_token_id: int, pad_token_id: int = 0):
        super().__init__()
        self.config, self.mask_token_id = config, int(mask_token_id)
        self.image_encoder = ImageEncoder(config.dim)
        self.text_encoder = BertModel(BertConfig(
            vocab_size=config.vocab_size, hidden_size=config.dim, num_hidden_layers=config.text_layers,
            num_attention_heads=config.heads, intermediate_size=2 * config.dim, pad_token_id=pad_token_id,
            max_position_embeddings=config.max_length, hidden_dropout_prob=config.dropout,
            attention_probs_dropout_prob=config.dropout), add_pooling_layer=False)
        self.image_proj = nn.Linear(config.dim, config.embed_dim)
        self.text_proj = nn.Linear(config.dim, config.embed_dim)
        self.log_scale = nn.Parameter(torch.tensor(float(np.log(1 / 0.07))))  # 1 / temperature, as in CLIP
        if config.fusion:
            # BERT's own cross-attention layers exist only in decoder (causal) mode; a Transformer
            # decoder layer without a causal mask is the bidirectional self- + cross-attention ALBEF uses.
            layer = nn.TransformerDecoderLayer(config.dim, config.heads, 2 * config.dim, dropout=config.dropout,
                                               activation="gelu", batch_first=True)
            self.fusion = nn.TransformerDecoder(layer, config.fusion_layers)
            self.itm_head = nn.Linear(config.dim, 2)
            self.mlm_transform = nn.Sequential(nn.Linear(config.dim, config.dim), nn.GELU(), nn.LayerNorm(config.dim))
            self.mlm_bias = nn.Parameter(torch.zeros(config.vocab_size))

    @property
    def temperature(self) -> torch.Tensor:
        return 1.0 / self.log_scale.clamp(max=np.log(100.0)).exp()

    def encode_text(self, input_ids, attention_mask) -> torch.Tensor:
        return self.text_encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def image_embedding(self, image_tokens) -> torch.Tensor:
        return F.normalize(self.image_proj(image_tokens[:, 0]), dim=-1)

    def text_embedding(self, text_hidden) -> torch.Tensor:
        return F.normalize(self.text_proj(text_hidden[:, 0]), dim=-1)

    def fuse(self, text_hidden, attention_mask, image_tokens) -> torch.Tensor:
        """(B, L, dim): the caption's tokens after attending to themselves and to the image's tokens."""
        if not self.config.fusion:
            raise ValueError("this model was built with fusion=False (ITC only): it has no fusion encoder")
        return self.fusion(text_hidden, image_tokens, tgt_key_padding_mask=~attention_mask.bool())

    def itm_logits(self, fused) -> torch.Tensor:
        return self.itm_head(fused[:, 0])

    def mlm_logits(self, fused) -> torch.Tensor:
        words = self.text_encoder.embeddings.word_embeddings.weight  # tied to the input embeddings, as in BERT
        return self.mlm_transform(fused) @ words.T + self.mlm_bias

    def losses(self, pixels, input_ids, attention_mask, special_tokens_mask, same=None, generator=None,
               mlm: bool = True) -> dict:
        """The batch's losses: {'itc'} for the ablation, {'itc', 'itm', 'mlm'} for ALBEF (no 'mlm' if ``mlm=False``)."""
        image_tokens = self.image_encoder(pixels)
        text_hidden = self.encode_text(input_ids, attention_mask)
        itc, logits = itc_loss(self.image_embedding(image_tokens), self.text_embedding(text_hidden), self.temperature)
        out = {"itc": itc}
        if not self.config.fusion:
            return out
        negative_text = sample_hard_negatives(logits, same, generator)          # for each image
        negative_image = sample_hard_negatives(logits.T, same, generator)       # for each caption
        fused = self.fuse(torch.cat([text_hidden, text_hidden[negative_text], text_hidden]),
                          torch.cat([attention_mask, attention_mask[negative_text], attention_mask]),
                          torch.cat([image_tokens, image_tokens, image_tokens[negative_image]]))
        labels = torch.cat([torch.ones(len(pixels)), torch.zeros(2 * len(pixels))]).long().to(pixels.device)
        out["itm"] = F.cross_entropy(self.itm_logits(fused), labels)
        if not mlm:
            return out
        masked, targets = mask_tokens(input_ids.cpu(), special_tokens_mask.cpu(), self.mask_token_id,
                                      self.config.vocab_size, generator=generator)
        masked, targets = masked.to(pixels.device), targets.to(pixels.device)
        fused = self.fuse(self.encode_text(masked, attention_mask), attention_mask, image_tokens)
        picked = targets != -100
        out["mlm"] = F.cross_entropy(self.mlm_logits(fused[picked]), targets[picked]) if picked.any() \
            else torch.zeros((), device=pixels.device)
        return out


# ---------------------------------------------------------------- training
def fit_albef(model: ALBEF, pixels, tokens: dict, n_epochs: int, batch_size: int = 64, lr: float = 1e-3,
              groups=None, seed: int = 0, device="cpu", loss_weights: dict | None = None) -> dict:
    """Train with the (weighted) sum of the model's losses; returns per-epoch mean losses and seconds.

    groups: optional (N,) ids, equal for items whose captions are identical (never each other's negatives).
    loss_weights: e.g. {"itc": 0, "mlm": 0} trains ITM alone (a control); a loss of weight 0 is still
    reported if it is computed (ITC, whose similarities pick the negatives), MLM is then skipped.
    """
    weights = {"itc": 1.0, "itm": 1.0, "mlm": 1.0, **(loss_weights or {})}
    if set(weights) - {"itc", "itm", "mlm"} or any(w < 0 for w in weights.values()):
        raise ValueError(f"loss_weights takes non-negative weights for 'itc', 'itm' and 'mlm', got {loss_weights}")
    if n_epochs <= 0 or batch_size < 2:
        raise ValueError(f"n_epochs must be positive and batch_size at least 2, got {n_epochs} and {batch_size}")
    generator = torch.Generator().manual_seed(seed)
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    n_steps = n_epochs * int(np.ceil(len(pixels) / batch_size))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=n_steps, pct_start=0.1)
    groups = None if groups is None else torch.as_tensor(np.asarray(groups))
    history, start = [], time.perf_counter()
    for epoch in range(n_epochs):
        order = torch.randperm(len(pixels), generator=generator)
        sums, batches = {}, 0
        for batch in order.split(batch_size):
            if len(batch) < 2:
                continue
            same = None if groups is None else (groups[batch, None] == groups[None, batch]).to(device)
            parts = model.losses(pixels[batch].to(device), tokens["input_ids"][batch].to(device),
                                 tokens["attention_mask"][batch].to(device), tokens["special_tokens_mask"][batch],
                                 same=same, generator=generator, mlm=weights["mlm"] > 0)
            loss = sum(weights[name] * value for name, value in parts.items())
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)   # three losses at the peak learning rate can spike
            optimizer.step()
            schedule.step()
            for name, value in parts.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach())
            batches += 1
        history.append({"epoch": epoch + 1, **{name: total / batches for name, total in sums.items()}})
    model.eval()
    return {"history": history, "seconds": time.perf_counter() - start}


def load_or_train_albef(name: str, config: AlbefConfig, words: CaptionTokenizer, pixels, tokens: dict, n_epochs: int,
                        seed: int, groups=None, batch_size: int = 64, lr: float = 1e-3, device="cpu",
                        loss_weights: dict | None = None):
    """``(model, info)``: trained weights from the course's model cache, keyed by the settings and a hash of the data."""
    from course_utils.model_cache import load_or_train

    digest = hashlib.sha256(pixels.numpy().tobytes())
    digest.update(tokens["input_ids"].numpy().tobytes())
    digest.update(np.asarray(words.pieces).tobytes() + np.asarray([] if groups is None else groups).tobytes())
    key = {"model": config.as_dict(), "n_epochs": n_epochs, "seed": seed, "batch_size": batch_size, "lr": lr,
           "data": digest.hexdigest()[:20]}
    if loss_weights:   # only when set, so that the keys of models trained with every loss do not move
        key["loss_weights"] = dict(sorted(loss_weights.items()))

    def make_model():
        torch.manual_seed(seed)
        return ALBEF(config, words.mask_token_id, words.pad_token_id)

    model, info = load_or_train(name, key, make_model, lambda model: fit_albef(
        model, pixels, tokens, n_epochs, batch_size, lr, groups, seed, device, loss_weights))
    return model.to(device), info


# ---------------------------------------------------------------- using the trained model
@torch.no_grad()
def encode_items(model: ALBEF, pixels, tokens: dict, batch_size: int = 512) -> dict:
    """Per item: image tokens, text hidden states and both ITC embeddings (row order = input order)."""
    device = next(model.parameters()).device
    model.eval()
    parts = {"image_tokens": [], "text_hidden": [], "image_emb": [], "text_emb": []}
    for start in range(0, len(pixels), batch_size):
        chunk = slice(start, start + batch_size)
        image_tokens = model.image_encoder(pixels[chunk].to(device))
        text_hidden = model.encode_text(tokens["input_ids"][chunk].to(device),
                                        tokens["attention_mask"][chunk].to(device))
        for name, value in (("image_tokens", image_tokens), ("text_hidden", text_hidden),
                            ("image_emb", model.image_embedding(image_tokens)),
                            ("text_emb", model.text_embedding(text_hidden))):
            parts[name].append(value.cpu())
    return {name: torch.cat(values) for name, values in parts.items()} | {"attention_mask": tokens["attention_mask"]}


@torch.no_grad()
def itm_probability(model: ALBEF, encoded: dict, image_index, text_index, batch_size: int = 1024) -> np.ndarray:
    """P(match) from the ITM head for the pairs (image_index[n], text_index[n]) of ``encoded`` items."""
    image_index, text_index = np.asarray(image_index).ravel(), np.asarray(text_index).ravel()
    if image_index.shape != text_index.shape:
        raise ValueError(f"image_index and text_index must pair up, got {image_index.shape} and {text_index.shape}")
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(image_index), batch_size):
        i, t = image_index[start:start + batch_size], text_index[start:start + batch_size]
        fused = model.fuse(encoded["text_hidden"][t].to(device), encoded["attention_mask"][t].to(device),
                           encoded["image_tokens"][i].to(device))
        out.append(torch.softmax(model.itm_logits(fused), dim=-1)[:, 1].cpu())
    return torch.cat(out).numpy()


@torch.no_grad()
def fused_embedding(model: ALBEF, encoded: dict, batch_size: int = 1024) -> np.ndarray:
    """(N, dim): the fusion encoder's [CLS] output for each item's own image and caption."""
    device, out = next(model.parameters()).device, []
    for start in range(0, len(encoded["image_tokens"]), batch_size):
        chunk = slice(start, start + batch_size)
        fused = model.fuse(encoded["text_hidden"][chunk].to(device), encoded["attention_mask"][chunk].to(device),
                           encoded["image_tokens"][chunk].to(device))
        out.append(fused[:, 0].cpu())
    return torch.cat(out).numpy()


def itm_auc(model: ALBEF, encoded: dict, groups, seed: int = 0, similarity=None) -> dict:
    """How well the ITM head tells each item's own caption from a negative: ROC AUC (0.5 = chance).

    Per image, one positive (its caption) and two negatives that are never look-alikes (``groups``):
    a random caption, and the caption most similar to the image by ``similarity`` (N × N, rows =
    images; default: this model's ITC towers), the hardest negative. Pass another model's
    similarity to test two heads on the same pairs.
    """
    from sklearn.metrics import roc_auc_score

    groups = np.asarray(groups)
    n = len(groups)
    if similarity is None:
        similarity = (encoded["image_emb"] @ encoded["text_emb"].T).numpy()
    similarity = np.asarray(similarity)
    if similarity.shape != (n, n):
        raise ValueError(f"similarity must be {n} × {n} (images × captions), got {similarity.shape}")
    allowed = groups[None, :] != groups[:, None]
    if not allowed.any(1).all():
        raise ValueError("every item needs at least one caption outside its look-alike group")
    rng = np.random.default_rng(seed)
    random_negative = np.array([rng.choice(np.flatnonzero(row)) for row in allowed])
    hardest_negative = np.where(allowed, similarity, -np.inf).argmax(1)
    positive = itm_probability(model, encoded, np.arange(n), np.arange(n))
    auc = lambda negatives: roc_auc_score(np.r_[np.ones(n), np.zeros(n)],
                                          np.r_[positive, itm_probability(model, encoded, np.arange(n), negatives)])
    return {"vs a random caption": auc(random_negative), "vs the hardest caption": auc(hardest_negative),
            "P(match) spread (sd)": float(positive.std())}


def ranks_of_matches(similarity: np.ndarray) -> np.ndarray:
    """1-based rank of each row's diagonal entry among its row (ties count against it)."""
    similarity = np.asarray(similarity)
    if similarity.ndim != 2 or similarity.shape[0] != similarity.shape[1]:
        raise ValueError(f"similarity must be square (queries × candidates, match on the diagonal), "
                         f"got {similarity.shape}")
    return (similarity >= np.diag(similarity)[:, None]).sum(axis=1)


def rerank_ranks(model: ALBEF, encoded: dict, similarity: np.ndarray, k: int, queries: str) -> np.ndarray:
    """Ranks of the matches after ALBEF's retrieval: the ITC top-k of each query reordered by ITM.

    similarity: (N, N) ITC similarities, rows = images; queries: 'image' (image→text) or
    'text' (text→image). A match outside the top-k keeps its ITC rank.
    """
    if queries not in ("image", "text"):
        raise ValueError(f"queries must be 'image' or 'text', got {queries!r}")
    scores = np.asarray(similarity if queries == "image" else similarity.T)
    n = len(scores)
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and {n}, got {k}")
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    query = np.repeat(np.arange(n), k)
    pairs = (query, top.ravel()) if queries == "image" else (top.ravel(), query)
    itm = itm_probability(model, encoded, *pairs).reshape(n, k)
    reordered = np.take_along_axis(top, np.argsort(-itm, axis=1, kind="stable"), axis=1)
    ranks = ranks_of_matches(scores)
    found = reordered == np.arange(n)[:, None]
    ranks[found.any(1)] = found.argmax(1)[found.any(1)] + 1
    return ranks


@torch.no_grad()
def fill_masked_word(model: ALBEF, pixels, input_ids, attention_mask, position, candidate_ids) -> np.ndarray:
    """Probabilities (B, C) of the candidate words at ``position[b]`` of each caption, that token masked.

    The caption is read with the given images; pass other images to see what the image changes.
    """
    device = next(model.parameters()).device
    position = torch.as_tensor(np.asarray(position)).long()
    if position.shape != (len(input_ids),) or (position < 1).any() or (position >= input_ids.shape[1]).any():
        raise ValueError("position must hold one token index (after [CLS]) per caption")
    ids = input_ids.clone()
    ids[torch.arange(len(ids)), position] = model.mask_token_id
    fused = model.fuse(model.encode_text(ids.to(device), attention_mask.to(device)), attention_mask.to(device),
                       model.image_encoder(pixels.to(device)))
    logits = model.mlm_logits(fused[torch.arange(len(ids)), position.to(device)])
    return torch.softmax(logits[:, torch.as_tensor(candidate_ids)], dim=-1).cpu().numpy()


# ---------------------------------------------------------------- recommending cold items
def cold_item_split(interactions: pd.DataFrame, n_users: int, n_items: int, cold_items) -> Split:
    """Interactions with warm items are the history; those with the held-out (cold) items are the test.

    There is no validation stage: nothing in the recommendation part is tuned.
    """
    frame = interactions[["user", "item", "rating", "timestamp"]]
    cold = np.isin(frame["item"].to_numpy(), np.asarray(cold_items))
    if not cold.any() or cold.all():
        raise ValueError("cold_items must hold some, but not all, of the interacted items")
    return Split(frame[~cold].reset_index(drop=True), frame.iloc[:0], frame[cold].reset_index(drop=True), n_users,
                 n_items, protocol=f"cold-products[{len(np.unique(cold_items)) / n_items:.0%}]")


class ProfileRecommender:
    """Scores candidate items by cosine similarity to the mean embedding of the user's history.

    item_vectors: (n_items, D); candidates: the items that may be recommended (the rest get -inf).
    """

    def __init__(self, item_vectors, candidates, n_params: int | None = None):
        vectors = np.asarray(item_vectors, dtype=np.float64)
        if vectors.ndim != 2 or not np.isfinite(vectors).all():
            raise ValueError(f"item_vectors must be a finite (n_items, D) array, got shape {vectors.shape}")
        self.vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        self.candidates = np.asarray(candidates)
        self.n_params = n_params

    def score(self, users, history) -> np.ndarray:
        profiles = np.asarray(history.matrix[users] @ self.vectors)
        profiles /= np.maximum(np.linalg.norm(profiles, axis=1, keepdims=True), 1e-12)
        scores = np.full((len(users), len(self.vectors)), -np.inf)
        scores[:, self.candidates] = profiles @ self.vectors[self.candidates].T
        return scores


class CategoryPopularity:
    """A cold item has no interactions of its own: score it by how often its category was bought."""

    def __init__(self, categories, candidates):
        self.categories, self.candidates, self.n_params = pd.factorize(np.asarray(categories))[0], np.asarray(candidates), 0

    def fit(self, X: sp.csr_matrix):
        counts = np.asarray(X.sum(axis=0)).ravel()
        self.category_counts = np.bincount(self.categories, weights=counts)
        return self

    def score(self, users, history) -> np.ndarray:
        scores = np.full((len(users), len(self.categories)), -np.inf)
        scores[:, self.candidates] = self.category_counts[self.categories[self.candidates]]
        return scores


def normalised_utility_at_k(scores: np.ndarray, utility: np.ndarray, candidates, k: int = 10) -> np.ndarray:
    """Per user, the true utility of the top-k candidates on a scale from random (0) to the best k (1).

    scores, utility: (n_users, n_items); only ``candidates`` compete. Ties are broken by item order.
    """
    scores, utility = np.asarray(scores)[:, candidates], np.asarray(utility)[:, candidates]
    if scores.shape != utility.shape:
        raise ValueError(f"scores and utility must have the same shape, got {scores.shape} and {utility.shape}")
    if not 1 <= k < scores.shape[1]:
        raise ValueError(f"k must be between 1 and {scores.shape[1] - 1}, got {k}")
    return normalised_utility(utility, np.argsort(-scores, axis=1, kind="stable")[:, :k])


def visual_groups(items: pd.DataFrame) -> np.ndarray:
    """(N,) ids equal for items that look alike in their captions: same category, tone, pattern and cut.

    Such captions differ only in the brand, which no image shows, so they are never used as
    each other's ITM negatives, and they bound how well any model can retrieve the exact item.
    """
    cut = np.where(items["description"].str.contains("relaxed"), "relaxed", "slim")
    key = items["category"] + "|" + items["tone"] + "|" + items["pattern"] + "|" + cut
    return pd.factorize(key)[0]


def attribute_oracle_recall(groups, k: int) -> np.ndarray:
    """Per query, the expected Recall@k of an oracle that sees every visible attribute but not the brand.

    It ranks the g look-alikes of the query (its own group) first, in random order: min(1, k / g).
    """
    sizes = pd.Series(np.asarray(groups)).map(pd.Series(np.asarray(groups)).value_counts()).to_numpy()
    return np.minimum(1.0, k / sizes)


def probe_embeddings(vectors: dict, items: pd.DataFrame, train, test, seed: int = 0) -> pd.DataFrame:
    """What each item embedding holds: linear probes fitted on ``train`` items, scored on ``test`` items.

    vectors: name -> (n_items, D). Rows: accuracy for category, tone, cut and brand (logistic
    regression), R² for the log price (ridge). Columns: the embeddings' names.
    """
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    cut = np.where(items["description"].str.contains("relaxed"), "relaxed", "slim")
    targets = {"category accuracy": items["category"].to_numpy(), "tone accuracy": items["tone"].to_numpy(),
               "cut accuracy": cut, "brand accuracy": items["brand"].to_numpy()}
    table = {}
    for name, v in vectors.items():
        v = np.asarray(v, dtype=np.float64)
        if v.ndim != 2 or len(v) != len(items):
            raise ValueError(f"{name}: vectors must be (n_items={len(items)}, D), got {v.shape}")
        column = {}
        for target, y in targets.items():
            probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=seed))
            column[target] = probe.fit(v[train], y[train]).score(v[test], y[test])
        price = np.log(items["price"].to_numpy())
        column["log-price R²"] = make_pipeline(StandardScaler(), Ridge(1.0)).fit(v[train], price[train]).score(v[test], price[test])
        table[name] = column
    return pd.DataFrame(table)
