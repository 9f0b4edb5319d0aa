"""Shared fixtures: real MovieLens-100K (offline, from the recbole carrier) and small planted data."""
import os

import numpy as np
import pandas as pd
import pytest

from course_utils.data.movielens import load_movielens
from course_utils.data.splits import leave_one_out_split


@pytest.fixture(autouse=True)
def _course_environment_restored():
    """Whatever a test does to the COURSE_* variables is undone after it. `make test` runs the notebooks in
    the same workers, and a kernel started later inherits the worker's environment: a leaked COURSE_RESULTS
    once sent every later lesson's rows (and lesson 25's reading) to a test's temporary log."""
    before = {k: v for k, v in os.environ.items() if k.startswith("COURSE_")}
    yield
    for key in [k for k in os.environ if k.startswith("COURSE_") and k not in before]:
        del os.environ[key]
    os.environ.update(before)


@pytest.fixture(scope="module")
def llm():
    """The real SmolLM2-135M-Instruct, offline: (model, tokenizer). One per test module, since some modules
    change it (adapters, frozen weights)."""
    from course_utils.hub import load_llm

    model, tokenizer, _ = load_llm("smollm2-135m", verbose=False)
    return model, tokenizer


@pytest.fixture(scope="session")
def movielens():
    return load_movielens(verbose=False)


@pytest.fixture(scope="session")
def ml_split(movielens):
    return leave_one_out_split(movielens.ratings)


@pytest.fixture
def planted_ratings():
    """Two user groups that each like one half of the items: structure a model should find."""
    rng = np.random.default_rng(0)
    rows = []
    for user in range(60):
        half = np.arange(20) if user % 2 == 0 else np.arange(20, 40)
        items = rng.choice(half, size=12, replace=False)
        rows += [(user, int(item), 5.0, 1000 + t) for t, item in enumerate(items)]
    return pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])


CYCLE_ITEMS = 40  # tests/test_sequential.py and test_sequence_baselines.py use N_ITEMS = 40 too


@pytest.fixture(scope="module")
def cycle_split():
    """Planted order: each user walks the item cycle 0 -> 1 -> ... -> 39 -> 0 from a random start.

    The next item is fully determined by the last one, while every item is about equally
    popular, so Popularity is no better than chance and a sequence model can be near perfect.
    Lengths vary so that the models also see left padding.
    """
    rng = np.random.default_rng(0)
    rows = []
    for user in range(80):
        start = rng.integers(CYCLE_ITEMS)
        for t in range(rng.integers(8, 17)):
            rows.append((user, int((start + t) % CYCLE_ITEMS), 5.0, 1000 + t))
    return leave_one_out_split(pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"]))
