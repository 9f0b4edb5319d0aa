"""Constrained decoding: a trie of tokenised catalogue titles, so that an LLM can only write real items.

Free generation lets a language model name movies that do not exist (or that the
catalogue does not hold). Constrained decoding removes the problem at its root
(De Cao et al., 2021, "Autoregressive Entity Retrieval"; used for recommendation
by generative retrieval methods, survey Section 3.2): every catalogue title is
tokenised once and stored in a prefix tree; at each decoding step the model may
only choose a token that continues some title, and may stop (emit the end token)
only where a title ends. Greedy, beam search and sampling all stay inside the
catalogue, because the mask is applied to the logits before any of them picks.

The mask is handed to ``transformers``' own ``generate`` through
``prefix_allowed_tokens_fn``; the trie is the part written here.
"""
from __future__ import annotations

from typing import Iterable, Sequence

_END = -1  # key of a node's list of items whose title ends there


class TitleTrie:
    """A prefix tree over token-id sequences; each complete sequence maps to the item ids with that title.

    >>> trie = TitleTrie(end_token=0)
    >>> trie.add([5, 6], item=10); trie.add([5, 7], item=11); trie.add([5], item=12)
    >>> sorted(trie.next_tokens([5]))   # continue to 6 or 7, or stop (end token 0) after item 12's title
    [0, 6, 7]
    >>> trie.items([5, 7])
    [11]
    """

    def __init__(self, end_token: int):
        if isinstance(end_token, bool) or not isinstance(end_token, int) or end_token < 0:
            raise ValueError(f"end_token must be a token id (a non-negative integer), got {end_token!r}")
        self.end_token = end_token
        self.root: dict = {}
        self.n_titles = 0
        self.depth = 0

    def add(self, tokens: Sequence[int], item: int) -> None:
        tokens = [int(t) for t in tokens]
        if not tokens:
            raise ValueError(f"item {item}: a title needs at least one token")
        if self.end_token in tokens:
            raise ValueError(f"item {item}: its title contains the end token {self.end_token}")
        node = self.root
        for token in tokens:
            node = node.setdefault(token, {})
        if _END not in node:
            self.n_titles += 1
        node.setdefault(_END, []).append(int(item))
        self.depth = max(self.depth, len(tokens))

    def _node(self, prefix: Iterable[int]) -> dict | None:
        node = self.root
        for token in prefix:
            node = node.get(int(token))
            if node is None:
                return None
        return node

    def next_tokens(self, prefix: Sequence[int]) -> list[int]:
        """Tokens allowed after ``prefix``: those continuing a title, plus the end token where a title ends.
        Empty when ``prefix`` is not the start of any title."""
        node = self._node(prefix)
        if node is None:
            return []
        return [t for t in node if t != _END] + ([self.end_token] if _END in node else [])

    def items(self, tokens: Sequence[int]) -> list[int]:
        """Item ids whose title is exactly ``tokens`` (end token excluded); [] if none."""
        node = self._node(tokens)
        return list(node.get(_END, [])) if node is not None else []

    def __contains__(self, tokens) -> bool:
        return bool(self.items(tokens))

    def __len__(self) -> int:
        return self.n_titles


def title_tokens(tokenizer, title: str) -> list[int]:
    """How a title is tokenised at the start of the assistant's answer (no special tokens, no leading space)."""
    return tokenizer(title, add_special_tokens=False)["input_ids"]


def build_title_trie(tokenizer, titles: Sequence[str], items: Sequence[int] | None = None,
                     end_token: int | None = None, exclude: Iterable[int] = ()) -> TitleTrie:
    """A trie of ``titles`` (item ``items[i]`` for ``titles[i]``; default: their positions), ending with the
    tokenizer's end-of-turn token unless ``end_token`` is given. Items in ``exclude`` (say, the user's
    history) are left out, so they cannot be generated."""
    end = tokenizer.eos_token_id if end_token is None else end_token
    if end is None:
        raise ValueError("the tokenizer has no end-of-sequence token; pass end_token")
    return trie_from_tokens([title_tokens(tokenizer, t) for t in titles], int(end), items, exclude)


def trie_from_tokens(token_lists: Sequence[Sequence[int]], end_token: int, items: Sequence[int] | None = None,
                     exclude: Iterable[int] = ()) -> TitleTrie:
    """A trie of already tokenised titles: tokenise the catalogue once, build a per-user trie cheaply."""
    token_lists = list(token_lists)
    items = list(range(len(token_lists))) if items is None else [int(i) for i in items]
    if not token_lists:
        raise ValueError("no titles to put in the trie")
    if len(items) != len(token_lists):
        raise ValueError(f"need one item id per title, got {len(items)} ids for {len(token_lists)} titles")
    skip = {int(i) for i in exclude}
    trie = TitleTrie(end_token)
    for tokens, item in zip(token_lists, items):
        if item not in skip:
            trie.add(tokens, item)
    if not len(trie):
        raise ValueError("every title was excluded: the trie is empty")
    return trie


def allowed_tokens_fn(trie: TitleTrie, prompt_length: int):
    """A ``prefix_allowed_tokens_fn`` for ``generate``: after the prompt, only continuations of a title.

    Once a sequence has emitted the end token it may only repeat it (finished beams
    and padded samples are still asked).
    """
    def allowed(batch_id, input_ids) -> list[int]:
        generated = input_ids[prompt_length:].tolist()
        if trie.end_token in generated:
            return [trie.end_token]
        return trie.next_tokens(generated) or [trie.end_token]

    return allowed


def constrained_titles(model, tokenizer, prompt: str, trie: TitleTrie, n: int = 10, num_beams: int | None = None,
                       do_sample: bool = False, seed: int = 0, **options) -> list[dict]:
    """``n`` titles the model writes after ``prompt`` when it may only write titles of ``trie``.

    Beam search by default (``num_beams = n``: the n most likely catalogue titles the
    beam finds); ``do_sample=True`` draws ``n`` samples instead. Returns one dict per
    answer: ``text``, ``tokens`` and ``items`` (the catalogue ids with that title).
    """
    import torch

    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"].to(model.device)
    length = ids.shape[1]
    search = dict(do_sample=True, num_beams=1) if do_sample else dict(do_sample=False, num_beams=num_beams or n)
    if not do_sample and search["num_beams"] < n:
        raise ValueError(f"beam search returns at most num_beams sequences: num_beams={num_beams} < n={n}")
    torch.manual_seed(seed)
    with torch.inference_mode():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=trie.depth + 1,
                             num_return_sequences=n, prefix_allowed_tokens_fn=allowed_tokens_fn(trie, length),
                             pad_token_id=trie.end_token, eos_token_id=trie.end_token, **search, **options)
    answers = []
    for row in out[:, length:].tolist():
        tokens = row[:row.index(trie.end_token)] if trie.end_token in row else row
        answers.append({"text": tokenizer.decode(tokens), "tokens": tokens, "items": trie.items(tokens)})
    return answers
