import numpy as np
import pytest
import torch

from course_utils.evaluation import evaluate
from course_utils.models.baselines import Popularity
from course_utils.models.sequential import (BERT4Rec, GRU4Rec, SASRec, attention_mask, full_softmax_loss,
                                            pad_sequences, sampled_bce_loss)

N_ITEMS = 40


MAKERS = {
    "GRU4Rec": lambda **kw: GRU4Rec(max_len=10, dim=32, dropout=0.1, lr=1e-2, batch_size=32, **kw),
    "SASRec-ce": lambda **kw: SASRec(max_len=10, dim=32, dropout=0.1, lr=1e-2, batch_size=32, **kw),
    "SASRec-bce": lambda **kw: SASRec(max_len=10, dim=32, dropout=0.1, lr=1e-2, batch_size=32, loss="bce", **kw),
    "BERT4Rec": lambda **kw: BERT4Rec(max_len=10, dim=32, dropout=0.1, lr=1e-2, batch_size=32, mask_prob=0.3, **kw),
}


@pytest.fixture(scope="module")
def fitted(cycle_split):
    return {name: make(n_epochs=25, patience=25, seed=0, device="cpu").fit(cycle_split)
            for name, make in MAKERS.items()}


@pytest.mark.parametrize("name", list(MAKERS))
def test_models_learn_the_planted_order_far_better_than_popularity(cycle_split, fitted, name):
    model = fitted[name]
    users = np.arange(7)
    scores = model.score(users, cycle_split.history("test"))
    assert scores.shape == (7, N_ITEMS) and np.isfinite(scores).all()
    history = model.fit_result_.history
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]
    pop = evaluate(Popularity().fit(cycle_split.train_matrix()).score, cycle_split, "test")["NDCG@10"]
    ndcg = evaluate(model.score, cycle_split, "test")["NDCG@10"]
    assert ndcg > 0.6 and ndcg > pop + 0.3, f"{name}: NDCG@10 {ndcg:.3f} vs popularity {pop:.3f}"


def test_same_seed_gives_identical_models(cycle_split):
    runs = [MAKERS["SASRec-ce"](n_epochs=3, seed=5, device="cpu").fit(cycle_split, validate=False)
            for _ in range(2)]
    history = cycle_split.history("test")
    assert np.allclose(runs[0].score(np.arange(10), history), runs[1].score(np.arange(10), history))


def test_pad_sequences_keeps_the_most_recent_items_on_the_right():
    padded = pad_sequences([np.array([4, 5, 6]), np.array([7]), np.array([], dtype=np.int64)], 2)
    assert padded.tolist() == [[6, 7], [0, 8], [0, 0]]
    with pytest.raises(ValueError, match="max_len"):
        pad_sequences([np.array([1])], 0)


def test_attention_mask_hides_padding_and_the_future_but_never_a_whole_row():
    is_pad = torch.tensor([[True, False, False]])
    causal = attention_mask(is_pad, causal=True, n_heads=2)
    assert causal.shape == (2, 3, 3)
    assert causal[0].tolist() == [[False, True, True], [True, False, True], [True, False, False]]
    both_ways = attention_mask(is_pad, causal=False, n_heads=1)[0]
    assert both_ways.tolist() == [[False, False, False], [True, False, False], [True, False, False]]


def test_sasrec_is_causal_and_bert4rec_is_not(fitted):
    seqs = torch.tensor([[0, 3, 4, 5, 6, 7, 8, 9, 10, 11]])
    changed = seqs.clone()
    changed[0, -1] = 30  # change only the last item
    for name, expect_same in [("SASRec-ce", True), ("GRU4Rec", True), ("BERT4Rec", False)]:
        net = fitted[name].net_.eval()
        with torch.no_grad():
            same = torch.allclose(net(seqs)[0, :-1], net(changed)[0, :-1], atol=1e-5)
        assert same == expect_same, name


def test_losses_prefer_the_target():
    hidden = torch.tensor([[1.0, 0.0]])
    items = torch.tensor([[5.0, 0.0], [-5.0, 0.0], [0.0, 0.0]])
    good, bad = torch.tensor([0]), torch.tensor([1])
    assert full_softmax_loss(hidden, good, items) < 0.1 < full_softmax_loss(hidden, bad, items)
    assert sampled_bce_loss(hidden, good, bad, items) < 0.1 < sampled_bce_loss(hidden, bad, good, items)


def test_sampling_continues_prompts_without_repeats(fitted):
    model = fitted["SASRec-ce"]
    prompts = [np.array([0, 1, 2]), np.array([16, 17, 18, 19, 20])]
    drawn = model.sample(prompts, n_steps=6, temperature=1.0, seed=0)
    assert drawn.shape == (2, 6) and drawn.min() >= 0 and drawn.max() < N_ITEMS
    for prompt, row in zip(prompts, drawn):
        full = np.concatenate([prompt, row])
        assert len(np.unique(full)) == len(full)
    # A cold temperature follows the planted cycle almost surely.
    greedy = model.sample(prompts, n_steps=4, temperature=0.05, seed=0)
    assert greedy[1].tolist() == [21, 22, 23, 24]
    assert np.array_equal(model.sample(prompts, 6, seed=3), model.sample(prompts, 6, seed=3))


def test_bad_arguments_raise(cycle_split):
    with pytest.raises(ValueError, match="loss must be one of"):
        SASRec(loss="mse")
    with pytest.raises(ValueError, match="dropout"):
        GRU4Rec(dropout=-0.1)
    with pytest.raises(ValueError, match="n_heads"):
        SASRec(dim=64, n_heads=3)
    with pytest.raises(ValueError, match="mask_prob"):
        BERT4Rec(mask_prob=1.0)
    with pytest.raises(ValueError, match="max_len"):
        GRU4Rec(max_len=1)
    with pytest.raises(ValueError, match="lr"):
        SASRec(lr=0)
    with pytest.raises(RuntimeError, match="not fitted"):
        SASRec().score(np.arange(2), cycle_split.history("test"))
    with pytest.raises(ValueError, match="temperature"):
        MAKERS["GRU4Rec"](n_epochs=1, device="cpu").fit(cycle_split, validate=False).sample([np.array([1])], 2, 0.0)
