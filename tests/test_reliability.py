"""Bad input rejected up front, with a message: scores, top-k, metric names, models, cache paths, locks.

Each test here pins one defect found by a hostile probe of the course helpers;
the docstring or comment says what used to happen instead.
"""
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from course_utils.config import cache_dir
from course_utils.data.splits import History, leave_one_out_split
from course_utils.evaluation import evaluate, recommend_top_k, top_k, validation_metric
from course_utils.io import atomic_write, file_lock
from course_utils.models.autoencoders import MultVAE
from course_utils.models.baselines import BPRMF, EASE, ItemKNN
from course_utils.models.diffusion import DiffRec
from course_utils.models.sequential import SASRec


@pytest.fixture
def planted_split(planted_ratings):
    return leave_one_out_split(planted_ratings)


# --- scores handed to the evaluator ---------------------------------------------------------------

def test_all_infinite_scores_are_refused(planted_split):
    """+inf scores all tie, so the 'ranking' would be the random tie order with plausible metrics."""
    with pytest.raises(ValueError, match=r"\+inf scores"):
        evaluate(lambda users, history: np.full((len(users), planted_split.n_items), np.inf), planted_split)
    with pytest.raises(ValueError, match="-inf for every item"):
        evaluate(lambda users, history: np.full((len(users), planted_split.n_items), -np.inf), planted_split)


def test_sparse_scores_are_accepted_as_their_dense_values(planted_split):
    ease = EASE(l2=10.0).fit(planted_split.train_matrix())
    dense = evaluate(ease.score, planted_split)
    as_sparse = evaluate(lambda users, history: sp.csr_matrix(ease.score(users, history)), planted_split)
    assert as_sparse == pytest.approx(dense)


def test_scores_that_are_not_numbers_get_a_type_error(planted_split):
    with pytest.raises(TypeError, match="array of numbers"):
        evaluate(lambda users, history: [["high"] * planted_split.n_items] * len(users), planted_split)


# --- top-k lists ------------------------------------------------------------------------------------

def test_top_k_refuses_k_beyond_the_catalogue_or_the_unseen_items(planted_split):
    scores = np.random.default_rng(0).random((3, planted_split.n_items))
    with pytest.raises(ValueError, match=f"exceeds the catalogue of {planted_split.n_items}"):
        top_k(scores, planted_split.n_items + 1)
    exclude = sp.csr_matrix(np.eye(3, planted_split.n_items, dtype=bool) | (np.arange(planted_split.n_items) < 35))
    with pytest.raises(ValueError, match="has only 5 items outside its history"):
        top_k(scores, 6, exclude)  # used to pad the list with items the user already has
    assert top_k(scores, 5, exclude).min() >= 35
    with pytest.raises(ValueError, match="outside its history"):
        recommend_top_k(EASE(l2=10.0).fit(planted_split.train_matrix()).score, planted_split, k=39)


@pytest.mark.parametrize("metric", ["NDCG@ten", "Foo@10", "HR@-1", "NDCG10"])
def test_validation_metric_fails_before_training(planted_split, metric):
    with pytest.raises(ValueError, match="metric must be NAME@k"):
        validation_metric(planted_split, metric)


def test_validation_metric_accepts_mrr(planted_split):
    ease = EASE(l2=10.0).fit(planted_split.train_matrix())
    assert 0 < validation_metric(planted_split, "MRR")(ease) <= 1


# --- models -----------------------------------------------------------------------------------------

def test_ease_refuses_out_of_range_users(planted_split):
    ease = EASE(l2=10.0).fit(planted_split.train_matrix())
    history = planted_split.history("test")
    with pytest.raises(ValueError, match=r"user ids must lie in \[0, 60\)"):
        ease.score(np.array([-1]), history)  # used to return the last user's scores
    with pytest.raises(ValueError, match="user ids"):
        ease.score(np.array([60]), history)
    with pytest.raises(TypeError, match="integer ids"):
        ease.score(np.array([0.5]), history)


@pytest.mark.parametrize("make", [
    lambda: EASE(l2=float("nan")),
    lambda: EASE(l2=float("inf")),
    lambda: BPRMF(lr=float("inf")),
    lambda: BPRMF(l2=float("nan")),
    lambda: ItemKNN(shrink=float("nan")),
    lambda: SASRec(lr=float("inf")),
    lambda: SASRec(l2=float("nan")),
    lambda: MultVAE(lr=float("inf")),
    lambda: MultVAE(beta_cap=float("nan")),
    lambda: DiffRec(lr=float("nan")),
], ids=["ease-l2-nan", "ease-l2-inf", "bpr-lr-inf", "bpr-l2-nan", "knn-shrink-nan", "sasrec-lr-inf",
        "sasrec-l2-nan", "vae-lr-inf", "vae-beta-nan", "diffrec-lr-nan"])
