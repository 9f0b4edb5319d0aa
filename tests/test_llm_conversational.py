"""The conversational recommender: the strict tool-call parser, the critique parser, the tools, the
elicitation rule, the dialogue loop's stopping rules, and the LLM policy's retry and fallback."""
import json

import numpy as np
import pandas as pd
import pytest

from course_utils.llm import conversational as cv
from course_utils.llm.simulators import Reply, RuleSimulator
from course_utils.llm.tool_calling import closes_json


def _items():
    rows = [("Coat", "dark", "plain", "Miro", 80.99), ("Coat", "light", "plain", "Miro", 60.99),
            ("Coat", "dark", "textured", "Kestrel", 99.99), ("Dress", "dark", "plain", "Umber", 40.99),
            ("Dress", "mid-tone", "textured", "Umber", 30.99), ("Coat", "mid-tone", "plain", "Miro", 70.99)]
    frame = pd.DataFrame(rows, columns=["category", "tone", "pattern", "brand", "price"])
    frame["title"] = [f"{t.capitalize()} {p} {c.lower()} by {b}" for c, t, p, b, _ in rows]
    frame["description"] = [f"A {t} {c.lower()}." for c, t, *_ in rows]
    return frame


def _tools(items=None):
    items = _items() if items is None else items
    vectors = np.eye(len(items), dtype=np.float32)
    encode = lambda queries: np.ones((len(queries), len(items)), np.float32) / np.sqrt(len(items))
    scores = np.arange(len(items), dtype=np.float32)[None, ::-1].repeat(2, 0)  # user 0 and 1: lower id first
    return cv.ShopTools(items, vectors, encode, scores.copy(), {0: [], 1: [0]}, {0: ["Warm.", "Too dark."]})


# ---------------------------------------------------------------- the tool-call parser
@pytest.mark.parametrize("text, message", [
    ('{"tool": "ask", "arguments": {"question": "Tone?"', "malformed JSON"),
    ("Sure! Here you go", "must start with a JSON object"),
    ('{"tool": "buy", "arguments": {}}', "unknown tool 'buy'"),
    ('{"tool": "ask", "arguments": {}}', "missing argument 'question'"),
    ('{"tool": "ask", "arguments": {"question": 3}}', "question must be a non-empty str"),
    ('{"tool": "ask", "arguments": {"question": "Tone?", "why": "x"}}', "unexpected argument"),
    ('{"tool": "recommend", "arguments": {"constraints": {"colour": "red"}}}', "unknown filter 'colour'"),
    ('{"tool": "recommend", "arguments": {"constraints": {"tone": "red"}}}', "tone must be one of"),
    ('{"tool": "recommend", "arguments": {"constraints": {"max_price": "cheap"}}}', "positive number"),
    ('{"tool": "item_info", "arguments": {"item_id": 99, "question": "Price?"}}', "not in the catalogue"),
    ('{"tool": "item_info", "arguments": {"item_id": true, "question": "Price?"}}', "item_id must be"),
    ('{"tool": "respond", "arguments": {"text": "Try the Dark plain coat by Miro!"}}', "must not name products"),
    ('{"tool": "ask"}', 'exactly the keys "tool" and "arguments"'),
    ('["ask"]', "must start with a JSON object"),
])
def test_parser_rejects_bad_calls_with_a_clear_message(text, message):
    with pytest.raises(cv.ToolCallError, match=message.replace("(", r"\(")):
        cv.parse_tool_call(text, n_items=6)


def test_parser_accepts_good_calls_and_normalises_filters():
    call = cv.parse_tool_call(' {"tool": "recommend", "arguments": {"constraints": {"category": "coat", "tone": "Dark",'
                              ' "max_price": 50}}}\nThat is my answer.', n_items=6)
    assert call == cv.ToolCall("recommend", {"constraints": {"category": "Coat", "tone": "dark", "max_price": 50.0}})
    assert json.loads(call.json())["tool"] == "recommend"
    assert cv.parse_tool_call('{"tool": "item_info", "arguments": {"item_id": 5, "question": "Price?"}}', 6).tool \
        == "item_info"
    with pytest.raises(TypeError):
        cv.parse_tool_call(None, n_items=6)


def test_closes_json_counts_braces_outside_strings():
    assert closes_json('{"tool": "ask", "arguments": {"question": "a } b"}}')
    assert not closes_json('{"tool": "ask", "arguments": {"question": "a } b"}')
    assert not closes_json("no json here }")


