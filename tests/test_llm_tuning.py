"""Tests for course_utils.llm.tuning: prompts, the yes/no scorer, LoRA and soft prompts, AUC, baselines."""
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from course_utils.llm import tuning as tu



@pytest.fixture(scope="module")
def tiny_llm(llm):
    """A randomly initialised 4-layer Llama (SmolLM2's architecture) with the real tokenizer: the training and
    caching mechanics are the same as on the 30-layer model, at a fraction of the cost."""
    from transformers import LlamaConfig, LlamaForCausalLM

    _, tokenizer = llm
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id)
    return LlamaForCausalLM(config).eval(), tokenizer


PROMPT_TEXTS = [tu.preference_instruction(["Fargo", "Heat"], ["Congo"], "Babe (1995), Children's, Comedy"),
                tu.preference_instruction([], ["Batman Forever", "Congo", "Judge Dredd"], "Toy Story (1995), Animation")]


# ---------------------------------------------------------------- prompts
def test_preference_instruction_lists_liked_disliked_and_target():
    text = tu.preference_instruction(["Fargo", "Heat"], [], "Babe (1995), Comedy")
    assert text.splitlines() == ["Liked: Fargo; Heat.", "Disliked: none.", "Target: Babe (1995), Comedy.",
                                 "Will the user like the target movie? Answer Yes or No."]


@pytest.mark.parametrize("liked, disliked, target, match", [
    ([], [], "Babe", "no liked and no disliked"),
    (["Fargo"], [], "  ", "target"),
    ("Fargo", [], "Babe", "list of titles"),
    (["Fargo", ""], [], "Babe", "empty title"),
])
def test_preference_instruction_bad_inputs(liked, disliked, target, match):
    with pytest.raises((ValueError, TypeError), match=match):
        tu.preference_instruction(liked, disliked, target)


def test_chat_prompt_ends_where_the_answer_starts(llm):
    _, tokenizer = llm
    prompt = tu.chat_prompt(tokenizer, PROMPT_TEXTS[0])
    assert tu.PREFERENCE_SYSTEM in prompt and PROMPT_TEXTS[0] in prompt
    assert prompt.rstrip().endswith("assistant")
    with pytest.raises(ValueError, match="empty"):
        tu.chat_prompt(tokenizer, " ")


def test_yes_no_pairs_use_only_the_past(tiny_split_items):
    split, items = tiny_split_items
    pairs = tu.yes_no_pairs(split, items, "test", [0, 1], max_history=2)
    assert list(pairs["item"]) == list(split.test.set_index("user").loc[[0, 1], "item"])
    assert list(pairs["label"]) == [int(r >= 4) for r in pairs["rating"]]
    history = split.history_frame("test")
    for user, text in zip(pairs["user"], pairs["instruction"]):
        last_two = history[history["user"] == user].tail(2)
        for item, rating in zip(last_two["item"], last_two["rating"]):
            line = text.splitlines()[0 if rating >= 4 else 1]
            assert items.loc[item, "title"] in line
    with pytest.raises(ValueError, match="stage"):
        tu.yes_no_pairs(split, items, "train", [0])
    with pytest.raises(ValueError, match="no test item"):
        tu.yes_no_pairs(split, items, "test", [99])


@pytest.fixture
def tiny_split_items():
    from course_utils.data.splits import leave_one_out_split

    rng = np.random.default_rng(0)
    rows = [(u, i, float(rng.integers(1, 6)), 1000 * u + t) for u in range(3)
            for t, i in enumerate(rng.choice(6, 5, replace=False))]
    ratings = pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])
    items = pd.DataFrame({"item": range(6), "title": [f"Movie {i}" for i in range(6)], "year": [1990 + i for i in range(6)],
                          "genres": [("Drama",)] * 6})
    return leave_one_out_split(ratings, n_users=3, n_items=6), items


def test_balanced_users_half_and_half(tiny_split_items):
    from course_utils.data.movielens import load_movielens
    from course_utils.data.splits import leave_one_out_split

    split = leave_one_out_split(load_movielens().ratings)
    users = tu.balanced_users(split, "test", 20, np.random.default_rng(0), exclude=[0, 1, 2])
    ratings = split.test.set_index("user").loc[users, "rating"]
    assert (ratings >= 4).sum() == 10 and len(set(users)) == 20 and not set(users) & {0, 1, 2}
    with pytest.raises(ValueError, match="even"):
        tu.balanced_users(split, "test", 3, np.random.default_rng(0))


