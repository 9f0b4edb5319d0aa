"""Checkers for lesson 14's exercises: chance retrieval, the contrastive loss by hand, LiT's trainable text side."""
from __future__ import annotations

import math

from course_utils.exercises import NOT_ANSWERED, Feedback, check_number

MINILM_WIDTH = 384  # all-MiniLM-L6-v2's hidden size: the input of the text projection


def check_exercise_1(answer, n_products: int, k: int = 10) -> Feedback:
    """answer: Recall@k of a model that ranks the ``n_products`` held-out images at random."""
    if answer is None:
        return NOT_ANSWERED
    expected = min(k / n_products, 1.0)
    return check_number(answer, expected, rtol=1e-3,
                        hint=f"A random order puts the one matching image at each of the {n_products} positions "
                             f"with the same probability; how many of those positions are in the top {k}?",
                        confirm=f"{k}/{n_products} = {expected:.4f}: the bar a retrieval model must clear by far.")


def two_by_two_loss() -> float:
    """The symmetric loss for the logits [[2, 0], [1, 1]] (scale already applied), matches on the diagonal."""
    image_rows = -math.log(math.exp(2) / (math.exp(2) + 1)) - math.log(math.e / (math.e + math.e))
    text_rows = -math.log(math.exp(2) / (math.exp(2) + math.e)) - math.log(math.e / (1 + math.e))
    return (image_rows / 2 + text_rows / 2) / 2


def check_exercise_2(answer) -> Feedback:
    """answer: the symmetric contrastive loss of the 2×2 logits [[2, 0], [1, 1]]."""
    if answer is None:
        return NOT_ANSWERED
    expected = two_by_two_loss()
    return check_number(answer, expected, rtol=2e-3,
                        hint="Take the cross-entropy of each row (image over texts) with its diagonal entry as the "
                             "label, and of each column (text over images) likewise; average the rows, average the "
                             "columns, then average the two.",
                        confirm=f"{expected:.4f}: the image-to-text and text-to-image halves differ, which is why "
                                "CLIP averages both directions.")


def check_exercise_3(answer, embed_dim: int) -> Feedback:
    """answer: how many text-side weights LiT training changes (MiniLM locked, linear projection, no bias)."""
    if answer is None:
        return NOT_ANSWERED
    expected = MINILM_WIDTH * embed_dim
    return check_number(answer, expected, rtol=0, atol=0.5,
                        hint=f"MiniLM is frozen, LayerNorms included; only the projection from its "
                             f"{MINILM_WIDTH}-dimensional mean-pooled output to the {embed_dim}-dimensional "
                             "shared space learns, and open_clip builds it without a bias.",
                        confirm=f"{MINILM_WIDTH} × {embed_dim} = {expected:,} weights: the text side adapts through "
                                "one matrix, while the whole vision tower learns from scratch.")
