"""Checkers for lesson 11's exercises: what a top-n rerank can change, a citation check, the token cost of facts."""
from __future__ import annotations

from course_utils.exercises import NOT_ANSWERED, Feedback, check_number
from course_utils.llm.rag import cited_ids

# Exercise 2: an explanation written for a product whose prompt numbered three reviews, [R1]-[R3].
EXERCISE_2_TEXT = "Soft and warm [R1], a favourite of many [R4], and a bargain at this price [R2][R5]."
EXERCISE_2_GIVEN = 3


def check_exercise_1(answer, top_n: int = 10, k: int = 10) -> Feedback:
    """answer: by how much can reranking the first stage's top ``top_n`` change a user's HR@k (k <= top_n)?"""
    if not 0 < k <= top_n:
        raise ValueError(f"the exercise needs k <= top_n, got k={k}, top_n={top_n}")
    return check_number(answer, 0.0, atol=1e-9,
                        hint=f"The reranker only reorders the {top_n} items the first stage put on top, and all of "
                             f"them stay above the rest. Which items are in the top {k} afterwards?",
                        confirm=f"0: the top {top_n} keeps the same members, so whether the held-out item is among the "
                                f"first {k} cannot change. Only metrics that look at the order inside the top "
                                f"{top_n} (HR@1, HR@5, NDCG@10, MRR) can move.")


def check_exercise_2(answer, text: str = EXERCISE_2_TEXT, n_given: int = EXERCISE_2_GIVEN) -> Feedback:
    """answer: how many of the text's citations point at a review the prompt did not give?"""
    expected = sum(not 1 <= i <= n_given for i in cited_ids(text))
    return check_number(answer, expected, atol=0.5,
                        hint=f"List every [R..] id in the text, then keep those outside 1..{n_given}: the prompt "
                             f"numbered only {n_given} reviews.",
                        confirm=f"{expected}: those citations look as trustworthy as the others, yet no review "
                                "stands behind them. A checker must count them, because a reader will not.")


def check_exercise_3(answer, tokens_with_facts: int, tokens_without: int) -> Feedback:
    """answer: how many prompt tokens the retrieved facts add to the first user's rerank prompt."""
    if answer is None:
        return NOT_ANSWERED
    expected = int(tokens_with_facts) - int(tokens_without)
    return check_number(answer, expected, atol=0.5,
                        hint="Render the prompt with and without facts (`rag.rerank_prompt`) and count the tokens "
                             "of each with the tokenizer; the difference is the cost of retrieval.",
                        confirm=f"{expected} tokens: every one goes through the model for every user, so retrieved "
                                "context is paid for in latency. That is why the prompt has a token budget.")
