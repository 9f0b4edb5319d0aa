"""The user simulators' stopping rules, answers and critiques, and the combined batch."""
import numpy as np
import pandas as pd
import pytest

from course_utils.llm import conversational as cv
from course_utils.llm.simulators import (CombinedSimulator, LLMSimulator, Reply, RuleSimulator, accept_reply,
                                         first_sentence, utterance_audit)


def _items():
    rows = [("Coat", "dark", "plain", "Miro", 80.99), ("Coat", "light", "plain", "Miro", 60.99),
            ("Coat", "dark", "textured", "Kestrel", 99.99), ("Dress", "dark", "plain", "Umber", 40.99)]
    frame = pd.DataFrame(rows, columns=["category", "tone", "pattern", "brand", "price"])
    frame["title"] = [f"{t.capitalize()} {p} {c.lower()} by {b}" for c, t, p, b, _ in rows]
    frame["description"] = [f"A {t} {c.lower()}." for c, t, *_ in rows]
    return frame


def _turn(items=(), tool="recommend", arguments=None):
    call = cv.ToolCall(tool, arguments if arguments is not None else {"constraints": {}})
    return cv.SystemTurn("text", call, list(items))


def test_accept_only_when_the_target_is_shown():
    assert accept_reply(2, [0, 2, 1]) == Reply("The second one, I'll take it!", accept=True)
    assert accept_reply(3, [0, 2, 1]) is None
    sim = RuleSimulator(_items(), [0], [2])
    assert sim.reply(2, _turn([1, 2])).accept
    assert not sim.reply(2, _turn([1, 0])).accept


def test_rule_simulator_opens_vaguely_answers_and_critiques_towards_the_target():
    items = _items()
    sim = RuleSimulator(items, [0, 1], [2, 3])
    assert sim.openings() == ["I'm looking for a coat.", "I'm looking for a dress."]
    ask = lambda q: _turn(tool="ask", arguments={"question": q})
    assert sim.reply(2, ask("Which tone would you like?")).text == "Dark, please."
    assert sim.reply(2, ask("Any favourite brand?")).text == "Kestrel, please."
    assert sim.reply(2, ask("Plain or textured?")).text == "Textured, please."
    assert sim.reply(2, ask("What is your budget?")).text == "Under $101."
    # shown 0 differs from the target 2 in pattern and brand: name the first difference, absolutely
    assert sim.reply(2, _turn([1, 0])).text == "Something textured, please."
    # shown 1 differs from target 0 in tone only: a relative critique the parser turns into the right update
    said = sim.critique(0, [3, 1])
    assert said == "Like the second one but darker."
    update = cv.parse_utterance(said, [3, 1], items)
    assert update.constraints == {"category": "Coat", "tone": "mid-tone", "pattern": "plain"} and update.critique
    assert sim.critique(1, [0]) == "Like the first one but lighter."
    assert sim.critique(3, [0]) == "Actually, I want a dress."
    with pytest.raises(ValueError, match="one user per target"):
        RuleSimulator(items, [0], [1, 2])
    with pytest.raises(ValueError, match="catalogue ids"):
        RuleSimulator(items, [0], [9])


def test_llm_simulator_accepts_by_the_rule_without_asking_the_model():
    sim = LLMSimulator(_items(), [0], [1], model=None, tokenizer=None)  # the model is never called here
    assert sim.replies([0], [_turn([3, 1])]) == [Reply("The second one, I'll take it!", accept=True)]


def test_llm_simulator_keeps_replies_apart_when_one_target_meets_several_managers():
    # run_dialogues with several managers asks about the same target index once per manager; each
    # must get the reply to its own turn (a dict keyed by target index used to overwrite the acceptance).
    from course_utils.hub import load_llm

    model, tokenizer, _ = load_llm("smollm2-135m", verbose=False)
    sim = LLMSimulator(_items(), [0], [1], model, tokenizer, max_new_tokens=4)
    shown, missed = sim.replies([0, 0], [_turn([3, 1]), _turn([0, 2])])
    assert shown == Reply("The second one, I'll take it!", accept=True)
    assert not missed.accept and missed.text


def test_combined_simulator_routes_each_dialogue_to_its_simulator():
    items = _items()
    both = CombinedSimulator([RuleSimulator(items, [0], [2]), RuleSimulator(items, [1, 2], [3, 1])])
    assert both.targets.tolist() == [2, 3, 1] and len(both.openings()) == 3
    replies = both.replies([2, 0], [_turn([1]), _turn([0])])
    assert replies[0].accept and not replies[1].accept
    assert both.split([10, 11, 12]) == [[10], [11, 12]]
    with pytest.raises(ValueError):
        CombinedSimulator([])


def test_utterance_audit_and_first_sentence():
    items = _items()
    dialogue = cv.Dialogue(0, 0, [("user", "A light coat please.", None), ("system", "Here", "{}"),
                                  ("user", "Dark plain coat, like that.", None), ("user", "The first one, I'll take it!", None)],
                           [[1]], True, 1, ["rule"])
    audit = utterance_audit([dialogue], items)
    assert audit["informative"].tolist() == [True, True]
    assert audit["contradicts"].tolist() == [True, False] and audit["wrong attributes"][0] == ["tone"]
    assert audit["says the title"].tolist() == [False, True]
    assert first_sentence("  I want a coat. Dark, please.\nMore") == "I want a coat."
    assert first_sentence("") == ""
