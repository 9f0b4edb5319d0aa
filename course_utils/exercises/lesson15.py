"""Checkers for lesson 15's exercises: the ITC loss by hand, chance-level recall, and what an image cannot show."""
from __future__ import annotations

import numpy as np

from course_utils.exercises import NOT_ANSWERED, Feedback, check_choice, check_number

EXERCISE_1_SIMILARITY = ((0.9, 0.2), (0.1, 0.8))  # rows: images, columns: captions (cosine similarities)
EXERCISE_1_TEMPERATURE = 0.1


def itc_by_hand(similarity=EXERCISE_1_SIMILARITY, temperature: float = EXERCISE_1_TEMPERATURE) -> float:
    """The symmetric contrastive loss of a square similarity matrix whose matches lie on the diagonal."""
    logits = np.asarray(similarity, dtype=np.float64) / temperature

    def cross_entropy(rows):
        rows = rows - rows.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(rows).sum(axis=1)) - np.diag(rows)))

    return (cross_entropy(logits) + cross_entropy(logits.T)) / 2


def check_exercise_1(answer) -> Feedback:
    """answer: the ITC loss of EXERCISE_1_SIMILARITY at temperature 0.1 (a number)."""
    if answer is None:
        return NOT_ANSWERED
    expected = itc_by_hand()
    return check_number(answer, expected, rtol=1e-3, atol=1e-4,
                        hint="Divide the similarities by the temperature, take the cross-entropy of each row with its "
                             "diagonal entry as the target (image→text), the same for each column (text→image), and "
                             "average the two directions.",
                        confirm=f"{expected:.4f}: the matches are already the largest entries, and dividing by a small "
                                "temperature makes the softmax confident, so the loss is small.")


def check_exercise_2(answer, n_products: int = 600, k: int = 10) -> Feedback:
    """answer: Recall@k of a random ranking of ``n_products`` held-out products (one match each)."""
    if answer is None:
        return NOT_ANSWERED
    expected = k / n_products
    return check_number(answer, expected, rtol=1e-3,
                        hint=f"A random ranking puts the one matching product at each of the {n_products} positions "
                             f"with the same probability; how many of those positions are in the top {k}?",
                        confirm=f"{expected:.4f} ({k} of {n_products} positions): every Recall@{k} in the lesson is "
                                "read against this.")


def check_exercise_3(answer) -> Feedback:
    """answer: which caption word an image can never reveal: 'tone', 'category', 'brand' or 'cut'."""
    return check_choice(answer, "brand", options=("tone", "category", "brand", "cut"),
                        hint="Tone, category and cut are computed from the pixels when the shop is built. Which word "
                             "was drawn at random, independently of the image?",
                        confirm="The brand is drawn at random for each product, so two products that look alike differ "
                                "only by brand, and no image model can tell which caption is whose: that is what caps "
                                "exact-product Recall@1 below 1.")
