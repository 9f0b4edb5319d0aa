"""Tuning a small LLM for recommendation with peft (survey Section 3.2.2).

Two tasks, one training loop:

* **Yes/no preference prediction** in the TALLRec setup (Bao et al., 2023): an
  instruction lists a user's liked and disliked movies and names a target movie;
  the model answers "Yes" or "No". The score of a pair is P(Yes) against P(No)
  at the first answer position, read from the next-token logits, so the model
  ranks pairs and we measure AUC.
* **Explanation generation** (P5, PEPLER): item attributes plus the user's
  rating and the aspect that mattered go in, the user's review comes out.

Both are "prompt in, target text out": :func:`fit_on_targets` trains any peft
model (LoRA or a soft prompt) on the target tokens only, :func:`target_log_probs`
scores them (perplexity), :func:`score_yes_no` reads the yes/no logits and
:func:`generate_texts` decodes greedily. Sequences are left-padded, so every
target ends at the last position and the model only computes logits for the
last few positions (``logits_to_keep``), not for the whole vocabulary at every
prompt token.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from course_utils.claims import paired_verdict, evidence_disagrees

PREFERENCE_SYSTEM = "You predict whether a user will enjoy a movie."
EXPLANATION_SYSTEM = "You write the short review a shopper would leave for an item."
LIKED_RATING = 4  # MovieLens ratings >= 4 count as "liked", as in TALLRec


# ---------------------------------------------------------------- prompts
def _names(values, what: str) -> list[str]:
    if isinstance(values, str):
        raise TypeError(f"{what} must be a list of titles, not one string")
    names = [str(v).strip() for v in values]
    if any(not n for n in names):
        raise ValueError(f"{what} contains an empty title")
    return names


def preference_instruction(liked: Sequence[str], disliked: Sequence[str], target: str) -> str:
    """The TALLRec-style question for one (user, target) pair, as the user turn of a chat.

    >>> print(preference_instruction(["Fargo"], ["Congo"], "Heat (1995), Action"))
    Liked: Fargo.
    Disliked: Congo.
    Target: Heat (1995), Action.
    Will the user like the target movie? Answer Yes or No.
    """
    liked, disliked = _names(liked, "liked"), _names(disliked, "disliked")
    if not liked and not disliked:
        raise ValueError("the user has no liked and no disliked movies: the prompt needs at least one")
    if not isinstance(target, str) or not target.strip():
        raise ValueError(f"target must be a non-empty movie description, got {target!r}")
    return (f"Liked: {'; '.join(liked) or 'none'}.\nDisliked: {'; '.join(disliked) or 'none'}.\n"
            f"Target: {target.strip()}.\nWill the user like the target movie? Answer Yes or No.")


def chat_prompt(tokenizer, instruction: str, system: str = PREFERENCE_SYSTEM) -> str:
    """The instruction in the model's chat format, ending where the assistant's answer starts."""
    if not isinstance(instruction, str) or not instruction.strip():
        raise ValueError("the instruction is empty")
    messages = [{"role": "system", "content": system}, {"role": "user", "content": instruction}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def movie_text(items: pd.DataFrame, item: int, genres: bool = False) -> str:
    """ "Title (year)", optionally followed by the genres: how a movie appears in a prompt."""
    row = items.iloc[int(item)]
    text = row["title"] if pd.isna(row["year"]) else f"{row['title']} ({int(row['year'])})"
    return f"{text}, {', '.join(row['genres']) or 'unknown genre'}" if genres else text


def yes_no_pairs(split, items: pd.DataFrame, stage: str, users, max_history: int = 5) -> pd.DataFrame:
    """One yes/no example per user: the user's ``stage`` item (validation or test) as the target.

    The history is the user's last ``max_history`` rated movies before that item
    (``split.history_frame(stage)``, in time order), split into liked (rating >= 4)
    and disliked, by title only (the target also gets its year and genres), to keep
    prompts under 100 tokens. Returns columns user, item, rating, label (1 = liked), instruction.
    """
    users = np.asarray(users, dtype=np.int64)
    if users.ndim != 1 or users.size == 0:
        raise ValueError("users must be a non-empty 1-D array of user ids")
    if max_history <= 0:
        raise ValueError(f"max_history must be positive, got {max_history}")
    if stage not in split.STAGES:
        raise ValueError(f"stage must be one of {split.STAGES}, got {stage!r}")
    targets = getattr(split, stage).set_index("user")
    missing = np.setdiff1d(users, targets.index)
    if missing.size:
        raise ValueError(f"{missing.size} user(s) have no {stage} item (e.g. user {missing[0]})")
    history = split.history_frame(stage)
    recent = history[history["user"].isin(users)].groupby("user").tail(max_history)
    by_user = {u: frame for u, frame in recent.groupby("user")}
    rows = []
    for user in users:  # building text, once per example: not inside any training loop
        past = by_user.get(user)
        if past is None:
            raise ValueError(f"user {user} has no history before the {stage} item")
        liked = [items.iloc[i]["title"] for i in past.loc[past["rating"] >= LIKED_RATING, "item"]]
        disliked = [items.iloc[i]["title"] for i in past.loc[past["rating"] < LIKED_RATING, "item"]]
        item, rating = int(targets.loc[user, "item"]), float(targets.loc[user, "rating"])
        rows.append((user, item, rating, int(rating >= LIKED_RATING),
                     preference_instruction(liked, disliked, movie_text(items, item, genres=True))))
    return pd.DataFrame(rows, columns=["user", "item", "rating", "label", "instruction"])


def balanced_users(split, stage: str, n: int, rng: np.random.Generator, exclude=()) -> np.ndarray:
    """``n`` users (half liked, half disliked their ``stage`` item), drawn with ``rng``, none from ``exclude``."""
    if n < 2 or n % 2:
        raise ValueError(f"n must be an even number of at least 2 (half liked, half disliked), got {n}")
    frame = getattr(split, stage)
    frame = frame[~frame["user"].isin(np.asarray(exclude))]
    chosen = []
    for liked in (True, False):
        pool = frame.loc[(frame["rating"] >= LIKED_RATING) == liked, "user"].to_numpy()
        if len(pool) < n // 2:
            raise ValueError(f"only {len(pool)} users with a {'liked' if liked else 'disliked'} {stage} item; "
                             f"asked for {n // 2}")
        chosen.append(rng.choice(pool, n // 2, replace=False))
    return rng.permutation(np.concatenate(chosen))


# ---------------------------------------------------------------- the yes/no score
def yes_no_token_ids(tokenizer, yes: str = "Yes", no: str = "No") -> tuple[int, int]:
    """The token ids of the two answers; each must be a single token."""
    ids = []
    for word in (yes, no):
        tokens = tokenizer(word, add_special_tokens=False)["input_ids"]
        if len(tokens) != 1:
            raise ValueError(f"the answer {word!r} is {len(tokens)} tokens for this tokenizer; it must be one")
        ids.append(tokens[0])
    if ids[0] == ids[1]:
        raise ValueError("the two answers map to the same token")
    return ids[0], ids[1]


def yes_probability(logits: torch.Tensor, yes_id: int, no_id: int) -> torch.Tensor:
    """P(Yes) / (P(Yes) + P(No)) from next-token logits of shape (..., vocab): a softmax over two logits."""
    if logits.ndim < 1 or not (0 <= yes_id < logits.shape[-1] and 0 <= no_id < logits.shape[-1]):
        raise ValueError(f"token ids {yes_id}, {no_id} do not index logits of shape {tuple(logits.shape)}")
    return torch.sigmoid(logits[..., yes_id].float() - logits[..., no_id].float())


def _check_texts(texts, what: str) -> list[str]:
    if isinstance(texts, str):
        raise TypeError(f"{what} must be a list of strings, not one string")
    texts = list(texts)
    if not texts:
        raise ValueError(f"{what} is empty")
    if not all(isinstance(t, str) and t for t in texts):
        raise ValueError(f"{what} must be non-empty strings")
    return texts


def _check_batch_size(batch_size) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return batch_size


def _context(model) -> int | None:
    config = getattr(model, "config", None)
    return getattr(config, "max_position_embeddings", None)


def score_yes_no(model, tokenizer, prompts: Sequence[str], batch_size: int = 16,
                 return_mass: bool = False):
    """P(Yes | the answer is Yes or No) for each chat prompt, shape (n,), batched and left-padded.

    With ``return_mass=True`` also returns P(Yes) + P(No) under the full softmax:
    how much of the model's next-token probability goes to the two answers at all.
    """
    prompts, batch_size = _check_texts(prompts, "prompts"), _check_batch_size(batch_size)
    yes_id, no_id = yes_no_token_ids(tokenizer)
    scores, mass = [], []
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(prompts), batch_size):
            batch = tokenizer(prompts[start:start + batch_size], return_tensors="pt", padding=True,
                              add_special_tokens=False).to(_device_of(model))
            _check_length(model, batch["input_ids"].shape[1])
            logits = model(**batch, logits_to_keep=1).logits[:, -1].float()
            scores.append(yes_probability(logits, yes_id, no_id))
            mass.append(logits.softmax(-1)[:, [yes_id, no_id]].sum(-1))
    model.train(was_training)
    p_yes = torch.cat(scores).cpu().numpy().astype(np.float64)
    return (p_yes, torch.cat(mass).cpu().numpy().astype(np.float64)) if return_mass else p_yes


def _device_of(model) -> torch.device:
    return next(model.parameters()).device


def _check_length(model, n_tokens: int) -> None:
    context = _context(model)
    if context is not None and n_tokens > context:
        raise ValueError(f"a prompt of {n_tokens} tokens exceeds the model's context of {context}; shorten it")


# ---------------------------------------------------------------- peft models
def add_lora(model, r: int = 8, alpha: int = 16, target_modules: Sequence[str] = ("q_proj", "v_proj"),
             top_layers: int | None = None, seed: int = 0):
    """A LoRA copy of ``model`` (the original is left untouched): only the adapters are trainable.

    Each adapted linear layer W (out × in) gains B A with A (r × in), B (out × r);
    B starts at zero, so the new model starts equal to the base. ``seed`` fixes A's init.
    ``top_layers=k`` adapts only the last k transformer layers (peft's ``layers_to_transform``);
    ``None`` adapts every layer, as TALLRec does.
    """
    from peft import LoraConfig, get_peft_model

    if isinstance(r, bool) or not isinstance(r, int) or r <= 0:
        raise ValueError(f"the LoRA rank r must be a positive integer, got {r!r}")
    n_layers = model.config.num_hidden_layers
    layers = None if top_layers is None else list(range(n_layers - _check_top(top_layers, n_layers), n_layers))
    torch.manual_seed(seed)
    config = LoraConfig(r=r, lora_alpha=alpha, target_modules=list(target_modules), lora_dropout=0.0,
                        bias="none", task_type="CAUSAL_LM", layers_to_transform=layers)
    return get_peft_model(copy.deepcopy(model), config)


def add_soft_prompt(model, tokenizer, n_virtual_tokens: int = 16,
                    init_text: str = "Decide whether this user will like the target movie."):
    """A prompt-tuning copy of ``model``: ``n_virtual_tokens`` trainable input vectors, the model frozen.

    The vectors start as the embeddings of ``init_text``'s tokens (repeated or cut
    to length), which trains more stably than random vectors (Lester et al., 2021).
    """
    from peft import PromptTuningConfig, get_peft_model

    if isinstance(n_virtual_tokens, bool) or not isinstance(n_virtual_tokens, int) or n_virtual_tokens <= 0:
        raise ValueError(f"n_virtual_tokens must be a positive integer, got {n_virtual_tokens!r}")
    config = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=n_virtual_tokens,
                                prompt_tuning_init="TEXT", prompt_tuning_init_text=init_text,
                                tokenizer_name_or_path=tokenizer.name_or_path)
    return get_peft_model(copy.deepcopy(model), config)


def trainable_parameters(peft_model) -> dict:
    """peft's own count: trainable parameters, all parameters, and the trainable share."""
    trainable, total = peft_model.get_nb_trainable_parameters()
    return {"trainable": int(trainable), "total": int(total), "share": trainable / total}


