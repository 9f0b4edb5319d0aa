"""The LLM as a zero-shot ranker of candidate items, by sequence likelihood (Hou et al., 2024).

Each user gets a small candidate set: the held-out item plus ``n_negatives``
items they never interacted with, drawn with a fixed seed. The LLM reads a
prompt built from the user's history and scores every candidate title by how
likely it finds that title as the answer,

    log p(title | prompt) = sum_t log p(token_t | prompt, token_<t),

optionally divided by the number of tokens (length-normalised). The cost is
dominated by running the model: a naive ranker runs prompt + title once per
candidate; the cached ranker (``hub.sequence_log_likelihood``) runs the prompt
once, keeps its key/value cache and scores all candidates in one batched pass, and
the packed ranker (:func:`packed_log_likelihood`) puts all candidates into one
sequence behind that cache with a block attention mask, optionally after a prompt
prefix shared by all users (:class:`PromptPrefix`). :func:`naive_log_likelihood`
is the reference all of them must equal.

Because every model is judged on the same 20 candidates, the numbers here are
*sampled* metrics: higher than full-ranking ones and not comparable with them
(lesson 01, section 5). Chance is known exactly: a random order puts the target
in the top k of n candidates with probability k / n.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from course_utils.data.splits import Split
from course_utils.evaluation import sample_negatives, summarize_ranks
from course_utils.hub import cache_argument, scoring_tokens, sequence_log_likelihood
from course_utils.io import atomic_write, file_lock

NORMALISATIONS = ("sum", "mean")


def candidate_sets(split: Split, users: Sequence[int], n_negatives: int = 19, stage: str = "test",
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Candidates (len(users), n_negatives + 1) item ids and the column holding each user's held-out item.

    Negatives are drawn uniformly among items the user never interacted with (in
    train, validation or test), and the target sits in a random column, all from ``seed``.
    """
    users = np.asarray(users, dtype=np.int64)
    if users.ndim != 1 or len(users) == 0:
        raise ValueError("users must be a non-empty 1-D list of user ids")
    if len(np.unique(users)) != len(users):
        raise ValueError("users must be distinct")
    targets = split.targets(stage)[users]
    if (targets.getnnz(axis=1) != 1).any():
        raise ValueError(f"every user needs exactly one {stage} item (leave-one-out)")
    target = np.asarray(targets.argmax(axis=1)).ravel()
    forbidden = (split.history("test").matrix[users] + split.targets("test")[users]).tocsr()
    rng = np.random.default_rng(seed)
    negatives = sample_negatives(forbidden, n_negatives, rng)
    columns = rng.integers(0, n_negatives + 1, size=len(users))
    candidates = np.empty((len(users), n_negatives + 1), dtype=np.int64)
    for row, (col, item) in enumerate(zip(columns, target)):
        candidates[row] = np.insert(negatives[row], col, item)
    return candidates, columns


def _checked_candidates(continuations) -> list[str]:
    if isinstance(continuations, str):
        raise TypeError("candidates must be a list of titles, not one string")
    continuations = list(continuations)
    if not continuations:
        raise ValueError("the candidate list is empty")
    if len(set(continuations)) != len(continuations):
        duplicates = sorted({c for c in continuations if continuations.count(c) > 1})
        raise ValueError(f"the candidate list has duplicates: {duplicates[:3]}; each candidate must appear once")
    return continuations


def answer_texts(tokenizer, titles: Sequence[str]) -> list[str]:
    """What the ranker scores for each title: the title, then the end of the assistant's turn."""
    return [f"{title}{tokenizer.eos_token or ''}" for title in titles]


def naive_log_likelihood(model, tokenizer, prompt: str, continuations: Sequence[str]) -> np.ndarray:
    """log p(continuation | prompt) summed over its tokens, with one full forward pass per continuation.

    The slow reference: the prompt is recomputed for every candidate.
    """
    import torch

    continuations = _checked_candidates(continuations)
    prompt_ids = tokenizer(prompt)["input_ids"]
    scores = []
    with torch.inference_mode():
        for text in continuations:
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            # Only the last len(ids) + 1 positions' logits are needed (the prompt's last one predicts token 0).
            logits = model(torch.tensor([prompt_ids + ids], device=model.device),
                           logits_to_keep=len(ids) + 1).logits[0].float()
            logp = logits[:-1].log_softmax(-1)  # position p predicts token p + 1
            scores.append(logp.gather(-1, torch.tensor(ids, device=model.device)[:, None]).sum().item())
    return np.array(scores)