# ---------------------------------------------------------------- the critique parser
def test_critiques_become_constraints_relative_to_the_shown_items():
    items, shown = _items(), [1, 0, 2]  # light coat $60.99, dark coat $80.99, dark textured coat $99.99
    update = cv.parse_utterance("Like the second one but textured", shown, items)
    assert update.reference == 0 and update.critique
    assert update.constraints == {"category": "Coat", "tone": "dark", "pattern": "textured"}
    assert cv.parse_utterance("cheaper", shown, items).constraints == {"max_price": 60.99}  # than the first shown
    assert cv.parse_utterance("like the third one but cheaper", shown, items).constraints["max_price"] == 99.99
    assert cv.parse_utterance("darker", shown, items).constraints == {"tone": "mid-tone"}  # one step from light
    assert cv.parse_utterance("in black, please", shown, items).constraints == {"tone": "dark"}
    assert cv.parse_utterance("something plainer", shown, items).constraints == {"pattern": "plain"}
    assert cv.parse_utterance("a dress under $35 from Umber", [], items).constraints == \
        {"category": "Dress", "brand": "Umber", "max_price": 35.0}
    assert cv.parse_utterance("a T-shirt", [], items).constraints == {"category": "T-shirt/top"}
    assert cv.parse_utterance("a light-coloured shirt", [], items).constraints == {"category": "Shirt", "tone": "light"}
    # several values of one attribute: ambiguous, so nothing is set for it
    assert cv.parse_utterance("light, mid-tone or dark coat? Miro or Umber", [], items).constraints == {"category": "Coat"}


def test_accept_quit_and_questions():
    items, shown = _items(), [1, 0]
    accept = cv.parse_utterance("The second one, I'll take it!", shown, items)
    assert accept.accept and accept.reference == 0
    assert cv.parse_utterance("Forget it, bye", shown, items).quit
    question = cv.parse_utterance("How much is the first one?", shown, items)
    assert question.question and question.reference == 1 and not question.constraints
    with pytest.raises(TypeError):
        cv.parse_utterance(3, shown, items)


# ---------------------------------------------------------------- tools and policy
def test_tools_filter_exclude_and_answer_from_the_item_only():
    tools = _tools()
    assert tools.recommend(0, {"category": "Coat"}, k=2) == [0, 1]  # highest score (lowest id) first
    assert tools.recommend(1, {"category": "Coat", "max_price": 90}, k=5) == [1, 5]  # item 0 was bought
    assert tools.search_catalogue("coat", {"tone": "dark"}, k=5, exclude=[3]) == [0, 2]
    assert tools.recommend(0, {"category": "Bag"}) == []
    assert "$80.99" in tools.item_info(0, "How much is it?") and "Miro" in tools.item_info(0, "Which brand?")
    assert '"Warm."' in tools.item_info(0, "What do the reviews say?")
    assert tools.entropy({"category": "Dress"}, "tone") == pytest.approx(1.0)
    assert tools.entropy({"category": "Bag"}, "tone") == 0.0
    with pytest.raises(ValueError, match="one vector"):
        cv.ShopTools(_items(), np.eye(3), None, np.zeros((1, 6)), {})


def test_elicitation_asks_the_highest_entropy_attribute_then_recommends():
    tools, policy = _tools(), cv.RulePolicy(max_questions=1)
    state = cv.DialogueState(user=0, constraints={"category": "Coat"})
    call = policy.action(state, cv.Update(), tools)
    # among the 4 coats: tone 3 values (1.5 bits) > brand 2 values (0.81) > pattern (0.81)
    assert call.tool == "ask" and cv.asked_attribute(call.arguments["question"]) == "tone"
    state.asked.append("tone")
    assert policy.action(state, cv.Update(), tools).tool == "recommend"
    assert cv.RulePolicy(elicit=False).action(cv.DialogueState(user=0), cv.Update(), tools).tool == "recommend"


# ---------------------------------------------------------------- the dialogue loop
class _Scripted:
    """A simulator that says fixed lines and accepts when its target is shown."""

    def __init__(self, targets, lines):
        self.users, self.targets, self.lines = np.zeros(len(targets), int), np.asarray(targets), lines

    def openings(self):
        return ["I want a coat"] * len(self.targets)

    def replies(self, indices, turns):
        return [Reply("yes, I'll take it", accept=True) if self.targets[i] in turn.items else Reply(self.lines)
                for i, turn in zip(indices, turns)]


