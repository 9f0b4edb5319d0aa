"""Dialogue-level metrics: distinct-n on hand-computed cases, recall within the dialogue, leak audit and
masking, and the intervals (no LLM: hand-made dialogues and the rule-based shopper)."""
import numpy as np
import pandas as pd
import pytest

from course_utils.llm import conversational as cv
from course_utils.llm import dialogue_metrics as dm
from course_utils.llm.simulators import Reply, RuleSimulator


def _items():
    rows = [("Coat", "dark", "plain", "Miro", 80.99), ("Coat", "light", "plain", "Miro", 60.99),
            ("Coat", "dark", "textured", "Kestrel", 99.99), ("Dress", "dark", "plain", "Umber", 40.99),
            ("Coat", "dark", "textured", "Umber", 70.99)]
    frame = pd.DataFrame(rows, columns=["category", "tone", "pattern", "brand", "price"])
    frame["title"] = [f"{t.capitalize()} {p} {c.lower()} by {b}" for c, t, p, b, _ in rows]
    frame["description"] = [f"A {t} {c.lower()}." for c, t, *_ in rows]
    return frame


def _listing(items, ids):
    return "Here are some options:\n" + "\n".join(f"{n}. {items.title[i]}, ${items.price[i]:.2f} (id {i})"
                                                  for n, i in enumerate(ids, 1))


def _dialogue(items, target, turns, success):
    """turns: per system turn, a list of shown ids (or a question string)."""
    transcript, shown = [("user", "I'm looking for a coat.", None)], []
    for turn in turns:
        if isinstance(turn, str):
            transcript.append(("system", turn, None))
        else:
            transcript.append(("system", _listing(items, turn), None))
            shown.append(list(turn))
        transcript.append(("user", "Something else.", None))
    if success:
        transcript[-1] = ("user", "The first one, I'll take it!", None)
    return cv.Dialogue(0, target, transcript, shown, success, len(turns), ["rule"] * len(turns))


def test_distinct_n_hand_computed():
    # unigrams a b a b: 2 distinct of 4; bigrams ab ba ab: 2 of 3
    assert dm.distinct_n(["a b a b"], 1) == 0.5
    assert dm.distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)
    # "here are some coats" + "here are some dresses": 6 bigrams, 4 distinct; no bigram across the texts
    assert dm.distinct_n(["here are some coats", "here are some dresses"], 2) == pytest.approx(4 / 6)
    assert dm.distinct_n(["x y", "z w"], 2) == 1.0  # (y, z) would only exist if n-grams crossed texts
    assert dm.distinct_n(["Hello, HELLO hello!"], 1) == pytest.approx(1 / 3)  # case and punctuation ignored
    assert np.isnan(dm.distinct_n(["one"], 2))
    assert dm.words("I'll take the t-shirt, $33") == ["i'll", "take", "the", "t-shirt", "33"]


def test_distinct_n_rejects_bad_input():
    with pytest.raises(TypeError, match="not one string"):
        dm.distinct_n("a b c", 1)
    with pytest.raises(ValueError, match="empty"):
        dm.distinct_n([], 1)
    with pytest.raises(ValueError, match="positive integer"):
        dm.distinct_n(["a b"], 0)


def test_system_texts_can_drop_the_listed_items():
    items = _items()
    d = _dialogue(items, 2, ["Which tone would you like?", [0, 1, 2]], success=True)
    assert dm.system_texts(d)[1].startswith("Here are some options:\n1. Dark plain coat by Miro")
    assert dm.system_texts(d, own_words=True) == ["Which tone would you like?", "Here are some options:"]
    assert dm.user_texts(d) == ["I'm looking for a coat.", "Something else."]  # the acceptance is left out
    table = dm.diversity_table({"x": [d]}, own_words=True)
    assert table.loc["x", "responses"] == 2
    # own words: which tone would you like here are some options -> 9 unigrams, all distinct
    assert table.loc["x", "distinct-1"] == 1.0


def test_dialogue_frame_and_recall_by_turn():
    items = _items()
    hit_late = _dialogue(items, 2, ["Which tone?", [0, 1, 4], [3, 2, 1]], success=True)
    never = _dialogue(items, 3, [[0, 1, 2]], success=False)
    frame = dm.dialogue_frame([hit_late, never], items)
    assert frame["hit turn"].tolist()[0] == 3 and np.isnan(frame["hit turn"][1])
    assert frame["hit position"][0] == 2 and frame["items shown"].tolist() == [6, 3]
    # item 4 shares the target 2's category, tone and pattern: a close match at turn 2
    assert frame["close match"].tolist() == [True, False] and frame["close match turn"][0] == 2
    recall = dm.recall_by_turn([hit_late, never], items, 4)
    assert recall.tolist() == [[False, False, True, True], [False, False, False, False]]
    with pytest.raises(ValueError, match="positive integer"):
        dm.recall_by_turn([never], items, 0)


