"""A tool-augmented conversational recommender for the fashion shop (survey Section 3.5).

The system is split the way RecLLM (Friedman et al., 2023) and Chat-REC (Gao et al., 2023)
split it: a *dialogue manager* decides what to do next, and *tools* do it.

* :class:`ShopTools`: ``search_catalogue(query, filters)`` (MiniLM dense retrieval over the item
  documents, then attribute filters), ``recommend(user, constraints)`` (a collaborative-filtering
  score row, e.g. item-kNN or EASE on the user's purchases, inside the constraints), ``item_info(item_id,
  question)`` (an answer built from that item's own data and reviews only), ``ask(question)`` and
  ``respond(text)``.
* :func:`parse_tool_call`: the strict JSON parser. A tool call is one JSON object
  ``{"tool": NAME, "arguments": {...}}``; anything else (malformed JSON, an unknown tool, a missing,
  unexpected or ill-typed argument, an unknown filter value, an item id outside the catalogue, a
  ``respond`` that names a product) raises :class:`ToolCallError` with a message the LLM can read.
* :func:`parse_utterance`: the rule-based reader of the user's words: attribute mentions, answers to
  questions, and *critiques* relative to the shown items ("cheaper", "darker", "something plainer",
  "like the second one but in black"), each turned into a constraint update (Chen & Pu, 2012).
* :class:`RulePolicy`: the safe policy; it asks about the attribute with the highest entropy among
  the remaining candidates while the request is vague (preference elicitation), else searches or
  recommends. ``LLMPolicy`` (in ``llm.tool_calling``) asks
  the LLM for a JSON tool call, retries once with the error, then falls back to the rule policy.
* :func:`run_dialogues` drives managers and user simulators (``course_utils.llm.simulators``) turn by
  turn, all dialogues in step, and returns one :class:`Dialogue` each.

Every item a system turn shows comes from a tool's result over the real catalogue, so every
recommended id is a real item; :func:`check_dialogues` asserts it.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from course_utils.data.fashion_mnist import CLASS_NAMES
from course_utils.data.fashion_shop import BRANDS, NOUN, PATTERNS, TONES

ATTRIBUTES = ("category", "tone", "pattern")
FILTERS = {"category": CLASS_NAMES, "tone": TONES, "pattern": PATTERNS, "brand": tuple(BRANDS),
           "max_price": float, "min_price": float}
# Each tool's required arguments and their JSON types.
TOOLS = {"search_catalogue": {"query": str, "filters": dict}, "recommend": {"constraints": dict},
         "item_info": {"item_id": int, "question": str}, "ask": {"question": str}, "respond": {"text": str}}
# Words a shopper uses for each category (the shop's own nouns first).
CATEGORY_WORDS = {
    "T-shirt/top": ("t-shirt", "tshirt", "tee", "top"), "Trouser": ("trousers", "trouser", "pants", "jeans"),
    "Pullover": ("pullover", "sweater", "jumper"), "Dress": ("dress",), "Coat": ("coat", "jacket"),
    "Sandal": ("sandals", "sandal"), "Shirt": ("shirt", "blouse"), "Sneaker": ("sneakers", "sneaker", "trainers"),
    "Bag": ("bag", "handbag"), "Ankle boot": ("ankle boots", "ankle boot", "boots", "boot")}
TONE_WORDS = {"light": ("light", "white", "pale", "lighter"), "mid-tone": ("mid-tone", "grey", "gray", "medium"),
              "dark": ("dark", "black", "darker")}
PATTERN_WORDS = {"plain": ("plain", "plainer", "simple", "simpler"), "textured": ("textured", "patterned", "texture")}
ORDINALS = {"first": 0, "1st": 0, "second": 1, "2nd": 1, "third": 2, "3rd": 2, "fourth": 3, "fifth": 4}
ACCEPT = re.compile(r"\b(i'll take|i will take|that's it|that is it|perfect|found it)\b")
QUIT = re.compile(r"\b(give up|bye|forget it)\b")


class ToolCallError(ValueError):
    """A tool call the system cannot run; the message says what was wrong, for the retry prompt."""


@dataclass(frozen=True)
class ToolCall:
    tool: str
    arguments: dict

    def json(self) -> str:
        return json.dumps({"tool": self.tool, "arguments": self.arguments})


def _word(text: str, words) -> bool:
    # Not inside a longer word, nor after a hyphen ("t-shirt" is no "shirt"); "light-coloured" is light.
    return any(re.search(rf"(?<![\w-]){re.escape(w)}(?!\w)", text) for w in words)


def _one_of(text: str, vocabulary: dict):
    """The one value whose words ``text`` uses; None when it uses none or several ("light or dark?")."""
    found = [value for value, words in vocabulary.items() if _word(text, words)]
    return found[0] if len(found) == 1 else None


def _check_filters(filters: dict, where: str) -> dict:
    clean = {}
    for key, value in filters.items():
        if key not in FILTERS:
            raise ToolCallError(f"{where}: unknown filter {key!r}; filters are {sorted(FILTERS)}")
        if FILTERS[key] is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ToolCallError(f"{where}: {key} must be a positive number, got {value!r}")
            clean[key] = float(value)
            continue
        allowed = {v.lower(): v for v in FILTERS[key]}
        if key == "category":  # shoppers' words ("coat", "sneakers") name a category too
            allowed.update({w: c for c, ws in CATEGORY_WORDS.items() for w in ws})
        if not isinstance(value, str) or value.strip().lower() not in allowed:
            raise ToolCallError(f"{where}: {key} must be one of {list(FILTERS[key])}, got {value!r}")
        clean[key] = allowed[value.strip().lower()]
    return clean


def parse_tool_call(text: str, n_items: int, titles=()) -> ToolCall:
    """The tool call in ``text`` (one JSON object; whitespace and text after it are ignored), checked.

    Raises :class:`ToolCallError` for malformed JSON, an unknown tool, missing, unexpected or
    ill-typed arguments, unknown filters or values, an ``item_id`` outside 0..n_items-1, or a
    ``respond`` text that names a catalogue-like product (``titles``: the real titles, which it may
    not invent either).
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}")
    body = text.strip()
    if not body.startswith("{"):
        raise ToolCallError(f"the reply must start with a JSON object, got {body[:40]!r}")
    try:
        value, _ = json.JSONDecoder().raw_decode(body)
    except json.JSONDecodeError as err:
        raise ToolCallError(f"malformed JSON: {err.msg} at character {err.pos}") from None
    if not isinstance(value, dict) or set(value) != {"tool", "arguments"}:
        raise ToolCallError('the object must have exactly the keys "tool" and "arguments"')
    tool, arguments = value["tool"], value["arguments"]
    if tool not in TOOLS:
        raise ToolCallError(f"unknown tool {tool!r}; tools are {list(TOOLS)}")
    if not isinstance(arguments, dict):
        raise ToolCallError(f"{tool}: arguments must be an object, got {type(arguments).__name__}")
    wanted = TOOLS[tool]
    if set(arguments) - set(wanted):
        raise ToolCallError(f"{tool}: unexpected argument(s) {sorted(set(arguments) - set(wanted))}")
    for name, kind in wanted.items():
        if name not in arguments:
            raise ToolCallError(f"{tool}: missing argument {name!r}")
        got = arguments[name]
        if isinstance(got, bool) or not isinstance(got, kind) or (kind is str and not got.strip()):
            raise ToolCallError(f"{tool}: {name} must be a non-empty {kind.__name__}, got {got!r}")
    arguments = dict(arguments)
    for name in ("filters", "constraints"):
        if name in arguments:
            arguments[name] = _check_filters(arguments[name], tool)
    if tool == "item_info" and not 0 <= arguments["item_id"] < n_items:
        raise ToolCallError(f"item_info: item_id {arguments['item_id']} is not in the catalogue (0..{n_items - 1})")
    if tool == "respond" and names_a_product(arguments["text"]):
        raise ToolCallError("respond must not name products; show them with search_catalogue or recommend")
    return ToolCall(tool, arguments)


