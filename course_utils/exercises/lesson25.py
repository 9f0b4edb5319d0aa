"""Checkers for lesson 25's exercises: a mean win rate by hand, a metric's direction, a normalised score.

Each checker computes the expected answer with the report's own code (``course_utils.report``),
so a student's hand computation is checked against what the lesson ran.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from course_utils.exercises import Feedback, check_choice, check_number
from course_utils.report import Measure, metric_direction, normalise, win_rates

# Three models, three dimensions; model C was never measured for fairness.
EXERCISE_1 = pd.DataFrame({"accuracy: NDCG@10": [0.07, 0.05, 0.06],
                           "efficiency: p50 ms (1 user)": [5.0, 0.5, 1.0],
                           "fairness: NDCG@10 gap (M - F)": [-0.01, 0.03, np.nan]}, index=["A", "B", "C"])
EXERCISE_1_MEASURES = [Measure("accuracy", "NDCG@10", "higher"), Measure("efficiency", "p50 ms (1 user)", "lower"),
                       Measure("fairness", "NDCG@10 gap (M - F)", "zero")]
EXERCISE_3_GINI = {"P": 0.84, "Q": 0.88, "R": 0.90, "S": 0.99}
DIRECTIONS = ("higher", "lower", "zero", "half")


def check_exercise_1(answer, model: str = "C") -> Feedback:
    """answer: ``model``'s HELM mean win rate over the dimensions it was measured on, in ``EXERCISE_1``."""
    expected = float(win_rates(EXERCISE_1, EXERCISE_1_MEASURES).loc[model, "mean win rate"])
    return check_number(answer, expected, rtol=1e-3,
                        hint="Per measure, count the other *measured* models this one beats (lower is better for the "
                             "latency, closer to 0 for the gap; a tie counts half) and divide by how many there are. "
                             "Average over the dimensions the model has; an unmeasured one is skipped, not zero.",
                        confirm=f"{expected:.3f}: C beats B on accuracy (1 of 2) and A on latency (1 of 2), and has "
                                "no fairness number. Counting that missing dimension as a loss would give 0.333: "
                                "which is why the report prints how many dimensions each win rate covers.")


def check_exercise_2(answer, metric: str = "membership AUC") -> Feedback:
    """answer: "higher", "lower", "zero" or "half": which way ``metric`` is better."""
    expected = metric_direction(metric)
    return check_choice(answer, expected, options=DIRECTIONS,
                        hint="What AUC does an attacker get who cannot tell members from non-members? And is an "
                             "AUC of 0.1 safe?",
                        confirm="'half': 0.5 means the attacker guesses; an AUC far below 0.5 leaks just as much "
                                "(flip the attacker's guesses), so the distance from 0.5 is the harm.")


def check_exercise_3(answer, model: str = "R") -> Feedback:
    """answer: ``model``'s normalised exposure-Gini score among ``EXERCISE_3_GINI`` (1 = best, min-max)."""
    values = pd.DataFrame({"beyond-accuracy: exposure Gini": EXERCISE_3_GINI})
    expected = float(normalise(values, [Measure("beyond-accuracy", "exposure Gini", "lower")]).iloc[:, 0][model])
    return check_number(answer, expected, rtol=1e-3,
                        hint="Lower Gini is better, so the best (lowest) model scores 1 and the worst 0: "
                             "(worst - value) / (worst - best).",
                        confirm=f"(0.99 - 0.90) / (0.99 - 0.84) = {expected:.2f}. Min-max scores depend on which "
                                "models are in the table: add a model and every score can move.")
