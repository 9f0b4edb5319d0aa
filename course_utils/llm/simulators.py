"""User simulators with a hidden target item, to drive whole dialogues (iEvaLM-style evaluation).

Wang et al. (2023, iEvaLM) evaluate conversational recommenders by letting an LLM play the user,
who knows a target item and talks until it is recommended. Here every simulator holds one target
per dialogue and follows the same **stopping rules**:

* **accept** as soon as the target is among the items a system turn shows (a success);
* otherwise keep talking; ``run_dialogues`` ends the dialogue after its turn limit (a failure).

:class:`RuleSimulator` is the control: it opens with the target's category only (a vague request),
answers questions from the target's attributes and critiques the shown item closest to the target
towards it. :class:`LLMSimulator` lets SmolLM2 play the shopper with the target's title and
description in its system prompt; what it writes goes through the same ``parse_utterance`` as any
user's words, so it may be vague, wrong or off-topic, and the numbers say how much that costs.

Interface used by ``conversational.run_dialogues``: ``users``, ``targets`` (one per dialogue),
``openings() -> list[str]`` and ``replies(indices, system_turns) -> list[Reply]``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from course_utils.data.fashion_shop import ARTICLE_NOUN, NOUN, TONES
from course_utils.llm.conversational import ATTRIBUTES, asked_attribute

SHOPPER = ("You are a shopper talking to a shop assistant. Reply in one short sentence: say what you want "
           "(kind, colour, pattern, brand, price) or answer the question. Never say the product's name.")
ORDINAL_WORDS = ("first", "second", "third", "fourth", "fifth")


def _a(category: str) -> str:
    """'a coat', 'a pair of sandals': the category as a shopper says it."""
    return f"a {ARTICLE_NOUN[category]}"


@dataclass(frozen=True)
class Reply:
    text: str
    accept: bool = False
    quit: bool = False


def _checked(items: pd.DataFrame, users, targets) -> tuple[np.ndarray, np.ndarray]:
    users, targets = np.asarray(users, dtype=np.int64).ravel(), np.asarray(targets, dtype=np.int64).ravel()
    if len(users) != len(targets) or not len(targets):
        raise ValueError(f"need one user per target and at least one, got {len(users)} users, {len(targets)} targets")
    if targets.min() < 0 or targets.max() >= len(items):
        raise ValueError(f"targets must be catalogue ids in 0..{len(items) - 1}")
    return users, targets


def accept_reply(target: int, shown) -> Reply | None:
    """The shared stopping rule: accept when the target is shown (naming its position), else None."""
    shown = [int(i) for i in shown]
    if int(target) in shown:
        return Reply(f"The {ORDINAL_WORDS[shown.index(int(target))]} one, I'll take it!", accept=True)
    return None


class RuleSimulator:
    """Answers and critiques from the target's attributes; the control simulator."""

    name = "rule-based simulator"

    def __init__(self, items: pd.DataFrame, users, targets):
        self.items = items.reset_index(drop=True)
        self.users, self.targets = _checked(self.items, users, targets)

    def openings(self) -> list:
        return [f"I'm looking for {_a(self.items.category[t])}." for t in self.targets]

    def answer(self, target: int, attribute: str | None) -> str:
        row = self.items.iloc[target]
        if attribute == "category":
            return f"I want {_a(row.category)}."
        if attribute in ("tone", "pattern", "brand"):
            return f"{row[attribute].capitalize()}, please."
        if attribute == "max_price":
            return f"Under ${np.ceil(row.price + 1):.0f}."
        return f"Just show me some {NOUN[row.category]}."

    def critique(self, target: int, shown) -> str:
        """Point at the shown item closest to the target and say the first way it must change."""
        row, shown = self.items.iloc[target], [int(i) for i in shown]
        fields = (*ATTRIBUTES, "brand")
        differences = [[f for f in fields if self.items.at[i, f] != row[f]] for i in shown]
        best = min(range(len(shown)), key=lambda n: (len(differences[n]), abs(self.items.price[shown[n]] - row.price)))
        ref, missing, which = self.items.iloc[shown[best]], differences[best], ORDINAL_WORDS[best]
        if missing and missing[0] == "category":
            return f"Actually, I want {_a(row.category)}."
        if missing and missing[0] == "tone":
            change = "darker" if TONES.index(row.tone) > TONES.index(ref.tone) else "lighter"
            return f"Like the {which} one but {change}." if len(missing) == 1 else f"Something {row.tone}, please."
        if missing and missing[0] == "pattern":
            change = "plainer" if row.pattern == "plain" else "textured"
            return f"Like the {which} one but {change}." if len(missing) == 1 else f"Something {row.pattern}, please."
        if missing:
            return f"Like the {which} one but from {row.brand}."
        return f"Like the {which} one but {'cheaper' if row.price < ref.price else 'more expensive'}."

    def reply(self, target: int, turn) -> Reply:
        accepted = accept_reply(target, turn.items)
        if accepted:
            return accepted
        if turn.items:
            return Reply(self.critique(target, turn.items))
        if turn.call.tool == "ask":
            return Reply(self.answer(target, asked_attribute(turn.call.arguments["question"])))
        return Reply(self.answer(target, None))

    def replies(self, indices, turns) -> list:
        return [self.reply(int(self.targets[i]), turn) for i, turn in zip(indices, turns)]