# ---------------------------------------------------------------- training on target tokens
def _pack(tokenizer, prompts: list[str], targets: list[str], device):
    """Left-padded prompt+target ids; ``target_mask`` (B, k-1) marks target tokens among the last k-1."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    target_ids = tokenizer(targets, add_special_tokens=False)["input_ids"]
    if any(len(t) == 0 for t in target_ids):
        raise ValueError("every target needs at least one token")
    rows = [p + t for p, t in zip(prompt_ids, target_ids)]
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for b, row in enumerate(rows):
        input_ids[b, width - len(row):] = torch.tensor(row)
        attention[b, width - len(row):] = 1
    keep = max(len(t) for t in target_ids) + 1  # logits at the last `keep` positions predict the targets
    lengths = torch.tensor([len(t) for t in target_ids])
    target_mask = torch.arange(keep - 1)[None, :] >= (keep - 1 - lengths)[:, None]
    return input_ids.to(device), attention.to(device), target_mask.to(device), keep


def _target_token_log_probs(model, input_ids, attention, target_mask, keep) -> torch.Tensor:
    """log p(target token) at each target position, zero elsewhere; shape (B, keep - 1)."""
    logits = model(input_ids=input_ids, attention_mask=attention, logits_to_keep=keep).logits[:, :-1].float()
    targets = input_ids[:, -(keep - 1):]
    token_log_probs = logits.log_softmax(-1).gather(-1, targets[..., None]).squeeze(-1)
    return token_log_probs * target_mask


@dataclass
class TuningRun:
    """What a training run did: the mean loss of each step, wall-clock seconds, steps and examples seen."""

    losses: list
    seconds: float
    steps: int
    examples: int


def fit_on_targets(model, tokenizer, prompts: Sequence[str], targets: Sequence[str], *, epochs: int = 1,
                   batch_size: int = 8, lr: float = 1e-3, seed: int = 0) -> TuningRun:
    """Train the trainable parameters of ``model`` (a peft model) on the target tokens, prompts masked out.

    Mini-batches of ``batch_size`` examples in a seeded random order, AdamW,
    cross-entropy on the target tokens only (the TALLRec / instruction-tuning loss).
    """
    prompts, targets = _check_texts(prompts, "prompts"), _check_texts(targets, "targets")
    if len(prompts) != len(targets):
        raise ValueError(f"{len(prompts)} prompts but {len(targets)} targets; they pair one to one")
    batch_size = _check_batch_size(batch_size)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs <= 0:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if not hasattr(model, "peft_config"):
        raise ValueError("the model is not a peft model, so every weight would train: wrap it with add_lora or "
                         "add_soft_prompt first")
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    device, losses, start = _device_of(model), [], time.perf_counter()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(prompts), generator=generator).tolist()
        for first in range(0, len(order), batch_size):
            chosen = order[first:first + batch_size]
            ids, attention, mask, keep = _pack(tokenizer, [prompts[i] for i in chosen],
                                               [targets[i] for i in chosen], device)
            _check_length(model, ids.shape[1])
            loss = -_target_token_log_probs(model, ids, attention, mask, keep).sum() / mask.sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
    model.eval()
    return TuningRun(losses, time.perf_counter() - start, len(losses), epochs * len(prompts))


def target_log_probs(model, tokenizer, prompts: Sequence[str], targets: Sequence[str],
                     batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Per pair: the summed log-probability of the target tokens given the prompt, and their number."""
    prompts, targets = _check_texts(prompts, "prompts"), _check_texts(targets, "targets")
    if len(prompts) != len(targets):
        raise ValueError(f"{len(prompts)} prompts but {len(targets)} targets; they pair one to one")
    batch_size, totals, counts = _check_batch_size(batch_size), [], []
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(prompts), batch_size):
            ids, attention, mask, keep = _pack(tokenizer, prompts[start:start + batch_size],
                                               targets[start:start + batch_size], _device_of(model))
            _check_length(model, ids.shape[1])
            totals.append(_target_token_log_probs(model, ids, attention, mask, keep).sum(-1).cpu())
            counts.append(mask.sum(-1).cpu())
    model.train(was_training)
    return torch.cat(totals).double().numpy(), torch.cat(counts).numpy()


