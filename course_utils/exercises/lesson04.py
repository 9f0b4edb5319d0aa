"""Checkers for lesson 04's exercises: the REINFORCE baseline by hand, the entropy of the uniform sampler."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from course_utils.exercises import Feedback, NOT_ANSWERED, check_array, check_number


def leave_one_out_baselines(rewards) -> np.ndarray:
    """For each of S rewards of one user, the mean of the other S - 1 (what ``reinforce_loss`` subtracts)."""
    r = np.asarray(rewards, dtype=np.float64)
    return (r.sum() - r) / (len(r) - 1)


EXERCISE_5_REWARDS = (1.0, 2.0, 3.0, 6.0)


def check_exercise_5(answer) -> Feedback:
    """answer: the four baselines subtracted from the rewards (1, 2, 3, 6) of one user's four samples."""
    if answer is None:
        return NOT_ANSWERED
    expected = leave_one_out_baselines(EXERCISE_5_REWARDS)
    if np.allclose(np.asarray(answer, dtype=np.float64).ravel()[:1], np.mean(EXERCISE_5_REWARDS)):
        return Feedback(False, "That is the mean of *all* four rewards. The baseline of a sample must not depend on "
                               "the sample itself, or the estimator is biased: leave that sample out.")
    return check_array(answer, expected, rtol=1e-3,
                       hint="For sample k, average the rewards of the other three samples.",
                       confirm="Right: (12 - r_k) / 3 for each sample. The sample with reward 6 gets the smallest "
                               "baseline (2), so its advantage, 6 - 2 = 4, is the largest push upwards.")


def uniform_entropy(X: sp.spmatrix, user: int) -> float:
    """Entropy in nats of the uniform distribution over the items ``user`` has not interacted with in X."""
    return float(np.log(X.shape[1] - X[user].getnnz()))


def check_exercise_6(answer, X: sp.spmatrix, user: int = 0) -> Feedback:
    """answer: the entropy (nats) of uniform sampling over the user's unseen items in the training matrix X."""
    expected = uniform_entropy(X, user)
    return check_number(answer, expected, rtol=1e-3,
                        hint="A uniform distribution over n outcomes has entropy ln(n); n is the number of items "
                             f"minus the {X[user].getnnz()} that user {user} has in training.",
                        confirm=f"ln({X.shape[1] - X[user].getnnz()}) = {expected:.3f} nats: the ceiling that the "
                                "sampler-entropy curve of section 4 is measured against.")
