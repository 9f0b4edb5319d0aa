"""Cross-encoder reranking (lesson 08): the real MiniLM cross-encoder on small planted data."""
import numpy as np
import pandas as pd
import pytest
import torch

from course_utils.data.splits import History, leave_one_out_split
from course_utils.evaluation import evaluate, top_k
from course_utils.hub import load_text_encoder
from course_utils.llm import cross_encoders as ce
from course_utils.models.baselines import EASE

N_ITEMS = 40
TITLES = [f"Movie {i}" for i in range(N_ITEMS)]
DOCS = [f"Movie {i} ({1950 + i}). Genres: {'Drama' if i % 2 else 'Comedy'}." for i in range(N_ITEMS)]


@pytest.fixture(scope="module")
def split():
    """Two user groups that each watch one half of the catalogue, in time order."""
    rng = np.random.default_rng(0)
    rows = []
    for user in range(30):
        half = np.arange(20) if user % 2 == 0 else np.arange(20, 40)
        rows += [(user, int(i), 5.0, 1000 + t) for t, i in enumerate(rng.choice(half, size=10, replace=False))]
    return leave_one_out_split(pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"]))


@pytest.fixture(scope="module")
def ease(split):
    return EASE(10.0).fit(split.train_matrix())


@pytest.fixture(scope="module")
def text_encoder():
    """The real all-MiniLM-L6-v2, verified and loaded once for the module."""
    return load_text_encoder("minilm", device="cpu", verbose=False)[0]


@pytest.fixture(scope="module")
def model(text_encoder):
    """MiniLM's weights with a new one-logit head."""
    return ce.load_cross_encoder("minilm", max_length=48, seed=0, device="cpu", text_encoder=text_encoder)[0]


def test_library_score_equals_a_manual_forward_pass(model):
    pairs = [("Movie 1; Movie 2", DOCS[3]), ("Movie 5", DOCS[7])]
    batch = model.tokenizer([q for q, _ in pairs], [d for _, d in pairs], padding=True, truncation=True,
                            max_length=48, return_tensors="pt")
    with torch.no_grad():
        manual = model.model(**batch).logits.squeeze(-1).double().numpy()
    assert np.allclose(ce.pair_logits(model, *zip(*pairs)), manual, atol=1e-5)
    assert np.allclose(model.predict(pairs), 1 / (1 + np.exp(-manual)), atol=1e-5)  # predict applies a sigmoid


def test_load_cross_encoder_rejects_bad_names():
    with pytest.raises(ValueError, match="known models"):
        ce.load_cross_encoder("no-such-model")
    with pytest.raises(ValueError, match="not a text-encoder"):
        ce.load_cross_encoder("smollm2-135m")
    with pytest.raises(ValueError, match="max_length"):
        ce.load_cross_encoder("minilm", max_length=2)


def test_pair_logits_checks_its_inputs(model):
    with pytest.raises(ValueError, match="2 queries but 1 documents"):
        ce.pair_logits(model, ["a", "b"], ["c"])
    with pytest.raises(ValueError, match="non-empty"):
        ce.pair_logits(model, [""], ["c"])
    assert ce.pair_logits(model, [], []).shape == (0,)


def test_user_texts_use_the_most_recent_titles(split):
    history = split.history("valid")
    (text,) = ce.user_texts([0], history, TITLES, n_recent=3)
    assert text == "; ".join(TITLES[i] for i in history.sequences[0][-3:])
    empty = History(history.matrix[:1] * 0, [np.zeros(0, np.int64)])
    with pytest.raises(ValueError, match="empty"):
        ce.user_texts([0], empty, TITLES)


def test_candidate_auc_by_hand():
    auc = ce.candidate_auc([[3.0, 1.0, 2.0, 3.0], [0.0, 1.0, 2.0, 0.5]])
    assert np.allclose(auc, [2.5 / 3, 0.0])
    with pytest.raises(ValueError, match="negative"):
        ce.candidate_auc([[1.0], [2.0]])


def test_training_pairs_come_from_training_only_and_keep_their_groups(split, ease):
    pairs = ce.sample_training_pairs(split, DOCS, TITLES, {"EASE": ease}, 20, np.random.default_rng(0), n_recent=3,
                                     hard_top_k=5)
    assert len(pairs) == 20 * 3 and list(pairs.kinds[:3]) == ["positive", "random", "hard (EASE)"]
    assert pairs.labels.reshape(20, 3).tolist() == [[1.0, 0.0, 0.0]] * 20
    train = split.train_matrix().toarray().astype(bool)
    positives, negatives = pairs.labels == 1, pairs.labels == 0
    assert train[pairs.users[positives], pairs.items[positives]].all(), "a positive is a training interaction"
    assert not train[pairs.users[negatives], pairs.items[negatives]].any(), "a negative is never the user's item"
    assert all(q == pairs.queries[3 * (i // 3)] for i, q in enumerate(pairs.queries)), "one user text per group"
    sequences = split.history("valid").sequences
    for user, query, item in zip(pairs.users[positives], np.asarray(pairs.queries)[positives], pairs.items[positives]):
        seq = list(sequences[user])
        t = seq.index(item)  # the positive follows the prefix the text describes
        assert t >= 1 and query == "; ".join(TITLES[i] for i in seq[:t][-3:])
    with pytest.raises(ValueError, match="first_stages is empty"):
        ce.sample_training_pairs(split, DOCS, TITLES, {}, 5, np.random.default_rng(0))
    with pytest.raises(ValueError, match="only"):
        ce.sample_training_pairs(split, DOCS, TITLES, {"EASE": ease}, 10_000, np.random.default_rng(0))


def test_validation_candidates_come_from_users_whose_target_is_in_the_block(split, ease):
    users, candidates = ce.validation_candidates(split, ease, 6, 3, np.random.default_rng(0), top_k_items=5)
    assert candidates.shape == (6, 4) and len(set(users)) == 6
    assert (candidates[:, 0] == split.targets("valid")[users].indices).all()
    history = split.history("valid")
    block = top_k(ease.score(users, history), 5, history.matrix[users])
    assert all(set(row) <= set(b) for row, b in zip(candidates, block)), "target and negatives are all in the block"
    assert all(len(set(row)) == 4 for row in candidates)
    with pytest.raises(ValueError, match="n_users"):
        ce.validation_candidates(split, ease, 10_000, 3, np.random.default_rng(0), top_k_items=5)
    with pytest.raises(ValueError, match="n_negatives"):
        ce.validation_candidates(split, ease, 2, 5, np.random.default_rng(0), top_k_items=5)


def test_rerank_order_weighs_the_two_scores():
    cross, first = np.array([[0.0, 2.0, 1.0]]), np.array([[3.0, 2.0, 1.0]])
    assert ce.rerank_order(cross, first, 1.0).tolist() == [[1, 2, 0]]
    assert ce.rerank_order(cross, first, 0.0).tolist() == [[0, 1, 2]]
    assert ce.rerank_order(np.zeros((1, 3)), first, 1.0).tolist() == [[0, 1, 2]], "ties keep the first-stage order"
    with pytest.raises(ValueError, match="alpha"):
        ce.rerank_order(cross, first, 1.5)


def test_reranker_reorders_only_the_block(split, ease, model):
    cache = ce.PairScoreCache(model, DOCS)
    history, users = split.history("test"), np.arange(4)
    reranked = ce.CrossEncoderReranker(ease, cache, TITLES, n_recent=3, top_k=5)
    scores = reranked.score(users, history)
    base, block = reranked.blocks(users, history)
    logits = ce.pair_logits(model, np.repeat(ce.user_texts(users, history, TITLES, 3), 5), np.asarray(DOCS)[block.ravel()])
    expected_block = np.take_along_axis(block, np.argsort(-logits.reshape(4, 5), axis=1, kind="stable"), axis=1)
    ranking = top_k(scores, 12, exclude=history.matrix[users])
    assert (ranking[:, :5] == expected_block).all(), "the block comes first, in the cross-encoder's order"
    assert (ranking[:, 5:] == top_k(base, 12, exclude=history.matrix[users])[:, 5:]).all(), "then the first stage"
    assert cache.pairs == 20 and cache.ms_per_pair > 0
    reranked.score(users, history)
    assert cache.pairs == 20, "pairs already scored come from the cache"


def test_alpha_zero_reproduces_the_first_stage_on_the_evaluator(split, ease, model):
    cache = ce.PairScoreCache(model, DOCS)
    sub = ce.restrict_test_users(split, [1, 2, 3])
    same = ce.CrossEncoderReranker(ease, cache, TITLES, top_k=5, alpha=0.0)
    assert evaluate(same.score, sub, "test") == evaluate(ease.score, sub, "test")
    with pytest.raises(ValueError, match="no pair scored"):
        ce.PairScoreCache(model, DOCS).ms_per_pair
    with pytest.raises(ValueError, match="top_k"):
        ce.CrossEncoderReranker(ease, cache, TITLES, top_k=0)


def test_restrict_and_sample_test_users(split):
    users = ce.sample_test_users(split, 5, seed=1)
    assert len(set(users)) == 5 and (np.diff(users) > 0).all()
    sub = ce.restrict_test_users(split, users)
    assert set(sub.test["user"]) == set(users) and sub.protocol.endswith("+5-user-sample")
    assert (sub.history("test").matrix != split.history("test").matrix).nnz == 0, "histories are untouched"
    with pytest.raises(ValueError, match="n_users"):
        ce.sample_test_users(split, 0, seed=1)
    with pytest.raises(ValueError, match="no users"):
        ce.restrict_test_users(split, [])


def test_training_keeps_the_best_checkpoint_and_freezes_the_vocabulary(split, ease, text_encoder):
    model = ce.load_cross_encoder("minilm", max_length=32, seed=1, device="cpu", text_encoder=text_encoder)[0]
    pairs = ce.sample_training_pairs(split, DOCS, TITLES, {"EASE": ease}, 4, np.random.default_rng(0), n_recent=2,
                                     hard_top_k=5)
    table = model.model.get_input_embeddings().weight.detach().clone()
    scores = iter([0.2, 0.9, 0.5])  # step 0, step 2, step 4: step 2 is the best
    seen = []

    def validate(m):
        seen.append(m.model.classifier.weight.detach().clone())
        return next(scores)

    info = ce.train_cross_encoder(model, pairs, n_steps=4, batch_size=6, lr=1e-3, eval_steps=[2, 4], validate=validate)
    assert info["best_step"] == 2 and [s for s, _ in info["valid"]] == [0, 2, 4] and len(info["loss"]) == 4
    assert torch.equal(model.model.classifier.weight, seen[1]), "the weights of the chosen step are restored"
    assert torch.equal(model.model.get_input_embeddings().weight, table), "the token table stays frozen"
    assert model.model.get_input_embeddings().weight.requires_grad, "and trainable again afterwards"
    with pytest.raises(ValueError, match="eval_steps"):
        ce.train_cross_encoder(model, pairs, n_steps=2, batch_size=4, eval_steps=[3], validate=validate)
    with pytest.raises(ValueError, match="n_steps"):
        ce.train_cross_encoder(model, pairs, n_steps=0)