def perplexity(model, tokenizer, prompts: Sequence[str], targets: Sequence[str], batch_size: int = 16) -> float:
    """exp(mean negative log-likelihood per target token), pooled over all pairs."""
    totals, counts = target_log_probs(model, tokenizer, prompts, targets, batch_size)
    return float(np.exp(-totals.sum() / counts.sum()))


def generate_texts(model, tokenizer, prompts: Sequence[str], max_new_tokens: int = 32,
                   batch_size: int = 16) -> list[str]:
    """Greedy continuations of the prompts (batched, left-padded), special tokens removed."""
    prompts, batch_size = _check_texts(prompts, "prompts"), _check_batch_size(batch_size)
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens <= 0:
        raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
    texts = []
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(prompts), batch_size):
            batch = tokenizer(prompts[start:start + batch_size], return_tensors="pt", padding=True,
                              add_special_tokens=False).to(_device_of(model))
            _check_length(model, batch["input_ids"].shape[1] + max_new_tokens)
            out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
            new = out[:, batch["input_ids"].shape[1]:]
            texts += [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
    return texts


# ---------------------------------------------------------------- AUC, its interval and paired comparisons
def _check_labels_scores(labels, *score_sets) -> tuple[np.ndarray, list[np.ndarray]]:
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be a 1-D array of 0/1 values")
    if labels.min() == labels.max():
        raise ValueError("AUC needs both classes among the labels (some liked and some disliked pairs)")
    out = []
    for scores in score_sets:
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != labels.shape:
            raise ValueError(f"scores have shape {scores.shape}, labels {labels.shape}: one score per pair")
        if not np.isfinite(scores).all():
            raise ValueError("scores contain NaN or infinite values")
        out.append(scores)
    return labels.astype(bool), out


def _wins(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """(n_pos, n_neg): 1 where the liked pair scores above the disliked one, 0.5 on a tie."""
    pos, neg = scores[labels][:, None], scores[~labels][None, :]
    return (pos > neg) + 0.5 * (pos == neg)


def auc(labels, scores) -> float:
    """Area under the ROC curve: the chance that a random liked pair outscores a random disliked one."""
    labels, (scores,) = _check_labels_scores(labels, scores)
    return float(_wins(labels, scores).mean())


def _bootstrap_counts(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n): how often each example is drawn in each resample."""
    draws = rng.integers(0, n, size=(n_boot, n))
    return np.apply_along_axis(np.bincount, 1, draws, minlength=n)


def _bootstrap_aucs(labels: np.ndarray, wins: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """AUC of ``n_boot`` stratified resamples (liked and disliked pairs drawn separately), vectorised."""
    rng = np.random.default_rng(seed)
    pos = _bootstrap_counts(int(labels.sum()), n_boot, rng)
    neg = _bootstrap_counts(int((~labels).sum()), n_boot, rng)
    return ((pos @ wins) * neg).sum(1) / (labels.sum() * (~labels).sum())


def auc_interval(labels, scores, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the AUC, resampling liked and disliked pairs separately."""
    labels, (scores,) = _check_labels_scores(labels, scores)
    if not 0 < level < 1 or n_boot < 100:
        raise ValueError(f"need 0 < level < 1 and n_boot >= 100, got {level}, {n_boot}")
    aucs = _bootstrap_aucs(labels, _wins(labels, scores), n_boot, seed)
    low, high = np.quantile(aucs, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def delong_p_value(labels, scores_a, scores_b) -> float:
    """Two-sided p-value of DeLong's test for two correlated AUCs on the same pairs (DeLong et al., 1988)."""
    from scipy import stats

    labels, (a, b) = _check_labels_scores(labels, scores_a, scores_b)
    wins = [_wins(labels, s) for s in (a, b)]
    v10 = np.stack([w.mean(1) for w in wins])  # per liked pair: share of disliked pairs it beats
    v01 = np.stack([w.mean(0) for w in wins])  # per disliked pair: share of liked pairs that beat it
    s10, s01 = np.cov(v10), np.cov(v01)
    contrast = np.array([1.0, -1.0])
    variance = contrast @ s10 @ contrast / v10.shape[1] + contrast @ s01 @ contrast / v01.shape[1]
    diff = v10[0].mean() - v10[1].mean()
    if variance <= 0:
        return 1.0 if diff == 0 else 0.0
    return float(2 * stats.norm.sf(abs(diff) / np.sqrt(variance)))


@dataclass(frozen=True)
class AUCComparison:
    """Model A against model B on the same test pairs; ``verdict`` is A's view: better, level or worse."""

    a: str
    b: str
    auc_a: float
    auc_b: float
    diff: float
    low: float
    high: float
    p_value: float
    n_pairs: int
    level: float
    verdict: str

    def sentence(self, digits: int = 3) -> str:
        values = f"AUC {self.auc_a:.{digits}f} against {self.auc_b:.{digits}f}"
        evidence = (f"paired difference {self.diff:+.{digits}f}, {self.level:.0%} bootstrap CI {self.low:+.{digits}f} "
                    f"to {self.high:+.{digits}f}, DeLong p {'< 0.001' if self.p_value < 0.001 else f'= {self.p_value:.3f}'}"
                    f", {self.n_pairs} pairs")
        head = (f"**{self.a}** and **{self.b}** show no significant difference" if self.verdict == "level"
                else f"**{self.a}** is **{self.verdict}** than **{self.b}**")
        if self.verdict == "level" and evidence_disagrees(self.low, self.high, self.p_value, self.level):
            head += ": a borderline case, the interval and DeLong's test disagree"
        return f"{head} ({values}; {evidence})."

    def _repr_markdown_(self) -> str:
        return self.sentence()

    def as_row(self) -> dict:
        return {"A": self.a, "B": self.b, "AUC A": self.auc_a, "AUC B": self.auc_b, "A - B": self.diff,
                "CI low": self.low, "CI high": self.high, "DeLong p": self.p_value, "verdict": self.verdict}


def compare_auc(labels, scores_a, scores_b, a: str = "A", b: str = "B", n_boot: int = 2000,
                level: float = 0.95, seed: int = 0) -> AUCComparison:
    """Paired comparison of two scorers' AUC on the same pairs: a stratified bootstrap CI and DeLong's p.

    The verdict follows ``claims.paired_verdict``: "better"/"worse" only when the
    interval excludes zero and DeLong's test rejects, else "level".
    """
    labels, (x, y) = _check_labels_scores(labels, scores_a, scores_b)
    aucs = _bootstrap_aucs(labels, _wins(labels, x) - _wins(labels, y), n_boot, seed)  # same resamples for both
    low, high = np.quantile(aucs, [(1 - level) / 2, (1 + level) / 2])
    auc_a, auc_b = auc(labels, x), auc(labels, y)
    p_value = delong_p_value(labels, x, y)
    verdict = paired_verdict(float(low), float(high), p_value, level)
    return AUCComparison(a, b, auc_a, auc_b, auc_a - auc_b, float(low), float(high),
                         p_value, len(labels), level, verdict)


# ---------------------------------------------------------------- a non-LLM baseline
def rating_baseline(ratings: pd.DataFrame, users, items, kind: str = "user + item",
                    shrinkage: float = 10.0) -> np.ndarray:
    """Predicted rating of each (user, item) pair from training ratings alone, no text.

    ``kind="item"``: the item's mean rating; ``"user + item"``: global mean plus a
    user bias plus an item bias (Koren, 2008). Means are shrunk towards zero bias
    with ``shrinkage`` pseudo-ratings, so an item rated once does not get its one rating.
    """
    if kind not in ("item", "user + item"):
        raise ValueError(f"kind must be 'item' or 'user + item', got {kind!r}")
    if shrinkage < 0:
        raise ValueError(f"shrinkage must be >= 0, got {shrinkage}")
    users, items = np.asarray(users), np.asarray(items)
    if users.shape != items.shape:
        raise ValueError(f"users {users.shape} and items {items.shape} must pair one to one")
    mu = ratings["rating"].mean()

    def shrunk_bias(residual: pd.Series, key: str) -> pd.Series:
        grouped = residual.groupby(ratings[key])
        return grouped.sum() / (grouped.count() + shrinkage)

    user_bias = shrunk_bias(ratings["rating"] - mu, "user") if kind == "user + item" else pd.Series(dtype=float)
    residual = ratings["rating"] - mu - ratings["user"].map(user_bias).fillna(0.0)
    item_bias = shrunk_bias(residual, "item")
    return (mu + pd.Series(users).map(user_bias).fillna(0.0).to_numpy()
            + pd.Series(items).map(item_bias).fillna(0.0).to_numpy())


# ---------------------------------------------------------------- explanations on the fashion shop
def review_aspects(shop, users, items, ratings) -> np.ndarray:
    """The aspect a review talks about: the one that helped most (rating >= 4) or hurt most (<= 2); "none" for 3.

    The same rule the shop uses to write its reviews, from the user's true
    weights: each aspect's contribution relative to an average item.
    """
    from course_utils.data.fashion_shop import ASPECT_STARTS, ASPECTS

    users, items, ratings = (np.asarray(v) for v in (users, items, ratings))
    contribution = shop.user_weights[users] * (shop.item_features[items] - shop.item_features.mean(0))
    per_aspect = np.add.reduceat(contribution, ASPECT_STARTS, axis=1)
    aspect = np.where(ratings >= 4, per_aspect.argmax(1), per_aspect.argmin(1))
    return np.where(ratings == 3, "none", np.asarray(ASPECTS)[aspect])


def explanation_instruction(title: str, price: float, rating: int, aspect: str) -> str:
    """The input of the explanation generator: the item, the user's rating and the aspect that mattered."""
    if not isinstance(title, str) or not title.strip():
        raise ValueError("the item title is empty")
    if rating not in (1, 2, 3, 4, 5):
        raise ValueError(f"rating must be an integer from 1 to 5, got {rating!r}")
    focus = "nothing in particular" if aspect == "none" else f"the {aspect}"
    return (f"Item: {title.strip()}, ${price:.2f}.\nRating: {int(rating)} of 5. What mattered: {focus}.\n"
            "Write the shopper's review in one sentence.")


def explanation_examples(shop, interactions: pd.DataFrame) -> pd.DataFrame:
    """Instruction and reference review for each interaction (columns user, item, rating, aspect, instruction, review)."""
    for column in ("user", "item", "rating", "review"):
        if column not in interactions.columns:
            raise ValueError(f"interactions need a {column!r} column")
    frame = interactions[["user", "item", "rating", "review"]].reset_index(drop=True)
    frame["aspect"] = review_aspects(shop, frame["user"], frame["item"], frame["rating"])
    items = shop.items.iloc[frame["item"].to_numpy()]
    frame["instruction"] = [explanation_instruction(t, p, int(r), a) for t, p, r, a in
                            zip(items["title"], items["price"], frame["rating"], frame["aspect"])]
    return frame


def attribute_vocabulary() -> list[str]:
    """Every attribute word an explanation could name: category nouns, tones, patterns and brands."""
    from course_utils.data.fashion_shop import BRANDS, NOUN, PATTERNS, TONES

    return [*NOUN.values(), *TONES, *PATTERNS, *BRANDS]


def item_attribute_words(items: pd.DataFrame, item_ids) -> list[list[str]]:
    """The attribute words each item really has (its category noun, tone, pattern and brand)."""
    from course_utils.data.fashion_shop import NOUN

    rows = items.iloc[np.asarray(item_ids)]
    return [[NOUN[c], t, p, b] for c, t, p, b in zip(rows["category"], rows["tone"], rows["pattern"], rows["brand"])]


def faithfulness_sentence(scores: dict, n_texts: int, who: str = "tuned"):
    """The faithfulness finding as a :class:`~course_utils.claims.Claim`, complete in every case.

    ``scores`` holds ``course_utils.text_metrics.faithfulness``'s values, under its
    keys (``mentioning``, ``precision``, ``any_false``) or the lesson's table names
    ("mentioning any attribute", "attribute precision", "with a wrong attribute").
    A wrong-attribute rate means little without the share that names any attribute
    (an explanation that names none is never wrong), so the sentence always gives
    all three. The case is "none" (no attribute named), "all true" or "some false".
    """
    from course_utils.claims import Claim

    keys = {"mentioning": "mentioning any attribute", "precision": "attribute precision",
            "any_false": "with a wrong attribute"}
    values = {k: scores[k] if k in scores else scores.get(alias) for k, alias in keys.items()}
    if values["mentioning"] is None or values["any_false"] is None:
        raise ValueError(f"scores need the faithfulness values {sorted(keys)}; got {sorted(scores)}")
    if isinstance(n_texts, bool) or not isinstance(n_texts, int) or n_texts <= 0:
        raise ValueError(f"n_texts must be a positive integer, got {n_texts!r}")
    naming, wrong = round(values["mentioning"] * n_texts), round(values["any_false"] * n_texts)
    if naming == 0:
        return Claim(f"None of the {n_texts} {who} explanations names any item attribute (category, tone, pattern "
                     "or brand), so their faithfulness cannot be judged: a text that names nothing is never wrong, "
                     "and never informative.", "none")
    text = (f"{naming} of the {n_texts} {who} explanations ({values['mentioning']:.0%}) name at least one item "
            f"attribute; {values['precision']:.0%} of the attributes they name are true of the item (precision), and "
            f"{wrong} of {n_texts} ({values['any_false']:.0%}) name one the item does not have.")
    return Claim(text, "some false" if wrong else "all true")


# ---------------------------------------------------------------- frozen lower layers, computed once
# When only the top k layers change (LoRA on the top layers), the hidden states that
# enter layer n - k depend on the prompt alone. We compute them once per prompt and
# run only the top k layers in every training step and every evaluation: the same
# numbers as the full forward pass (a test checks it to 1e-4), k/n of the cost.
def _check_top(top_layers, n_layers: int) -> int:
    if isinstance(top_layers, bool) or not isinstance(top_layers, int) or not 0 < top_layers <= n_layers:
        raise ValueError(f"top_layers must be an integer from 1 to {n_layers}, got {top_layers!r}")
    return top_layers


def _causal_lm(model):
    """The transformers model inside a peft wrapper (with its adapters injected), or the model itself."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _layer_view(model, first: int, last: int | None, final_norm: bool):
    """A causal LM that runs only layers[first:last] of ``model``, sharing its parameters.

    Shallow copies with their own module tables: the original model keeps all its layers.
    """
    lm = _causal_lm(model)
    view = copy.copy(lm)
    view._modules = dict(lm._modules)
    view.model = copy.copy(lm.model)
    view.model._modules = dict(lm.model._modules)
    view.model.layers = torch.nn.ModuleList(list(lm.model.layers)[first:last])
    if not final_norm:
        view.model.norm = torch.nn.Identity()
    return view


def lower_layer_states(model, tokenizer, prompts: Sequence[str], top_layers: int,
                       batch_size: int = 16) -> list[torch.Tensor]:
    """For each prompt, the hidden states entering the top ``top_layers`` layers: a (tokens, hidden) tensor.

    Run once with the frozen base model; :func:`score_from_states` and
    :func:`fit_from_states` then run only the top layers.
    """
    prompts, batch_size = _check_texts(prompts, "prompts"), _check_batch_size(batch_size)
    n_layers = _causal_lm(model).config.num_hidden_layers
    bottom = _layer_view(model, 0, n_layers - _check_top(top_layers, n_layers), final_norm=False)
    states = []
    with torch.inference_mode():
        for start in range(0, len(prompts), batch_size):
            batch = tokenizer(prompts[start:start + batch_size], return_tensors="pt", padding=True,
                              add_special_tokens=False).to(_device_of(model))
            _check_length(model, batch["input_ids"].shape[1])
            hidden = bottom.model(**batch, use_cache=False).last_hidden_state
            states += [h[m.bool()].clone() for h, m in zip(hidden, batch["attention_mask"])]
    return states


def _pad_states(states: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad (tokens, hidden) tensors into (B, T, hidden) with a (B, T) attention mask."""
    width = max(len(s) for s in states)
    padded = states[0].new_zeros((len(states), width, states[0].shape[1]))
    mask = torch.zeros((len(states), width), dtype=torch.long, device=states[0].device)
    for b, s in enumerate(states):
        padded[b, width - len(s):], mask[b, width - len(s):] = s, 1
    return padded, mask


def _last_logits_from_states(top, states: list[torch.Tensor]) -> torch.Tensor:
    hidden, mask = _pad_states(states)
    return top(inputs_embeds=hidden, attention_mask=mask, logits_to_keep=1, use_cache=False).logits[:, -1].float()


def score_from_states(model, tokenizer, states: list[torch.Tensor], top_layers: int,
                      batch_size: int = 32) -> np.ndarray:
    """P(Yes | Yes or No) like :func:`score_yes_no`, running only the top ``top_layers`` layers of ``model``."""
    if not states:
        raise ValueError("states is empty")
    batch_size = _check_batch_size(batch_size)
    n_layers = _causal_lm(model).config.num_hidden_layers
    top = _layer_view(model, n_layers - _check_top(top_layers, n_layers), None, final_norm=True)
    yes_id, no_id = yes_no_token_ids(tokenizer)
    was_training, scores = model.training, []
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(states), batch_size):
            scores.append(yes_probability(_last_logits_from_states(top, states[start:start + batch_size]),
                                          yes_id, no_id))
    model.train(was_training)
    return torch.cat(scores).cpu().numpy().astype(np.float64)


def fit_from_states(model, tokenizer, states: list[torch.Tensor], labels, top_layers: int, *, epochs: int = 1,
                    batch_size: int = 8, lr: float = 1e-3, seed: int = 0) -> TuningRun:
    """Train ``model``'s adapters (all in the top ``top_layers`` layers) to answer Yes for label 1, No for 0.

    The loss is the cross-entropy of the answer token at the first answer position,
    the loss :func:`fit_on_targets` computes for the one-token targets "Yes"/"No".
    """
    labels = np.asarray(labels)
    if len(states) == 0 or labels.shape != (len(states),) or not np.isin(labels, (0, 1)).all():
        raise ValueError(f"need one 0/1 label per state; got {len(states)} states and labels of shape {labels.shape}")
    batch_size = _check_batch_size(batch_size)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs <= 0:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    n_layers = _causal_lm(model).config.num_hidden_layers
    first_top = n_layers - _check_top(top_layers, n_layers)
    if not hasattr(model, "peft_config"):
        raise ValueError("the model is not a peft model, so every weight would train: wrap it with add_lora first")
    parameters = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    below = [n for n, _ in parameters if _layer_index(n) is not None and _layer_index(n) < first_top]
    if below:
        raise ValueError(f"trainable parameters below the top {top_layers} layers (e.g. {below[0]}); their cached "
                         f"inputs would be stale. Use add_lora(..., top_layers={top_layers}) or a larger top_layers")
    top = _layer_view(model, first_top, None, final_norm=True)
    answers = torch.tensor(yes_no_token_ids(tokenizer))[torch.as_tensor(1 - labels)]  # label 1 -> Yes
    optimizer = torch.optim.AdamW([p for _, p in parameters], lr=lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    losses, start = [], time.perf_counter()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(states), generator=generator).tolist()
        for first in range(0, len(order), batch_size):
            chosen = order[first:first + batch_size]
            logits = _last_logits_from_states(top, [states[i] for i in chosen])
            loss = torch.nn.functional.cross_entropy(logits, answers[chosen].to(logits.device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
    model.eval()
    return TuningRun(losses, time.perf_counter() - start, len(losses), epochs * len(states))


def _layer_index(name: str) -> int | None:
    parts = name.split(".")
    for before, after in zip(parts, parts[1:]):
        if before == "layers" and after.isdigit():
            return int(after)
    return None
