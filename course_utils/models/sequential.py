"""Auto-regressive and masked sequence models for next-item prediction (survey Section 2.2, lesson 03).

GRU4Rec (Hidasi et al., 2016) and SASRec (Kang & McAuley, 2018) learn
p(next item | items so far); BERT4Rec (Sun et al., 2019) learns to fill in
masked items from both sides. All three read a user's time-ordered history and
share one training and scoring loop; they differ in the network and the mask.

Inside the networks item ids are shifted by +1: id 0 is padding, and BERT4Rec
uses ``n_items + 1`` as its [MASK] token. Sequences are *left*-padded, so the
most recent item always sits in the last column and positions count from the end.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from course_utils.config import get_device
from course_utils.data.splits import History, Split, check_users
from course_utils.evaluation import validation_metric
from course_utils.training import FitResult, check_finite, count_parameters, fit_loop

PAD = 0
LOSSES = ("ce", "bce")


def pad_sequences(sequences: list[np.ndarray], max_len: int) -> np.ndarray:
    """The last ``max_len`` items of every sequence, shifted by +1 and left-padded with 0.

    sequences: list of 1-D arrays of 0-based item ids. Returns (len(sequences), max_len) int64.

    >>> pad_sequences([np.array([4, 5, 6]), np.array([7])], 2)
    array([[6, 7],
           [0, 8]])
    """
    if max_len <= 0:
        raise ValueError(f"max_len must be positive, got {max_len}")
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    flat = np.concatenate([np.asarray(s, np.int64) for s in sequences] + [np.zeros(0, np.int64)])
    ends = np.cumsum(lengths)
    # Column c of row r holds flat[end_r - max_len + c] when that index still belongs to row r.
    index = ends[:, None] - max_len + np.arange(max_len)[None, :]
    inside = index >= (ends - lengths)[:, None]
    out = np.zeros((len(sequences), max_len), np.int64)
    out[inside] = flat[index[inside]] + 1
    return out


def _small_init(embedding: nn.Embedding) -> nn.Embedding:
    """N(0, 1/dim) weights: with N(0, 1) the first logits are huge and the full softmax starts saturated."""
    nn.init.normal_(embedding.weight, std=embedding.embedding_dim ** -0.5)
    with torch.no_grad():
        if embedding.padding_idx is not None:
            embedding.weight[embedding.padding_idx].zero_()
    return embedding


def attention_mask(is_pad: torch.Tensor, causal: bool, n_heads: int) -> torch.Tensor:
    """Boolean attention mask for ``nn.MultiheadAttention``, True where a position may NOT look.

    is_pad: (B, L) True at padding. Returns (B * n_heads, L, L). Causal masks also
    hide the future. Every position may always see itself: a row with nothing
    visible would turn the softmax into NaN, and NaN spreads even through zero weights.
    """
    batch, length = is_pad.shape
    blocked = is_pad[:, None, :].expand(batch, length, length)
    if causal:
        future = torch.ones(length, length, dtype=torch.bool, device=is_pad.device).triu(1)
        blocked = blocked | future
    blocked = blocked & ~torch.eye(length, dtype=torch.bool, device=is_pad.device)
    return blocked.repeat_interleave(n_heads, dim=0)


class GRU4RecNet(nn.Module):
    """Item embeddings -> GRU: the hidden state after item t summarises items 1..t."""

    def __init__(self, n_items: int, dim: int, n_layers: int, dropout: float):
        super().__init__()
        self.item_emb = _small_init(nn.Embedding(n_items + 2, dim, padding_idx=PAD))
        self.gru = nn.GRU(dim, dim, num_layers=n_layers, batch_first=True,
                          dropout=dropout if n_layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)

    def forward(self, seqs: torch.Tensor) -> torch.Tensor:
        """seqs: (B, L) shifted ids -> (B, L, dim) one state per position."""
        states, _ = self.gru(self.dropout(self.item_emb(seqs)))
        return self.dropout(states)


class SelfAttentionBlock(nn.Module):
    """One pre-norm transformer block: x + Attention(LN(x)), then x + FeedForward(LN(x)).

    ``mask`` decides who may attend to whom; it is the only difference between
    SASRec's causal blocks and BERT4Rec's bidirectional ones.
    """

    def __init__(self, dim: int, n_heads: int, dropout: float):
        super().__init__()
        self.attn_norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, n_heads, batch_first=True)
        self.ff_norm = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.attn_norm(x)
        x = x + self.dropout(self.attn(h, h, h, attn_mask=mask, need_weights=False)[0])
        return x + self.dropout(self.ff(self.ff_norm(x)))


class TransformerNet(nn.Module):
    """Item + position embeddings -> self-attention blocks; ``causal`` makes it SASRec, else BERT4Rec."""

    def __init__(self, n_items: int, max_len: int, dim: int, n_blocks: int, n_heads: int, dropout: float,
                 causal: bool):
        super().__init__()
        self.causal, self.n_heads = causal, n_heads
        self.item_emb = _small_init(nn.Embedding(n_items + 2, dim, padding_idx=PAD))
        self.pos_emb = _small_init(nn.Embedding(max_len, dim))
        # Pre-norm blocks train stably without learning-rate warm-up.
        self.blocks = nn.ModuleList(SelfAttentionBlock(dim, n_heads, dropout) for _ in range(n_blocks))
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, seqs: torch.Tensor) -> torch.Tensor:
        """seqs: (B, L) shifted ids, L <= max_len -> (B, L, dim)."""
        is_pad = seqs == PAD
        length = seqs.shape[1]
        # Left padding: the last column is position max_len-1 whatever the sequence length.
        positions = torch.arange(self.pos_emb.num_embeddings - length, self.pos_emb.num_embeddings,
                                 device=seqs.device)
        x = self.dropout(self.item_emb(seqs) + self.pos_emb(positions)[None])
        x = x * ~is_pad[..., None]
        mask = attention_mask(is_pad, self.causal, self.n_heads)
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x)


def full_softmax_loss(hidden: torch.Tensor, targets: torch.Tensor, item_weight: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the target among ALL items. hidden: (N, d); targets: (N,) 0-based; item_weight: (n_items, d)."""
    return F.cross_entropy(hidden @ item_weight.T, targets)


