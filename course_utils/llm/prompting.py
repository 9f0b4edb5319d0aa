"""Prompts built from a user's history, free generation, and mapping generated titles back to the catalogue.

Survey Section 3.2.1: an off-the-shelf LLM recommends when the user's history is
written into a prompt ("I watched A, B, C; recommend ten more") and its answer is
read back as item titles. Two things can go wrong in the reading:

* the title is spelled differently from the catalogue ("The Lion King" vs
  "Lion King, The") -- :class:`CatalogueMatcher` normalises both sides
  (``course_utils.text.normalise_title``) and falls back to a fuzzy match;
* the title is not in the catalogue at all -- a *hallucination* as far as the
  recommender is concerned (an invented movie, or a real one the catalogue lacks).

Prompts are chat messages (``[{"role": ..., "content": ...}]``) rendered with the
model's own chat template, so the same code serves SmolLM2 and any larger
instruction-tuned model loaded through ``hub.load_llm``.
"""
from __future__ import annotations

import difflib
import re
from typing import Sequence

import numpy as np
import pandas as pd

from course_utils.text import display_title, normalise_title

SYSTEM = "You are a movie recommender. Answer briefly, with movie titles only."


def movie_titles(items: pd.DataFrame) -> list[str]:
    """One short title per item, row order = item id: "Lion King, The" -> "The Lion King" (no year: fewer tokens)."""
    if "title" not in getattr(items, "columns", ()):
        raise ValueError("items need a 'title' column (e.g. load_movielens().items)")
    return [display_title(str(title)) for title in items["title"]]


def _checked_history(history: Sequence[str], what: str = "history") -> list[str]:
    if isinstance(history, str):
        raise TypeError(f"{what} must be a list of titles, not one string")
    titles = [str(t).strip() for t in history]
    if not titles:
        raise ValueError(f"the {what} is empty: a prompt needs at least one item the user liked")
    if not all(titles):
        raise ValueError(f"the {what} contains an empty title")
    return titles


def bullet_list(titles: Sequence[str], numbered: bool = False) -> str:
    """Titles one per line: "- A" (or "1. A")."""
    return "\n".join(f"{i}. {t}" if numbered else f"- {t}" for i, t in enumerate(titles, 1))


def next_item_messages(history: Sequence[str], k: int = 10, examples=(), system: str = SYSTEM) -> list[dict]:
    """Chat messages asking for ``k`` next titles after ``history`` (oldest first).

    ``examples``: few-shot demonstrations, each ``(history_titles, next_titles)`` from
    *other* users, shown as earlier user/assistant turns (in-context learning).
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}")

    def ask(titles, n):
        return (f"I watched these movies, oldest first:\n{bullet_list(titles)}\n"
                f"Recommend {n} other movies I will watch next, as a numbered list of titles.")

    messages = [{"role": "system", "content": system}]
    for shown, answer in examples:
        answer = _checked_history(answer, "example answer")
        messages += [{"role": "user", "content": ask(_checked_history(shown, "example history"), len(answer))},
                     {"role": "assistant", "content": bullet_list(answer, numbered=True)}]
    return messages + [{"role": "user", "content": ask(_checked_history(history), k)}]


def ranking_messages(history: Sequence[str], candidates: Sequence[str] | None = None,
                     system: str = SYSTEM) -> list[dict]:
    """Messages whose answer is scored by the likelihood ranker: the next movie, optionally out of a listed set.

    With ``candidates`` the list is written into the prompt in the given order
    (the setup of Hou et al., 2024), which is what exposes the ranker to position bias.
    """
    text = f"I watched these movies, oldest first:\n{bullet_list(_checked_history(history))}\n"
    if candidates is not None:
        candidates = _checked_history(candidates, "candidate list")
        if len(set(candidates)) != len(candidates):
            raise ValueError("the candidate list has duplicate titles; each candidate must appear once")
        text += f"Candidates:\n{bullet_list(candidates)}\nWhich candidate will I watch next? Answer with its title."
    else:
        text += "Which movie will I watch next? Answer with its title."
    return [{"role": "system", "content": system}, {"role": "user", "content": text}]


def rating_messages(history: Sequence[str], ratings: Sequence[float], query: str, system: str = SYSTEM) -> list[dict]:
    """Messages asking for a 1-5 star rating of ``query`` given the user's rated history."""
    history = _checked_history(history)
    if len(ratings) != len(history):
        raise ValueError(f"need one rating per history title, got {len(ratings)} ratings for {len(history)} titles")
    if not isinstance(query, str) or not query.strip():
        raise ValueError("the query title must be a non-empty string")
    lines = "\n".join(f"- {t}: {int(r)} stars" for t, r in zip(history, ratings))
    return [{"role": "system", "content": "You predict movie ratings from 1 to 5 stars. Answer with one digit."},
            {"role": "user", "content": f"My ratings:\n{lines}\nHow many stars will I give {query.strip()}?"}]


def render_chat(tokenizer, messages: list[dict], context: int | None = None) -> str:
    """The prompt text (the model's chat template, ready for the assistant's answer); a ValueError if it
    does not fit in ``context`` tokens."""
    if not messages or not all(isinstance(m, dict) and {"role", "content"} <= set(m) for m in messages):
        raise ValueError("messages must be a non-empty list of {'role': ..., 'content': ...} dicts")
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if context is not None:
        n_tokens = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        if n_tokens > context:
            raise ValueError(f"the prompt has {n_tokens} tokens, more than the model's context of {context}; "
                             "use fewer history items or shorter titles")
    return text


