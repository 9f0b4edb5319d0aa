"""Checkers for lesson 19's exercises: sampled HR@10 of a fixed full rank, Holm by hand, the Recall ceiling, a Gini."""
from __future__ import annotations

import numpy as np

from course_utils.exercises import NOT_ANSWERED, Feedback, check_number


def sampled_hit_probability(rank: int, n_candidates: int, n_negatives: int = 100, k: int = 10) -> float:
    """P(sampled HR@k = 1) for a test item at full-ranking ``rank`` among ``n_candidates`` items.

    The ``n_negatives`` are drawn without replacement from the ``n_candidates - 1``
    other items, ``rank - 1`` of which the model puts above the test item; the item
    is a sampled hit when at most ``k - 1`` of those land among the drawn negatives.
    """
    from scipy.stats import hypergeom

    if not 1 <= rank <= n_candidates or n_negatives >= n_candidates or k <= 0:
        raise ValueError(f"need 1 <= rank <= n_candidates, n_negatives < n_candidates and k > 0; got rank={rank}, "
                         f"n_candidates={n_candidates}, n_negatives={n_negatives}, k={k}")
    return float(hypergeom(n_candidates - 1, rank - 1, n_negatives).cdf(k - 1))


def check_exercise_1(answer, rank: int = 150, n_candidates: int = 1600, n_negatives: int = 100, k: int = 10) -> Feedback:
    """answer: the probability that an item at full rank ``rank`` is a sampled-100 hit at 10."""
    if answer is None:
        return NOT_ANSWERED
    expected = sampled_hit_probability(rank, n_candidates, n_negatives, k)
    return check_number(answer, expected, rtol=0.03, atol=0.01,
                        hint=f"Of the {n_candidates - 1} other items, {rank - 1} rank above the test item. Draw "
                             f"{n_negatives} of them without replacement (a hypergeometric count): the item is a hit "
                             f"when at most {k - 1} of the drawn ones rank above it. scipy.stats.hypergeom helps.",
                        confirm=f"{expected:.2f}: an item the user would have to scroll to position {rank} to see is "
                                "a sampled 'hit' about that often, so sampled HR@10 rewards the top ~10% of the "
                                "catalogue, not the top 10.")


HOLM_EXAMPLE = (0.01, 0.015, 0.03, 0.2)


def check_exercise_2(answer, p_values=HOLM_EXAMPLE, alpha: float = 0.05) -> Feedback:
    """answer: how many of ``p_values`` Holm's procedure rejects at family-wise level ``alpha``."""
    from course_utils.claims import adjust_p_values

    if answer is None:
        return NOT_ANSWERED
    expected = int((adjust_p_values(p_values, "holm") < alpha).sum())
    bonferroni = int((adjust_p_values(p_values, "bonferroni") < alpha).sum())
    return check_number(answer, expected, rtol=0, atol=0.5,
                        hint=f"Sort the p-values; compare the smallest with α/{len(p_values)}, the next with "
                             f"α/{len(p_values) - 1}, and so on, and stop at the first that fails.",
                        confirm=f"{expected} rejected by Holm, against {bonferroni} by Bonferroni (every p-value "
                                f"times {len(p_values)}): Holm controls the same family-wise error and is never "
                                "less powerful.")


def check_exercise_3(answer, n_relevant: int = 25, k: int = 10) -> Feedback:
    """answer: the best Recall@k (divided by |relevant|) that a perfect ranking reaches for ``n_relevant`` items."""
    if answer is None:
        return NOT_ANSWERED
    expected = min(1.0, k / n_relevant)
    return check_number(answer, expected, rtol=1e-3,
                        hint=f"A perfect ranking fills all {k} slots with relevant items; divide by the "
                             f"{n_relevant} relevant items.",
                        confirm=f"{expected:.2f}: no model can score more for this user, so heavy users pull the "
                                "mean Recall@k down whatever the model does; the capped version divides by "
                                f"min(k, |relevant|) = {min(k, n_relevant)} instead.")


GINI_EXAMPLE = (0, 0, 2, 6)


def check_exercise_4(answer, exposure=GINI_EXAMPLE) -> Feedback:
    """answer: the Gini index of the exposure counts ``exposure``."""
    from course_utils.metrics import gini

    if answer is None:
        return NOT_ANSWERED
    expected = gini(np.asarray(exposure, float))
    return check_number(answer, expected, rtol=1e-3,
                        hint="Sort the counts ascending (x_1..x_n), then G = 2·Σ i·x_i / (n·Σ x) − (n + 1)/n; or "
                             "take the mean |x_i − x_j| over all ordered pairs and divide by twice the mean.",
                        confirm=f"{expected:.3f}: two of four items are never shown, and one of the other two "
                                "gets three times the other's exposure.")