def sampled_bce_loss(hidden: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor,
                     item_weight: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy: target scored up, ONE sampled negative per position scored down (SASRec's loss)."""
    positive = (hidden * item_weight[targets]).sum(-1)
    negative = (hidden * item_weight[negatives]).sum(-1)
    return (F.softplus(-positive) + F.softplus(negative)).mean()


def sample_negatives(seen: torch.Tensor, users: torch.Tensor, rng: np.random.Generator,
                     n_retries: int = 5) -> torch.Tensor:
    """One uniform item per entry of ``users`` that this user has not seen. seen: (n_users, n_items) bool."""
    negatives = torch.as_tensor(rng.integers(0, seen.shape[1], size=len(users)), device=seen.device)
    for _ in range(n_retries):  # rejection sampling; the few clashes left after 5 rounds do no harm
        clash = seen[users, negatives]
        if not clash.any():
            break
        negatives[clash] = torch.as_tensor(rng.integers(0, seen.shape[1], size=int(clash.sum())),
                                           device=seen.device)
    return negatives


class _SequentialRecommender:
    """Shared fit / score / sample for the three models; subclasses build the network and the training batch."""

    name = "sequential"

    def __init__(self, max_len: int, dim: int, dropout: float, loss: str, lr: float, l2: float,
                 batch_size: int, n_epochs: int, patience: int, eval_every: int, seed: int, device):
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES} (full softmax or sampled binary), got {loss!r}")
        if max_len < 2 or dim <= 0:
            raise ValueError(f"need max_len >= 2 and dim > 0, got max_len={max_len}, dim={dim}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        check_finite(lr=lr, l2=l2, dropout=dropout)
        if lr <= 0 or l2 < 0 or batch_size <= 0 or n_epochs <= 0:
            raise ValueError(f"need lr > 0, l2 >= 0, batch_size > 0, n_epochs > 0; "
                             f"got {lr}, {l2}, {batch_size}, {n_epochs}")
        self.max_len, self.dim, self.dropout, self.loss = max_len, dim, dropout, loss
        self.lr, self.l2, self.batch_size, self.n_epochs = lr, l2, batch_size, n_epochs
        self.patience, self.eval_every, self.seed = patience, eval_every, seed
        self.device = torch.device(device) if device is not None else get_device()

    # --- what subclasses provide -------------------------------------------------------------
    def _build(self, n_items: int) -> nn.Module:
        raise NotImplementedError

    def _inputs_and_targets(self, rows: torch.Tensor, rng: np.random.Generator):
        """From padded (B, max_len + 1) rows: network inputs (B, L) and targets (B, L), 0 where no loss."""
        raise NotImplementedError

    def _query(self, padded: torch.Tensor) -> torch.Tensor:
        """Turn (B, max_len) histories into the input whose last output scores the next item."""
        return padded

    # --- training ------------------------------------------------------------------------------
    def _batch_loss(self, rows: torch.Tensor, users: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        inputs, targets = self._inputs_and_targets(rows, rng)
        hidden = self.net_(inputs)
        keep = targets != PAD
        if not keep.any():  # e.g. a cloze batch where nothing was masked: a mean over nothing would be NaN
            return hidden.sum() * 0.0
        hidden, targets = hidden[keep], targets[keep] - 1  # back to 0-based ids
        item_weight = self.net_.item_emb.weight[1:self.n_items_ + 1]
        if self.loss == "ce":
            return full_softmax_loss(hidden, targets, item_weight)
        negatives = sample_negatives(self.seen_, users[:, None].expand_as(keep)[keep], rng)
        return sampled_bce_loss(hidden, targets, negatives, item_weight)

    def fit(self, split: Split, validate: bool = True) -> "_SequentialRecommender":
        """Train on every next-item target inside the TRAINING sequences, early-stopping on validation NDCG@10."""
        sequences = split.history("valid").sequences
        if sum(len(s) for s in sequences) == 0:
            raise ValueError("the training sequences are empty; cannot fit a sequential model")
        if max(len(s) for s in sequences) < 2:
            raise ValueError("no user has at least 2 training items, so there is no next item to learn from")
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        self.n_items_ = split.n_items
        self.net_ = self._build(split.n_items).to(self.device)
        optimizer = torch.optim.Adam(self.net_.parameters(), lr=self.lr, weight_decay=self.l2)
        # One padded row per user, built once: max_len inputs plus the item that follows the last one.
        rows_all = torch.as_tensor(pad_sequences(sequences, self.max_len + 1), device=self.device)
        self.seen_ = torch.as_tensor(split.train_matrix().toarray() > 0, device=self.device)
        users_all = np.flatnonzero((rows_all != PAD).sum(1).cpu().numpy() >= 2)

        def train_epoch(epoch: int) -> float:
            self.net_.train()
            order = torch.as_tensor(rng.permutation(users_all), device=self.device)
            total = 0.0
            for start in range(0, len(order), self.batch_size):
                users = order[start:start + self.batch_size]
                loss = self._batch_loss(rows_all[users], users, rng)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += loss.item() * len(users)
            return total / len(order)

        validate_model = validation_metric(split)

        def valid_ndcg() -> float:
            return validate_model(self)

        self.fit_result_: FitResult = fit_loop(
            train_epoch, self.n_epochs, valid_ndcg if validate else None, patience=self.patience,
            eval_every=self.eval_every, module=self.net_, desc=f"{self.name}-{self.loss}")
        return self

    # --- scoring and generation ----------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "net_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted yet: call fit(split) first")

    @torch.no_grad()
    def _next_logits(self, padded: np.ndarray) -> torch.Tensor:
        """(B, max_len) padded shifted histories -> (B, n_items) logits for the next item."""
        self.net_.eval()
        hidden = self.net_(self._query(torch.as_tensor(padded, device=self.device)))[:, -1]
        return hidden @ self.net_.item_emb.weight[1:self.n_items_ + 1].T

    def score(self, users: np.ndarray, history: History) -> np.ndarray:
        """(len(users), n_items) logits for the item that follows each user's history."""
        self._check_fitted()
        users = check_users(users, len(history.sequences))
        padded = pad_sequences([history.sequences[u] for u in users], self.max_len)
        return self._next_logits(padded).cpu().numpy()

    def sample(self, prompts: list[np.ndarray], n_steps: int, temperature: float = 1.0,
               seed: int = 0) -> np.ndarray:
        """Continue every prompt by ``n_steps`` items drawn from softmax(logits / temperature).

        Ancestral sampling: each drawn item is appended and conditions the next draw.
        Items already in the sequence are never drawn again. Returns (len(prompts), n_steps) 0-based ids.
        """
        check_finite(temperature=temperature)  # NaN logits would make every draw item 0
        if temperature <= 0 or isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)) \
                or n_steps <= 0:
            raise ValueError(f"need temperature > 0 and a whole n_steps > 0, got {temperature} and {n_steps!r}")
        self._check_fitted()
        prompts = self._checked_prompts(prompts)
        rng = np.random.default_rng(seed)
        padded = pad_sequences(prompts, self.max_len)
        seen = np.zeros((len(prompts), self.n_items_), bool)
        seen[np.repeat(np.arange(len(prompts)), [len(p) for p in prompts]), np.concatenate(prompts)] = True
        unseen = self.n_items_ - seen.sum(axis=1)
        if (unseen < n_steps).any():  # drawing more would have to repeat an item
            raise ValueError(f"n_steps={n_steps}, but a prompt leaves only {unseen.min()} unseen items to draw")
        drawn = np.zeros((len(prompts), n_steps), np.int64)
        for step in range(n_steps):
            logits = self._next_logits(padded).cpu().numpy().astype(np.float64) / temperature
            logits[seen] = -np.inf
            # Gumbel-max trick: argmax(logits + Gumbel noise) is a draw from softmax(logits).
            drawn[:, step] = np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)
            seen[np.arange(len(prompts)), drawn[:, step]] = True
            padded = np.concatenate([padded[:, 1:], drawn[:, step:step + 1] + 1], axis=1)
        return drawn

    def _checked_prompts(self, prompts) -> list[np.ndarray]:
        """Prompts as int64 arrays of item ids in [0, n_items); id -1 would silently become padding."""
        if isinstance(prompts, np.ndarray) and prompts.ndim == 2:
            prompts = list(prompts)
        if not isinstance(prompts, (list, tuple)) or len(prompts) == 0:
            raise ValueError("prompts must be a non-empty list of item-id sequences, one per sequence to continue")
        checked = []
        for i, prompt in enumerate(prompts):
            prompt = np.asarray(prompt)
            if prompt.ndim != 1 or not (np.issubdtype(prompt.dtype, np.integer) or prompt.size == 0):
                raise TypeError(f"prompt {i} must be a 1-D sequence of integer item ids, got {prompt!r}")
            if prompt.size and (prompt.min() < 0 or prompt.max() >= self.n_items_):
                raise ValueError(f"prompt {i} has item ids outside [0, {self.n_items_}): "
                                 f"range [{prompt.min()}, {prompt.max()}]")
            checked.append(prompt.astype(np.int64))
        return checked

    @property
    def n_params(self) -> int:
        return count_parameters(self.net_)


