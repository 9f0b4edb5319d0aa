"""The simulated fashion shop: determinism, shapes, and that the logs follow the ground truth."""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from course_utils.data.fashion_mnist import CLASS_NAMES
from course_utils.data.fashion_shop import PATTERNS, TONES, make_fashion_shop


@pytest.fixture(scope="module")
def shop():
    return make_fashion_shop(n_users=200, seed=0)


def tiny_images(n: int = 20, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8), rng.integers(0, 10, size=n)


# ---------------------------------------------------------------- determinism
def test_same_seed_same_shop_other_seed_other_shop(shop):
    again = make_fashion_shop(n_users=200, seed=0)
    for name in ("items", "users", "interactions"):
        pd.testing.assert_frame_equal(getattr(shop, name), getattr(again, name))
    np.testing.assert_array_equal(shop.true_utility(), again.true_utility())
    np.testing.assert_array_equal(shop.respond(3, np.arange(10), seed=1), again.respond(3, np.arange(10), seed=1))

    other = make_fashion_shop(n_users=200, seed=1)
    for name in ("items", "users", "interactions"):
        assert not getattr(shop, name).equals(getattr(other, name))


def test_more_users_leave_the_items_unchanged(shop):
    pd.testing.assert_frame_equal(make_fashion_shop(n_users=20, seed=0).items, shop.items)


# ---------------------------------------------------------------- shapes and values
def test_items(shop):
    items = shop.items
    assert list(items.columns) == ["item", "category", "tone", "pattern", "coverage", "price", "brand",
                                   "title", "description"]
    np.testing.assert_array_equal(items["item"], np.arange(3000))
    assert shop.images.shape == (3000, 28, 28) and shop.images.dtype == np.uint8
    assert (items["category"].value_counts() == 300).all() and set(items["category"]) == set(CLASS_NAMES)
    assert set(items["tone"]) == set(TONES) and set(items["pattern"]) == set(PATTERNS)
    assert items["coverage"].between(0, 1, inclusive="right").all() and (items["price"] > 0).all()
    assert all(brand in title for brand, title in zip(items["brand"], items["title"]))
    assert items["description"].str.len().gt(20).all()
    assert shop.item_features.shape == (3000, len(shop.feature_names))


def test_users(shop):
    users = shop.users
    np.testing.assert_array_equal(users["user"], np.arange(200))
    assert set(users["favourite_category"]) <= set(CLASS_NAMES)
    assert (users["price_sensitivity"] > 0).all()
    assert shop.user_weights.shape == (200, len(shop.feature_names))


def test_interactions(shop):
    log = shop.interactions
    assert list(log.columns) == ["user", "item", "rating", "timestamp", "review"]
    for column in ("user", "item", "rating", "timestamp"):
        assert log[column].dtype == np.int64
    assert log["rating"].between(1, 5).all() and set(log["rating"]) == {1, 2, 3, 4, 5}
    assert log["item"].between(0, 2999).all() and set(log["user"]) == set(range(200))
    assert not log.duplicated(["user", "item"]).any()
    assert log.groupby("user").size().min() >= 5
    assert log["user"].is_monotonic_increasing
    assert (log.groupby("user")["timestamp"].diff().dropna() > 0).all()
    assert log["review"].str.len().gt(5).all()


def test_reviews_follow_the_rating(shop):
    log = shop.interactions
    praise, blame = set(log.loc[log["rating"] == 5, "review"]), set(log.loc[log["rating"] == 1, "review"])
    assert praise and blame and not praise & blame


# ---------------------------------------------------------------- the ground truth
def test_true_utility(shop):
    assert shop.true_utility().shape == (200, 3000)
    part = shop.true_utility(users=[4, 2], items=[7, 0, 9])
    assert part.shape == (2, 3)
    np.testing.assert_allclose(part, shop.true_utility()[np.ix_([4, 2], [7, 0, 9])])
    assert shop.true_utility(users=5).shape == (1, 3000)


