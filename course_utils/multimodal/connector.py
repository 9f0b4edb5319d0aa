"""A LLaVA-style connector: a frozen image encoder, a trained projector, a frozen LLM (survey Section 4.4; lesson 18).

LLaVA (Liu et al., 2023) turns an image into a few *visual tokens*: the frozen
CLIP vision tower's features, mapped by a projector into the LLM's input
embedding space, then placed in front of the embedded text prompt. In its first
stage only the projector trains, on image→caption pairs, with the usual
next-token loss on the caption tokens alone. LLaVA used a linear projector;
LLaVA-1.5 (Liu et al., 2024) a two-layer MLP with a GELU.

Shapes used throughout (H: the LLM's hidden size, 576 for SmolLM2-135M)::

    features = visual_features(clip, images, grid)   # (N, 1 + grid², width): CLS + pooled patch tokens
    projector = make_projector("mlp", width, H)      # (..., width) -> (..., H): one visual token per feature token
    batch = assemble_inputs(visual_tokens, prompt_embeds, targets, embed, eos_id, pad_id)
    #   inputs_embeds (B, L, H) = [visual tokens | prompt | caption + eos | padding]
    #   labels (B, L): the caption's token ids (and eos), -100 on visual, prompt and padding positions
    captions = describe(llm, tokenizer, projector, features, prompt)   # generation from inputs_embeds

The LLM and the image encoder stay frozen; ``load_connector`` trains the
projector once per configuration (the CLIP configuration included) and keeps
it in the course's model cache.
"""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from course_utils.model_cache import load_or_train

MODEL_NAME = "lesson18-connector"
KINDS = ("linear", "mlp")
IMAGE = "<image>"  # where the visual tokens go in the prompt, as in LLaVA
PROMPT = "Product photo: <image> Category:"
# One caption-loss step (batch 8, about 16 positions) costs about 2 CPU-seconds of SmolLM2 forward and backward on
# one core, so FAST mode affords 6 steps per projector and full mode 40: far too few to teach a frozen LLM a new
# format from scratch. Three choices, each measured on validation products (train products the projector did not
# fit), make the few steps count:
#   * the caption starts with the category word right after "Category:" ("coat. Dark plain coat"), where the title
#     put it third, behind a tone and a pattern the LLM had to write first (0-7% free-generation hits on titles,
#     with stage 0 alone or 6-12 steps at lr 1e-3);
#   * stage 0 (warm_start): a closed-form ridge fit sends each image's visual tokens to its category word's embedding;
#   * a small learning rate (3e-4: 22% free-generation hits on validation after 12 steps; 3e-3 and 1e-2: 0%).
# The brand is left out of the caption: it is drawn at random per product, so no image can predict it.
# "llm" is completed by load_connector with the loaded model's own id, so an online LLM never meets a projector
# trained for another.
FAST_CONFIG = {"kind": "mlp", "grid": 1, "prompt": PROMPT, "captions": "category. title without brand",
               "warm_start": "category word", "ridge_l2": 1.0, "steps": 6, "batch_size": 8, "lr": 3e-4, "seed": 0,
               "llm": "smollm2-135m"}
DEFAULT_CONFIG = {**FAST_CONFIG, "steps": 40}


def training_caption(category_word: str, title: str) -> str:
    """The caption a projector learns to write: the category word, then the title without its brand.

    >>> training_caption("coat", "Dark plain coat by Miro")
    'coat. Dark plain coat'
    """
    if not category_word.strip() or not title.strip():
        raise ValueError(f"need a category word and a title, got {category_word!r} and {title!r}")
    return f"{category_word}. {title.split(' by ')[0].strip()}"


def default_config(kind: str = "mlp", fast: bool | None = None) -> dict:
    """The connector's training configuration for ``kind`` ("linear" or "mlp"), FAST or full (a copy)."""
    from course_utils.config import is_fast

    if kind not in KINDS:
        raise ValueError(f"unknown projector kind {kind!r}: use one of {KINDS}")
    chosen = FAST_CONFIG if (is_fast() if fast is None else fast) else DEFAULT_CONFIG
    return {**chosen, "kind": kind}