def names_a_product(text: str) -> bool:
    """Does ``text`` name a product the way the catalogue does ("... by Brand", "item 12", "id 12")?"""
    low = text.lower()
    return bool(re.search(r"\b(item|id)\s*#?\d+", low)) or any(f"by {b.lower()}" in low for b in BRANDS)


# ---------------------------------------------------------------- the tools
class ShopTools:
    """The tools over the shop's items.

    ``item_vectors``: (n_items, d) L2-normalised MiniLM embeddings of the item documents;
    ``encode``: a function from a list of queries to their (n, d) normalised embeddings;
    ``user_scores``: (n_users, n_items) recommender scores (e.g. item-kNN on each user's purchases);
    ``seen``: per user, the items already bought (never recommended again); ``reviews``: item -> texts.
    """

    def __init__(self, items: pd.DataFrame, item_vectors: np.ndarray, encode, user_scores: np.ndarray,
                 seen: dict, reviews: dict | None = None):
        if len(item_vectors) != len(items) or user_scores.shape[1] != len(items):
            raise ValueError(f"need one vector and one score column per item ({len(items)}), got "
                             f"{len(item_vectors)} vectors and {user_scores.shape[1]} score columns")
        self.items, self.item_vectors, self.encode = items.reset_index(drop=True), item_vectors, encode
        self.user_scores, self.seen, self.reviews = user_scores, seen, reviews or {}
        self.columns = {c: self.items[c].to_numpy() for c in ("category", "tone", "pattern", "brand", "price")}

    @property
    def n_items(self) -> int:
        return len(self.items)

    def mask(self, constraints: dict, exclude=()) -> np.ndarray:
        """Items meeting every constraint, minus ``exclude``."""
        keep = np.ones(self.n_items, bool)
        for key, value in constraints.items():
            if key == "max_price":
                keep &= self.columns["price"] < value
            elif key == "min_price":
                keep &= self.columns["price"] > value
            else:
                keep &= self.columns[key] == value
        keep[list(exclude)] = False
        return keep

    def _top(self, scores: np.ndarray, keep: np.ndarray, k: int) -> list[int]:
        scores = np.where(keep, scores, -np.inf)
        order = np.argsort(-scores, kind="stable")[:k]
        return [int(i) for i in order if np.isfinite(scores[i])]

    def search_catalogue(self, query: str, filters: dict, k: int = 3, exclude=()) -> list[int]:
        """The ``k`` items most similar to ``query`` (cosine, MiniLM) among those meeting ``filters``."""
        scores = self.item_vectors @ self.encode([query])[0]
        return self._top(scores, self.mask(filters, exclude), k)

    def recommend(self, user: int, constraints: dict, k: int = 3, exclude=()) -> list[int]:
        """The ``k`` best items for ``user`` by the recommender's scores, inside ``constraints``."""
        seen = set(self.seen.get(int(user), ())) | set(exclude)
        return self._top(self.user_scores[int(user)], self.mask(constraints, seen), k)

    def item_info(self, item_id: int, question: str) -> str:
        """An answer from the item's own row (and reviews) only: the asked field, or its description."""
        row, q = self.items.iloc[int(item_id)], question.lower()
        if _word(q, ("price", "cost", "much", "expensive", "cheap")):
            return f"{row.title} costs ${row.price:.2f}."
        if _word(q, ("brand", "makes", "made")):
            return f"{row.title} is made by {row.brand}."
        if _word(q, ("colour", "color", "tone", "dark", "light")):
            return f"{row.title} is {row.tone}."
        if _word(q, ("pattern", "texture", "plain", "textured")):
            return f"{row.title} is {row.pattern}."
        if _word(q, ("review", "reviews", "people", "say")):
            said = self.reviews.get(int(item_id), [])[:2]
            return f"Reviews of {row.title}: " + (" / ".join(f'"{r}"' for r in said) if said else "none yet.")
        return f"{row.title}: {row.description}"

    def entropy(self, constraints: dict, attribute: str, exclude=()) -> float:
        """Entropy (bits) of ``attribute``'s values among the items meeting ``constraints``."""
        values = self.columns[attribute][self.mask(constraints, exclude)]
        if not len(values):
            return 0.0
        p = pd.Series(values).value_counts(normalize=True).to_numpy()
        return float(-(p * np.log2(p)).sum())

    def describe(self, items) -> str:
        """A numbered list of items as the system shows them: title, price and id."""
        return "\n".join(f"{n}. {self.items.title[i]}, ${self.items.price[i]:.2f} (id {i})"
                         for n, i in enumerate(items, 1))


