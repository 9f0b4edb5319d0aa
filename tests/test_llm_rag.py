"""Lesson 11's RAG helpers: rerank prompts and merges, the citation checker, the attribute extractor."""
import numpy as np
import pandas as pd
import pytest

from course_utils.llm import rag



@pytest.fixture()
def item():
    return pd.Series({"category": "T-shirt/top", "tone": "dark", "pattern": "plain", "brand": "Umber", "price": 27.99})


# ---------------------------------------------------------------- citations and attributes
def test_cited_ids_parse_every_spelling():
    assert rag.cited_ids("Soft [R2], warm [r 3] and cheap [R10].") == [2, 3, 10]
    assert rag.cited_ids("no citations here, R2 or (R3) do not count") == []
    with pytest.raises(TypeError):
        rag.cited_ids(None)


def test_extract_attributes_longest_words_first():
    found = rag.extract_attributes("A dark T-shirt by Umber for $27.99, nicer than any shirt at 30 dollars.")
    assert found["category"] == ["T-shirt/top", "Shirt"]      # "T-shirt" claims its span, "shirt" is separate
    assert found["tone"] == ["dark"] and found["brand"] == ["Umber"] and found["price"] == [27.99, 30.0]
    boots = rag.extract_attributes("Black ankle boots, a textured jumper and Alder bags.")
    assert boots["category"] == ["Ankle boot", "Pullover", "Bag"]   # not also "boot"
    assert boots["tone"] == ["dark"] and boots["pattern"] == ["textured"] and boots["brand"] == ["Alder & Co"]
    assert rag.extract_attributes("Lightweight and darkish, plainly good.") == {k: [] for k in rag.ATTRIBUTE_KINDS}


def test_extractor_vocabulary_covers_the_shop():
    from course_utils.data.fashion_shop import BRANDS, NOUN, PATTERNS, TONES

    vocabulary = rag.attribute_vocabulary()
    assert set(vocabulary["category"].values()) == set(NOUN)
    assert set(vocabulary["tone"].values()) == set(TONES) and set(vocabulary["pattern"].values()) == set(PATTERNS)
    assert set(vocabulary["brand"].values()) == set(BRANDS)
    for category, noun in NOUN.items():   # every shop noun is read back as its own category
        assert rag.extract_attributes(f"a {noun}")["category"] == [category]


def test_check_explanation_hand_made_cases(item):
    valid = rag.check_explanation("A dark plain tee by Umber [R1][R3], $28.", item, 3)
    assert valid["cited"] == [1, 3] and valid["missing citations"] == 0 and valid["wrong attributes"] == []
    assert len(valid["true attributes"]) == 5 and valid["grounded"] and not valid["hallucinated"]
    missing = rag.check_explanation("Everyone loves it [R4] [R2].", item, 3)
    assert missing["missing citations"] == 1 and missing["valid citations"] == 1
    assert missing["hallucinated"] and not missing["grounded"]
    wrong = rag.check_explanation("A light textured coat by Miro at $45 [R1].", item, 3)
    assert sorted(wrong["wrong attributes"]) == ["brand: Miro", "category: Coat", "pattern: textured",
                                                 "price: 45.00", "tone: light"]
    assert wrong["hallucinated"] and not wrong["grounded"]
    silent = rag.check_explanation("A lovely choice.", item, 3)
    assert silent["n_cited"] == 0 and silent["n stated"] == 0 and not silent["hallucinated"] and not silent["grounded"]
    none_given = rag.check_explanation("A dark tee [R1].", item, 0)   # without retrieval every id is missing
    assert none_given["missing citations"] == 1 and none_given["hallucinated"]


def test_check_explanation_bad_inputs(item):
    with pytest.raises(ValueError, match="n_given"):
        rag.check_explanation("text", item, -1)
    with pytest.raises(ValueError, match="brand"):
        rag.check_explanation("text", item.drop("brand"), 3)
    with pytest.raises(ValueError, match="one product row"):
        rag.check_explanations(["a", "b"], pd.DataFrame([item]), [3, 3])
    table = rag.check_explanations(["A dark tee [R1].", "[R9]"], pd.DataFrame([item, item]), [3, 3])
    assert table["hallucinated"].tolist() == [False, True]


