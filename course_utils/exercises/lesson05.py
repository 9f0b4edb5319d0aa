"""Checkers for lesson 05's exercises: DiffRec's schedules, the noise a history survives, the denoiser's size."""
from __future__ import annotations

import numpy as np

from course_utils.exercises import NOT_ANSWERED, Feedback, check_array, check_number
from course_utils.models.diffusion import denoiser_size, history_survival, noise_schedule

N_STEPS, NOISE_MIN, NOISE_MAX = 5, 5e-4, 5e-3
WIDER_NOISE_MAX = (5e-3, 2e-2, 5e-2)


def check_exercise_1(answer) -> Feedback:
    """answer: [ᾱ_T of the "linear" schedule, ᾱ_T of the "linear-var" schedule], both with s = 1, T = 5."""
    if answer is None:
        return NOT_ANSWERED
    expected = [float(np.prod(1 - noise_schedule(N_STEPS, 1.0, NOISE_MIN, NOISE_MAX, kind)))
                for kind in ("linear", "linear-var")]
    return check_array(answer, expected, rtol=1e-3,
                       hint="ᾱ_T is the product of (1 - β_t) over the 5 steps; for 'linear-var' the total variance "
                            "1 - ᾱ_T itself rises linearly to s · β_max.",
                       confirm=f"ᾱ_T = {expected[0]:.4f} (linear) and {expected[1]:.4f} (linear-var): both keep "
                               "more than 98% of the signal, so the two schedules behave alike here.")


def check_exercise_4(answer, X=None, seed: int = 42) -> Feedback:
    """answer: the share of the history still on top at t = T for s = 1 and noise_max 0.005, 0.02, 0.05.

    X: the lesson's training matrix; loaded from MovieLens-100K with the course split when omitted.
    """
    if answer is None:
        return NOT_ANSWERED
    if X is None:
        from course_utils.data.movielens import load_movielens
        from course_utils.data.splits import leave_one_out_split
        X = leave_one_out_split(load_movielens().ratings).train_matrix()
    expected = [history_survival(noise_schedule(N_STEPS, 1.0, NOISE_MIN, v), X, seed) for v in WIDER_NOISE_MAX]
    return check_array(answer, expected, rtol=0.02, atol=0.005,
                       hint="Use share_of_history_on_top(noise_schedule(N_STEPS, 1.0, 5e-4, v), X) for each v, in "
                            "the order 0.005, 0.02, 0.05.",
                       confirm="Right: " + ", ".join(f"{e:.1%}" for e in expected) + ". Watch where the history "
                               "starts to dissolve: beyond that point more noise cannot be a mere regulariser.")


def check_exercise_5(answer, n_items: int = 1_000_000) -> Feedback:
    """answer: the number of parameters of the lesson's denoiser (hidden 600, time 10) for ``n_items`` items."""
    if answer is None:
        return NOT_ANSWERED
    expected = denoiser_size(n_items)
    return check_number(answer, expected, rtol=1e-3,
                        hint="Count the weights and biases of the three linear layers: time (10 → 10), "
                             "input (n_items + 10 → 600) and output (600 → n_items).",
                        confirm=f"About {expected / 1e9:.1f} billion parameters, two thirds of them tied to the "
                                "catalogue size: that is why L-DiffRec diffuses in a compressed space.")
