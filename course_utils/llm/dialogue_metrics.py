"""Dialogue-level metrics for a conversational recommender (survey Section 5.3).

A dialogue (``conversational.Dialogue``) is judged as a whole, the way iEvaLM (Wang et al., 2023)
and RecLLM (Friedman et al., 2023) judge theirs with simulated users:

* **success and recall within the dialogue**: :func:`dialogue_frame` gives, per dialogue, whether
  and at which system turn the hidden target was shown, at which position of the list, how many items
  the shopper looked at, and whether a *close match* (same category, tone and pattern) was shown;
  :func:`recall_by_turn` is the share of targets shown within the first t turns (recall@(k·t) items);
* **response diversity**: :func:`distinct_n` (Li et al., 2016), unique n-grams over all n-grams, over
  the system's (or the shopper's) words, for a whole configuration or per dialogue;
* **the simulator itself**: :func:`revealed_attributes` and :func:`leak_audit` count how many of its
  hidden target's attributes a simulated shopper states in one utterance; an utterance that states
  ``threshold`` or more reads out (most of) the target's title, a *target leak*.
  :class:`LeakMaskingSimulator` wraps a simulator and removes the leaked words, so that the success
  rate without the leak can be measured on the same targets.

Intervals: :func:`proportion_ci` (exact Clopper-Pearson) for rates, :func:`bootstrap_ci` for any
statistic of resampled dialogues or cases.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from course_utils.llm.conversational import PATTERN_WORDS, TONE_WORDS, parse_utterance
from course_utils.llm.simulators import Reply

STATED = ("category", "tone", "pattern", "brand")  # the attributes a shopper can state
_WORD = re.compile(r"\w+(?:['-]\w+)*")
_ITEM_LINE = re.compile(r"^\s*\d+\.\s.*\(id \d+\)\s*$")


# ---------------------------------------------------------------- diversity
def words(text: str) -> list[str]:
    """Lower-case word tokens ("I'll", "t-shirt" and "33" are one token each)."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}")
    return _WORD.findall(text.lower())


