"""LLM-driven simulated users: personas from the truth, ground-truth choices, the aspect agreement table."""
import numpy as np
import pytest

from course_utils import simulation_llm as agents
from course_utils.data.fashion_mnist import CLASS_NAMES, load_fashion_mnist
from course_utils.data.fashion_shop import make_fashion_shop


@pytest.fixture(scope="module")
def shop():
    images = load_fashion_mnist(subset=True, verbose=False)
    return make_fashion_shop(n_users=30, seed=2, images=images.images[:100], labels=images.labels[:100],
                             mean_interactions=5)


def test_persona_states_the_true_favourites(shop):
    for user in range(5):
        w = shop.user_weights[user]
        text = agents.persona(shop, user)
        favourite, least = CLASS_NAMES[int(np.argmax(w[:10]))], CLASS_NAMES[int(np.argmin(w[:10]))]
        assert text.startswith(agents.NEUTRAL_SHOPPER)
        assert f"You love {agents._plural(favourite)}" in text and f"you dislike {agents._plural(least)}" in text
        assert shop.users.loc[user, "favourite_tone"] in text and shop.users.loc[user, "favourite_pattern"] in text


def test_product_texts_drop_the_brand_keep_the_price(shop):
    texts = agents.product_texts(shop)
    assert len(texts) == shop.n_items
    assert texts[0] == f"{shop.items.title[0].split(' by ')[0]}, ${shop.items.price[0]:.2f}"
    assert not any(brand in texts[0] for brand in shop.items.brand.unique())


def test_ground_truth_choice_and_aspects_add_up(shop):
    users, slates = np.arange(4), np.array([[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]])
    utility = np.stack([shop.true_utility(u, s)[0] for u, s in zip(users, slates)])
    assert (agents.ground_truth_choice(shop, users, slates) == utility.argmax(1)).all()
    parts = agents.aspect_utilities(shop, users, slates)
    assert sum(parts.values()) == pytest.approx(utility)
    with pytest.raises(ValueError, match="slates must be"):
        agents.ground_truth_choice(shop, users, slates[:2])


def test_aspect_agreement_hand_case(shop):
    users = np.arange(10)
    slates = np.tile(np.arange(4), (10, 1))
    truth = agents.ground_truth_choice(shop, users, slates)
    table = agents.aspect_agreement(shop, users, slates, truth)
    assert table.loc["full utility", "agreement"] == 1.0 and table.loc["full utility", "chance"] == pytest.approx(0.25)
    assert table.loc["full utility", "p"] < 1e-4
    wrong = (truth + 1) % 4
    assert agents.aspect_agreement(shop, users, slates, wrong).loc["full utility", "agreement"] == 0.0
    assert list(table.index) == ["full utility", "category", "tone", "pattern", "price", "popularity"]
    raw = table.loc[["category", "tone", "pattern", "price", "popularity"], "p"].to_numpy(float)
    order = np.argsort(raw)   # Holm by hand: sorted p times (5, 4, 3, ...), running maximum, capped at 1
    holm = np.minimum(1, np.maximum.accumulate(raw[order] * np.arange(5, 0, -1)))
    assert table.loc[["category", "tone", "pattern", "price", "popularity"], "p (Holm)"].to_numpy(float)[order] \
        == pytest.approx(holm)
    with pytest.raises(ValueError, match="one position"):
        agents.aspect_agreement(shop, users, slates, truth[:5])
    with pytest.raises(ValueError, match="one position"):
        agents.aspect_agreement(shop, users, slates, truth + 4)


def test_llm_choices_pick_the_most_likely_product_on_the_slate(shop):
    from course_utils.hub import load_llm
    from course_utils.llm.ranking import naive_log_likelihood, answer_texts

    model, tokenizer, _ = load_llm("smollm2-135m", verbose=False)
    texts = agents.product_texts(shop)
    prompts = [agents.choice_prompt(tokenizer, agents.persona(shop, u)) for u in (0, 1)]
    slates = np.array([[0, 1, 2], [3, 4, 5]])
    picks = agents.llm_choices(model, tokenizer, prompts, slates, texts)
    for prompt, slate, pick in zip(prompts, slates, picks):
        candidates = answer_texts(tokenizer, [texts[i] for i in slate])
        lengths = [len(tokenizer(c, add_special_tokens=False)["input_ids"]) for c in candidates]
        assert pick == np.argmax(naive_log_likelihood(model, tokenizer, prompt, candidates) / np.array(lengths))
    twins = [texts[0], texts[0], texts[1]]   # two products that read the same: the first of them is picked
    same = agents.llm_choices(model, tokenizer, prompts[:1], np.array([[0, 1, 2]]), twins)
    assert same[0] in (0, 2)
    with pytest.raises(ValueError, match="one non-empty slate per prompt"):
        agents.llm_choices(model, tokenizer, prompts, slates[:1], texts)
    with pytest.raises(ValueError, match="non-empty string"):
        agents.choice_prompt(tokenizer, " ")
