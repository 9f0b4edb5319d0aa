"""Checkers for lesson 22's exercises: distinct-n by hand, Cohen's kappa of a confusion table, and
whether a pairwise verdict flips when the two responses swap places."""
from __future__ import annotations

import numpy as np

from course_utils.exercises import NOT_ANSWERED, Feedback, check_choice, check_number
from course_utils.llm.dialogue_metrics import distinct_n
from course_utils.llm.judge import verdict_flips


def kappa_from_table(table) -> float:
    """Cohen's kappa of a square confusion table (rows: one rater's labels, columns: the other's)."""
    table = np.asarray(table, dtype=np.float64)
    if table.ndim != 2 or table.shape[0] != table.shape[1] or table.shape[0] < 2 or (table < 0).any() or table.sum() <= 0:
        raise ValueError(f"table must be a square (at least 2x2) table of non-negative counts with a positive sum, got {table!r}")
    p = table / table.sum()
    observed, expected = np.trace(p), float(p.sum(1) @ p.sum(0))
    if expected >= 1:
        raise ValueError("both raters use one label only: kappa is undefined")
    return float((observed - expected) / (1 - expected))


def check_exercise_1(answer, texts=("here are some coats", "here are some dresses"), n: int = 2) -> Feedback:
    """answer: the pooled distinct-n of ``texts``."""
    if answer is None:
        return NOT_ANSWERED
    expected = distinct_n(list(texts), n)
    return check_number(answer, expected, rtol=1e-3,
                        hint=f"List every {n}-gram of each text (they do not cross from one text into the next), "
                             "count them all, then count the distinct ones; divide.",
                        confirm=f"{expected:.3f}: repeated openings such as 'here are some' are what pull a template "
                                "system's distinct-n down.")


def check_exercise_2(answer, table=((40, 10), (20, 30))) -> Feedback:
    """answer: Cohen's kappa of the confusion ``table`` (rows: truth relevant/irrelevant; columns: judge Yes/No)."""
    if answer is None:
        return NOT_ANSWERED
    expected = kappa_from_table(table)
    counts = np.asarray(table, float)
    return check_number(answer, expected, rtol=1e-3, atol=1e-6,
                        hint="p_o is the diagonal's share of all cases; p_e multiplies the judge's Yes share by the "
                             "truth's relevant share, adds the same for No, and kappa = (p_o - p_e) / (1 - p_e).",
                        confirm=f"{expected:.3f}: the accuracy is {np.trace(counts) / counts.sum():.2f}, but chance "
                                "alone would already give p_e of it.")


def check_exercise_3(answer, margin_first: float = 0.8, margin_swapped: float = 0.3) -> Feedback:
    """answer: "consistent" or "flips", for a pair with these margins log p(A) - log p(B), the better
    response in slot A first and in slot B after the swap."""
    if answer is None:
        return NOT_ANSWERED
    expected = "flips" if verdict_flips(margin_first, margin_swapped) else "consistent"
    return check_choice(answer, expected, options=["consistent", "flips"],
                        hint="For each order, which slot wins (the sign of the margin), and is the better response in "
                             "that slot?",
                        confirm="It picks the same slot both times, so its verdict follows the position."
                        if expected == "flips" else "It picks the better content in both orders.")