# ---------------------------------------------------------------- the yes/no scorer
def test_yes_probability_is_a_two_way_softmax():
    logits = torch.randn(3, 50)
    by_hand = logits.softmax(-1)[:, 7] / (logits.softmax(-1)[:, 7] + logits.softmax(-1)[:, 9])
    assert torch.allclose(tu.yes_probability(logits, 7, 9), by_hand, atol=1e-6)
    with pytest.raises(ValueError, match="do not index"):
        tu.yes_probability(logits, 7, 50)


def test_score_yes_no_equals_manual_softmax_of_the_models_logits(llm):
    model, tokenizer = llm
    prompts = [tu.chat_prompt(tokenizer, t) for t in PROMPT_TEXTS]
    p_yes, mass = tu.score_yes_no(model, tokenizer, prompts, batch_size=2, return_mass=True)
    yes_id, no_id = tu.yes_no_token_ids(tokenizer)
    for prompt, score, share in zip(prompts, p_yes, mass):  # one unpadded prompt at a time, full softmax
        ids = torch.tensor([tokenizer(prompt, add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            probs = model(input_ids=ids).logits[0, -1].softmax(-1)
        assert score == pytest.approx(float(probs[yes_id] / (probs[yes_id] + probs[no_id])), abs=1e-4)
        assert share == pytest.approx(float(probs[yes_id] + probs[no_id]), abs=1e-4)


def test_scorer_bad_inputs(llm):
    model, tokenizer = llm
    with pytest.raises(ValueError, match="empty"):
        tu.score_yes_no(model, tokenizer, [])
    with pytest.raises(TypeError, match="not one string"):
        tu.score_yes_no(model, tokenizer, "a prompt")
    with pytest.raises(ValueError, match="batch_size"):
        tu.score_yes_no(model, tokenizer, ["a"], batch_size=0)
    with pytest.raises(ValueError, match="one"):
        tu.yes_no_token_ids(tokenizer, yes="Yes indeed")


# ---------------------------------------------------------------- LoRA and soft prompts
def test_lora_adds_only_the_expected_trainable_parameters(llm):
    model, _ = llm
    config = model.config
    kv_width = config.num_key_value_heads * config.hidden_size // config.num_attention_heads
    per_layer = 8 * ((config.hidden_size * 2) + (config.hidden_size + kv_width))  # q_proj and v_proj
    everywhere, top = tu.add_lora(model, r=8), tu.add_lora(model, r=8, top_layers=3)
    assert tu.trainable_parameters(everywhere)["trainable"] == config.num_hidden_layers * per_layer == 460_800
    assert tu.trainable_parameters(top)["trainable"] == 3 * per_layer
    for lora in (everywhere, top):
        assert all(("lora_" in name) == p.requires_grad for name, p in lora.named_parameters())
    assert {tu._layer_index(n) for n, p in top.named_parameters() if p.requires_grad} == {27, 28, 29}
    with pytest.raises(ValueError, match="top_layers"):
        tu.add_lora(model, top_layers=31)


def test_lora_training_keeps_the_base_frozen_and_merges_exactly(tiny_llm):
    model, tokenizer = tiny_llm
    before = {k: v.clone() for k, v in model.state_dict().items()}
    lora = tu.add_lora(model, r=8, top_layers=2, seed=0)
    prompts = [tu.chat_prompt(tokenizer, t) for t in PROMPT_TEXTS]
    run = tu.fit_on_targets(lora, tokenizer, prompts, ["Yes", "No"], epochs=2, batch_size=2, lr=1e-2, seed=0)
    assert run.steps == 2 and run.examples == 4 and all(np.isfinite(run.losses))
    frozen = {n.replace("base_model.model.", "").replace(".base_layer", ""): p
              for n, p in lora.named_parameters() if not p.requires_grad}
    assert all(torch.equal(before[n], p) for n, p in frozen.items() if n in before), "the base must stay frozen"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "the original model is untouched"
    assert any(p.abs().sum() > 0 for n, p in lora.named_parameters() if "lora_B" in n), "B moved off zero"

    batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        adapted = lora(**batch).logits[:, -1]
        merged = lora.merge_and_unload()(**batch).logits[:, -1]
        original = model(**batch).logits[:, -1]
    assert torch.allclose(adapted.softmax(-1), merged.softmax(-1), atol=1e-4)
    assert (adapted - merged).abs().max() < 1e-4 * adapted.abs().max(), "logits equal to 1e-4 (relative)"
    assert not torch.allclose(adapted, original, atol=1e-2), "training must have changed the outputs"


def test_cached_lower_layers_give_the_full_forward_pass(tiny_llm):
    model, tokenizer = tiny_llm
    prompts = [tu.chat_prompt(tokenizer, t) for t in PROMPT_TEXTS]
    lora = tu.add_lora(model, r=8, top_layers=2, seed=0)
    states = tu.lower_layer_states(model, tokenizer, prompts, top_layers=2)
    assert [len(s) for s in states] == [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    tu.fit_from_states(lora, tokenizer, states, [1, 0], top_layers=2, epochs=1, batch_size=2, lr=1e-2, seed=0)
    cached = tu.score_from_states(lora, tokenizer, states, top_layers=2)
    assert np.allclose(cached, tu.score_yes_no(lora, tokenizer, prompts), atol=1e-4)
    towards_yes = tu.add_lora(model, r=8, top_layers=2, seed=0)
    tu.fit_from_states(towards_yes, tokenizer, states[:1], [1], top_layers=2, epochs=2, batch_size=1, lr=1e-2)
    assert (tu.score_from_states(towards_yes, tokenizer, states[:1], top_layers=2)[0]
            > tu.score_yes_no(model, tokenizer, prompts[:1])[0]), "steps towards Yes raise P(Yes)"
    deep = tu.add_lora(model, r=8, top_layers=3)
    with pytest.raises(ValueError, match="stale"):
        tu.fit_from_states(deep, tokenizer, states, [1, 0], top_layers=2)
    with pytest.raises(ValueError, match="0/1 label"):
        tu.fit_from_states(lora, tokenizer, states, [1], top_layers=2)


def test_soft_prompt_trains_only_its_vectors(tiny_llm):
    model, tokenizer = tiny_llm
    soft = tu.add_soft_prompt(model, tokenizer, n_virtual_tokens=4)
    assert tu.trainable_parameters(soft)["trainable"] == 4 * model.config.hidden_size
    prompts = [tu.chat_prompt(tokenizer, PROMPT_TEXTS[0])]
    start = tu.score_yes_no(soft, tokenizer, prompts)
    tu.fit_on_targets(soft, tokenizer, prompts, ["No"], epochs=3, batch_size=1, lr=5e-2, seed=0)
    assert tu.score_yes_no(soft, tokenizer, prompts) < start, "training towards No lowers P(Yes)"
    with pytest.raises(ValueError, match="positive"):
        tu.add_soft_prompt(model, tokenizer, n_virtual_tokens=0)


def test_fit_and_perplexity_bad_inputs(llm):
    model, tokenizer = llm
    with pytest.raises(ValueError, match="not a peft model"):
        tu.fit_on_targets(model, tokenizer, ["a"], ["b"])
    with pytest.raises(ValueError, match="not a peft model"):
        tu.fit_from_states(model, tokenizer, [torch.zeros(3, 576)], [1], top_layers=2)
    with pytest.raises(ValueError, match="pair one to one"):
        tu.target_log_probs(model, tokenizer, ["a", "b"], ["c"])
    with pytest.raises(ValueError, match="rank"):
        tu.add_lora(model, r=0)


def test_target_log_probs_match_a_full_forward_pass(llm):
    model, tokenizer = llm
    prompts, targets = ["The capital of France is", "One, two,"], [" Paris.", " three, four"]
    totals, counts = tu.target_log_probs(model, tokenizer, prompts, targets, batch_size=2)
    for prompt, target, total, count in zip(prompts, targets, totals, counts):
        p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        t_ids = tokenizer(target, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            log_probs = model(input_ids=torch.tensor([p_ids + t_ids])).logits[0].log_softmax(-1)
        by_hand = sum(float(log_probs[len(p_ids) - 1 + k, t]) for k, t in enumerate(t_ids))
        assert count == len(t_ids) and total == pytest.approx(by_hand, abs=1e-3)
    assert tu.perplexity(model, tokenizer, prompts, targets) == pytest.approx(np.exp(-totals.sum() / counts.sum()))


# ---------------------------------------------------------------- AUC
def test_auc_matches_sklearn_and_its_interval_covers_it():
    rng = np.random.default_rng(0)
    labels = np.repeat([1, 0], 30)
    scores = labels + rng.normal(0, 1.5, 60)
    scores[:3] = scores[40]  # ties count one half
    assert tu.auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))
    low, high = tu.auc_interval(labels, scores, seed=0)
    assert low < tu.auc(labels, scores) < high and high - low < 0.4
    assert tu.auc([1, 0, 1, 0], [0.9, 0.1, 0.8, 0.2]) == 1.0


def test_compare_auc_verdicts_and_delong():
    rng = np.random.default_rng(1)
    labels = np.repeat([1, 0], 100)
    good, noise = labels + rng.normal(0, 0.7, 200), rng.normal(0, 1, 200)
    comparison = tu.compare_auc(labels, good, noise, "good", "noise")
    assert comparison.verdict == "better" and comparison.p_value < 0.001 and "better" in comparison.sentence()
    assert tu.compare_auc(labels, noise, good).verdict == "worse"
    same = tu.compare_auc(labels, good, good + 1e-9 * rng.normal(size=200))
    assert same.verdict == "level" and "no significant difference" in same.sentence()


def test_auc_bad_inputs():
    with pytest.raises(ValueError, match="both classes"):
        tu.auc([1, 1], [0.2, 0.3])
    with pytest.raises(ValueError, match="0/1"):
        tu.auc([2, 0], [0.2, 0.3])
    with pytest.raises(ValueError, match="one score per pair"):
        tu.auc([1, 0], [0.2])
    with pytest.raises(ValueError, match="NaN"):
        tu.auc([1, 0], [np.nan, 0.3])


# ---------------------------------------------------------------- the baseline
def test_rating_baseline_by_hand():
    ratings = pd.DataFrame({"user": [0, 0, 1, 1], "item": [0, 1, 0, 2], "rating": [5.0, 3.0, 4.0, 2.0]})
    mu = 3.5
    item_only = tu.rating_baseline(ratings, [0, 1], [0, 2], kind="item", shrinkage=0.0)
    assert np.allclose(item_only, [4.5, 2.0])
    both = tu.rating_baseline(ratings, [0], [2], shrinkage=0.0)
    user0, user1 = 4.0 - mu, 3.0 - mu
    assert np.allclose(both, [mu + user0 + (2.0 - mu - user1)])
    assert np.allclose(tu.rating_baseline(ratings, [5], [9], kind="item"), [mu]), "unknown ids fall back to the mean"
    with pytest.raises(ValueError, match="kind"):
        tu.rating_baseline(ratings, [0], [0], kind="user")


# ---------------------------------------------------------------- explanations
def test_review_aspects_match_the_shops_reviews():
    from course_utils.data.fashion_shop import make_fashion_shop

    shop = make_fashion_shop(n_users=60)
    frame = tu.explanation_examples(shop, shop.interactions)
    tone_praise = frame[(frame["rating"] >= 4) & (frame["aspect"] == "tone")]
    items = shop.items.set_index("item")
    assert len(tone_praise) > 0
    assert all(items.loc[i, "tone"] in review for i, review in zip(tone_praise["item"], tone_praise["review"]))
    assert set(frame.loc[frame["rating"] == 3, "aspect"]) == {"none"}
    assert "Rating: " in frame["instruction"][0] and items.loc[frame["item"][0], "title"] in frame["instruction"][0]
    words = tu.item_attribute_words(shop.items, [0])[0]
    assert set(words) <= set(tu.attribute_vocabulary()) and len(words) == 4
    with pytest.raises(ValueError, match="rating"):
        tu.explanation_instruction("Dark plain coat by Umber", 80.0, 6, "tone")


def test_faithfulness_sentence_states_coverage_precision_and_errors():
    from course_utils.text_metrics import faithfulness

    vocabulary = ["dark", "light", "striped", "plain", "shirt", "boots"]
    truth = [["dark", "plain", "shirt"], ["light", "striped", "boots"], ["dark", "plain", "shirt"], ["light", "plain", "boots"]]
    texts = ["A dark shirt.", "Lovely striped boots, but dark.", "Nice.", "Fine."]
    scores = faithfulness(texts, truth, vocabulary)  # 2 of 4 name attributes; 4 of 5 mentions true; 1 text wrong
    sentence = tu.faithfulness_sentence(scores, 4, "tuned")
    assert sentence.case == "some false"
    assert "2 of the 4 tuned explanations (50%)" in sentence.text and "80%" in sentence.text
    assert "1 of 4 (25%)" in sentence.text
    table_names = {"mentioning any attribute": 0.25, "attribute precision": 1.0, "with a wrong attribute": 0.0}
    assert tu.faithfulness_sentence(table_names, 4).case == "all true"
    silent = tu.faithfulness_sentence(faithfulness(["Nice.", "Fine."], truth[:2], vocabulary), 2)
    assert silent.case == "none" and "cannot be judged" in silent.text
    with pytest.raises(ValueError, match="faithfulness values"):
        tu.faithfulness_sentence({"BLEU": 3.0}, 4)
    with pytest.raises(ValueError, match="n_texts"):
        tu.faithfulness_sentence(scores, 0)