# ---------------------------------------------------------------- the frozen image encoder
def visual_features(clip, images, grid: int = 1, batch_size: int = 512) -> torch.Tensor:
    """(N, 28, 28) uint8 images -> (N, 1 + grid², width) float32: the vision tower's CLS token and its patch tokens
    average-pooled to a ``grid`` × ``grid`` map, all after the tower's final LayerNorm (before CLIP's projection).
    """
    from course_utils.multimodal.clip import images_to_tensor

    if not isinstance(grid, int) or grid < 1:
        raise ValueError(f"grid must be a positive integer, got {grid!r}")
    pixels = images_to_tensor(clip, images)  # raises a clear error on a wrong image size or dtype
    if len(pixels) == 0:
        raise ValueError("no images given: got an empty array")
    visual = clip.visual
    side = int(round((visual.grid_size[0] if hasattr(visual, "grid_size") else 0)))
    if side < grid:
        raise ValueError(f"grid {grid} is finer than the tower's {side}×{side} patches")
    out, was, seen = [], visual.output_tokens, {}
    visual.output_tokens = True  # open_clip's VisionTransformer then also returns its patch tokens
    # The CLS token after the final LayerNorm is what CLIP projects; a hook keeps it before that projection.
    hook = visual.ln_post.register_forward_hook(lambda module, args, output: seen.update(x=output))
    try:
        with torch.inference_mode():
            for start in range(0, len(pixels), batch_size):
                _, tokens = visual(pixels[start:start + batch_size])  # (b, side², width), after ln_post
                b, _, width = tokens.shape
                cls = seen["x"][:, :1]  # (b, 1, width)
                patches = tokens.transpose(1, 2).reshape(b, width, side, side)
                pooled = F.adaptive_avg_pool2d(patches, grid).flatten(2).transpose(1, 2)
                out.append(torch.cat([cls, pooled], dim=1).float())
    finally:
        visual.output_tokens = was
        hook.remove()
    return torch.cat(out)


# ---------------------------------------------------------------- the projector
def make_projector(kind: str, in_dim: int, out_dim: int) -> nn.Module:
    """LLaVA's linear projector ("linear") or LLaVA-1.5's two-layer MLP with a GELU ("mlp"): (..., in) -> (..., out)."""
    if kind not in KINDS:
        raise ValueError(f"unknown projector kind {kind!r}: use one of {KINDS}")
    if in_dim < 1 or out_dim < 1:
        raise ValueError(f"projector sizes must be positive, got {in_dim} -> {out_dim}")
    if kind == "linear":
        return nn.Linear(in_dim, out_dim)
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))


