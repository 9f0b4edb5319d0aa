"""Checkers for lesson 18's exercises: the chance category rate, the two projectors' parameter counts."""
from __future__ import annotations

from course_utils.exercises import NOT_ANSWERED, Feedback, check_number


def check_exercise_1(answer, n_categories: int = 10) -> Feedback:
    """answer: how often a caption that names one of ``n_categories`` categories at random names the right one."""
    if answer is None:
        return NOT_ANSWERED
    expected = 1 / n_categories
    return check_number(answer, expected, rtol=1e-3,
                        hint=f"A guess picks one of the {n_categories} category words, each equally likely; "
                             "how many of them are right for a given product?",
                        confirm=f"1/{n_categories} = {expected:.2f}: the floor any captioner must clear; a model that "
                                "always names the most common category does a little better.")


def linear_params(in_dim: int, out_dim: int) -> int:
    return in_dim * out_dim + out_dim


def mlp_params(in_dim: int, out_dim: int) -> int:
    return linear_params(in_dim, out_dim) + linear_params(out_dim, out_dim)


def check_exercise_2(answer, in_dim: int, out_dim: int) -> Feedback:
    """answer: the trainable parameters of LLaVA's linear projector from ``in_dim`` to ``out_dim`` (with a bias)."""
    if answer is None:
        return NOT_ANSWERED
    expected = linear_params(in_dim, out_dim)
    return check_number(answer, expected, rtol=0, atol=0.5,
                        hint=f"A linear layer has one weight per (input, output) pair, {in_dim} × {out_dim}, "
                             "plus one bias per output.",
                        confirm=f"{in_dim} × {out_dim} + {out_dim} = {expected:,}: everything the connector learns.")


def check_exercise_3(answer, in_dim: int, out_dim: int) -> Feedback:
    """answer: the trainable parameters of LLaVA-1.5's MLP projector (in -> out, GELU, out -> out, with biases)."""
    if answer is None:
        return NOT_ANSWERED
    expected = mlp_params(in_dim, out_dim)
    return check_number(answer, expected, rtol=0, atol=0.5,
                        hint=f"Two linear layers: {in_dim} -> {out_dim}, then {out_dim} -> {out_dim}, each with a "
                             "bias; the GELU has no parameters.",
                        confirm=f"{expected:,}: the second {out_dim} × {out_dim} layer dominates, so the MLP costs "
                                f"{expected / linear_params(in_dim, out_dim):.1f}× the linear projector's parameters.")