# ---------------------------------------------------------------- reading the user
@dataclass
class Update:
    """What one user utterance changes: new constraints, the shown item it refers to, and intent."""

    constraints: dict = field(default_factory=dict)
    reference: int | None = None  # catalogue id of the shown item the user points at
    accept: bool = False
    quit: bool = False
    question: str | None = None  # a question about the referenced item
    critique: bool = False  # relative to what was shown (cheaper, darker, like the 2nd but ...)


def parse_utterance(text: str, shown: list, items: pd.DataFrame) -> Update:
    """Read one user utterance against the last shown list (catalogue ids, in order)."""
    if not isinstance(text, str):
        raise TypeError(f"the utterance must be a string, got {type(text).__name__}")
    low, update = text.lower(), Update()
    index = next((i for w, i in ORDINALS.items() if _word(low, (w,))), None)
    match = re.search(r"(?:number|no\.|#)\s*(\d)", low)
    index = int(match.group(1)) - 1 if match else index
    if index is not None and 0 <= index < len(shown):
        update.reference = int(shown[index])
    update.accept, update.quit = bool(ACCEPT.search(low)), bool(QUIT.search(low))
    if update.accept:
        return update
    reference = update.reference if update.reference is not None else (int(shown[0]) if shown else None)
    if "?" in low and update.reference is not None and not re.search(r"\b(do you have|have you got|any)\b", low):
        update.question = text
        return update
    ref = items.iloc[reference] if reference is not None else None
    if ref is not None and re.search(r"\blike (the|that|this|number)\b", low) and update.reference is not None:
        update.constraints.update({a: ref[a] for a in ATTRIBUTES})  # "like the second one but ..."
        update.critique = True
    category = _one_of(low, CATEGORY_WORDS)
    if category:
        update.constraints["category"] = category
    if ref is not None and _word(low, ("darker", "lighter")):
        step = 1 if "darker" in low else -1
        update.constraints["tone"] = TONES[int(np.clip(TONES.index(ref.tone) + step, 0, len(TONES) - 1))]
        update.critique = True
    elif _one_of(low, TONE_WORDS):
        update.constraints["tone"] = _one_of(low, TONE_WORDS)
    pattern = _one_of(low, PATTERN_WORDS)
    if pattern:
        update.constraints["pattern"] = pattern
        update.critique |= _word(low, PATTERN_WORDS[pattern][1:2])  # "plainer": a comparison
    brands = [brand for brand in BRANDS if brand.lower() in low]
    if len(brands) == 1:
        update.constraints["brand"] = brands[0]
    price = re.search(r"(?:under|below|less than|max)\s*\$?\s*(\d+(?:\.\d+)?)", low)
    if price:
        update.constraints["max_price"] = float(price.group(1))
    elif ref is not None and _word(low, ("cheaper", "less expensive")):
        update.constraints["max_price"] = float(ref.price)
        update.critique = True
    elif ref is not None and _word(low, ("pricier", "more expensive", "better quality")):
        update.constraints["min_price"] = float(ref.price)
        update.critique = True
    return update


