"""Checkers for lesson 08's exercises: the cost of scoring every pair, the reranking ceiling, the new head's size."""
from __future__ import annotations

import numpy as np

from course_utils.exercises import NOT_ANSWERED, Feedback, check_number

# Exercise 2: where a first stage put five users' test items (1 = top of the list).
EXERCISE_2_RANKS = (3, 48, 51, 120, 7)


def check_exercise_1(answer, ms_per_pair: float, n_users: int = 943, n_items: int = 1682) -> Feedback:
    """answer: hours for the cross-encoder to score every (user, item) pair of MovieLens-100K at ``ms_per_pair``."""
    if answer is None:
        return NOT_ANSWERED
    if not ms_per_pair > 0:
        raise ValueError(f"ms_per_pair must be positive, got {ms_per_pair!r}")
    expected = n_users * n_items * ms_per_pair / 1000 / 3600
    return check_number(answer, expected, rtol=0.02,
                        hint=f"Count the pairs ({n_users} users × {n_items} items), multiply by the milliseconds per "
                             "pair, then convert milliseconds to hours (÷ 1000 ÷ 3600).",
                        confirm=f"About {expected:.1f} hours for one pass over the catalogue, against a fraction of a "
                                "second for the bi-encoder, whose item vectors are computed once.")


def check_exercise_2(answer) -> Feedback:
    """answer: the HR@10 over the five users of EXERCISE_2_RANKS after a perfect reranking of each top 50."""
    if answer is None:
        return NOT_ANSWERED
    ranks = np.asarray(EXERCISE_2_RANKS)
    expected = float((ranks <= 50).mean())
    return check_number(answer, expected, rtol=1e-6, atol=1e-6,
                        hint="A perfect reranker moves the test item to position 1 only if the first stage handed "
                             "it over, i.e. if its rank is at most 50; the others stay where they were.",
                        confirm=f"HR@10 = {expected:.1f}: the first stage's HR@50 is the ceiling of any reranker of "
                                "its top 50.")


def check_exercise_5(answer, hidden_size: int = 384) -> Feedback:
    """answer: how many parameters the new scoring head adds to MiniLM (hidden size ``hidden_size``)."""
    if answer is None:
        return NOT_ANSWERED
    expected = hidden_size + 1
    return check_number(answer, expected, rtol=0, atol=0.5,
                        hint="The head is one linear layer from the pooled [CLS] vector to a single logit: a weight "
                             "per hidden unit, plus a bias. The pooler itself comes with the checkpoint.",
                        confirm=f"{expected} parameters: everything else is MiniLM's own, which is why fine-tuning "
                                "starts from a model that already reads English.")
