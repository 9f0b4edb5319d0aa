"""Checkers for lesson 12's exercises: the number of semantic IDs, collisions by chance (the birthday
problem) and the perplexity of codebook usage."""
from __future__ import annotations

import numpy as np

from course_utils.exercises import NOT_ANSWERED, Feedback, check_number


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_exercise_1(answer, codebook_size: int = 64, n_levels: int = 3) -> Feedback:
    """answer: how many distinct code tuples ``n_levels`` codebooks of ``codebook_size`` codes can form."""
    if answer is None:
        return NOT_ANSWERED
    expected = _positive_int("codebook_size", codebook_size) ** _positive_int("n_levels", n_levels)
    return check_number(answer, expected, rtol=0.0, atol=0.5,
                        hint="Each level chooses one of K codes independently of the others: multiply the choices.",
                        confirm=f"K^L = {expected:,} tuples: plenty for 1,682 movies, so collisions come from "
                                "similar embeddings, not from too few tuples.")


def check_exercise_2(answer, n_items: int = 1682, codebook_size: int = 64, n_levels: int = 3) -> Feedback:
    """answer: expected number of item pairs sharing a tuple when tuples are drawn uniformly at random."""
    if answer is None:
        return NOT_ANSWERED
    n, tuples = _positive_int("n_items", n_items), _positive_int("codebook_size", codebook_size) ** \
        _positive_int("n_levels", n_levels)
    expected = n * (n - 1) / 2 / tuples
    return check_number(answer, expected, rtol=0.02,
                        hint="Count the pairs of items, n(n-1)/2, and multiply by the chance that one pair "
                             "draws the same tuple, 1/K^L.",
                        confirm=f"About {expected:.1f} pairs by chance; compare with the RQ-VAE's collisions, "
                                "which come from movies with near-identical documents.")


def check_exercise_3(answer, counts=(50, 30, 20, 0)) -> Feedback:
    """answer: the perplexity exp(entropy) of a level whose codes are used ``counts`` times."""
    if answer is None:
        return NOT_ANSWERED
    counts = np.asarray(counts, dtype=float)
    if counts.ndim != 1 or counts.sum() <= 0 or (counts < 0).any():
        raise ValueError(f"counts must be non-negative with a positive sum, got {counts}")
    p = counts[counts > 0] / counts.sum()
    expected = float(np.exp(-(p * np.log(p)).sum()))
    return check_number(answer, expected, rtol=0.01,
                        hint="Turn the counts into shares p, compute the entropy -Σ p log p in nats (unused "
                             "codes add 0), then exponentiate.",
                        confirm=f"exp(H) = {expected:.2f}: fewer 'effective' codes than the 3 in use, because "
                                "the use is uneven.")
