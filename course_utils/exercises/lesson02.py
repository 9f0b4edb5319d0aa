"""Checkers for lesson 02's exercises."""
from __future__ import annotations

import math

import torch

from course_utils.exercises import Feedback, check_number
from course_utils.models.autoencoders import gaussian_kl

EXERCISE_3_MU = (0.5, -1.0)
EXERCISE_3_VAR = (1.0, 0.25)


def check_exercise_3(answer) -> Feedback:
    """answer: KL(N(mu, diag(var)) || N(0, I)) in nats for lesson 02's exercise 3 (mu = (0.5, -1), var = (1, 0.25))."""
    mu = torch.tensor([EXERCISE_3_MU])
    logvar = torch.log(torch.tensor([EXERCISE_3_VAR]))
    expected = float(gaussian_kl(mu, logvar))
    by_dimension = [0.5 * (v + m ** 2 - 1 - math.log(v)) for m, v in zip(EXERCISE_3_MU, EXERCISE_3_VAR)]
    return check_number(answer, expected, rtol=0.01,
                        hint="Use ½ Σ_d (σ_d² + μ_d² − 1 − log σ_d²), with the natural logarithm and σ² (not σ); "
                             "the second dimension's −log σ² term is positive because σ² < 1.",
                        confirm=f"{expected:.3f} nats: {by_dimension[0]:.3f} from the first dimension (a mean shift "
                                f"only) and {by_dimension[1]:.3f} from the second (shift plus a too-narrow variance).")
