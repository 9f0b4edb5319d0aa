"""Checkers for lesson 06's exercises: the size of the list space, and what γ = 0 leaves of the GFlowNet."""
from __future__ import annotations

import math

from course_utils.exercises import NOT_ANSWERED, Feedback, check_choice, check_number


def check_exercise_2(answer) -> Feedback:
    """answer: "yes" or "no": with γ = 0, is the untrained policy's argmax list EASE's greedy top-10?"""
    return check_choice(answer, "yes", options=("yes", "no"),
                        hint="At the start f_θ = 0, so the logit of item i at every step is a_t · z_u(i) with a_t > 0; "
                             "z_u is a per-user standardisation of EASE's scores, which keeps their order.",
                        confirm="Yes: argmax decoding of a_t · z_u(i) picks EASE's best unseen item at each step, so "
                                "without the diversity term the starting GFlowNet's argmax list is greedy top-k.")


def check_exercise_5(answer, n_candidates: int = 1600, k: int = 10) -> Feedback:
    """answer: log10 of the number of ordered lists of k distinct items out of ``n_candidates``."""
    if answer is None:
        return NOT_ANSWERED
    expected = sum(math.log10(n_candidates - i) for i in range(k))
    return check_number(answer, expected, rtol=2e-3,
                        hint=f"There are {n_candidates} choices for position 1, {n_candidates - 1} for position 2, "
                             "and so on; add the log10 of each factor.",
                        confirm=f"About 10^{expected:.1f} lists: far too many to score one by one, which is why a "
                                "GFlowNet *learns* to sample them in proportion to the reward.")