class _NextItemMixin:
    """Auto-regressive objective: every position predicts the item that follows it."""

    def _inputs_and_targets(self, rows, rng):
        inputs, targets = rows[:, :-1], rows[:, 1:].clone()
        targets[inputs == PAD] = PAD  # nothing to condition on yet
        return inputs, targets


class GRU4Rec(_NextItemMixin, _SequentialRecommender):
    """Recurrent next-item model (Hidasi et al., 2016), here trained on whole user histories."""

    name = "GRU4Rec"

    def __init__(self, max_len: int = 50, dim: int = 64, n_layers: int = 1, dropout: float = 0.2,
                 loss: str = "ce", lr: float = 5e-3, l2: float = 0.0, batch_size: int = 64,
                 n_epochs: int = 40, patience: int = 5, eval_every: int = 1, seed: int = 0, device=None):
        super().__init__(max_len, dim, dropout, loss, lr, l2, batch_size, n_epochs, patience, eval_every, seed,
                         device)
        if n_layers <= 0:
            raise ValueError(f"n_layers must be positive, got {n_layers}")
        self.n_layers = n_layers

    def _build(self, n_items):
        return GRU4RecNet(n_items, self.dim, self.n_layers, self.dropout)


class SASRec(_NextItemMixin, _SequentialRecommender):
    """Causal self-attention next-item model (Kang & McAuley, 2018)."""

    name = "SASRec"

    def __init__(self, max_len: int = 50, dim: int = 64, n_blocks: int = 2, n_heads: int = 1,
                 dropout: float = 0.2, loss: str = "ce", lr: float = 5e-3, l2: float = 0.0,
                 batch_size: int = 64, n_epochs: int = 40, patience: int = 5, eval_every: int = 1,
                 seed: int = 0, device=None):
        super().__init__(max_len, dim, dropout, loss, lr, l2, batch_size, n_epochs, patience, eval_every, seed,
                         device)
        if n_blocks <= 0 or n_heads <= 0 or dim % n_heads:
            raise ValueError(f"need n_blocks > 0 and n_heads dividing dim; got n_blocks={n_blocks}, "
                             f"n_heads={n_heads}, dim={dim}")
        self.n_blocks, self.n_heads = n_blocks, n_heads

    def _build(self, n_items):
        return TransformerNet(n_items, self.max_len, self.dim, self.n_blocks, self.n_heads, self.dropout,
                              causal=True)


