"""Shared fixtures: real MovieLens-100K (offline, from the recbole carrier) and small planted data."""
import numpy as np
import pandas as pd
import pytest

from course_utils.data.movielens import load_movielens
from course_utils.data.splits import leave_one_out_split


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