def context_length(model) -> int | None:
    """The model's context window in tokens (None when its config does not say)."""
    return getattr(model.config, "max_position_embeddings", None)


def chat_markdown(messages: list[dict], response: str | None = None) -> str:
    """A chat as Markdown: one quoted block per turn, the model's answer last."""
    turns = [*messages, *([{"role": "assistant (model)", "content": response}] if response is not None else [])]
    blocks = []
    for turn in turns:
        body = "\n".join(f"> {line}" if line.strip() else ">" for line in str(turn["content"]).splitlines())
        blocks.append(f"**{turn['role']}**\n\n{body}")
    return "\n\n".join(blocks)


def generate(model, tokenizer, prompts: Sequence[str], max_new_tokens: int = 60, do_sample: bool = False,
             seed: int = 0, **options) -> list[str]:
    """The model's answer to each rendered prompt (batched, left-padded), special tokens removed."""
    import torch

    if isinstance(prompts, str) or not len(prompts):
        raise ValueError("prompts must be a non-empty list of rendered prompt strings")
    torch.manual_seed(seed)
    batch = tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    with torch.inference_mode():
        out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=do_sample,
                             pad_token_id=tokenizer.pad_token_id, **options)
    return tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)


_LIST_MARK = re.compile(r"^\s*(?:\d+\s*[.):-]|[-*•])\s*")


def parse_titles(answer: str) -> list[str]:
    """The titles of a list answer, one per line, numbering, bullets, quotes and trailing notes removed.

    >>> parse_titles('1. "Heat" (1995)\\n2. Fargo - a dark comedy')
    ['Heat (1995)', 'Fargo']
    """
    if not isinstance(answer, str):
        raise TypeError(f"answer must be a string, got {type(answer).__name__}")
    titles = []
    for line in answer.splitlines():
        if (not _LIST_MARK.match(line) and titles) or line.rstrip().endswith(":"):
            continue  # prose around the list ("Here are ten movies:")
        text = _LIST_MARK.sub("", line).strip()
        text = re.split(r"\s+[-–—:]\s+", text)[0]  # "Fargo - a dark comedy"
        text = text.replace("**", "").replace('"', "").strip(" *_.")
        if text:
            titles.append(text)
    return titles


class CatalogueMatcher:
    """Map free-text titles to catalogue item ids: exact on the normalised key, else the closest key by
    ``difflib`` similarity if it reaches ``cutoff`` (0-1).

    >>> CatalogueMatcher(["Lion King, The", "Heat"]).match("the lion king")
    [0]
    """

    def __init__(self, titles: Sequence[str], cutoff: float = 0.9):
        titles = [str(t) for t in titles]
        if not titles:
            raise ValueError("the catalogue is empty")
        if not 0 < cutoff <= 1:
            raise ValueError(f"cutoff must lie in (0, 1], got {cutoff}")
        self.titles, self.cutoff = titles, cutoff
        self.keys: dict[str, list[int]] = {}
        for item, title in enumerate(titles):
            self.keys.setdefault(normalise_title(title), []).append(item)

    def match(self, title: str) -> list[int]:
        """Item ids the title names (several for remakes with one name); [] when none is close enough."""
        key = normalise_title(title)
        if not key:
            return []
        if key in self.keys:
            return list(self.keys[key])
        close = difflib.get_close_matches(key, list(self.keys), n=1, cutoff=self.cutoff)
        return list(self.keys[close[0]]) if close else []

    def table(self, answers: Sequence[str], users: Sequence[int], seen: Sequence[set] | None = None) -> pd.DataFrame:
        """One row per generated title: user, rank in the answer, title, matched item ids, and whether it is
        a hallucination (no match) or already in the user's history (``seen``)."""
        rows = []
        for i, (user, answer) in enumerate(zip(users, answers)):
            for rank, title in enumerate(parse_titles(answer), 1):
                items = self.match(title)
                rows.append({"user": int(user), "rank": rank, "generated": title, "items": items,
                             "catalogue title": self.titles[items[0]] if items else None,
                             "hallucinated": not items,
                             "seen": bool(seen is not None and set(items) & seen[i])})
        return pd.DataFrame(rows, columns=["user", "rank", "generated", "items", "catalogue title",
                                           "hallucinated", "seen"])


def generated_lists(table: pd.DataFrame, users: Sequence[int], k: int = 10) -> list[list[int]]:
    """Per user, the first ``k`` distinct catalogue items of their generated titles, skipping seen ones."""
    lists = []
    for user in users:
        rows = table[(table["user"] == user) & ~table["hallucinated"] & ~table["seen"]]
        items = list(dict.fromkeys(i for found in rows["items"] for i in found))
        lists.append(items[:k])
    return lists


def generation_hit_rate(lists: Sequence[Sequence[int]], targets: Sequence[int]) -> np.ndarray:
    """Per user, 1.0 when the held-out item is in their generated list, else 0.0 (HR@len(list))."""
    if len(lists) != len(targets):
        raise ValueError(f"need one list per target, got {len(lists)} lists and {len(targets)} targets")
    return np.array([float(int(t) in set(items)) for items, t in zip(lists, targets)])