class BERT4Rec(SASRec):
    """Bidirectional self-attention trained to fill in masked items (Sun et al., 2019).

    Training hides a random ``mask_prob`` share of each sequence behind [MASK] and
    predicts the hidden items from both sides (the cloze task). To recommend, a
    [MASK] is appended after the history and its prediction is read.
    """

    name = "BERT4Rec"

    def __init__(self, max_len: int = 50, dim: int = 64, n_blocks: int = 2, n_heads: int = 1,
                 dropout: float = 0.2, mask_prob: float = 0.2, loss: str = "ce", lr: float = 5e-3,
                 l2: float = 0.0, batch_size: int = 64, n_epochs: int = 60, patience: int = 5,
                 eval_every: int = 1, seed: int = 0, device=None):
        super().__init__(max_len, dim, n_blocks, n_heads, dropout, loss, lr, l2, batch_size, n_epochs, patience,
                         eval_every, seed, device)
        if not 0 < mask_prob < 1:
            raise ValueError(f"mask_prob must lie in (0, 1), got {mask_prob}")
        self.mask_prob = mask_prob

    def _build(self, n_items):
        return TransformerNet(n_items, self.max_len, self.dim, self.n_blocks, self.n_heads, self.dropout,
                              causal=False)

    def _inputs_and_targets(self, rows, rng):
        seqs = rows[:, 1:]  # the last max_len items, as at inference time
        is_item = seqs != PAD
        masked = torch.as_tensor(rng.random(seqs.shape) < self.mask_prob, device=seqs.device) & is_item
        # Also hide the last item of some rows: that is exactly the inference-time task.
        last = torch.as_tensor(rng.random(len(seqs)) < self.mask_prob, device=seqs.device)
        masked[:, -1] |= last & is_item[:, -1]
        inputs = seqs.masked_fill(masked, self.n_items_ + 1)
        targets = seqs.masked_fill(~masked, PAD)
        return inputs, targets

    def _query(self, padded):
        mask = torch.full((len(padded), 1), self.n_items_ + 1, dtype=padded.dtype, device=padded.device)
        return torch.cat([padded[:, 1:], mask], dim=1)
