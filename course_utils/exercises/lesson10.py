"""Checkers for lesson 10's exercises: LoRA's parameter count, an AUC by hand, and what AUC ignores."""
from __future__ import annotations

import numpy as np

from course_utils.exercises import NOT_ANSWERED, Feedback, check_choice, check_number

# SmolLM2-135M: 30 layers, hidden size 576, 9 query heads and 3 key/value heads of 64 dimensions.
SMOLLM2 = {"layers": 30, "hidden": 576, "kv_width": 3 * 64}
EXERCISE_3_LIKED = (0.71, 0.64, 0.52)  # P(Yes) of three pairs the users liked
EXERCISE_3_DISLIKED = (0.66, 0.49, 0.30)  # and of three pairs they disliked


def check_exercise_1(answer, r: int = 16, layers: int = SMOLLM2["layers"], hidden: int = SMOLLM2["hidden"],
                     kv_width: int = SMOLLM2["kv_width"]) -> Feedback:
    """answer: trainable parameters of LoRA with rank ``r`` on q_proj and v_proj of every layer."""
    if answer is None:
        return NOT_ANSWERED
    expected = layers * r * ((hidden + hidden) + (hidden + kv_width))
    return check_number(answer, expected, rtol=1e-9, atol=0.5,
                        hint=f"A LoRA pair on a layer W (out × in) adds A (r × in) and B (out × r): r·(in + out) "
                             f"numbers. q_proj maps {hidden} → {hidden}, v_proj maps {hidden} → {kv_width} (grouped "
                             f"key/value heads); add both, times {layers} layers.",
                        confirm=f"{expected:,} parameters: doubling r doubles LoRA's size, still about "
                                f"{expected / 134.5e6:.2%} of the model.")


def check_exercise_3(answer) -> Feedback:
    """answer: the AUC of the six scores in EXERCISE_3_LIKED / EXERCISE_3_DISLIKED."""
    if answer is None:
        return NOT_ANSWERED
    liked, disliked = np.array(EXERCISE_3_LIKED)[:, None], np.array(EXERCISE_3_DISLIKED)[None, :]
    expected = float(((liked > disliked) + 0.5 * (liked == disliked)).mean())
    return check_number(answer, expected, rtol=1e-6, atol=1e-3,
                        hint="Make all 3 × 3 (liked, disliked) pairs and count the share in which the liked pair "
                             "has the higher P(Yes).",
                        confirm=f"AUC = {expected:.3f}: {int(round(expected * 9))} of the 9 liked/disliked pairs are "
                                "ordered correctly. Only the order matters, not the values.")


def check_exercise_4(answer) -> Feedback:
    """answer: "yes" or "no": does adding the same constant to every pair's log-odds change the AUC?"""
    return check_choice(answer, "no", options=("yes", "no"),
                        hint="AUC depends only on the order of the scores. Is sigmoid(z + c) ordered like sigmoid(z)?",
                        confirm="No: a shift of every log-odds moves all P(Yes) the same way and keeps their order, "
                                "so the AUC is unchanged. Fine-tuning that only teaches the model to say Yes more "
                                "often, the easiest thing to learn from a few examples, leaves the AUC where it was.")