def test_dialogue_frame_refuses_a_transcript_that_does_not_match_its_lists():
    items = _items()
    d = _dialogue(items, 2, [[0, 1, 2]], success=False)
    broken = cv.Dialogue(0, 2, d.transcript, [], False, 1, ["rule"])
    with pytest.raises(ValueError, match="lists were recorded"):
        dm.dialogue_frame([broken], items)


def test_recall_at_the_last_turn_is_success_with_the_rule_shopper():
    items = _items()
    tools = cv.ShopTools(items, np.eye(len(items)), lambda q: np.ones((len(q), len(items))) / len(items),
                         np.arange(len(items))[None, :].repeat(2, 0).astype(float), {0: [], 1: []})
    runs = cv.run_dialogues(cv.DialogueManager(tools, cv.RulePolicy(), k=2), RuleSimulator(items, [0, 1], [2, 3]), 4)
    assert np.array_equal(dm.recall_by_turn(runs, items, 4)[:, -1], [d.success for d in runs])
    table = dm.conversation_table({"full": runs}, items)
    assert {"success rate", "close match", "close CI low", "items shown"} <= set(table.columns)


def test_revealed_attributes_and_leaks():
    items = _items()
    # target 2: dark textured coat by Kestrel
    assert dm.revealed_attributes("I'm looking for a coat.", 2, items) == ["category"]
    assert dm.revealed_attributes("You want: Dark textured coat by Kestrel, $99.", 2, items) == \
        ["category", "tone", "pattern", "brand"]
    assert dm.revealed_attributes("A light coat", 2, items) == ["category"]  # a wrong tone is not revealed
    d = _dialogue(items, 2, [[0, 1, 3]], success=False)
    d.transcript[0] = ("user", "Dark textured coat, please.", None)
    audit = dm.leak_audit([d], items, threshold=3)
    assert audit["revealed"].tolist() == [3, 0] and audit["leaks"].tolist() == [True, False]
    assert dm.dialogue_leaked([d], items).tolist() == [True]
    assert dm.leak_audit([d], items, threshold=4)["leaks"].sum() == 0
    with pytest.raises(ValueError, match="threshold"):
        dm.leak_audit([d], items, threshold=5)


def test_mask_leak_keeps_only_the_category():
    items = _items()
    masked = dm.mask_leak("You want: Dark textured coat by Kestrel, $99.", 2, items)
    assert masked == "You want: coat, $99."
    assert dm.revealed_attributes(masked, 2, items) == ["category"]
    assert dm.mask_leak("Dark textured by Kestrel", 2, items) == "Show me something else."


class _Parrot:
    """A shopper that reads out its target's title: the worst leak."""
    name = "parrot"

    def __init__(self, items, users, targets):
        self.items, self.users, self.targets = items, np.asarray(users), np.asarray(targets)

    def openings(self):
        return [f"I want the {self.items.title[t]}." for t in self.targets]

    def replies(self, indices, turns):
        return [Reply("Found it, I'll take it!", accept=True) if self.targets[i] in turn.items
                else Reply(f"I want the {self.items.title[self.targets[i]]}.") for i, turn in zip(indices, turns)]


def test_leak_masking_simulator_masks_leaks_and_passes_acceptances():
    items = _items()
    wrapped = dm.LeakMaskingSimulator(_Parrot(items, [0], [2]), items, threshold=3)
    assert wrapped.openings() == ["I want the coat."] and wrapped.masked == 1
    turn = cv.SystemTurn("text", cv.ToolCall("recommend", {"constraints": {}}), [2, 0])
    assert wrapped.replies([0], [turn])[0] == Reply("Found it, I'll take it!", accept=True)
    assert wrapped.name == "parrot, leaks masked"
    with pytest.raises(ValueError, match="threshold"):
        dm.LeakMaskingSimulator(_Parrot(items, [0], [2]), items, threshold=0)


def test_intervals():
    low, high = dm.proportion_ci(5, 10)
    assert low < 0.5 < high and 0 < low and high < 1
    assert dm.proportion_ci(0, 4)[0] == 0.0
    with pytest.raises(ValueError, match="successes"):
        dm.proportion_ci(5, 4)
    values = np.arange(20, dtype=float)
    low, high = dm.bootstrap_ci(np.mean, values, n_boot=500)
    assert low < values.mean() < high
    assert dm.bootstrap_ci(np.mean, np.ones(5), n_boot=200) == (1.0, 1.0)
    with pytest.raises(ValueError, match="same length"):
        dm.bootstrap_ci(lambda a, b: 0.0, np.ones(3), np.ones(4))