# ---------------------------------------------------------------- the dialogue manager
@dataclass
class DialogueState:
    """What the manager tracks in one dialogue: the user, constraints so far, lists shown, questions asked."""

    user: int
    constraints: dict = field(default_factory=dict)
    shown: list = field(default_factory=list)  # one list of catalogue ids per system turn that showed items
    asked: list = field(default_factory=list)  # attributes the system asked about
    said: list = field(default_factory=list)  # the user's utterances

    @property
    def last_shown(self) -> list:
        return self.shown[-1] if self.shown else []

    @property
    def all_shown(self) -> set:
        return {i for items in self.shown for i in items}


@dataclass
class SystemTurn:
    """One system turn: its text, the tool call behind it, the items it shows, and who chose the call
    ("rule", "llm", "llm after retry" or "fallback"), with the LLM's raw replies."""

    text: str
    call: ToolCall
    items: list
    source: str = "rule"
    raw: tuple = ()


def asked_attribute(question: str) -> str | None:
    """Which attribute a system question asks about (None when it names none)."""
    low = question.lower()
    for attribute, words in (("category", ("category", "kind", "type", "item")), ("tone", ("colour", "color", "tone")),
                             ("pattern", ("pattern", "texture", "finish", "plain", "textured")), ("brand", ("brand", "maker")),
                             ("max_price", ("price", "budget", "spend"))):
        if _word(low, words):
            return attribute
    return None