class PromptPrefix:
    """The key/value cache of a prompt prefix that many prompts share (the system message and the
    fixed instruction), computed once and reused: what serving systems call prefix caching.

    ``from_prompts`` finds the longest common start of the given prompts. A prompt that starts with a
    different text still works: only the tokens it shares with the prefix are reused.
    """

    def __init__(self, model, tokenizer, text: str):
        import torch

        if not isinstance(text, str) or not text:
            raise ValueError("the shared prefix must be a non-empty string")
        self.text = text
        self.ids = list(tokenizer(text)["input_ids"])
        self.model_id = id(model)
        with torch.inference_mode():
            self.cache = _cache_of(model(input_ids=torch.tensor([self.ids], device=model.device), use_cache=True,
                                         logits_to_keep=1))

    @classmethod
    def from_prompts(cls, model, tokenizer, prompts: Sequence[str]) -> "PromptPrefix":
        prompts = list(prompts)
        if len(prompts) < 2:
            raise ValueError("need at least two prompts to find the prefix they share")
        import os.path

        common = os.path.commonprefix(prompts)
        if not common:
            raise ValueError("these prompts share no common start")
        return cls(model, tokenizer, common)

    def __len__(self) -> int:
        return len(self.ids)

    def reusable(self, prompt_ids: Sequence[int]) -> int:
        """How many leading tokens of ``prompt_ids`` the cache covers (at most all but the last token,
        whose logits the scorer needs)."""
        n = 0
        for a, b in zip(self.ids, prompt_ids[:-1]):
            if a != b:
                break
            n += 1
        return n


def _cache_of(output):
    cache = getattr(output, "cache", None)
    return cache if cache is not None else getattr(output, "past_key_values")


def packed_log_likelihood(model, tokenizer, prompt: str, continuations: Sequence[str],
                          prefix: PromptPrefix | None = None) -> np.ndarray:
    """log p(continuation | prompt) summed over its tokens, for every continuation, in two forward passes.

    1. The prompt runs once (after the shared ``prefix``, if one is given); its key/value cache is kept.
    2. All continuations are packed into ONE sequence behind that cache. A 4-D attention mask lets each
       token see the prompt and the earlier tokens of its own continuation only, and each continuation's
       positions restart right after the prompt, so every continuation is scored exactly as if it were
       alone (the naive reference), with no padding and one large matrix product per layer instead of
       many small ones. The vocabulary projection runs only at positions whose next token is scored.
    """
    import copy

    import torch

    prompt_ids, pieces = scoring_tokens(model, tokenizer, prompt, _checked_candidates(continuations))
    if prefix is not None and prefix.model_id != id(model):
        raise ValueError("this PromptPrefix was computed with another model")
    device = model.device
    lengths = torch.tensor([len(p) for p in pieces], device=device)
    flat = torch.tensor([t for p in pieces for t in p], device=device)
    owner = torch.repeat_interleave(torch.arange(len(pieces), device=device), lengths)
    starts = torch.cat([lengths.new_zeros(1), lengths.cumsum(0)[:-1]])
    step = torch.arange(len(flat), device=device) - starts[owner]       # token index within its continuation
    n_prompt = len(prompt_ids)
    with torch.inference_mode():
        reuse = prefix.reusable(prompt_ids) if prefix is not None else 0
        cache = None
        if reuse:
            cache = copy.deepcopy(prefix.cache)
            if reuse < len(prefix):
                cache.crop(reuse - len(prefix))   # a negative count removes tokens from the end (every 4.x/5.x version)
        rest = torch.tensor([prompt_ids[reuse:]], device=device)
        cache_arg = cache_argument(model)
        out = model(input_ids=rest, use_cache=True, logits_to_keep=1,
                    position_ids=torch.arange(reuse, n_prompt, device=device)[None],
                    **({cache_arg: cache} if cache is not None else {}))
        first = out.logits[0, -1].float().log_softmax(-1)               # predicts every continuation's token 0
        own = (owner[:, None] == owner[None, :]) & (step[None, :] <= step[:, None])
        mask = torch.cat([torch.ones(len(flat), n_prompt, dtype=torch.bool, device=device), own], 1)[None, None]
        keep = torch.nonzero(step < lengths[owner] - 1).squeeze(1)       # positions whose next token is scored
        total = first[flat[starts]].double()
        if len(keep):
            logits = model(input_ids=flat[None], attention_mask=mask, position_ids=(n_prompt + step)[None],
                           use_cache=False, **{cache_arg: _cache_of(out)}, logits_to_keep=keep).logits[0]
            token_logp = logits.float().log_softmax(-1).gather(-1, flat[keep + 1][:, None]).squeeze(1)
            total = total.index_add(0, owner[keep], token_logp.double())
    return total.cpu().numpy()


