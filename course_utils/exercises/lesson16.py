"""Checkers for lesson 16's exercises: a product of Gaussian experts, InfoNCE at chance, PoE and disagreement."""
from __future__ import annotations

import math

import numpy as np

from course_utils.exercises import NOT_ANSWERED, Feedback, check_array, check_choice, check_number


def product_of_two(mean_a: float, var_a: float, mean_b: float, var_b: float) -> tuple[float, float]:
    """Mean and variance of the normalised product N(mean_a, var_a) · N(mean_b, var_b), no prior expert."""
    precision = 1.0 / var_a + 1.0 / var_b
    return (mean_a / var_a + mean_b / var_b) / precision, 1.0 / precision


def check_exercise_1(answer) -> Feedback:
    """answer: [mean, variance] of the product of N(2, 1) and N(-1, 0.5), without the prior expert."""
    if answer is None:
        return NOT_ANSWERED
    expected = np.array(product_of_two(2.0, 1.0, -1.0, 0.5))
    return check_array(answer, expected, rtol=1e-3, atol=1e-3,
                       hint="Precisions (1 / variance) add: 1 + 2. The mean is the precision-weighted mean of the "
                            "experts' means, divided by the total precision.",
                       confirm=f"Mean {expected[0]:.3g}, variance {expected[1]:.3g}: the product is narrower than "
                               "either expert, and pulled towards the more confident one.")


def check_exercise_2(answer, batch_size: int = 256) -> Feedback:
    """answer: the symmetric InfoNCE loss (nats) when every similarity in a batch of ``batch_size`` is equal."""
    if answer is None:
        return NOT_ANSWERED
    expected = math.log(batch_size)
    return check_number(answer, expected, rtol=5e-3,
                        hint="With equal similarities each row's softmax is uniform over the batch: what is "
                             "-log of the probability it gives the right partner?",
                        confirm=f"log {batch_size} ≈ {expected:.2f} nats: the chance level of the contrastive loss.")


def check_exercise_3(answer) -> Feedback:
    """answer: "yes" or "no": does the product of experts' variance show that two experts disagree?"""
    return check_choice(answer, "no", options=("yes", "no"),
                        hint="Write the product's variance: 1 / (1 + Σ 1/σ_m²). Do the experts' means appear in it?",
                        confirm="No: the product's variance depends on the experts' variances only, so two confident "
                                "experts that contradict each other give a confident product. A mixture's variance "
                                "adds the spread of the means (here 0.1 + 2² = 4.1).")