def test_exact_paired_test_matches_binomial():
    from scipy.stats import binomtest

    a = np.array([1, 1, 1, 1, 1, 0, 0, 1])
    b = np.array([0, 0, 0, 0, 1, 0, 1, 1])
    assert rag.exact_paired_test(a, b) == pytest.approx(binomtest(4, 5, 0.5).pvalue)
    assert rag.exact_paired_test(a, a) == 1.0
    with pytest.raises(ValueError):
        rag.exact_paired_test(a, b[:3])


def test_named_products_map_to_the_catalogue():
    from course_utils.llm.prompting import CatalogueMatcher

    matcher = CatalogueMatcher(["Dark plain dress by Umber", "Light textured bag by Miro"])
    found = rag.named_products("I love the dark plain dress by Umber, unlike the red silk gown by Miro.", matcher,
                               ["Umber", "Miro"])
    assert [f["items"] for f in found] == [[0], []]           # the second name is a hallucinated product


# ---------------------------------------------------------------- retrieve-then-rerank
def test_rerank_scores_merge_top_n_above_the_rest():
    first = np.array([[0.9, 0.1, 0.5, 0.7, 0.3]])
    top = rag.top_columns(first, 3)
    assert top.tolist() == [[0, 3, 2]]
    final = rag.rerank_scores(first, top, np.array([[0.0, 1.0, 2.0]]))   # the reranker reverses the top 3
    assert np.argsort(-final[0]).tolist() == [2, 3, 0, 4, 1]
    same = rag.rerank_scores(first, top, np.take_along_axis(first, top, 1))
    assert np.argsort(-same[0]).tolist() == np.argsort(-first[0]).tolist()
    with pytest.raises(ValueError):
        rag.rerank_scores(first, top, np.array([[0.0, 1.0]]))
    with pytest.raises(ValueError):
        rag.top_columns(first, 6)


def test_facts_nearest_watched_and_shuffle():
    vectors = np.eye(4)
    vectors[3] = [0.8, 0.6, 0, 0]                              # item 3 is close to item 0
    items, sims = rag.nearest_watched(np.array([[3, 2]]), [[0, 1]], vectors)
    assert items.tolist() == [[0, 0]] and sims[0, 0] == pytest.approx(0.8)
    items = pd.DataFrame({"year": [1995, np.nan], "genres": [("Comedy", "Drama", "War"), ()]})
    assert rag.movie_facts(items) == ["1995; Comedy, Drama", "year unknown; genre unknown"]
    facts = rag.candidate_facts(np.array([[0, 1]]), rag.movie_facts(items), ["A", "B"], np.array([[1, 0]]))
    assert facts == [["1995; Comedy, Drama; like B", "year unknown; genre unknown; like A"]]
    assert rag.shuffled_facts([["a", "b", "c"]]) == [["b", "c", "a"]]
    with pytest.raises(ValueError):
        rag.shuffled_facts([["a"]])
    with pytest.raises(ValueError):
        rag.nearest_watched(np.array([[1]]), [[]], vectors)


def test_rerank_messages_include_facts():
    messages = rag.rerank_messages(["Heat"], ["Fargo", "Alien"], ["1996; Crime", "1979; Horror"])
    assert "- Fargo (1996; Crime)" in messages[-1]["content"] and "- Alien (1979; Horror)" in messages[-1]["content"]
    assert "(" not in rag.rerank_messages(["Heat"], ["Fargo", "Alien"])[-1]["content"].split("Candidates")[1]
    with pytest.raises(ValueError, match="one fact string per candidate"):
        rag.rerank_messages(["Heat"], ["Fargo", "Alien"], ["1996"])
    with pytest.raises(ValueError, match="duplicate"):
        rag.rerank_messages(["Heat"], ["Fargo", "Fargo"])
    with pytest.raises(ValueError):
        rag.rerank_messages([], ["Fargo"])


