"""Checkers for lesson 21's exercises: a sample size, a team-draft slate, the novelty multiplier."""
from __future__ import annotations

import numpy as np

from course_utils.exercises import NOT_ANSWERED, Feedback, check_array, check_number
from course_utils.simulation import novelty_multiplier, sample_size_per_arm, team_draft_interleave


def check_exercise_1(answer, effect_size: float = 0.1) -> Feedback:
    """answer: users per arm to detect a standardised difference ``effect_size`` at alpha 0.05 and 80% power."""
    if answer is None:
        return NOT_ANSWERED
    expected = sample_size_per_arm(effect_size)
    return check_number(answer, expected, rtol=0.01,
                        hint="n = 2 ((z_0.975 + z_0.8) / d)², with z_0.975 ≈ 1.96 and z_0.8 ≈ 0.84.",
                        confirm=f"{expected:.0f} users per arm, {2 * expected:.0f} in all: halving the effect "
                                "quadruples the users needed.")


EXERCISE_2 = {"a": [0, 1, 2, 3], "b": [2, 4, 0, 5], "coins": [False, True]}


def check_exercise_2(answer) -> Feedback:
    """answer: the 4-item team-draft slate of rankings ``EXERCISE_2['a']`` and ``['b']`` with its coins."""
    if answer is None:
        return NOT_ANSWERED
    slate, _ = team_draft_interleave(np.array([EXERCISE_2["a"]]), np.array([EXERCISE_2["b"]]), 4,
                                     np.array([EXERCISE_2["coins"]]))
    return check_array(answer, slate[0],
                       hint="Round 1: the coin is False, so B picks first (its top item), then A takes its best "
                            "item not yet taken. Round 2: the coin is True, so A picks first.",
                       confirm=f"{slate[0].tolist()}: B's first pick was A's third choice, so A kept its top two.")


def check_exercise_3(answer, day: int = 6, boost: float = 0.3, half_life: float = 3.0) -> Feedback:
    """answer: the novelty multiplier on ``day`` for the given boost and half-life."""
    if answer is None:
        return NOT_ANSWERED
    expected = float(novelty_multiplier(day, boost, half_life))
    return check_number(answer, expected, rtol=1e-3,
                        hint=f"1 + boost · 0.5^(day / half-life): day {day} is {day / half_life:g} half-lives in.",
                        confirm=f"{expected:.4f}: after {day / half_life:g} half-lives a quarter of the boost is left.")