QUESTIONS = {"category": "What kind of item are you looking for?", "tone": "Which tone would you like: light, "
             "mid-tone or dark?", "pattern": "Plain or textured?", "brand": f"Any favourite brand ({', '.join(BRANDS)})?"}


class RulePolicy:
    """The safe policy. While the request is vague (fewer than ``vague_below`` constraints) and fewer than
    ``max_questions`` were asked, ask about the unknown attribute with the highest entropy among the
    remaining candidates (``elicit``); answer item questions with ``item_info``; else ``recommend``."""

    name = "rule"

    def __init__(self, elicit: bool = True, max_questions: int = 2, vague_below: int = 3):
        self.elicit, self.max_questions, self.vague_below = elicit, max_questions, vague_below

    def action(self, state: DialogueState, update: Update, tools: ShopTools) -> ToolCall:
        if update.question is not None and update.reference is not None:
            return ToolCall("item_info", {"item_id": update.reference, "question": update.question})
        unknown = [a for a in QUESTIONS if a not in state.constraints and a not in state.asked]
        if self.elicit and len(state.constraints) < self.vague_below and len(state.asked) < self.max_questions \
                and unknown:
            best = max(unknown, key=lambda a: tools.entropy(state.constraints, a, state.all_shown))
            return ToolCall("ask", {"question": QUESTIONS[best]})
        return ToolCall("recommend", {"constraints": dict(state.constraints)})