def test_rerank_prompt_respects_the_token_budget(llm):
    _, tokenizer = llm
    history, cands = ["Heat", "Fargo"], ["Alien", "Toy Story", "Casablanca"]
    facts = ["1979; Horror, Sci-Fi; like Heat and many other long facts", "1995; Animation; like Fargo", "1942; Drama"]
    size = lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    full, kept = rag.rerank_prompt(tokenizer, history, cands, facts)
    bare, _ = rag.rerank_prompt(tokenizer, history, cands)
    assert kept == -1 and size(full) > size(bare)
    budget = (size(full) + size(bare)) // 2
    cut, kept = rag.rerank_prompt(tokenizer, history, cands, facts, budget=budget)
    assert size(cut) <= budget and kept > 0 and all(c in cut for c in cands) and "many other long facts" not in cut
    with pytest.raises(ValueError, match="without facts"):
        rag.rerank_prompt(tokenizer, history, cands, facts, budget=size(bare) - 1)
    with pytest.raises(ValueError, match="budget"):
        rag.rerank_prompt(tokenizer, history, cands, facts, budget=0)


def test_llm_rerank_scores_each_candidate_in_input_order(llm):
    from course_utils.llm.ranking import score_candidates

    model, tokenizer = llm
    cands = ["Alien", "Toy Story", "Casablanca"]
    scores, seconds, tokens = rag.llm_rerank(model, tokenizer, [["Heat"]], [cands], listing_seed=3)
    shown = np.random.default_rng(3).permutation(3)
    listed = [cands[j] for j in shown]
    prompt, _ = rag.rerank_prompt(tokenizer, ["Heat"], listed)
    direct = score_candidates(model, tokenizer, prompt, listed, "mean")
    np.testing.assert_allclose(scores[0][shown], direct, atol=1e-4)
    assert seconds.shape == (1,) and tokens[0] == len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    with pytest.raises(ValueError, match="one history"):
        rag.llm_rerank(model, tokenizer, [["Heat"]], [cands, cands])


def test_rank_agreement():
    a = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    np.testing.assert_allclose(rag.rank_agreement(a, np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])), [1.0, -1.0])
    with pytest.raises(ValueError):
        rag.rank_agreement(a, a[:, :2])


# ---------------------------------------------------------------- explanations on the shop
def test_explanation_prompt_and_retrieval():
    with_reviews = rag.explanation_messages("Dark plain dress by Umber", ["Nice.", "Too dark."], "price $40.00")
    content = with_reviews[-1]["content"]
    assert "[R1] Nice.\n[R2] Too dark." in content and "Facts: price $40.00." in content
    title_only = rag.explanation_messages("Dark plain dress by Umber")
    assert "[R" not in title_only[-1]["content"] and title_only[0] == with_reviews[0]   # the same instruction
    with pytest.raises(ValueError):
        rag.explanation_messages(" ")
    with pytest.raises(ValueError):
        rag.review_block([])
    vectors = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    assert rag.retrieve_reviews(np.array([0.0, 1.0]), vectors, k=2).tolist() == [2, 1]
    with pytest.raises(ValueError):
        rag.retrieve_reviews(np.array([0.0, 1.0]), vectors, k=0)


def test_explanation_cases_on_the_shop():
    from course_utils.data.fashion_shop import make_fashion_shop

    shop = make_fashion_shop()
    cases = rag.explanation_cases(shop, 3, min_reviews=6, seed=1)
    log = shop.interactions
    for row in cases.itertuples():
        assert len(row.reviews) >= 6 and not ((log["item"] == row.item) & (log["user"] == row.user)).any()
        assert shop.true_utility([row.user], [row.item])[0, 0] >= shop.true_utility(None, [row.item])[
            np.setdiff1d(np.arange(shop.n_users), log[log["item"] == row.item]["user"]), 0].max() - 1e-12
    assert rag.user_profile(shop, int(cases["user"][0])).startswith("I like: ")
    with pytest.raises(ValueError, match="n_products"):
        rag.explanation_cases(shop, 0)