def length_batch_size(lengths: Sequence[int], overhead: int = 12) -> int:
    """The batch size that scores continuations of these token lengths, sorted by length, with the fewest
    padded positions, counting each extra batch as ``overhead`` positions (copying the prompt's cache).

    >>> length_batch_size([2, 2, 2, 2, 20, 20])   # batches of 4: the short titles are not padded to 20
    4
    """
    lengths = sorted(int(n) for n in lengths)
    if not lengths or min(lengths) <= 0:
        raise ValueError("need at least one continuation, each of at least one token")
    if overhead < 0:
        raise ValueError(f"overhead must be >= 0, got {overhead}")

    def cost(size):
        return sum(len(lengths[i:i + size]) * lengths[i:i + size][-1] + overhead for i in range(0, len(lengths), size))

    return min(range(len(lengths), 0, -1), key=cost)   # ties: the largest batch


METHODS = ("packed", "batched", "naive")


def score_candidates(model, tokenizer, prompt: str, titles: Sequence[str], normalise: str = "mean",
                     method: str = "packed", prefix: PromptPrefix | None = None) -> np.ndarray:
    """One score per candidate title: log p(title + end | prompt), summed (``"sum"``) or per token (``"mean"``).

    Three ways to the same numbers (equal to 1e-4), from slowest to fastest:

    - ``"naive"``: prompt + title through the model once per candidate;
    - ``"batched"``: the prompt once, its key/value cache copied along a batch of titles, titles sorted
      by length into batches to limit padding (``hub.sequence_log_likelihood``);
    - ``"packed"``: the prompt once, then all titles packed into one sequence behind its cache with a
      block attention mask (:func:`packed_log_likelihood`); ``prefix`` also skips a shared prompt start.
    """
    if normalise not in NORMALISATIONS:
        raise ValueError(f"normalise must be one of {NORMALISATIONS}, got {normalise!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if prefix is not None and method != "packed":
        raise ValueError("a shared prefix is only used by method='packed'")
    texts = answer_texts(tokenizer, _checked_candidates(titles))
    if method == "packed":
        total = packed_log_likelihood(model, tokenizer, prompt, texts, prefix=prefix)
    elif method == "batched":
        lengths = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
        order = np.argsort(lengths, kind="stable")
        total = np.empty(len(texts))
        total[order] = sequence_log_likelihood(model, tokenizer, prompt, [texts[i] for i in order],
                                               batch_size=length_batch_size(lengths))
    else:
        total = naive_log_likelihood(model, tokenizer, prompt, texts)
    if normalise == "sum":
        return total
    return total / np.array([len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts])


def llm_scores(model, tokenizer, prompts: Sequence[str], candidate_titles: Sequence[Sequence[str]],
               method: str = "packed", prefix: PromptPrefix | None = None,
               progress: bool = False) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Scores of every user's candidates under both normalisations, and the seconds each user took.

    Returns ``({"sum": (n_users, n_cand), "mean": (n_users, n_cand)}, seconds (n_users,))``; both
    normalisations come from the same forward passes.
    """
    from tqdm.auto import tqdm

    if len(prompts) != len(candidate_titles):
        raise ValueError(f"need one prompt per candidate set, got {len(prompts)} and {len(candidate_titles)}")
    sums, means, seconds = [], [], []
    for prompt, titles in tqdm(list(zip(prompts, candidate_titles)), disable=not progress, desc="LLM ranker"):
        start = time.perf_counter()
        total = score_candidates(model, tokenizer, prompt, titles, "sum", method=method, prefix=prefix)
        seconds.append(time.perf_counter() - start)
        lengths = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in answer_texts(tokenizer, titles)]
        sums.append(total)
        means.append(total / np.array(lengths))
    return {"sum": np.array(sums), "mean": np.array(means)}, np.array(seconds)


def target_ranks(scores: np.ndarray, target_col: np.ndarray, seed: int = 0) -> np.ndarray:
    """1-based rank of each row's target among its candidates (higher score first; ties in a random order)."""
    scores = np.asarray(scores, dtype=np.float64)
    target_col = np.asarray(target_col, dtype=np.int64)
    if scores.ndim != 2 or len(target_col) != len(scores):
        raise ValueError(f"scores must be (n_users, n_candidates) with one target column per row; got "
                         f"{scores.shape} and {target_col.shape}")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    rows = np.arange(len(scores))
    own = scores[rows, target_col][:, None]
    tie_rank = np.random.default_rng(seed).random(scores.shape)
    ahead = (scores > own) | ((scores == own) & (tie_rank < tie_rank[rows, target_col][:, None]))
    return 1 + ahead.sum(axis=1)


def candidate_metrics(ranks, n_candidates: int = 20, ks=(1, 5, 10)) -> dict[str, np.ndarray]:
    """Per-user HR@k, NDCG@k, MRR and AUC of the target's rank among ``n_candidates``."""
    ranks = np.asarray(ranks, dtype=np.float64).reshape(-1, 1)
    if (ranks > n_candidates).any():
        raise ValueError(f"a rank exceeds the {n_candidates} candidates")
    values = summarize_ranks(ranks, n_candidates, ks)
    return {name: v for name, v in values.items() if name.split("@")[0] in ("HR", "NDCG", "MRR", "AUC")}


def chance_hit_rate(k: int, n_candidates: int = 20) -> float:
    """HR@k of a random order: the target is equally likely at each of the n positions."""
    return min(k, n_candidates) / n_candidates


def model_candidate_scores(score_fn, users: np.ndarray, history, candidates: np.ndarray) -> np.ndarray:
    """A recommender's scores (``score_fn(users, history)``, all items) restricted to each user's candidates."""
    full = np.asarray(score_fn(np.asarray(users), history), dtype=np.float64)
    if full.shape[0] != len(users):
        raise ValueError(f"score_fn returned {full.shape[0]} rows for {len(users)} users")
    return np.take_along_axis(full, np.asarray(candidates), axis=1)


def expected_ratings(model, tokenizer, prompts: Sequence[str], batch_size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Zero-shot rating prediction: p(next token = "1".."5" | prompt), renormalised over the five digits.

    Returns ``(probabilities (n, 5), expected rating (n,))``; the expected rating
    sum_r r p(r) is the prediction with the least expected squared error under the
    model's own distribution.
    """
    import torch

    digits = [tokenizer(str(r), add_special_tokens=False)["input_ids"] for r in range(1, 6)]
    if any(len(d) != 1 for d in digits):
        raise ValueError("this tokenizer does not write the digits 1-5 as single tokens")
    digit_ids = torch.tensor([d[0] for d in digits])
    probs = []
    with torch.inference_mode():
        for start in range(0, len(prompts), batch_size):
            batch = tokenizer(list(prompts[start:start + batch_size]), return_tensors="pt", padding=True,
                              add_special_tokens=False).to(model.device)
            if tokenizer.padding_side != "left":
                raise ValueError("expected_ratings reads the last position: the tokenizer must pad on the left")
            last = model(**batch, logits_to_keep=1).logits[:, -1].float()
            probs.append(last[:, digit_ids.to(last.device)].softmax(-1).cpu().numpy())
    probs = np.concatenate(probs).astype(np.float64)
    return probs, probs @ np.arange(1, 6)


BENCHMARK_RANKERS = {
    "naive": "naive (one forward pass per candidate)",
    "batched": "KV cache: prompt once, candidates in length-sorted padded batches",
    "packed": "KV cache: prompt once, candidates packed in one pass (block mask)",
    "packed + prefix": "packed, the shared instruction prefix cached once per session",
}


def benchmark_ranker(model, tokenizer, prompts: Sequence[str], candidate_titles: Sequence[Sequence[str]],
                     repeats: int = 1, naive_repeats: int = 1, threads: int | None = None,
                     prefix: PromptPrefix | None = None) -> pd.DataFrame:
    """Seconds to score one user's candidates with each ranker of ``BENCHMARK_RANKERS`` (best of
    ``naive_repeats`` runs for the naive one, ``repeats`` for the others), per user, and the largest
    difference of each ranker's scores from the naive ones.

    ``prefix``: the shared prompt prefix for the "packed + prefix" row (skipped without one); computing
    it is a once-per-session cost, not part of any user's time. ``threads``: torch threads for the
    benchmark only (restored afterwards); the table's ``threads`` column says what was used.
    """
    import os

    import torch

    if min(repeats, naive_repeats) < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats} and {naive_repeats}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    before = torch.get_num_threads()
    rows = []
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        for user, (prompt, titles) in enumerate(zip(prompts, candidate_titles)):
            row = {"user": user, "candidates": len(titles), "prompt tokens": len(tokenizer(prompt)["input_ids"]),
                   "prefix tokens": prefix.reusable(tokenizer(prompt)["input_ids"]) if prefix is not None else 0,
                   "threads": torch.get_num_threads()}
            scores = {}
            for name in BENCHMARK_RANKERS:
                if name == "packed + prefix" and prefix is None:
                    continue
                method, shared = name.split(" + ")[0], prefix if name.endswith("prefix") else None
                times = []
                for _ in range(naive_repeats if name == "naive" else repeats):
                    start = time.perf_counter()
                    scores[name] = score_candidates(model, tokenizer, prompt, titles, "sum", method=method,
                                                    prefix=shared)
                    times.append(time.perf_counter() - start)
                row[f"{name} s"] = min(times)
            for name in scores:
                if name != "naive":
                    row[f"{name} max diff"] = float(np.abs(scores[name] - scores["naive"]).max())
            row["load average"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
            rows.append(row)
    finally:
        torch.set_num_threads(before)
    return pd.DataFrame(rows).set_index("user")


def timings_markdown(table: pd.DataFrame, model_name: str, threads: int, note: str = "") -> str:
    """The benchmark as a Markdown section for ``build/timings.md``."""
    import os

    rankers = [name for name in BENCHMARK_RANKERS if f"{name} s" in table]
    if "naive" not in rankers:
        raise ValueError("the benchmark table has no naive timings")
    now = table["load average"].max() if "load average" in table else (os.getloadavg()[0] if hasattr(os, "getloadavg") else None)
    load = f"1-minute load average up to {now:.1f} on {os.cpu_count()} cores" if now is not None and now == now else ""
    naive = table["naive s"].median()
    lines = []
    for name in rankers:
        median = table[f"{name} s"].median()
        diff = f"{table[f'{name} max diff'].max():.1e}" if name != "naive" else ""
        lines.append(f"| {BENCHMARK_RANKERS[name]} | {median:.2f} | {naive / median:.1f}× | {diff} |")
    prefix = (f"; shared prefix {int(table['prefix tokens'].median())} tokens" if table.get("prefix tokens") is not None
              and table["prefix tokens"].max() > 0 else "")
    return (f"## LLM ranker: 20 candidates per user (lesson 09)\n\n"
            f"Model {model_name}, {threads} torch thread(s), {load}; median over {len(table)} user(s), "
            f"{int(table['candidates'].iloc[0])} candidates, prompts of {int(table['prompt tokens'].median())} tokens"
            f"{prefix}{'; ' + note if note else ''}. Budget: ≤ 1 s per user for the fastest ranker.\n\n"
            "| ranker | median seconds per user | speed-up | max abs. score difference from naive |\n|---|---|---|---|\n"
            + "\n".join(lines) + f"\n\nRecorded {time.strftime('%Y-%m-%d %H:%M')}.\n")


_BEGIN, _END = "<!-- begin section: {} -->", "<!-- end section: {} -->"


def write_timings_section(markdown: str, path: str | Path | None = None, name: str = "llm-ranker") -> Path:
    """Put ``markdown`` into ``path`` (default ``build/timings.md`` of the course) between markers named
    ``name``, replacing that section if present and keeping everything else; atomic and locked."""
    if path is None:
        from course_utils.results import course_root

        root = course_root()
        if root is None:
            raise ValueError("no course checkout found to write build/timings.md into; pass path=")
        path = Path(root) / "build" / "timings.md"
    path = Path(path)
    if not name or any(c in name for c in "<>\n"):
        raise ValueError(f"section name must be plain text, got {name!r}")
    begin, end = _BEGIN.format(name), _END.format(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    block = f"{begin}\n{markdown.strip()}\n{end}\n"
    with file_lock(path):
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        if begin in text and end in text and text.index(begin) < text.index(end):
            head, rest = text.split(begin, 1)
            text = head + block + rest.split(end, 1)[1].lstrip("\n")
        else:
            text = (text.rstrip("\n") + "\n\n" if text.strip() else "") + block
        with atomic_write(path, "w") as handle:
            handle.write(text)
    return path


# ---------------------------------------------------------------------------
# Position bias: the candidate list written into the prompt
# ---------------------------------------------------------------------------

def position_orders(n_users: int, n_candidates: int, target_col, n_shuffles: int, seed: int = 0) -> np.ndarray:
    """Listing orders (2 + n_shuffles, n_users, n_candidates) of candidate columns.

    Order 0 lists the target first and order 1 lists it last, the other candidates
    in the same random order in both; orders 2.. are random shuffles, shared by the
    "first" and "last" runs so that their comparison is paired.
    """
    target_col = np.asarray(target_col, dtype=np.int64)
    if len(target_col) != n_users or n_shuffles < 0:
        raise ValueError(f"need one target column per user and n_shuffles >= 0; got {len(target_col)} for "
                         f"{n_users} users, n_shuffles={n_shuffles}")
    rng = np.random.default_rng(seed)
    orders = np.empty((2 + n_shuffles, n_users, n_candidates), dtype=np.int64)
    for user, col in enumerate(target_col):
        others = rng.permutation(np.delete(np.arange(n_candidates), col))
        orders[0, user] = np.concatenate([[col], others])
        orders[1, user] = np.concatenate([others, [col]])
        for s in range(n_shuffles):
            orders[2 + s, user] = rng.permutation(n_candidates)
    return orders


def listed_scores(model, tokenizer, histories: Sequence[Sequence[str]], candidate_titles: Sequence[Sequence[str]],
                  orders: np.ndarray, normalise: str = "mean", prefix: PromptPrefix | None = None,
                  progress: bool = False) -> np.ndarray:
    """Scores (n_orders, n_users, n_candidates), in candidate-column order, when the candidates are listed in
    the prompt in each order of ``orders`` (see :func:`position_orders`)."""
    from tqdm.auto import tqdm

    from course_utils.llm.prompting import ranking_messages, render_chat

    orders = np.asarray(orders)
    out = np.empty(orders.shape, dtype=np.float64)
    jobs = [(o, u) for u in range(orders.shape[1]) for o in range(orders.shape[0])]
    for o, u in tqdm(jobs, disable=not progress, desc="listed orders"):
        titles = list(candidate_titles[u])
        listed = [titles[j] for j in orders[o, u]]
        prompt = render_chat(tokenizer, ranking_messages(histories[u], listed))
        out[o, u] = score_candidates(model, tokenizer, prompt, titles, normalise, prefix=prefix)
    return out


def compare_lower_is_better(per_user_a, per_user_b, a: str, b: str, metric: str, digits: int = 3):
    """``claims.compare_models`` for a metric where lower is better (an error, a rank swing).

    Returns a Claim whose case is A's verdict: "better" (A significantly lower),
    "worse" or "level", with the paired interval of A - B.
    """
    from course_utils.claims import Claim, compare_models

    x, y = np.asarray(per_user_a, dtype=np.float64), np.asarray(per_user_b, dtype=np.float64)
    comparison = compare_models(-x, -y, a, b, metric)
    low, high = -comparison.high, -comparison.low
    values = f"{metric} {x.mean():.{digits}f} against {y.mean():.{digits}f}, lower is better"
    evidence = (f"paired difference {x.mean() - y.mean():+.{digits}f}, {comparison.level:.0%} CI {low:+.{digits}f} "
                f"to {high:+.{digits}f}, {comparison.n_users} users")
    if comparison.verdict == "level":
        return Claim(f"**{a}** and **{b}** show no significant difference ({values}; {evidence}).", "level")
    return Claim(f"**{a}** is **{comparison.verdict}** than **{b}** ({values}; {evidence}).", comparison.verdict)
