"""Checkers for lesson 09's exercises: chance on a sampled candidate set, an expected rating, the trie's root."""
from __future__ import annotations

import numpy as np

from course_utils.exercises import NOT_ANSWERED, Feedback, check_number
from course_utils.llm.ranking import chance_hit_rate

EXERCISE_2_PROBABILITIES = (0.05, 0.10, 0.25, 0.40, 0.20)  # p(1 star) ... p(5 stars), as printed in the lesson


def check_exercise_1(answer, k: int = 5, n_candidates: int = 20) -> Feedback:
    """answer: HR@k of a ranker that orders the n candidates at random."""
    expected = chance_hit_rate(k, n_candidates)
    return check_number(answer, expected, rtol=1e-3,
                        hint=f"The target is equally likely to land at each of the {n_candidates} positions; in how "
                             f"many of them is it inside the top {k}?",
                        confirm=f"{expected:.2f}: with {n_candidates} candidates even a coin-flip ranker looks "
                                "respectable, which is why a sampled metric must always be read against chance.")


def check_exercise_2(answer, probabilities=EXERCISE_2_PROBABILITIES) -> Feedback:
    """answer: the expected rating sum_r r p(r) for the printed digit probabilities."""
    p = np.asarray(probabilities, dtype=np.float64)
    expected = float(p @ np.arange(1, 6) / p.sum())
    return check_number(answer, expected, rtol=1e-3,
                        hint="Multiply each star value 1..5 by its probability and add up (the probabilities already "
                             "sum to 1).",
                        confirm=f"{expected:.2f}. The argmax digit would say 4; the expectation hedges towards the "
                                "other digits, which lowers the squared error when the model is unsure.")


def check_exercise_3(answer, trie) -> Feedback:
    """answer: how many different tokens the trie allows as the first token of an answer."""
    if answer is None:
        return NOT_ANSWERED
    expected = len(trie.next_tokens([]))
    return check_number(answer, expected, rtol=0, atol=0.5,
                        hint="Ask the trie: `trie.next_tokens([])` lists the first tokens of all titles it holds.",
                        confirm=f"{expected} first tokens out of a vocabulary of ~49,000: after one step the "
                                "constrained model has already been steered into the catalogue.")