class LLMSimulator:
    """SmolLM2 plays the shopper: the target's title and description are in its system prompt, the
    system's last message is the user message, and its short answer (one sentence) is what it says.
    Acceptance follows the shared rule (target shown); the LLM is not trusted to recognise it."""

    name = "LLM simulator"

    def __init__(self, items: pd.DataFrame, users, targets, model, tokenizer, max_new_tokens: int = 16):
        self.items = items.reset_index(drop=True)
        self.users, self.targets = _checked(self.items, users, targets)
        self.model, self.tokenizer, self.max_new_tokens = model, tokenizer, max_new_tokens
        self.prefix = None

    def persona(self, target: int, assistant_said: str) -> list:
        """The chat the LLM answers: the shared instructions, then the target and the assistant's words."""
        row = self.items.iloc[target]
        return [{"role": "system", "content": SHOPPER},
                {"role": "user", "content": f"You want: {row.title}, ${row.price:.0f}. {row.description}\n"
                                            f"Shop assistant: {assistant_said}"}]

    def _say(self, conversations: list) -> list:
        from course_utils.llm.prompting import render_chat
        from course_utils.llm.tool_calling import SharedPrefix, generate_batch, shared_start

        if self.prefix is None:
            self.prefix = SharedPrefix(self.model, self.tokenizer, shared_start(self.tokenizer, SHOPPER))
        prompts = [render_chat(self.tokenizer, m) for m in conversations]
        texts = generate_batch(self.model, self.tokenizer, prompts, self.max_new_tokens, self.prefix, _sentence_end(self.tokenizer))
        return [first_sentence(t) or "Show me something else." for t in texts]

    def openings(self) -> list:
        return self._say([self.persona(int(t), "Hello! What are you looking for today?") for t in self.targets])

    def replies(self, indices, turns) -> list:
        # Keyed by position, not by target index: with several managers in one batch, the same
        # target index appears once per manager, each with its own system turn.
        out, ask = [None] * len(indices), []
        for j, (i, turn) in enumerate(zip(indices, turns)):
            accepted = accept_reply(int(self.targets[i]), turn.items)
            if accepted:
                out[j] = accepted
            else:
                ask.append((j, self.persona(int(self.targets[i]), turn.text)))
        for (j, _), text in zip(ask, self._say([m for _, m in ask]) if ask else []):
            out[j] = Reply(text)
        return out


def _sentence_end(tokenizer):
    """Stop a row at its first full stop, question mark or line break: only the first sentence is used."""
    from transformers import StopStringCriteria

    return lambda prompt_length: StopStringCriteria(tokenizer, [".", "!", "?", "\n"])


def first_sentence(text: str) -> str:
    """The first sentence of a generated reply, stripped (at most one line)."""
    line = text.strip().split("\n")[0].strip()
    for stop in (". ", "! ", "? "):
        if stop in line:
            line = line[:line.index(stop) + 1]
    return line.strip()


class CombinedSimulator:
    """Several simulators' dialogues as one batch (their targets side by side), so that one
    ``run_dialogues`` call serves them all: an LLM policy then decides for all of them at once."""

    name = "combined"

    def __init__(self, simulators: list):
        if not simulators:
            raise ValueError("need at least one simulator")
        self.simulators = list(simulators)
        self.users = np.concatenate([s.users for s in self.simulators])
        self.targets = np.concatenate([s.targets for s in self.simulators])
        self.offsets = np.cumsum([0] + [len(s.targets) for s in self.simulators])

    def openings(self) -> list:
        return [text for s in self.simulators for text in s.openings()]

    def replies(self, indices, turns) -> list:
        out = [None] * len(indices)
        for n, simulator in enumerate(self.simulators):
            mine = [j for j, i in enumerate(indices) if self.offsets[n] <= i < self.offsets[n + 1]]
            if mine:
                answers = simulator.replies([indices[j] - self.offsets[n] for j in mine], [turns[j] for j in mine])
                for j, answer in zip(mine, answers):
                    out[j] = answer
        return out

    def split(self, dialogues: list) -> list:
        """The dialogues of one run, cut back into one list per simulator."""
        return [dialogues[self.offsets[n]:self.offsets[n + 1]] for n in range(len(self.simulators))]


def utterance_audit(dialogues, items: pd.DataFrame) -> pd.DataFrame:
    """One row per shopper utterance that is not an acceptance: does the parser find any constraint in
    it (``informative``), does one of them contradict the target's attributes (``contradicts``), and
    does it say the target's title (tone, pattern and noun) outright (``says the title``)?"""
    from course_utils.llm.conversational import parse_utterance

    rows = []
    for d in dialogues:
        target = items.iloc[d.target]
        for role, text, _ in d.transcript:
            if role != "user":
                continue
            update = parse_utterance(text, [], items)
            if update.accept:
                continue
            wrong = [a for a in (*ATTRIBUTES, "brand") if a in update.constraints and update.constraints[a] != target[a]]
            leaks = target.title.split(" by ")[0].lower() in text.lower()
            rows.append({"target": d.target, "utterance": text, "informative": bool(update.constraints),
                         "contradicts": bool(wrong), "wrong attributes": wrong, "says the title": leaks})
    return pd.DataFrame(rows, columns=["target", "utterance", "informative", "contradicts", "wrong attributes",
                                       "says the title"])