class DialogueManager:
    """Tracks each dialogue's state, lets a policy choose a tool call, runs it and writes the reply.

    ``policy``: a :class:`RulePolicy` or an ``LLMPolicy`` (batched: it sees all active dialogues at
    once). ``critique=False`` is the no-critiquing ablation: after the first list, the user's words
    change nothing except an answer to the system's own question, and the system shows the next
    ``k`` items instead.
    """

    def __init__(self, tools: ShopTools, policy=None, critique: bool = True, k: int = 3, name: str = "",
                 max_turns: int | None = None):
        self.tools, self.policy, self.critique, self.k = tools, policy or RulePolicy(), critique, k
        self.max_turns = max_turns  # e.g. 1: a one-shot recommender that never hears a follow-up
        self.name = name or getattr(self.policy, "name", "manager")

    def new_state(self, user: int) -> DialogueState:
        return DialogueState(user=int(user))

    def _update(self, state: DialogueState, utterance: str) -> Update:
        update = parse_utterance(utterance, state.last_shown, self.tools.items)
        changes = update.constraints
        if not self.critique and state.shown:  # only the answer to the last question still counts
            last = state.asked[-1] if state.asked else None
            changes = {a: v for a, v in changes.items() if a == last and a not in state.constraints}
            update.question = None
        state.constraints.update(changes)
        if "max_price" in changes and state.constraints.get("min_price", 0) >= changes["max_price"]:
            state.constraints.pop("min_price")
        if "min_price" in changes and state.constraints.get("max_price", np.inf) <= changes["min_price"]:
            state.constraints.pop("max_price")
        state.said.append(utterance)
        return update

    def respond(self, states: list, utterances: list) -> list:
        """One system turn per (state, utterance); the states are updated in place."""
        updates = [self._update(s, u) for s, u in zip(states, utterances)]
        rule = self.policy if isinstance(self.policy, RulePolicy) else self.policy.fallback
        fallback = [rule.action(s, u, self.tools) for s, u in zip(states, updates)]
        if isinstance(self.policy, RulePolicy):
            chosen = [(call, "rule", ()) for call in fallback]
        else:
            chosen = self.policy.choose(states, updates, fallback, self.tools)
        return [self.execute(s, call, source, raw) for s, (call, source, raw) in zip(states, chosen)]

    def execute(self, state: DialogueState, call: ToolCall, source: str = "rule", raw=()) -> SystemTurn:
        tools, args, items = self.tools, call.arguments, []
        if call.tool == "ask":
            state.asked.append(asked_attribute(args["question"]) or "other")
            text = args["question"]
        elif call.tool == "item_info":
            text = tools.item_info(args["item_id"], args["question"])
        elif call.tool == "respond":
            text = args["text"]
        else:
            constraints = {**state.constraints, **args.get("filters", args.get("constraints", {}))}
            if call.tool == "search_catalogue":
                items = tools.search_catalogue(args["query"], constraints, self.k, state.all_shown)
            else:
                items = tools.recommend(state.user, constraints, self.k, state.all_shown)
            # Nothing meets every constraint: drop what the policy added, then keep the category only.
            for relaxed in (state.constraints, {a: v for a, v in state.constraints.items() if a == "category"}):
                items = items or tools.recommend(state.user, relaxed, self.k, state.all_shown)
            text = ("Here are some options:\n" if items else "Sorry, nothing matches.") + tools.describe(items)
        if items:
            state.shown.append(list(items))
        return SystemTurn(text, call, list(items), source, tuple(raw))


# ---------------------------------------------------------------- whole dialogues
@dataclass
class Dialogue:
    """One finished dialogue. ``transcript``: (role, text, tool call JSON or None) per turn;
    ``recommended``: each list of item ids shown; ``turns``: system turns taken; ``success``: the
    simulator accepted its target; ``sources``: who chose each system call."""

    user: int
    target: int
    transcript: list
    recommended: list
    success: bool
    turns: int
    sources: list

    @property
    def items_named(self) -> list:
        return [i for items in self.recommended for i in items]