def test_logs_favour_high_utility_items(shop):
    utility = shop.true_utility()
    log = shop.interactions
    chosen = utility[log["user"], log["item"]]
    assert chosen.mean() > utility.mean() + 1.0
    # A high temperature flattens the softmax towards uniform choice, so the gap shrinks.
    hot = shop.sample_interactions(temperature=50.0, seed=0)
    assert chosen.mean() > utility[hot["user"], hot["item"]].mean() + 1.0
    assert np.corrcoef(log["rating"], chosen)[0, 1] > 0.5


def test_sample_interactions_for_some_users(shop):
    first = shop.sample_interactions(users=[3, 1], mean_interactions=8, seed=5)
    assert set(first["user"]) == {1, 3}
    pd.testing.assert_frame_equal(first, shop.sample_interactions(users=[3, 1], mean_interactions=8, seed=5))


def test_clicks_follow_utility_and_position(shop):
    utility = shop.true_utility()
    best, worst = np.argsort(-utility, axis=1)[:, :10], np.argsort(utility, axis=1)[:, :10]
    users = np.arange(200)
    assert shop.click_probability(users, best).mean() > 5 * shop.click_probability(users, worst).mean()
    clicks = shop.respond(users, best, seed=0)
    assert clicks.shape == (200, 10) and clicks.dtype == bool
    assert clicks.mean() > shop.respond(users, worst, seed=0).mean()
    # The same item shown lower in the slate is less likely to be clicked (position bias).
    assert np.all(np.diff(shop.click_probability(0, np.full(5, best[0, 0]))) < 0)


def test_fast_enough():
    start = time.perf_counter()
    make_fashion_shop(n_users=500, seed=0)
    assert time.perf_counter() - start < 10.0  # about 0.3 s; a regression to Python loops would show


def test_custom_images():
    images, labels = tiny_images(n=3)
    small = make_fashion_shop(n_users=4, seed=0, images=images, labels=labels)
    assert len(small.items) == 3 and small.images.shape == (3, 28, 28)
    assert (small.interactions.groupby("user").size() == 3).all()  # capped at the number of items


# ---------------------------------------------------------------- invalid arguments
@pytest.mark.parametrize("kwargs, match", [
    ({"n_users": 0}, "n_users"), ({"n_users": -3}, "n_users"), ({"n_users": 2.5}, "n_users"),
    ({"seed": -1}, "seed"), ({"temperature": 0}, "temperature"), ({"temperature": -1.0}, "temperature"),
    ({"temperature": float("nan")}, "temperature"), ({"temperature": float("inf")}, "temperature"),
    ({"mean_interactions": 2}, "mean_interactions"),
])
def test_invalid_arguments(kwargs, match):
    images, labels = tiny_images()
    with pytest.raises(ValueError, match=match):
        make_fashion_shop(**{"images": images, "labels": labels, **kwargs})


@pytest.mark.parametrize("images, labels, match", [
    (np.zeros((5, 28, 27), np.uint8), np.zeros(5, int), "shape"),
    (np.zeros((5, 28, 28), np.float32), np.zeros(5, int), "uint8"),
    (np.zeros((0, 28, 28), np.uint8), np.zeros(0, int), "non-empty"),
    (np.zeros((5, 28, 28), np.uint8), None, "labels are required"),
    (np.zeros((5, 28, 28), np.uint8), np.full(5, 10), "labels must be"),
    (np.zeros((5, 28, 28), np.uint8), np.zeros(4, int), "labels must be"),
])
def test_invalid_images(images, labels, match):
    with pytest.raises(ValueError, match=match):
        make_fashion_shop(n_users=3, images=images, labels=labels)


def test_invalid_queries(shop):
    with pytest.raises(ValueError, match="user ids"):
        shop.true_utility(users=[200])
    with pytest.raises(ValueError, match="item ids"):
        shop.true_utility(items=[-1])
    with pytest.raises(ValueError, match="slates must have shape"):
        shop.click_probability([0, 1, 2], np.zeros((2, 5), int))
    with pytest.raises(ValueError, match="temperature"):
        shop.sample_interactions(temperature=0)
