"""Membership inference against a trained recommender (lesson 23, survey Section 5.4: privacy).

A model leaks its training data when it behaves measurably differently on the
people it was trained on (*members*) than on people it never saw
(*non-members*). Shokri et al. (2017) turned that into an attack; Zhang et al.
(2021) aimed it at recommenders, whose outputs for a user depend on that user's
history. The attacker here queries the model with a user's history and
measures how well the returned scores recover the user's own items
(:func:`own_item_auc`): a model that memorised its members reconstructs them
better than it generalises to strangers. This is the loss-threshold attack of
Yeom et al. (2018) with a rank-based loss, so it needs no shadow models.

The attack's success is an ROC AUC over users, members against non-members
(:func:`membership_auc`): 0.5 means the model reveals nothing about who was in
its training data. Its uncertainty comes from DeLong et al. (1988)'s variance
of the Mann–Whitney statistic (:func:`membership_test`), which needs no
resampling.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy import stats

from course_utils.claims import Claim, format_p
from course_utils.data.splits import History, check_interaction_matrix


def _scores_1d(values, name: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or len(values) == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of attack scores, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return values


def _placements(members: np.ndarray, nonmembers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's structural components: for each member the share of non-members it beats (ties half),
    and for each non-member the share of members that beat it."""
    both = np.concatenate([members, nonmembers])
    ranks_all = stats.rankdata(both)
    m, n = len(members), len(nonmembers)
    ranks_members_alone = stats.rankdata(members)
    ranks_nonmembers_alone = stats.rankdata(nonmembers)
    beats = (ranks_all[:m] - ranks_members_alone) / n            # non-members below each member
    beaten_by = 1.0 - (ranks_all[m:] - ranks_nonmembers_alone) / m  # members above each non-member
    return beats, beaten_by


def membership_auc(member_scores, nonmember_scores) -> float:
    """P(a random member scores higher than a random non-member), ties counted half.

    Equals ``sklearn.metrics.roc_auc_score`` with members as the positive class.
    """
    beats, _ = _placements(_scores_1d(member_scores, "member_scores"),
                           _scores_1d(nonmember_scores, "nonmember_scores"))
    return float(beats.mean())


@dataclass(frozen=True)
class MembershipTest:
    """An attack's AUC with a DeLong confidence interval and the p-value of "no leak" (AUC = 0.5)."""

    auc: float
    low: float
    high: float
    p_value: float
    n_members: int
    n_nonmembers: int
    level: float = 0.95

    @property
    def verdict(self) -> str:
        """"leaks" when the interval lies above 0.5, "no evidence" when it covers 0.5, "below chance" otherwise."""
        return "leaks" if self.low > 0.5 else ("below chance" if self.high < 0.5 else "no evidence")

    def sentence(self, model: str = "the model") -> Claim:
        numbers = (f"membership AUC {self.auc:.3f}, {self.level:.0%} CI {self.low:.3f} to {self.high:.3f}, "
                   f"p {format_p(self.p_value)} against 0.5; {self.n_members} members, "
                   f"{self.n_nonmembers} non-members")
        text = {"leaks": f"The attack tells **{model}**'s training users from strangers better than chance ({numbers}): "
                         "the model leaks who was in its training data.",
                "no evidence": f"The attack does **not** tell **{model}**'s training users from strangers better than "
                               f"chance ({numbers}): no leak found at this sample size.",
                "below chance": f"The attack scores **{model}**'s training users *lower* than strangers ({numbers}): "
                                "a difference, but not the one the attack expects."}[self.verdict]
        return Claim(text, self.verdict)

    def _repr_markdown_(self) -> str:
        return self.sentence().text

    def as_metrics(self, name: str = "membership AUC") -> dict[str, float]:
        """The leaderboard's metric with its siblings: CI low/high and the p-value against 0.5."""
        return {name: self.auc, f"{name} CI low": self.low, f"{name} CI high": self.high, f"{name} p": self.p_value}