def run_dialogues(manager, simulator, max_turns: int) -> list:
    """Run one dialogue per simulator target, all in step: one batched policy call per manager and one
    simulator call per turn. Returns a list of :class:`Dialogue` (one per target), or, when ``manager``
    is a list of managers, one such list per manager (all managers meet the same targets; an LLM
    simulator then answers all of them in one batch).

    ``simulator``: see ``course_utils.llm.simulators``: ``users``, ``targets``, ``openings()`` and
    ``replies(indices, system_turns)``, each reply a ``Reply(text, accept, quit)``. A dialogue ends
    when the user accepts (success), quits, or after ``max_turns`` system turns (a manager's own
    ``max_turns``, if smaller, e.g. 1 for a one-shot recommender).
    """
    if isinstance(max_turns, bool) or not isinstance(max_turns, int) or max_turns < 1:
        raise ValueError(f"max_turns must be a positive integer, got {max_turns!r}")
    managers = list(manager) if isinstance(manager, (list, tuple)) else [manager]
    n = len(simulator.targets)
    pairs = [(m, i) for m in range(len(managers)) for i in range(n)]
    limit = [min(max_turns, getattr(managers[m], "max_turns", None) or max_turns) for m, _ in pairs]
    states = [managers[m].new_state(simulator.users[i]) for m, i in pairs]
    openings = simulator.openings()
    logs = [[("user", openings[i], None)] for _, i in pairs]
    sources, turns, success = [[] for _ in pairs], np.zeros(len(pairs), int), np.zeros(len(pairs), bool)
    active, utterances = list(range(len(pairs))), {p: openings[pairs[p][1]] for p in range(len(pairs))}
    while active:
        replies = {}
        for m, chosen in enumerate(managers):
            mine = [p for p in active if pairs[p][0] == m]
            if mine:
                replies.update(zip(mine, chosen.respond([states[p] for p in mine], [utterances[p] for p in mine])))
        for p in active:
            logs[p].append(("system", replies[p].text, replies[p].call.json()))
            sources[p].append(replies[p].source)
            turns[p] += 1
        answers = simulator.replies([pairs[p][1] for p in active], [replies[p] for p in active])
        still = []
        for p, answer in zip(active, answers):
            logs[p].append(("user", answer.text, None))
            success[p] = answer.accept
            utterances[p] = answer.text
            if not (answer.accept or answer.quit or turns[p] >= limit[p]):
                still.append(p)
        active = still
    dialogues = [Dialogue(int(simulator.users[i]), int(simulator.targets[i]), logs[p], states[p].shown,
                          bool(success[p]), int(turns[p]), sources[p]) for p, (_, i) in enumerate(pairs)]
    per_manager = [dialogues[m * n:(m + 1) * n] for m in range(len(managers))]
    return per_manager if isinstance(manager, (list, tuple)) else per_manager[0]


def run_dialogue(manager: DialogueManager, simulator, max_turns: int) -> Dialogue:
    """One dialogue (a simulator with a single target): see :func:`run_dialogues`."""
    if len(simulator.targets) != 1:
        raise ValueError(f"run_dialogue needs a simulator with one target, got {len(simulator.targets)}; "
                         "use run_dialogues")
    return run_dialogues(manager, simulator, max_turns)[0]


def check_dialogues(dialogues, n_items: int) -> int:
    """Assert that every recommended id is a real catalogue item; returns how many were shown."""
    named = [i for d in dialogues for i in d.items_named]
    bad = [i for i in named if not (isinstance(i, int) and 0 <= i < n_items)]
    if bad:
        raise AssertionError(f"{len(bad)} recommended ids are not catalogue items: {bad[:5]}")
    return len(named)


def dialogue_table(dialogues) -> pd.DataFrame:
    """One row per dialogue: user, target, success, turns, and how many system calls each source made."""
    rows = []
    for d in dialogues:
        counts = pd.Series(d.sources).value_counts()
        rows.append({"user": d.user, "target": d.target, "success": d.success, "turns": d.turns,
                     **{s: int(counts.get(s, 0)) for s in ("rule", "llm", "llm after retry", "fallback")}})
    return pd.DataFrame(rows)


def transcript_markdown(dialogue: Dialogue, items: pd.DataFrame | None = None) -> str:
    """A dialogue as a chat in Markdown: the user on the left in quotes, the system with its tool call."""
    lines = [f"**Target** (hidden from the system): item {dialogue.target}"
             + (f", {items.title[dialogue.target]}" if items is not None else "")]
    for role, text, call in dialogue.transcript:
        body = "<br>".join(str(text).splitlines())
        if role == "user":
            lines.append(f"> 🧑 **user:** {body}")
        else:
            lines.append(f"🤖 **system** <code>{call}</code><br>{body}")
    verdict = "accepted" if dialogue.success else "not found"
    return "\n\n".join(lines + [f"*{verdict} after {dialogue.turns} system turns*"])


