"""Checkers for lesson 24's exercises: an attack success rate by hand, which defence blocks which target,
a detector's false-positive rate."""
from __future__ import annotations

import numpy as np

from course_utils.exercises import Feedback, check_choice, check_number
from course_utils.impact.injection import attack_success

# Ranks of the attacker's item in six attacks, without and with the injection, as printed in the lesson.
EXERCISE_1_CLEAN = (4, 1, 7, 2, 12, 3)
EXERCISE_1_ATTACKED = (1, 1, 2, 1, 1, 3)
# A detector's flags on 8 injected and 12 clean texts, as printed in the lesson.
EXERCISE_3_INJECTED = (True,) * 8 + (False,) * 12
EXERCISE_3_FLAGS = (True, True, True, False, True, True, False, True) + (False,) * 8 + (True, False, True, True)
DEFENCE_OPTIONS = ("delimiting", "datamarking", "instruction hierarchy", "catalogue constraint", "detector")


def check_exercise_1(answer, clean=EXERCISE_1_CLEAN, attacked=EXERCISE_1_ATTACKED) -> Feedback:
    """answer: the attack success rate at k = 1 of the printed attacks."""
    expected = float(attack_success(np.array(clean), np.array(attacked), k=1).mean())
    return check_number(answer, expected, rtol=1e-3,
                        hint="An attack succeeds only where the item is first WITH the injection and was not first "
                             "without it: an item that was first anyway does not count, nor does one that rose "
                             "but not to the top.",
                        confirm=f"{expected:.2f}: three of six. Counting the item that was first anyway would inflate "
                                "the rate with the target's base rate.")


def check_exercise_2(answer) -> Feedback:
    """answer: the defence that makes an off-catalogue target impossible but cannot stop an in-catalogue one."""
    return check_choice(answer, "catalogue constraint", options=DEFENCE_OPTIONS,
                        hint="Which defence acts on the OUTPUT rather than on the text the model reads?",
                        confirm="The catalogue constraint: a title outside the catalogue cannot be written at all, "
                                "but the attacker's own item is in the catalogue and stays reachable.")


def check_exercise_3(answer, flags=EXERCISE_3_FLAGS, injected=EXERCISE_3_INJECTED) -> Feedback:
    """answer: the detector's false-positive rate on clean texts."""
    flags, injected = np.asarray(flags, dtype=bool), np.asarray(injected, dtype=bool)
    expected = float(flags[~injected].mean())
    return check_number(answer, expected, rtol=1e-3,
                        hint="The false-positive rate divides the clean texts that were flagged by ALL clean texts "
                             "(not by all flagged texts: that would be 1 - precision).",
                        confirm=f"{expected:.3f}: {int(flags[~injected].sum())} of {int((~injected).sum())} honest "
                                "descriptions would be removed, which costs the honest sellers and the ranker.")
