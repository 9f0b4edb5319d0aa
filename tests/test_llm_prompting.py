"""Prompt builders, parsing of list answers, and the fuzzy catalogue matcher (lesson 09)."""
import numpy as np
import pandas as pd
import pytest

from course_utils.llm import prompting as P


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from course_utils.hub import prepare_offline_llm

    return AutoTokenizer.from_pretrained(prepare_offline_llm(verbose=False))


def test_movie_titles_move_the_article_and_keep_row_order(movielens):
    titles = P.movie_titles(movielens.items)
    assert len(titles) == movielens.n_items and titles[0] == "Toy Story"
    lion = movielens.items.index[movielens.items["title"] == "Lion King, The"][0]
    assert titles[lion] == "The Lion King"
    with pytest.raises(ValueError, match="title"):
        P.movie_titles(pd.DataFrame({"name": ["x"]}))


def test_zero_and_few_shot_messages():
    zero = P.next_item_messages(["Heat", "Fargo"], k=3)
    assert [m["role"] for m in zero] == ["system", "user"]
    assert "- Heat\n- Fargo" in zero[1]["content"] and "Recommend 3" in zero[1]["content"]
    few = P.next_item_messages(["Heat"], k=2, examples=[(["Alien"], ["Aliens", "Predator"])])
    assert [m["role"] for m in few] == ["system", "user", "assistant", "user"]
    assert few[2]["content"] == "1. Aliens\n2. Predator" and "Recommend 2" in few[1]["content"]


@pytest.mark.parametrize("bad, error", [([], "history is empty"), (["Heat", " "], "empty title")])
def test_bad_histories_are_refused(bad, error):
    with pytest.raises(ValueError, match=error):
        P.next_item_messages(bad)
    with pytest.raises(ValueError, match=error):
        P.ranking_messages(bad)


def test_ranking_messages_list_candidates_in_order_and_refuse_duplicates():
    text = P.ranking_messages(["Heat"], ["B", "A"])[1]["content"]
    assert text.index("- B") < text.index("- A") and "Candidates" in text
    assert "Candidates" not in P.ranking_messages(["Heat"])[1]["content"]
    with pytest.raises(ValueError, match="duplicate"):
        P.ranking_messages(["Heat"], ["A", "B", "A"])
    with pytest.raises(TypeError):
        P.ranking_messages("Heat")


def test_rating_messages():
    text = P.rating_messages(["Heat", "Fargo"], [5, 2], "Alien")[1]["content"]
    assert "- Heat: 5 stars" in text and "Alien" in text
    with pytest.raises(ValueError, match="one rating per"):
        P.rating_messages(["Heat"], [5, 2], "Alien")


def test_render_chat_uses_the_template_and_checks_the_context(tokenizer):
    messages = P.next_item_messages(["Heat"])
    text = P.render_chat(tokenizer, messages)
    assert text.endswith("<|im_start|>assistant\n") and "- Heat" in text
    with pytest.raises(ValueError, match="more than the model's context of 10"):
        P.render_chat(tokenizer, messages, context=10)
    with pytest.raises(ValueError, match="messages"):
        P.render_chat(tokenizer, [])


def test_chat_markdown_quotes_every_turn():
    md = P.chat_markdown([{"role": "user", "content": "a\nb"}], response="c")
    assert md == "**user**\n\n> a\n> b\n\n**assistant (model)**\n\n> c"


def test_parse_titles():
    answer = "Here are some movies:\n1. \"Heat\" (1995)\n2) **Fargo** - a dark comedy\n- Alien\nEnjoy them!"
    assert P.parse_titles(answer) == ["Heat (1995)", "Fargo", "Alien"]
    assert P.parse_titles("Heat") == ["Heat"]
    assert P.parse_titles("") == []


def test_matcher_exact_fuzzy_and_miss():
    matcher = P.CatalogueMatcher(["Lion King, The", "Heat", "Heat", "Schindler's List"], cutoff=0.85)
    assert matcher.match("The Lion King (1994)") == [0]
    assert matcher.match("Heat") == [1, 2]                  # two items share the title
    assert matcher.match("Schindlers Lists") == [3]         # fuzzy
    assert matcher.match("The Kingkala Killing Machine") == []
    assert matcher.match("!!!") == []
    with pytest.raises(ValueError, match="empty"):
        P.CatalogueMatcher([])
    with pytest.raises(ValueError, match="cutoff"):
        P.CatalogueMatcher(["Heat"], cutoff=0)


def test_hallucination_table_lists_and_hit_rate():
    matcher = P.CatalogueMatcher(["Heat", "Fargo", "Alien"])
    table = matcher.table(["1. Heat\n2. Moon Pirates\n3. Fargo", "1. Alien"], users=[7, 8], seen=[{0}, set()])
    assert table["hallucinated"].tolist() == [False, True, False, False]
    assert table["seen"].tolist() == [True, False, False, False]
    lists = P.generated_lists(table, [7, 8], k=10)
    assert lists == [[1], [2]]
    np.testing.assert_array_equal(P.generation_hit_rate(lists, [1, 0]), [1.0, 0.0])
    with pytest.raises(ValueError, match="one list per target"):
        P.generation_hit_rate(lists, [1])
