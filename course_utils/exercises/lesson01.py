"""Checkers for lesson 01's exercises: sampled against full HR@10, Recall normalisations, MRR and AUC by hand."""
from __future__ import annotations

import numpy as np

from course_utils.exercises import NOT_ANSWERED, Feedback, check_number
from course_utils.metrics import auc, mrr, recall_at_k, recall_at_k_capped


def _pair(answer, what: str):
    if not isinstance(answer, (tuple, list)) or len(answer) != 2:
        raise TypeError(f"expected a pair ({what}), got {answer!r}")
    return answer


def _both(answer, expected, hints, labels, confirm) -> Feedback:
    checks = [check_number(a, e, hint=h, rtol=0.02) for a, e, h in zip(answer, expected, hints)]
    if all(checks):
        return Feedback(True, confirm)
    return Feedback(False, " ".join(f"{label}: {fb.message}" for label, fb in zip(labels, checks) if not fb))


def check_exercise_3(answer, n_full_candidates: int = 1600) -> Feedback:
    """answer: (expected HR@10 of a random ranker among 101 sampled candidates, the same under full ranking)."""
    if answer is None:
        return NOT_ANSWERED
    expected = (10 / 101, 10 / n_full_candidates)
    return _both(_pair(answer, "sampled HR@10, full HR@10"), expected,
                 ["The test item is equally likely to sit at any of the 101 positions; how many of them are in "
                  "the top 10?", f"Same question with about {n_full_candidates:,} candidates."],
                 ["sampled", "full"],
                 f"{expected[0]:.3f} against {expected[1]:.4f}: a random model looks "
                 f"{expected[0] / expected[1]:.0f} times better under sampling.")


def check_exercise_4(answer) -> Feedback:
    """answer: (Recall@20 divided by |test|, Recall@20 divided by min(20, |test|)) for 8 hits out of 30."""
    if answer is None:
        return NOT_ANSWERED
    ranks = np.concatenate([np.arange(1, 9), np.arange(21, 43)])[None, :].astype(float)  # 8 of 30 in the top 20
    expected = (float(recall_at_k(ranks, 20)[0]), float(recall_at_k_capped(ranks, 20)[0]))
    return _both(_pair(answer, "Recall@20 by |test|, Recall@20 by min(20, |test|)"), expected,
                 ["Divide the 8 hits by all 30 held-out items.", "Divide the 8 hits by min(20, 30)."],
                 ["by |test|", "capped"],
                 f"{expected[0]:.2f} and {expected[1]:.2f}: always say which normalisation you report.")


def check_exercise_5(answer, rank: int = 4, n_candidates: int = 1601) -> Feedback:
    """answer: (MRR, AUC) of one user whose single test item lands at ``rank`` among ``n_candidates`` items."""
    if answer is None:
        return NOT_ANSWERED
    ranks = np.array([[float(rank)]])
    expected = (float(mrr(ranks)[0]), float(auc(ranks, n_candidates)[0]))
    return _both(_pair(answer, "MRR, AUC"), expected,
                 ["The reciprocal rank is 1 / rank.",
                  f"AUC is the share of the {n_candidates - 1} non-relevant items ranked below the test item."],
                 ["MRR", "AUC"],
                 f"MRR {expected[0]:.3f}, AUC {expected[1]:.4f}: AUC barely notices the difference between rank 4 "
                 "and rank 40, which a user looking at ten items would.")