def match_scale(projector: nn.Module, features: torch.Tensor, target_std: float) -> nn.Module:
    """Rescale the projector's last layer so its outputs on ``features`` start with the spread of word embeddings.

    A fresh projector emits vectors several times larger than the LLM's token embeddings, which throws the
    frozen LLM off before any learning; starting at the embeddings' scale lets the first steps teach content.
    """
    last = [m for m in projector.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        spread = projector(features.reshape(-1, features.shape[-1])[:4096]).std().item()
        last.weight.mul_(target_std / spread)
        last.bias.mul_(target_std / spread)
    return projector


def ridge_fit(inputs: torch.Tensor, targets: torch.Tensor, l2: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form ridge regression ``targets ≈ inputs @ weight.T + bias``: (N, d), (N, H) -> weight (H, d), bias (H,).

    Solves the normal equations ``(X̃ᵀX̃ + l2·I) w = X̃ᵀY`` with X̃ = [X, 1] (the bias is not penalised), in float64.
    """
    if inputs.ndim != 2 or targets.ndim != 2 or len(inputs) != len(targets) or len(inputs) == 0:
        raise ValueError(f"ridge_fit needs (N, d) inputs and (N, H) targets with the same N > 0, got "
                         f"{tuple(inputs.shape)} and {tuple(targets.shape)}")
    if l2 < 0:
        raise ValueError(f"the ridge penalty must be >= 0, got {l2}")
    x = torch.cat([inputs.double(), torch.ones(len(inputs), 1, dtype=torch.float64)], dim=1)
    gram = x.T @ x
    gram[:-1, :-1] += l2 * torch.eye(inputs.shape[1], dtype=torch.float64)
    solution = torch.linalg.solve(gram, x.T @ targets.double())  # (d + 1, H)
    return solution[:-1].T.float().contiguous(), solution[-1].float().contiguous()


def word_targets(llm, tokenizer, words: Sequence[str]) -> torch.Tensor:
    """(N, H): the mean input embedding of each word's tokens (with a leading space, as inside a caption)."""
    table = llm.get_input_embeddings().weight.detach()
    cache = {}
    for w in set(words):
        ids = tokenizer(" " + w, add_special_tokens=False)["input_ids"]
        cache[w] = table[torch.tensor(ids, device=table.device)].mean(0).float().cpu()
    return torch.stack([cache[w] for w in words])


def warm_start(projector: nn.Module, features: torch.Tensor, targets: torch.Tensor, l2: float = 1.0) -> nn.Module:
    """Stage 0: fit the projector's *last* linear layer in closed form so every visual token of image i lands on
    ``targets[i]`` (e.g. the embedding of its category's word). For the linear projector this is the whole map;
    for the MLP the first layer keeps its random initialisation and the ridge fits the layer that reads its GELU
    features (a random-features regression). Seconds instead of hundreds of LLM forward/backward passes.
    """
    if features.ndim != 3 or targets.ndim != 2 or len(features) != len(targets):
        raise ValueError(f"warm_start needs (N, V, d) features and (N, H) targets, got {tuple(features.shape)} "
                         f"and {tuple(targets.shape)}")
    last = [m for m in projector.modules() if isinstance(m, nn.Linear)][-1]
    body = projector[:-1] if isinstance(projector, nn.Sequential) else nn.Identity()
    with torch.no_grad():
        inputs = body(features.reshape(-1, features.shape[-1]))
        weight, bias = ridge_fit(inputs, targets.repeat_interleave(features.shape[1], dim=0), l2)
        last.weight.copy_(weight)
        last.bias.copy_(bias)
    return projector


def n_trainable(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


# ---------------------------------------------------------------- assembling the sequence
def tokenize_captions(tokenizer, captions: Sequence[str]) -> list[list[int]]:
    """Each caption's token ids (a leading space, no special tokens): the targets the LLM learns to write."""
    if isinstance(captions, str):
        raise ValueError("captions must be a list of strings, not one string (wrap it: [caption])")
    captions = list(captions)
    if not captions:
        raise ValueError("the caption list is empty: give at least one caption per image")
    if not all(isinstance(c, str) and c.strip() for c in captions):
        raise ValueError("every caption must be a non-empty string")
    return [tokenizer(" " + c.strip(), add_special_tokens=False)["input_ids"] for c in captions]


def assemble_inputs(visual_tokens: torch.Tensor, prompt_embeds: tuple[torch.Tensor, torch.Tensor],
                    targets: Sequence[Sequence[int]], embed: nn.Module, eos_id: int, pad_id: int) -> dict:
    """The training batch: ``inputs_embeds`` (B, L, H), ``attention_mask`` (B, L) and ``labels`` (B, L).

    ``prompt_embeds`` is the (before, after) pair of ``prompt_embeddings``, each (P, H). Each row is
    [prompt before the image | visual tokens (V) | prompt after | caption + eos | padding on the right]. Text comes
    first because an LLM's first position acts as an attention sink, which a visual token there would disturb.
    Labels hold the caption's
    ids and the eos at their own positions (the model shifts them), -100 everywhere else, so the loss is on the
    caption alone; padding is also masked out of attention.
    """
    if visual_tokens.ndim != 3:
        raise ValueError(f"visual_tokens must be (B, V, H), got shape {tuple(visual_tokens.shape)}")
    batch, n_visual, hidden = visual_tokens.shape
    if len(targets) != batch:
        raise ValueError(f"{batch} images but {len(targets)} captions: they pair one to one")
    before, after = prompt_embeds
    for part in (before, after):
        if part.ndim != 2 or part.shape[1] != hidden:
            raise ValueError(f"prompt embeddings must be (P, {hidden}), got shape {tuple(part.shape)}")
    if any(len(t) == 0 for t in targets):
        raise ValueError("every caption needs at least one token")
    prefix = len(before) + n_visual + len(after)
    rows = [list(t) + [eos_id] for t in targets]
    width = max(map(len, rows))
    ids = torch.full((batch, width), pad_id, dtype=torch.long)
    valid = torch.zeros((batch, width), dtype=torch.bool)
    for r, row in enumerate(rows):
        ids[r, :len(row)], valid[r, :len(row)] = torch.tensor(row), True
    device = visual_tokens.device
    ids, valid = ids.to(device), valid.to(device)
    with torch.no_grad():
        text = embed(ids)
    inputs = torch.cat([before.to(visual_tokens).expand(batch, -1, -1), visual_tokens,
                        after.to(visual_tokens).expand(batch, -1, -1), text], dim=1)
    mask = torch.cat([torch.ones((batch, prefix), dtype=torch.long, device=device), valid.long()], dim=1)
    labels = torch.cat([torch.full((batch, prefix), -100, dtype=torch.long, device=device),
                        ids.masked_fill(~valid, -100)], dim=1)
    return {"inputs_embeds": inputs, "attention_mask": mask, "labels": labels}


def caption_loss(llm, batch: dict) -> torch.Tensor:
    """Mean next-token cross-entropy over the labelled positions, equal to ``llm(**batch).loss``.

    Only the positions that predict a caption token go through the LM head (its 49k-word
    vocabulary is the costliest layer per position), which saves time and changes nothing.
    """
    hidden = llm.model(inputs_embeds=batch["inputs_embeds"], attention_mask=batch["attention_mask"]).last_hidden_state
    targets = batch["labels"][:, 1:]
    predicting = targets != -100
    logits = llm.lm_head(hidden[:, :-1][predicting]).float()
    return F.cross_entropy(logits, targets[predicting])


# ---------------------------------------------------------------- training
def prompt_embeddings(llm, tokenizer, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The embedded prompt before and after its ``<image>`` placeholder: two (P, H) tensors."""
    if not isinstance(prompt, str) or prompt.count(IMAGE) != 1:
        raise ValueError(f"the prompt must be a string with exactly one {IMAGE} placeholder, got {prompt!r}")
    parts = []
    for text in prompt.split(IMAGE):
        ids = tokenizer(text.rstrip(), add_special_tokens=False)["input_ids"] if text.strip() else []
        if not ids:
            raise ValueError(f"the prompt needs text before and after {IMAGE}, got {prompt!r}")
        with torch.no_grad():
            parts.append(llm.get_input_embeddings()(torch.tensor(ids, device=llm.device)).detach())
    return parts[0], parts[1]


def freeze(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        p.requires_grad_(False)
    return module.eval()


def train_projector(projector: nn.Module, llm, tokenizer, features: torch.Tensor, captions: Sequence[str],
                    config: dict) -> dict:
    """Train ``projector`` (only it) on (features[i], captions[i]) pairs; returns losses per step and seconds."""
    targets = tokenize_captions(tokenizer, captions)
    if len(targets) != len(features):
        raise ValueError(f"need one caption per image, got {len(targets)} captions for {len(features)} images")
    freeze(llm)
    prompt = prompt_embeddings(llm, tokenizer, config["prompt"])
    embed, eos, pad = llm.get_input_embeddings(), tokenizer.eos_token_id, tokenizer.pad_token_id
    optimizer = torch.optim.AdamW(projector.parameters(), lr=config["lr"], weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config["lr"], total_steps=config["steps"],
                                                   pct_start=0.15)
    rng, losses, start = np.random.default_rng(config["seed"]), [], time.perf_counter()
    projector.train()
    order = np.concatenate([rng.permutation(len(features)) for _ in
                            range(config["steps"] * config["batch_size"] // len(features) + 1)])
    for step in range(config["steps"]):
        chunk = order[step * config["batch_size"]:(step + 1) * config["batch_size"]]
        batch = assemble_inputs(projector(features[chunk]), prompt, [targets[i] for i in chunk], embed, eos, pad)
        loss = caption_loss(llm, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    projector.eval()
    return {"losses": losses, "seconds": time.perf_counter() - start}


def load_connector(config: dict, clip_config: dict, llm, tokenizer, features: torch.Tensor,
                   captions: Sequence[str], warm_targets: torch.Tensor | None = None, verbose: bool = True):
    """``(projector, info)`` trained on ``features``/``captions`` or loaded from the model cache.

    The cache key holds the connector's config *and* the CLIP config whose tower made the features,
    so a retrained CLIP never meets a stale projector.
    """
    missing = sorted(set(FAST_CONFIG) - set(config))
    if missing:
        raise ValueError(f"the connector config lacks {missing}; start from default_config()")
    if features.ndim != 3 or features.shape[1] != 1 + config["grid"] ** 2:
        raise ValueError(f"features must be (N, {1 + config['grid'] ** 2}, width) for grid {config['grid']}, "
                         f"got {tuple(features.shape)}")
    if config["warm_start"] and (warm_targets is None or len(warm_targets) != len(features)):
        raise ValueError("a warm-started connector needs warm_targets: one (H,) target per training image")
    # Everything that changes the result is in the key: the LLM actually loaded (not only its short name),
    # the CLIP config that made the features, the number of pairs.
    key = {**config, "llm_id": getattr(llm, "name_or_path", None) or llm.config._name_or_path,
           "clip": clip_config, "n_pairs": len(features)}

    def make():
        torch.manual_seed(config["seed"])
        projector = make_projector(config["kind"], features.shape[-1], llm.config.hidden_size)
        if config["warm_start"]:
            return warm_start(projector, features, warm_targets, config["ridge_l2"])
        return match_scale(projector, features, llm.get_input_embeddings().weight.std().item())

    def train(projector):
        return train_projector(projector, llm, tokenizer, features, captions, config)

    projector, info = load_or_train(MODEL_NAME, key, make, train, verbose=verbose)
    return projector, {**info, "config": config, "params": n_trainable(projector)}


# ---------------------------------------------------------------- generation
def first_word_tokens(tokenizer, words: Sequence[str]) -> list[int]:
    """The first token of " " + word for each word; a ValueError if two words share it (it would not decide them)."""
    words = list(words)
    if not words or not all(isinstance(w, str) and w.strip() for w in words):
        raise ValueError("need a non-empty list of non-empty words")
    first = [tokenizer(" " + w.strip(), add_special_tokens=False)["input_ids"][0] for w in words]
    if len(set(first)) != len(first):
        raise ValueError(f"words share a first token, so it cannot tell them apart: {words}")
    return first


class OpeningWordConstraint:
    """A logits processor for ``generate``: the text must open with one of ``words`` followed by ``end`` (".");
    after that, generation is free.

    Lesson 09's constrained decoding over a title trie, applied to the first word of a caption. Because the
    words' first tokens differ (:func:`first_word_tokens`), greedy decoding picks the word whose first token
    the LLM finds likeliest after the image, the same word as :func:`choice_loglik`'s forced choice, and the
    trie then completes it.
    """

    def __init__(self, tokenizer, words: Sequence[str], end: str = "."):
        from course_utils.llm.constrained import trie_from_tokens

        first_word_tokens(tokenizer, words)   # validates the words
        end_ids = tokenizer(end, add_special_tokens=False)["input_ids"]
        if len(end_ids) != 1:
            raise ValueError(f"the end mark {end!r} must be one token")
        self.trie = trie_from_tokens([tokenizer(" " + w.strip(), add_special_tokens=False)["input_ids"] for w in words],
                                     end_ids[0])
        self.start: int | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.start is None:
            self.start = input_ids.shape[1]   # with inputs_embeds only, generate passes the new tokens alone
        masked = scores.clone()
        for row, ids in enumerate(input_ids[:, self.start:].tolist()):
            if self.trie.end_token in ids:
                continue                      # the opening word is written: free from here
            allowed = self.trie.next_tokens(ids)
            keep = scores[row, allowed]
            masked[row] = float("-inf")
            masked[row, allowed] = keep
        return masked


def describe(llm, tokenizer, projector: nn.Module, features: torch.Tensor, prompt: str = PROMPT,
             max_new_tokens: int = 16, batch_size: int = 128, first_words: Sequence[str] | None = None) -> list[str]:
    """Greedy captions for (N, V, width) visual features, generated from ``inputs_embeds``.

    ``first_words``: the caption must open with one of these words and a full stop
    (:class:`OpeningWordConstraint`); the rest of the caption is free.
    """
    return describe_systems(llm, tokenizer, {"": (projector, features)}, prompt, max_new_tokens, batch_size,
                            first_words)[""]


def describe_systems(llm, tokenizer, systems: dict, prompt: str = PROMPT, max_new_tokens: int = 16,
                     batch_size: int = 128, first_words: Sequence[str] | None = None) -> dict[str, list[str]]:
    """Greedy captions for several systems at once: ``{name: (projector, (N, V, width) features)}`` ->
    ``{name: captions}``. All systems' sequences go through ``generate`` together, in batches of up to
    ``batch_size``: decoding a few tokens for a small batch is bound by reading the LLM's weights, so one
    large batch costs far less than one small batch per system. The captions are :func:`describe`'s (up to
    floating-point near-ties, which a different batch can break the other way).
    """
    from transformers import LogitsProcessorList

    if not systems:
        raise ValueError("no systems to describe")
    for name, (_, features) in systems.items():
        if features.ndim != 3 or len(features) == 0:
            raise ValueError(f"{name or 'features'}: features must be a non-empty (N, V, width) tensor, "
                             f"got {tuple(features.shape)}")
    if len({features.shape[1] for _, features in systems.values()}) != 1:
        raise ValueError("every system needs the same number of visual tokens per image")
    if first_words is not None:
        OpeningWordConstraint(tokenizer, first_words)   # bad words fail here, before any generation
    before, after = prompt_embeddings(llm, tokenizer, prompt)
    with torch.inference_mode():
        visual = torch.cat([projector(features.to(llm.device)) for projector, features in systems.values()])
        texts = []
        for start in range(0, len(visual), batch_size):
            chunk = visual[start:start + batch_size]
            inputs = torch.cat([before.expand(len(chunk), -1, -1), chunk, after.expand(len(chunk), -1, -1)], dim=1)
            mask = torch.ones(inputs.shape[:2], dtype=torch.long, device=inputs.device)
            processors = LogitsProcessorList([OpeningWordConstraint(tokenizer, first_words)] if first_words else [])
            # With inputs_embeds and no input_ids, generate returns only the new tokens.
            out = llm.generate(inputs_embeds=inputs, attention_mask=mask, max_new_tokens=max_new_tokens,
                               do_sample=False, eos_token_id=tokenizer.eos_token_id,
                               pad_token_id=tokenizer.pad_token_id, logits_processor=processors)
            texts += [t.strip() for t in tokenizer.batch_decode(out, skip_special_tokens=True)]
    captions, start = {}, 0
    for name, (_, features) in systems.items():
        captions[name], start = texts[start:start + len(features)], start + len(features)
    return captions


def choice_loglik(llm, tokenizer, projector: nn.Module, features: torch.Tensor, prefixes: Sequence[str],
                  candidates: Sequence[str], prompt: str = PROMPT, batch_size: int = 64) -> np.ndarray:
    """(N, K) log-probability the LLM gives to each candidate word's first token right after ``prompt`` (with
    product i's visual tokens) and ``prefixes[i]``: a forced choice among K words, one forward pass per product.

    The candidates' first tokens (" " + word) must differ, so that the first token decides the word.
    """
    prefixes, candidates = list(prefixes), list(candidates)
    if features.ndim != 3 or len(features) != len(prefixes) or not candidates:
        raise ValueError(f"need (N, V, width) features, one prefix per image and candidates, got "
                         f"{tuple(features.shape)}, {len(prefixes)} prefixes, {len(candidates)} candidates")
    first = first_word_tokens(tokenizer, candidates)
    before, after = prompt_embeddings(llm, tokenizer, prompt)
    embed, out = llm.get_input_embeddings(), []
    pre = [tokenizer(" " + p.strip(), add_special_tokens=False)["input_ids"] if p.strip() else [] for p in prefixes]
    with torch.inference_mode():
        for start in range(0, len(pre), batch_size):
            rows = pre[start:start + batch_size]
            # Each row is [prompt | visual | prompt | prefix + placeholder]; the placeholder's position holds the
            # prediction after the prefix, read where the prefix ends.
            batch = assemble_inputs(projector(features[start:start + batch_size].to(llm.device)), (before, after),
                                    [r + [first[0]] for r in rows], embed, tokenizer.eos_token_id, tokenizer.pad_token_id)
            hidden = llm.model(inputs_embeds=batch["inputs_embeds"], attention_mask=batch["attention_mask"]).last_hidden_state
            ends = torch.tensor([len(before) + features.shape[1] + len(after) + len(r) - 1 for r in rows])
            logits = llm.lm_head(hidden[torch.arange(len(rows)), ends]).float()
            out.append(torch.log_softmax(logits, -1)[:, first].cpu().numpy())
    return np.concatenate(out)


# ---------------------------------------------------------------- reading the captions
def names_attribute(texts: Sequence[str], truth: Sequence[str], vocabulary: Sequence[str]) -> np.ndarray:
    """(N,) float: 1 where text i names its item's true value (e.g. its category) and no other value, else 0."""
    from course_utils.text_metrics import mentions

    texts, truth = list(texts), list(truth)
    if not texts or len(texts) != len(truth):
        raise ValueError(f"need one true value per text, got {len(texts)} texts and {len(truth)} values")
    return np.array([float(mentions(t, vocabulary) == [v]) for t, v in zip(texts, truth)])
