"""Checkers for lesson 07's exercises: the cost of exact search, IVF with every cell probed, and why
Popularity loses the cold-start slice."""
from __future__ import annotations

import numpy as np

from course_utils.exercises import NOT_ANSWERED, Feedback, check_number


def check_exercise_1(answer, n_users: int = 943, n_items: int = 1682, dim: int = 384) -> Feedback:
    """answer: multiply-adds to score every user against every item with ``dim``-dimensional vectors."""
    if answer is None:
        return NOT_ANSWERED
    expected = n_users * n_items * dim
    return check_number(answer, expected, rtol=0.02,
                        hint="One dot product of two d-dimensional vectors takes d multiply-adds; count the "
                             "(user, item) pairs.",
                        confirm=f"{expected:.3g} multiply-adds: cheap here, and linear in the catalogue size, which "
                                "is what approximate indexes avoid at millions of items.")


def check_exercise_2(answer) -> Feedback:
    """answer: recall@10 against exact search of an IVF index probing all of its cells."""
    return check_number(answer, 1.0, atol=1e-9,
                        hint="With nprobe equal to the number of cells, which vectors does the search skip?",
                        confirm="Every cell is scanned, so every vector is compared: IVF becomes exact search "
                                "(up to ties), with the clustering as pure overhead.")


def check_exercise_4(answer, max_interactions: int = 10, split=None) -> Feedback:
    """answer: how many items have more than ``max_interactions`` interactions in the test-time history."""
    if answer is None:
        return NOT_ANSWERED
    if split is None:
        from course_utils.data.movielens import load_movielens
        from course_utils.data.splits import leave_one_out_split
        split = leave_one_out_split(load_movielens(verbose=False).ratings, tie_break="file")
    counts = np.asarray(split.history("test").matrix.sum(axis=0)).ravel()
    expected = int((counts > max_interactions).sum())
    return check_number(answer, expected, atol=0.5, rtol=0.0,
                        hint="Sum the columns of split.history('test').matrix and count the items above the "
                             "threshold (strictly more).",
                        confirm=f"{expected} of {len(counts)} movies outrank every cold target under Popularity: "
                                "no top-10 hit is possible, whoever the user is.")