def membership_test(member_scores, nonmember_scores, level: float = 0.95) -> MembershipTest:
    """AUC of the attack scores (members positive) with DeLong's interval and a two-sided z-test of AUC = 0.5.

    The interval is clipped to [0, 1]. When every score is tied the variance is
    zero: the AUC is exactly 0.5 and the interval collapses onto it (p = 1).
    """
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    members = _scores_1d(member_scores, "member_scores")
    nonmembers = _scores_1d(nonmember_scores, "nonmember_scores")
    if len(members) < 2 or len(nonmembers) < 2:
        raise ValueError(f"need at least 2 members and 2 non-members, got {len(members)} and {len(nonmembers)}")
    beats, beaten_by = _placements(members, nonmembers)
    auc = float(beats.mean())
    se = float(np.sqrt(beats.var(ddof=1) / len(members) + beaten_by.var(ddof=1) / len(nonmembers)))
    if se == 0.0:
        p_value = 1.0 if auc == 0.5 else 0.0
        return MembershipTest(auc, auc, auc, p_value, len(members), len(nonmembers), level)
    z = stats.norm.ppf(0.5 + level / 2)
    p_value = float(2 * stats.norm.sf(abs(auc - 0.5) / se))
    return MembershipTest(auc, max(0.0, auc - z * se), min(1.0, auc + z * se), p_value, len(members),
                          len(nonmembers), level)


def own_item_auc(scores: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
    """Per user, how well the scores recover the user's own items: the AUC of own items against all others.

    scores: users × items, the model's output for each user queried with that
    user's history; history: the same users × items 0/1 matrix. Ties count half.
    A user with no items, or with every item, has no AUC: a ValueError.
    """
    scores = np.asarray(scores, dtype=np.float64)
    history = check_interaction_matrix(history)
    if scores.ndim != 2 or scores.shape != history.shape:
        raise ValueError(f"scores must be users × items like history {history.shape}, got {scores.shape}")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinite values")
    own = history.toarray() > 0
    n_own = own.sum(axis=1)
    n_other = own.shape[1] - n_own
    if (n_own == 0).any() or (n_other == 0).any():
        user = int(np.flatnonzero((n_own == 0) | (n_other == 0))[0])
        raise ValueError(f"user {user} has {n_own[user]} of {own.shape[1]} items: the AUC needs some of each")
    ranks = stats.rankdata(scores, axis=1)  # average ranks: ties count half
    rank_sum = np.where(own, ranks, 0.0).sum(axis=1)
    return (rank_sum - n_own * (n_own + 1) / 2) / (n_own * n_other)


def split_members(n_users: int, share: float = 0.5, seed: int = 0) -> np.ndarray:
    """A boolean mask of ``n_users``: True for the random ``share`` of users the model will be trained on."""
    if isinstance(n_users, bool) or not isinstance(n_users, (int, np.integer)) or n_users < 4:
        raise ValueError(f"n_users must be an integer >= 4, got {n_users!r}")
    if not 0 < share < 1:
        raise ValueError(f"share must lie in (0, 1), got {share}")
    mask = np.zeros(n_users, bool)
    mask[np.random.default_rng(seed).permutation(n_users)[:int(round(share * n_users))]] = True
    if mask.all() or not mask.any():
        raise ValueError(f"share {share} of {n_users} users leaves one side empty")
    return mask


def membership_attack(model, X, members, level: float = 0.95) -> tuple[MembershipTest, np.ndarray]:
    """Run the attack on a model trained on ``X[members]``: returns the test and every user's attack score.

    The attacker queries the model with each user's row of ``X`` (members and
    non-members alike) and scores the user by :func:`own_item_auc`.
    """
    X = check_interaction_matrix(X)
    members = np.asarray(members, bool)
    if members.shape != (X.shape[0],):
        raise ValueError(f"members must be a boolean mask of {X.shape[0]} users, got shape {members.shape}")
    scores = np.asarray(model.score(np.arange(X.shape[0]), History(X, [])), dtype=np.float64)
    signal = own_item_auc(scores, X)
    return membership_test(signal[members], signal[~members], level), signal
