"""Checkers for lesson 03's exercises: which loss gives a distribution, ties in time, first-order transitions.

The numeric checkers compute the expected value from the split the lesson built,
so they stay right if the data or the tie rule change.
"""
from __future__ import annotations

import numpy as np

from course_utils.data.splits import Split
from course_utils.exercises import Feedback, check_choice, check_number
from course_utils.models.sequence_baselines import MarkovChain, _last_items


def check_exercise_5(answer) -> Feedback:
    """answer: "ce" or "bce", the loss whose softmax(scores) is a model of p(next item | history)."""
    return check_choice(answer, "ce", options=["ce", "bce"],
                        hint="Which loss normalises the scores over the whole catalogue during training? The other "
                             "one only learns to put one true item above one random item.",
                        confirm="Right: CE maximises log softmax(scores), so softmax(scores) is the model's estimate "
                                "of the next-item distribution; BCE's scores are only trained up to a ranking.")


def validation_same_second_share(split: Split) -> float:
    """Share of users whose validation item has the same timestamp as their last training item."""
    last_train = split.train.groupby("user")["timestamp"].last()
    valid = split.valid.set_index("user")["timestamp"]
    users = valid.index.intersection(last_train.index)
    return float((valid.loc[users].to_numpy() == last_train.loc[users].to_numpy()).mean())


def check_exercise_6(answer, split: Split) -> Feedback:
    """answer: the share (0-1) of validation items rated in the same second as the user's last training item."""
    expected = validation_same_second_share(split)
    return check_number(answer, expected, rtol=0.02,
                        hint="Take each user's last row of `split.train` (it is time-ordered) and their row of "
                             "`split.valid`, and compare the two timestamps; average the matches over users.",
                        confirm=f"{expected:.0%} of validation items share the second of the item before them: for "
                                "those pairs the 'order' is the file order of a tie, not a real sequence.")


def top10_successor_share(split: Split, stage: str = "test") -> float:
    """Share of held-out items among the 10 most frequent training successors of the user's previous item.

    An item is in the top 10 when it followed the previous item at least once and fewer
    than 10 items followed it strictly more often.
    """
    chain = MarkovChain().fit(split)
    targets, history = split.targets(stage), split.history(stage)
    users = np.flatnonzero(targets.getnnz(axis=1))
    target = np.asarray(targets[users].argmax(axis=1)).ravel()
    counts = chain.transition_counts(_last_items(history, users, 1)[:, 0])
    own = counts[np.arange(len(users)), target]
    above = (counts > own[:, None]).sum(1)
    return float(((own > 0) & (above < 10)).mean())


def check_exercise_7(answer, split: Split) -> Feedback:
    """answer: the share (0-1) of test items that are among the 10 most frequent successors of the previous item."""
    expected = top10_successor_share(split)
    return check_number(answer, expected, rtol=0.02,
                        hint="Use `MarkovChain().fit(split).transition_counts(previous)` with the last item of each "
                             "user's test-time history; the target counts when it followed at least once and fewer "
                             "than 10 items have a strictly larger count.",
                        confirm=f"{expected:.1%} of test items are among the previous item's 10 most frequent "
                                "successors: an upper bound on what a pure first-order count model can hit in its top 10.")
