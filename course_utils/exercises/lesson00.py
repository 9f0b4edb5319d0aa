"""Checkers for lesson 00's exercises (the MovieLens long tail, a shopper's taste).

Each checker computes the expected answer from the data the lesson loaded, so
it stays right if the data or the shop's seed change.
"""
from __future__ import annotations

import pandas as pd

from course_utils.exercises import NOT_ANSWERED, Feedback, check_number


def long_tail_shares(ratings: pd.DataFrame) -> tuple[float, float]:
    """(share of ratings on the 10% most-rated movies, share of movies with fewer than 5 ratings)."""
    counts = ratings.groupby("item").size().sort_values(ascending=False)
    return float(counts.head(len(counts) // 10).sum() / counts.sum()), float((counts < 5).mean())


def check_exercise_1(answer, ratings: pd.DataFrame) -> Feedback:
    """answer: (share of ratings on the top 10% of movies, share of movies with < 5 ratings), both in [0, 1]."""
    if answer is None:
        return NOT_ANSWERED
    if not isinstance(answer, (tuple, list)) or len(answer) != 2:
        raise TypeError(f"expected a pair (top-10% share, rare share), got {answer!r}")
    head, rare = long_tail_shares(ratings)
    first = check_number(answer[0], head, rtol=0.03, hint="Count ratings per movie, sort them, and divide the "
                         "sum of the first len(counts) // 10 by the total; a share lies between 0 and 1.")
    second = check_number(answer[1], rare, rtol=0.03, hint="`(counts < 5).mean()` over movies, not over ratings.")
    if first and second:
        return Feedback(True, f"The 10% most-rated movies take {head:.0%} of all ratings, and {rare:.0%} of the "
                              "movies have fewer than 5: a long tail that co-occurrence models barely see.")
    return Feedback(False, " ".join(f"{label}: {fb.message}" for label, fb in
                                    [("top-10% share", first), ("rare share", second)] if not fb))


def favourite_category_share(shop) -> float:
    """Share of all logged interactions whose item is in the shopper's favourite category."""
    log = shop.interactions.merge(shop.items[["item", "category"]], on="item")
    favourite = shop.users.set_index("user")["favourite_category"]
    return float((log["category"].to_numpy() == favourite.loc[log["user"]].to_numpy()).mean())


def check_exercise_2(answer, shop) -> Feedback:
    """answer: the share (0-1) of all logged purchases that fall in the buyer's favourite category."""
    expected = favourite_category_share(shop)
    return check_number(answer, expected, rtol=0.02,
                        hint="Merge `shop.interactions` with `shop.items` (for the category) and with "
                             "`shop.users` (for favourite_category), then take the mean of the match over all "
                             "interactions.",
                        confirm=f"Only {expected:.0%} of purchases are in the buyer's favourite category: taste "
                                "weights for other categories, price, tone, pattern and popularity all add to the "
                                "utility, and purchases are sampled from a softmax over it.")
