"""Checkers for lesson 23's exercises: FaiRLLM similarities by hand, SNSR/SNSV, reading a group gap (1-3);
a membership AUC and a target's rank under attack (6-7)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from course_utils.exercises import NOT_ANSWERED, Feedback, check_array, check_choice, check_number
from course_utils.impact.attacks import target_ranks
from course_utils.impact.fairness import GroupGap, jaccard_at_k, prag_at_k, serp_at_k
from course_utils.impact.privacy import membership_auc

EXERCISE_1 = {"neutral": [7, 3, 9, 1], "sensitive": [3, 7, 5, 9], "k": 4}
EXERCISE_2 = pd.Series({"a student": 0.90, "a doctor": 0.70, "a homemaker": 0.80})
EXERCISE_3 = GroupGap(gap=-0.0120, ci_low=-0.0290, ci_high=0.0045, p=0.17, n_a=273, n_b=670, a="F", b="M")
EXERCISE_3_OPTIONS = {"a": "F users are served significantly worse", "b": "M users are served significantly worse",
                      "c": "no significant gap"}


def check_exercise_1(answer) -> Feedback:
    """answer: (Jaccard@4, SERP*@4, PRAG*@4) of ``EXERCISE_1['sensitive']`` against ``['neutral']``."""
    if answer is None:
        return NOT_ANSWERED
    s, n, k = EXERCISE_1["sensitive"], EXERCISE_1["neutral"], EXERCISE_1["k"]
    expected = [jaccard_at_k(s, n, k), serp_at_k(s, n, k), prag_at_k(s, n, k)]
    return check_array(answer, expected, rtol=0, atol=0.01,
                       hint="Jaccard: shared items over the union. SERP*: each shared item weighs k - rank + 1 "
                            "(rank in the sensitive list), divided by k(k+1)/2 = 10. PRAG*: of the 6 pairs (i above "
                            "j) of the sensitive list, count those with i in the neutral list and above j there "
                            "(an absent j counts as below).",
                       confirm=f"Jaccard {expected[0]:.3f}, SERP* {expected[1]:.3f}, PRAG* {expected[2]:.3f}: "
                               "the same three items kept, but one pair swapped costs PRAG* more than SERP*.")


def check_exercise_2(answer) -> Feedback:
    """answer: (SNSR, SNSV) of the mean similarities in ``EXERCISE_2``."""
    if answer is None:
        return NOT_ANSWERED
    values = EXERCISE_2.to_numpy()
    expected = [float(np.ptp(values)), float(values.std())]
    return check_array(answer, expected, rtol=0, atol=0.002,
                       hint="SNSR is max - min over the values; SNSV their standard deviation dividing by the "
                            "number of values (numpy's default, ddof=0), not by n - 1.",
                       confirm=f"SNSR {expected[0]:.3f}, SNSV {expected[1]:.4f}.")


def check_exercise_3(answer) -> Feedback:
    """answer: "a", "b" or "c", the reading of the gap ``EXERCISE_3``."""
    if answer is None:
        return NOT_ANSWERED
    case = EXERCISE_3.sentence().case
    expected = {"a higher": "b" if EXERCISE_3.a == "F" else "a", "b higher": "a" if EXERCISE_3.a == "F" else "b",
                "no gap": "c"}[case]
    return check_choice(answer, expected, options=list(EXERCISE_3_OPTIONS),
                        hint="A gap counts only when its interval excludes zero and the permutation p is below "
                             "0.05. Look at the two ends of the interval.",
                        confirm=f"({expected}) {EXERCISE_3_OPTIONS[expected]}: the interval "
                                f"{EXERCISE_3.ci_low:+.4f} to {EXERCISE_3.ci_high:+.4f} includes zero and p = "
                                f"{EXERCISE_3.p:.2f}; a gap of up to {abs(EXERCISE_3.ci_low):.3f} against women is "
                                "still compatible with the data.")


EXERCISE_6 = {"members": [0.9, 0.7, 0.6], "nonmembers": [0.8, 0.6, 0.5, 0.4]}


def check_exercise_6(answer) -> Feedback:
    """answer: the membership AUC of the attack scores in ``EXERCISE_6`` (members positive, ties half)."""
    if answer is None:
        return NOT_ANSWERED
    expected = membership_auc(EXERCISE_6["members"], EXERCISE_6["nonmembers"])
    return check_number(answer, expected, rtol=1e-3,
                        hint="Count the 3 × 4 = 12 (member, non-member) pairs in which the member scores higher; "
                             "a tie (0.6 against 0.6) counts half. Divide by 12.",
                        confirm=f"{expected:.4f} (9.5 of 12 pairs): well above 0.5, so these scores would give "
                                "members away.")


EXERCISE_7 = {"scores": [0.2, 0.9, 0.5, 0.5, 0.1, 0.7], "seen": [1], "target": 2}


def check_exercise_7(answer) -> Feedback:
    """answer: the target's mid-rank among the unseen items, for the user in ``EXERCISE_7``."""
    if answer is None:
        return NOT_ANSWERED
    scores = np.array([EXERCISE_7["scores"]], dtype=float)
    history = sp.csr_matrix((np.ones(len(EXERCISE_7["seen"])), ([0] * len(EXERCISE_7["seen"]), EXERCISE_7["seen"])),
                            shape=scores.shape)
    expected = float(target_ranks(scores, history, EXERCISE_7["target"])[0])
    return check_number(answer, expected, rtol=1e-6,
                        hint="Drop the seen item 1 (score 0.9). Among the other unseen items, count those scoring "
                             "above the target's 0.5, and add half of those tied with it.",
                        confirm=f"{expected:g}: item 5 (0.7) is above, item 3 ties (half a place), so the target "
                                "sits at 1 + 1 + 0.5.")