def test_dialogue_ends_on_success_or_after_the_turn_limit():
    tools = _tools()
    manager = cv.DialogueManager(tools, cv.RulePolicy(elicit=False), k=1)
    found, lost = cv.run_dialogues(manager, _Scripted([2, 3], "show me more"), max_turns=3)
    assert found.success and found.turns == 3 and found.recommended == [[0], [1], [2]]  # the next coat each turn
    assert not lost.success and lost.turns == 3  # a dress is never a coat: the limit ends it
    assert cv.check_dialogues([found, lost], tools.n_items) == 6
    assert cv.run_dialogue(manager, _Scripted([0], "more"), max_turns=3).turns == 1
    with pytest.raises(ValueError, match="one target"):
        cv.run_dialogue(manager, _Scripted([5, 2], "more"), max_turns=3)
    with pytest.raises(ValueError, match="max_turns"):
        cv.run_dialogues(manager, _Scripted([5], "more"), max_turns=0)
    bad = cv.Dialogue(0, 1, [], [[7]], False, 1, [])
    with pytest.raises(AssertionError, match="not catalogue items"):
        cv.check_dialogues([bad], tools.n_items)
    table = cv.dialogue_table([found, lost])
    assert table["success"].tolist() == [True, False] and table["rule"].tolist() == [3, 3]
    assert "accepted after 3" in cv.transcript_markdown(found, tools.items)


def test_critiquing_and_its_ablation():
    tools = _tools()
    sim = RuleSimulator(tools.items, [0], [5])  # the mid-tone plain coat by Miro
    with_critique = cv.run_dialogue(cv.DialogueManager(tools, cv.RulePolicy(elicit=False), k=1), sim, 3)
    assert with_critique.success and with_critique.turns == 2  # shown 0 (dark): "lighter" finds 5
    assert with_critique.transcript[2][1] == "Like the first one but lighter."
    without = cv.run_dialogue(cv.DialogueManager(tools, cv.RulePolicy(elicit=False), critique=False, k=1), sim, 2)
    assert not without.success and without.recommended == [[0], [1]]  # the critique was ignored: next in order



def test_llm_policy_retries_once_then_falls_back(monkeypatch):
    from course_utils.llm import tool_calling

    tools = _tools()
    policy = tool_calling.LLMPolicy(model=None, tokenizer=None, n_items=tools.n_items)
    replies = iter([['{"tool": "ask", "arguments": {"question": "Which tone?"}}', "not json", '{"tool": "buy"}'],
                    ['{"tool": "recommend", "arguments": {"constraints": {}}}', "still not json"]])
    monkeypatch.setattr(policy, "_generate", lambda conversations: next(replies)[:len(conversations)])
    monkeypatch.setattr(policy, "messages", lambda state, utterance: [{"role": "user", "content": utterance}])
    states = [cv.DialogueState(user=0, said=["coat"]) for _ in range(3)]
    fallback = [cv.ToolCall("recommend", {"constraints": {"category": "Coat"}})] * 3
    chosen = policy.choose(states, [cv.Update()] * 3, fallback)
    assert [source for _, source, _ in chosen] == ["llm", "llm after retry", "fallback"]
    assert chosen[2][0] is fallback[2] and len(chosen[1][2]) == 2
    log = pd.DataFrame(policy.log)
    assert log["valid_first"].tolist() == [True, False, False] and log["fallback"].sum() == 1
    assert "unknown tool" in log["error"][2] or "exactly the keys" in log["error"][2]


def test_genre_critique_less_violent_and_named_genres():
    genres = ("Action", "Animation", "Children's", "Comedy", "Crime", "Drama", "Horror", "Sci-Fi", "Thriller", "War")
    less = cv.parse_genre_critique("Something less violent, please", genres)
    assert less == {"exclude": ("Action", "Crime", "Horror", "Thriller", "War"), "include": ()}
    comedy = cv.parse_genre_critique("a comedy, but no violence", genres)
    assert comedy["include"] == ("Comedy",) and "Action" in comedy["exclude"]
    assert cv.parse_genre_critique("I liked it", genres) == {"exclude": (), "include": ()}
    assert cv.parse_genre_critique("something warm", genres)["include"] == ()  # "War" is a word, not a prefix
    items = [("Action", "Thriller"), ("Comedy",), ("Drama", "War"), ("Animation", "Children's", "Comedy")]
    assert cv.genre_critique_mask(items, less).tolist() == [False, True, False, True]
    assert cv.genre_critique_mask(items, comedy).tolist() == [False, True, False, True]
    grown = cv.parse_genre_critique("more grown-up", genres)
    assert cv.genre_critique_mask(items, grown).tolist() == [True, True, True, False]


def test_genre_critique_bad_input():
    with pytest.raises(TypeError, match="string"):
        cv.parse_genre_critique(None, ("Action",))
    with pytest.raises(ValueError, match="empty"):
        cv.parse_genre_critique("less violent", ())
    with pytest.raises(ValueError, match="exclude"):
        cv.genre_critique_mask([("Action",)], {"exclude": ()})