def test_non_finite_hyper_parameters_are_refused(make):
    with pytest.raises(ValueError, match="must be a finite number"):
        make()


@pytest.fixture(scope="module")
def small_sasrec():
    rows = [(user, (user + t) % 12, 5.0, t) for user in range(20) for t in range(6)]
    split = leave_one_out_split(pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"]))
    model = SASRec(max_len=5, dim=8, n_epochs=1, batch_size=16, seed=0).fit(split, validate=False)
    return model, split


def test_sequential_fit_without_any_next_item_is_a_clear_error():
    """Every user has 1 training item: no (item, next item) pair. Used to raise ZeroDivisionError."""
    rows = [(user, item, 5.0, t) for user in range(6) for t, item in enumerate([user, user + 6, user + 12])]
    split = leave_one_out_split(pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"]))
    with pytest.raises(ValueError, match="no user has at least 2 training items"):
        SASRec(max_len=4, dim=8, n_epochs=1).fit(split)


def test_sample_never_repeats_and_refuses_impossible_requests(small_sasrec):
    model, split = small_sasrec
    prompts = [np.array([0, 1, 2]), np.array([5])]
    drawn = model.sample(prompts, n_steps=9, seed=1)  # every unseen item of the first prompt
    assert sorted(drawn[0]) == list(range(3, 12)) and len(set(drawn[1])) == 9
    with pytest.raises(ValueError, match="only 9 unseen items"):
        model.sample(prompts, n_steps=10)  # used to repeat items
    with pytest.raises(ValueError, match="temperature must be a finite number"):
        model.sample(prompts, n_steps=1, temperature=float("nan"))  # used to always return item 0
    with pytest.raises(ValueError, match=r"outside \[0, 12\)"):
        model.sample([np.array([-1, 2])], n_steps=1)  # -1 used to become padding
    with pytest.raises(ValueError, match="non-empty list"):
        model.sample([], n_steps=1)  # used to fail in a reshape
    with pytest.raises(ValueError, match="user ids"):
        model.score(np.array([-1]), split.history("test"))


def test_sample_still_matches_the_lesson_recipe(small_sasrec):
    """Lesson 03 re-derives one sampling step by hand from score(); the validation must not change the draw."""
    model, _ = small_sasrec
    prompts = [np.array([0, 1]), np.array([4, 5, 6])]
    logits = model.score(np.arange(2), History(None, prompts)).astype(np.float64)
    logits[[0, 0, 1, 1, 1], [0, 1, 4, 5, 6]] = -np.inf
    expected = np.argmax(logits + np.random.default_rng(0).gumbel(size=logits.shape), axis=1)
    assert np.array_equal(model.sample(prompts, n_steps=1, seed=0)[:, 0], expected)


# --- cache paths ------------------------------------------------------------------------------------

def test_relative_course_cache_is_refused(monkeypatch):
    monkeypatch.setenv("COURSE_CACHE", "my-cache")
    with pytest.raises(ValueError, match="COURSE_CACHE must be an absolute path"):
        cache_dir("models")


def test_course_cache_that_is_a_file_is_a_clear_error(monkeypatch, tmp_path):
    (tmp_path / "cache").write_text("oops")
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ValueError, match="is a file, not a folder"):
        cache_dir("models")


def test_a_file_where_a_cache_folder_belongs_is_replaced(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    (tmp_path / "models").write_text("a stray file")
    assert cache_dir("models").is_dir()
    assert "should be a folder" in capsys.readouterr().out


def test_atomic_write_onto_a_folder_says_so(tmp_path):
    (tmp_path / "target").mkdir()
    with pytest.raises(IsADirectoryError, match="a folder of that name is in the way"):
        with atomic_write(tmp_path / "target", "w") as handle:
            handle.write("x")


_LOCKED_COUNTER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from course_utils.io import file_lock
    path = Path(sys.argv[1])
    for _ in range(int(sys.argv[2])):
        with file_lock(path):
            value = int(path.read_text()) if path.exists() else 0
            time.sleep(0.001)  # widen the window in which an unlocked update would be lost
            path.write_text(str(value + 1))
""")


def test_file_lock_serialises_processes(tmp_path):
    """The lock used for cache entries and the results log: 3 processes x 100 increments make 300."""
    counter = tmp_path / "counter"
    procs = [subprocess.Popen([sys.executable, "-c", _LOCKED_COUNTER, str(counter), "100"],
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read()
    assert int(counter.read_text()) == 300


def test_file_lock_times_out_with_the_lock_file_named(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from course_utils.io import file_lock
        with file_lock({str(tmp_path / 'entry')!r}):
            print('held', flush=True)
            time.sleep(30)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(TimeoutError, match="entry.lock"):
            with file_lock(tmp_path / "entry", timeout=0.5):
                pass
    finally:
        holder.kill()
        holder.wait()