def ngrams(tokens: Sequence[str], n: int) -> list[tuple]:
    """The n-grams of one token list, in order (none when it is shorter than n)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(texts: Sequence[str], n: int) -> float:
    """distinct-n (Li et al., 2016): distinct n-grams / all n-grams, pooled over ``texts``.

    n-grams never cross from one text into the next. NaN when the texts hold no n-gram at all.

    >>> distinct_n(["a b a b"], 1), distinct_n(["a b a b"], 2)
    (0.5, 0.6666666666666666)
    """
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, not one string")
    texts = list(texts)
    if not texts:
        raise ValueError("texts is empty: distinct-n needs at least one text")
    counts = Counter(g for text in texts for g in ngrams(words(text), n))
    total = sum(counts.values())
    return len(counts) / total if total else float("nan")


def system_texts(dialogue, own_words: bool = False) -> list[str]:
    """What the system said in each turn. ``own_words=True`` drops the listed items ("1. Dark plain coat
    by Miro, $80.99 (id 12)"), whose words come from the catalogue, not from the system."""
    texts = [text for role, text, _ in dialogue.transcript if role == "system"]
    if own_words:
        texts = ["\n".join(line for line in text.splitlines() if not _ITEM_LINE.match(line)) for text in texts]
    return texts


def user_texts(dialogue) -> list[str]:
    """The shopper's utterances, without the final acceptance (the shared stopping rule's fixed words)."""
    said = [text for role, text, _ in dialogue.transcript if role == "user"]
    return said[:-1] if dialogue.success else said


def diversity_table(runs: dict, n_values=(1, 2), side: str = "system", own_words: bool = False) -> pd.DataFrame:
    """distinct-n per configuration (``runs``: name -> dialogues), pooled over all its responses, and
    the mean over dialogues of each dialogue's own distinct-n (NaN dialogues, too short, skipped)."""
    if side not in ("system", "user"):
        raise ValueError(f"side must be 'system' or 'user', got {side!r}")
    texts_of = (lambda d: system_texts(d, own_words)) if side == "system" else user_texts
    rows = {}
    for name, dialogues in runs.items():
        texts = [t for d in dialogues for t in texts_of(d)]
        row = {"responses": len(texts)}
        for n in n_values:
            row[f"distinct-{n}"] = distinct_n(texts, n) if texts else np.nan
            row[f"distinct-{n} per dialogue"] = np.nanmean(per_dialogue_distinct(dialogues, n, side, own_words))
        rows[name] = row
    return pd.DataFrame(rows).T.astype({"responses": int})


def per_dialogue_distinct(dialogues, n: int, side: str = "system", own_words: bool = False) -> np.ndarray:
    """Each dialogue's distinct-n over its own responses (NaN for a dialogue without any n-gram)."""
    texts_of = (lambda d: system_texts(d, own_words)) if side == "system" else user_texts
    return np.array([distinct_n(texts_of(d), n) if texts_of(d) else np.nan for d in dialogues])


# ---------------------------------------------------------------- success and recall within the dialogue
def _matches(items: pd.DataFrame, item: int, target: int, fields=("category", "tone", "pattern")) -> bool:
    return all(items.at[int(item), f] == items.at[int(target), f] for f in fields)


def dialogue_frame(dialogues, items: pd.DataFrame) -> pd.DataFrame:
    """One row per dialogue: ``success``, ``turns``, ``hit turn`` (the system turn that showed the target,
    NaN if never), ``hit position`` (1-based place in that list), ``items shown`` (before the shopper
    stopped), ``close match`` (an item with the target's category, tone and pattern was shown) and
    ``close match turn``."""
    items = items.reset_index(drop=True)
    rows = []
    for d in dialogues:
        system_turns = [text for role, text, _ in d.transcript if role == "system"]
        # d.recommended holds only the turns that showed items: map them back to system turn numbers.
        showing = [t + 1 for t, text in enumerate(system_turns) if any(map(_ITEM_LINE.match, text.splitlines()))]
        if len(showing) != len(d.recommended):
            raise ValueError(f"dialogue of user {d.user}: {len(showing)} system turns list items but "
                             f"{len(d.recommended)} lists were recorded")
        hit_turn = hit_pos = close_turn = np.nan
        for turn, shown in zip(showing, d.recommended):
            if np.isnan(close_turn) and any(_matches(items, i, d.target) for i in shown):
                close_turn = turn
            if np.isnan(hit_turn) and d.target in shown:
                hit_turn, hit_pos = turn, shown.index(d.target) + 1
        rows.append({"user": d.user, "target": d.target, "success": d.success, "turns": d.turns,
                     "hit turn": hit_turn, "hit position": hit_pos, "items shown": len(d.items_named),
                     "close match": not np.isnan(close_turn), "close match turn": close_turn})
    return pd.DataFrame(rows)


def recall_by_turn(dialogues, items: pd.DataFrame, max_turns: int) -> np.ndarray:
    """(n_dialogues, max_turns) booleans: was the target shown within the first t system turns (t = 1..)."""
    if isinstance(max_turns, bool) or not isinstance(max_turns, (int, np.integer)) or max_turns < 1:
        raise ValueError(f"max_turns must be a positive integer, got {max_turns!r}")
    hit = dialogue_frame(dialogues, items)["hit turn"].to_numpy(float)
    return np.nan_to_num(hit, nan=np.inf)[:, None] <= np.arange(1, max_turns + 1)[None, :]


def proportion_ci(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of a proportion."""
    from scipy.stats import binomtest

    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n >= 1, got {successes} of {n}")
    interval = binomtest(int(successes), int(n)).proportion_ci(level)
    return float(interval.low), float(interval.high)


def bootstrap_ci(statistic: Callable, *arrays, n_boot: int = 2000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(*arrays)``, resampling the rows of all arrays together
    (cases, dialogues). Resamples where the statistic is undefined (NaN) are skipped."""
    arrays = [np.asarray(a) for a in arrays]
    if not arrays or len({len(a) for a in arrays}) != 1 or not len(arrays[0]):
        raise ValueError("need one or more non-empty arrays of the same length")
    if n_boot < 100 or not 0 < level < 1:
        raise ValueError(f"need n_boot >= 100 and 0 < level < 1, got {n_boot}, {level}")
    rng = np.random.default_rng(seed)
    n = len(arrays[0])
    values = np.array([statistic(*(a[idx] for a in arrays)) for idx in rng.integers(0, n, size=(n_boot, n))], float)
    values = values[np.isfinite(values)]
    if not len(values):
        return float("nan"), float("nan")
    alpha = (1 - level) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return float(low), float(high)


def conversation_table(runs: dict, items: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Per system (``runs``: name -> dialogues): lesson 13's ``summary_table`` (success with its exact
    interval, turns to success with a bootstrap interval), plus close-match rate with its exact interval
    and items shown before stopping with a bootstrap interval."""
    from course_utils.llm.conversational import summary_table

    table = summary_table(runs, level)
    for name, dialogues in runs.items():
        frame = dialogue_frame(dialogues, items)
        close = int(frame["close match"].sum())
        low, high = proportion_ci(close, len(frame), level)
        shown = frame["items shown"].to_numpy(float)
        s_low, s_high = bootstrap_ci(np.mean, shown, level=level) if len(shown) > 1 else (np.nan, np.nan)
        table.loc[name, ["close match", "close CI low", "close CI high", "items shown", "shown CI low",
                         "shown CI high"]] = [close / len(frame), low, high, shown.mean(), s_low, s_high]
    return table


# ---------------------------------------------------------------- the simulator's leaks
def revealed_attributes(text: str, target: int, items: pd.DataFrame) -> list[str]:
    """The target's attributes (category, tone, pattern, brand) that ``text`` states correctly, read by
    the same rule-based parser the system uses (with no list on screen, so nothing is copied from a
    shown item)."""
    update = parse_utterance(text, [], items)
    row = items.iloc[int(target)]
    return [a for a in STATED if a in update.constraints and update.constraints[a] == row[a]]


def leak_audit(dialogues, items: pd.DataFrame, threshold: int = 3) -> pd.DataFrame:
    """One row per shopper utterance (acceptances excluded): dialogue index, turn (0 = the opening),
    the utterance, how many of the target's attributes it states, and ``leaks`` (at least ``threshold``).

    The rule-based shopper states one attribute per utterance by design; an utterance stating three
    or four reads out the target's title, which hands the system the answer."""
    if not 1 <= threshold <= len(STATED):
        raise ValueError(f"threshold must be between 1 and {len(STATED)}, got {threshold}")
    items = items.reset_index(drop=True)
    rows = []
    for n, d in enumerate(dialogues):
        for turn, text in enumerate(user_texts(d)):
            revealed = revealed_attributes(text, d.target, items)
            rows.append({"dialogue": n, "turn": turn, "utterance": text, "revealed": len(revealed),
                         "attributes": revealed, "leaks": len(revealed) >= threshold})
    return pd.DataFrame(rows, columns=["dialogue", "turn", "utterance", "revealed", "attributes", "leaks"])


def dialogue_leaked(dialogues, items: pd.DataFrame, threshold: int = 3) -> np.ndarray:
    """Per dialogue: did any of the shopper's utterances leak the target?"""
    audit = leak_audit(dialogues, items, threshold)
    leaked = audit.groupby("dialogue")["leaks"].any() if len(audit) else pd.Series(dtype=bool)
    return np.array([bool(leaked.get(n, False)) for n in range(len(dialogues))])


def mask_leak(text: str, target: int, items: pd.DataFrame) -> str:
    """``text`` without the words that name the target's tone, pattern and brand (the category stays:
    it is what a shopper who has not seen the item would say)."""
    row = items.iloc[int(target)]
    banned = [*TONE_WORDS[row.tone], *PATTERN_WORDS[row.pattern], row.brand, "by " + row.brand]
    for word in sorted(banned, key=len, reverse=True):
        text = re.sub(rf"(?<![\w-]){re.escape(word)}(?!\w)", "", text, flags=re.IGNORECASE)
    return re.sub(r"\s+([,.!?])", r"\1", re.sub(r"\s{2,}", " ", text)).strip() or "Show me something else."


class LeakMaskingSimulator:
    """Wraps a simulator: every utterance that leaks the target (``threshold`` or more of its attributes)
    is passed through :func:`mask_leak` before the system reads it. Acceptances pass unchanged.
    ``masked`` counts the utterances changed."""

    def __init__(self, simulator, items: pd.DataFrame, threshold: int = 3):
        if not 1 <= threshold <= len(STATED):
            raise ValueError(f"threshold must be between 1 and {len(STATED)}, got {threshold}")
        self.simulator, self.items, self.threshold = simulator, items.reset_index(drop=True), threshold
        self.users, self.targets = simulator.users, simulator.targets
        self.name = f"{getattr(simulator, 'name', 'simulator')}, leaks masked"
        self.masked = 0

    def _mask(self, text: str, target: int) -> str:
        if len(revealed_attributes(text, target, self.items)) < self.threshold:
            return text
        self.masked += 1
        return mask_leak(text, target, self.items)

    def openings(self) -> list:
        return [self._mask(text, t) for text, t in zip(self.simulator.openings(), self.targets)]

    def replies(self, indices, turns) -> list:
        out = []
        for i, reply in zip(indices, self.simulator.replies(indices, turns)):
            out.append(reply if reply.accept else Reply(self._mask(reply.text, int(self.targets[i])), quit=reply.quit))
        return out


__all__ = ["LeakMaskingSimulator", "bootstrap_ci", "conversation_table", "dialogue_frame", "dialogue_leaked",
           "distinct_n", "diversity_table", "leak_audit", "mask_leak", "ngrams", "per_dialogue_distinct",
           "proportion_ci", "recall_by_turn", "revealed_attributes", "system_texts", "user_texts", "words"]
