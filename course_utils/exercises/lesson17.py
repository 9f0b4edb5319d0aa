"""Checkers for lesson 17's exercises: the noise schedule, guidance arithmetic, the unguided judge, the Fréchet distance."""
from __future__ import annotations

import numpy as np

from course_utils.exercises import NOT_ANSWERED, Feedback, check_choice, check_number

W0_OPTIONS = ("about 10%", "about the judge's accuracy on real images", "about 100%")


def check_exercise_1(answer, t: int = 500, n_train_steps: int = 1000, beta_start: float = 1e-4,
                     beta_end: float = 0.02) -> Feedback:
    """answer: ᾱ_t (steps numbered from 1) of the linear schedule with the given β range."""
    if answer is None:
        return NOT_ANSWERED
    expected = float(np.prod(1.0 - np.linspace(beta_start, beta_end, n_train_steps)[:t]))
    return check_number(answer, expected, rtol=0.02,
                        hint=f"β_s rises linearly from {beta_start} to {beta_end} over {n_train_steps} steps; "
                             f"multiply (1 − β_s) over the first {t} of them (np.cumprod, or the lesson's "
                             "`linear_alphas_cumprod`).",
                        confirm=f"ᾱ_{t} ≈ {expected:.4f}: halfway through, only √ᾱ ≈ {np.sqrt(expected):.2f} of the "
                                "product's signal is left.")


def check_exercise_2(answer, eps_uncond: float = 0.2, eps_cond: float = 0.5, guidance: float = 3.0) -> Feedback:
    """answer: the guided noise prediction for one pixel."""
    if answer is None:
        return NOT_ANSWERED
    expected = eps_uncond + guidance * (eps_cond - eps_uncond)
    return check_number(answer, expected, rtol=1e-6, atol=1e-9,
                        hint="Start from the unconditional prediction and move w times the difference "
                             "(conditional − unconditional).",
                        confirm=f"{expected:.2f}: with w = {guidance:g} the step goes past the conditional prediction, "
                                "further in the direction the condition points to.")


def check_exercise_3(answer) -> Feedback:
    """answer: one of W0_OPTIONS, the share of unguided (w = 0) images judged to be the requested category."""
    return check_choice(answer, "about 10%", options=W0_OPTIONS,
                        hint="With w = 0 the model's prediction never sees the condition. What does it generate, "
                             "and how often does a random product fall in one given category of ten equal ones?",
                        confirm="About 10%: w = 0 is the unconditional model, which draws categories as often as "
                                "the training data has them, whatever was requested. The lesson's w = 0 row shows it.")


def check_exercise_4(answer, mean_a: float = 0.0, var_a: float = 1.0, mean_b: float = 2.0,
                     var_b: float = 4.0) -> Feedback:
    """answer: the Fréchet distance between two 1-D Gaussians."""
    if answer is None:
        return NOT_ANSWERED
    expected = (mean_a - mean_b) ** 2 + var_a + var_b - 2 * np.sqrt(var_a * var_b)
    return check_number(answer, expected, rtol=1e-6, atol=1e-9,
                        hint="In one dimension the formula is (μ_a − μ_b)² + σ_a² + σ_b² − 2 σ_a σ_b. "
                             "Careful: 4 is the variance, not the standard deviation.",
                        confirm=f"{expected:g} = (μ_a − μ_b)² + (σ_a − σ_b)²: the distance counts a shift of the "
                                "mean and a change of spread alike.")