def summary_table(runs: dict, level: float = 0.95) -> pd.DataFrame:
    """Per system (``runs``: name -> list of Dialogue): dialogues, success rate with its exact binomial
    (Clopper-Pearson) interval, and mean turns to success with a bootstrap interval."""
    from scipy.stats import binomtest

    from course_utils.claims import paired_bootstrap_ci

    rows = {}
    for name, dialogues in runs.items():
        success = np.array([d.success for d in dialogues])
        if not len(success):
            raise ValueError(f"{name}: no dialogues")
        interval = binomtest(int(success.sum()), len(success)).proportion_ci(level)
        turns = np.array([d.turns for d in dialogues if d.success], float)
        low, high = paired_bootstrap_ci(turns, level=level) if len(turns) > 1 else (np.nan, np.nan)
        rows[name] = {"dialogues": len(success), "success rate": success.mean(), "CI low": interval.low,
                      "CI high": interval.high, "turns to success": turns.mean() if len(turns) else np.nan,
                      "turns CI low": low, "turns CI high": high}
    return pd.DataFrame(rows).T.astype({"dialogues": int})


# ---------------------------------------------------------------- critiques on movie genres
# The same idea on MovieLens, where the attributes are genres: a critique such as
# "something less violent" is a constraint update that removes genres, relative to
# what was shown (Chen & Pu, 2012). Which genres count as violent is our choice,
# stated here so a student can change it.
GENRE_CRITIQUES = {
    r"\bless (violent|brutal|bloody)\b|\bnot so violent\b|\bno violence\b|\bgentler\b": ("Action", "Crime", "Horror",
                                                                                          "Thriller", "War"),
    r"\bless (scary|dark)\b|\bnot so scary\b": ("Horror", "Thriller", "Film-Noir"),
    r"\bless childish\b|\bmore grown[- ]up\b": ("Children's", "Animation"),
}


def parse_genre_critique(text: str, genres) -> dict:
    """Read a genre critique: {"exclude": genres to drop, "include": genres asked for by name}.

    ``genres`` is the catalogue's genre vocabulary (MovieLens' 19 names). "something
    less violent" drops the violent genres; "a comedy, please" or "more Sci-Fi" asks
    for a named genre. An utterance with neither gives two empty tuples.
    """
    if not isinstance(text, str):
        raise TypeError(f"the critique must be a string, got {type(text).__name__}")
    vocabulary = tuple(genres)
    if not vocabulary:
        raise ValueError("the genre vocabulary is empty")
    low = text.lower()
    exclude = sorted({g for pattern, dropped in GENRE_CRITIQUES.items() if re.search(pattern, low)
                      for g in dropped if g in vocabulary})
    named = [g for g in vocabulary if re.search(rf"\b{re.escape(g.lower())}s?\b", low)]  # "war", "wars"; not "warm"
    include = sorted(set(named) - set(exclude))
    return {"exclude": tuple(exclude), "include": tuple(include)}


def genre_critique_mask(item_genres, critique: dict) -> np.ndarray:
    """Boolean mask of the items a genre critique still allows (one entry per item).

    item_genres: a sequence with one tuple of genre names per catalogue item.
    An item is allowed when it has none of the excluded genres and, if genres
    were asked for, at least one of them.
    """
    if not isinstance(critique, dict) or not {"exclude", "include"} <= set(critique):
        raise ValueError("critique must be the dict parse_genre_critique returns (keys 'exclude' and 'include')")
    excluded, included = set(critique["exclude"]), set(critique["include"])
    return np.array([not (excluded & set(g)) and (not included or bool(included & set(g))) for g in item_genres],
                    dtype=bool)
