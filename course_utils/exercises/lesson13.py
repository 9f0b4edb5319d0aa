"""Checkers for lesson 13's exercises: the entropy of an attribute, the chance of a random slate,
and which attribute the elicitation rule asks about first."""
from __future__ import annotations

import numpy as np

from course_utils.exercises import NOT_ANSWERED, Feedback, check_choice, check_number


def entropy_bits(counts) -> float:
    """Shannon entropy (bits) of a distribution given by counts; zero counts are skipped."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 1 or not len(counts) or (counts < 0).any() or counts.sum() <= 0:
        raise ValueError(f"counts must be a non-empty 1-D array of non-negative numbers with a positive sum, got {counts!r}")
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def check_exercise_1(answer, counts=(20, 10, 10)) -> Feedback:
    """answer: the entropy in bits of the tone among candidates with ``counts`` light, mid-tone, dark items."""
    if answer is None:
        return NOT_ANSWERED
    expected = entropy_bits(counts)
    return check_number(answer, expected, rtol=1e-3,
                        hint=f"Turn the counts {tuple(counts)} into shares p, then sum -p·log2(p) over the values.",
                        confirm=f"{expected:.3f} bits: less than log2(3) = {np.log2(3):.3f} because the values are "
                                "not equally common; the question about the attribute with the most bits splits the "
                                "candidates most evenly.")


def check_exercise_2(answer, k: int = 3, n_candidates: int = 50) -> Feedback:
    """answer: the chance that ``k`` items drawn at random from ``n_candidates`` include the one target."""
    if answer is None:
        return NOT_ANSWERED
    if not 0 < k <= n_candidates:
        raise ValueError(f"need 0 < k <= n_candidates, got k={k}, n_candidates={n_candidates}")
    expected = k / n_candidates
    return check_number(answer, expected, rtol=1e-3,
                        hint=f"The target is equally likely to sit in any of the {n_candidates} positions of a random "
                             f"order; how many of them are shown?",
                        confirm=f"{k}/{n_candidates} = {expected:.3f}: the floor a one-turn system must clear once the "
                                "request has narrowed the catalogue to that many items.")


def check_exercise_3(answer, entropies: dict) -> Feedback:
    """answer: the attribute the entropy rule asks about first, given each unknown attribute's ``entropies``."""
    if answer is None:
        return NOT_ANSWERED
    if not entropies:
        raise ValueError("entropies is empty: pass the entropy of each attribute the system may ask about")
    expected = max(entropies, key=entropies.get)
    return check_choice(answer, expected, options=list(entropies),
                        hint="The rule asks about the unknown attribute whose values are spread most evenly among "
                             "the remaining candidates: compare the entropies.",
                        confirm=f"{expected}: with {entropies[expected]:.2f} bits it splits the candidates the most.")
