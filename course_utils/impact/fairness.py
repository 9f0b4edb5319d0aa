"""Fairness of recommendations (survey Section 5.4), measured with its uncertainty.

Three views, one per concern of the lesson:

* **Group fairness of CF models** (consumer side): does a model serve one user
  group worse than another? :func:`group_gap` compares a per-user metric between
  two groups with an unpaired bootstrap interval and a permutation test
  (the groups hold different users, so nothing is paired).
* **Consumer fairness of LLM recommendations, FaiRLLM style** (Zhang et al.,
  2023): does adding a sensitive attribute to the prompt ("I am a female
  user") change the recommended list? The list for each attribute value is
  compared with the neutral list by Jaccard@k, SERP*@k and PRAG*@k; SNSR and
  SNSV summarise the spread over the attribute's values.
* **Provider fairness and popularity bias**: the exposure each provider (a
  brand, a release decade) receives against its share of the catalogue.
"""
from __future__ import annotations

from dataclasses import dataclass

from typing import Sequence

import numpy as np
import pandas as pd

from course_utils.claims import Claim, _as_finite_1d, format_p

__all__ = ["GroupGap", "group_gap", "jaccard_at_k", "serp_at_k", "prag_at_k", "SIMILARITIES", "list_similarity",
           "SensitivityTest", "sensitivity_test", "provider_exposure", "attribute_messages", "attribute_scores",
           "top_k_columns"]


def _values(per_user, name: str = "per_user") -> np.ndarray:
    """One finite number per user (the check every paired comparison in ``claims`` uses)."""
    return _as_finite_1d(per_user, name)


@dataclass(frozen=True)
class GroupGap:
    """The difference of a per-user metric between user groups ``a`` and ``b``.

    ``gap`` is mean(a) - mean(b); ``ci_low``/``ci_high`` its unpaired percentile
    bootstrap interval (users resampled within each group); ``p`` the two-sided
    permutation p-value (group labels shuffled among the users of both groups).
    """

    gap: float
    ci_low: float
    ci_high: float
    p: float
    n_a: int
    n_b: int
    a: str
    b: str
    mean_a: float = float("nan")
    mean_b: float = float("nan")
    level: float = 0.95
    strata: int = 1   # strata the gap was compared within (1: no stratification)

    @property
    def significant(self) -> bool:
        """Both pieces of evidence agree: the interval excludes zero and p < 1 - level."""
        return (self.ci_low > 0 or self.ci_high < 0) and self.p < 1 - self.level

    def sentence(self, metric: str = "NDCG@10", digits: int = 4) -> Claim:
        """A generated sentence; the case is "a higher", "b higher" or "no gap"."""
        within = f" within {self.strata} strata" if self.strata > 1 else ""
        numbers = (f"{metric} {self.mean_a:.{digits}f} for {self.a} ({self.n_a} users) against "
                   f"{self.mean_b:.{digits}f} for {self.b} ({self.n_b} users); gap{within} {self.gap:+.{digits}f}, "
                   f"{self.level:.0%} CI {self.ci_low:+.{digits}f} to {self.ci_high:+.{digits}f}, "
                   f"permutation p {format_p(self.p)}")
        if self.significant:
            higher = self.a if self.gap > 0 else self.b
            return Claim(f"**{higher}** users get a significantly higher {metric}{within} ({numbers}).",
                         "a higher" if self.gap > 0 else "b higher")
        return Claim(f"**No significant gap**{within} between {self.a} and {self.b} users ({numbers}).", "no gap")

    def _repr_markdown_(self) -> str:
        return self.sentence().text

    def as_row(self) -> dict:
        return {"A": self.a, "B": self.b, "n A": self.n_a, "n B": self.n_b, "mean A": self.mean_a,
                "mean B": self.mean_b, "gap (A - B)": self.gap, "CI low": self.ci_low, "CI high": self.ci_high,
                "p (permutation)": self.p, "strata": self.strata}


def _cell_draws(x: np.ndarray, y: np.ndarray, n: int, rng, permute: bool) -> np.ndarray:
    """``n`` bootstrap (or permutation) draws of mean(x) - mean(y), in chunks that keep memory flat."""
    out = np.empty(n)
    pooled = np.concatenate([x, y])
    for start in range(0, n, 500):
        m = min(500, n - start)
        if permute:   # a random subset of size len(x) per row plays group a
            sum_a = pooled[rng.random((m, len(pooled))).argsort(axis=1)[:, :len(x)]].sum(1)
            out[start:start + m] = sum_a / len(x) - (pooled.sum() - sum_a) / len(y)
        else:
            out[start:start + m] = (x[rng.integers(0, len(x), (m, len(x)))].mean(1)
                                    - y[rng.integers(0, len(y), (m, len(y)))].mean(1))
    return out


def group_gap(per_user, groups, a, b, n_boot: int = 2000, seed: int = 0, level: float = 0.95,
              n_perm: int | None = None, strata=None) -> GroupGap:
    """Gap of a per-user metric between user groups ``a`` and ``b`` (mean a - mean b).

    per_user: one metric value per user (e.g. NDCG@10 from ``evaluate(..., per_user=True)``).
    groups: one group label per user, same length (e.g. the users' gender "M"/"F").
    Users whose label is neither ``a`` nor ``b`` are ignored. The interval resamples
    users with replacement within each group (``n_boot`` times); the p-value
    shuffles the labels among the users of both groups (``n_perm`` times, default
    ``n_boot``) and counts shuffles whose absolute gap reaches the observed one,
    with the usual +1 so that p is never exactly zero.

    strata: optional, one stratum label per user (e.g. activity tertiles). Then the gap
    is compared *within* each stratum and averaged with weights proportional to the
    stratum's users (a standardised gap): resampling and shuffling stay inside strata,
    and strata holding users of only one group are left out (``n_a``/``n_b`` count the
    users kept). A gap that vanishes within strata was the strata's doing.

    >>> g = group_gap([1.0, 0.8, 0.2, 0.0], ["M", "M", "F", "F"], "M", "F")
    >>> round(g.gap, 2), g.n_a, g.n_b
    (0.8, 2, 2)
    """
    values = _values(per_user)
    labels = np.asarray(groups, dtype=object)
    if labels.ndim != 1 or len(labels) != len(values):
        raise ValueError(f"groups must hold one label per user: got {labels.shape} labels for {len(values)} users")
    if a == b:
        raise ValueError(f"groups a and b must differ, both are {a!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level}")
    if n_boot < 100:
        raise ValueError(f"n_boot must be at least 100 for a usable interval, got {n_boot}")
    n_perm = n_boot if n_perm is None else n_perm
    if n_perm < 100:
        raise ValueError(f"n_perm must be at least 100 for a usable p-value, got {n_perm}")
    layer = np.zeros(len(values), dtype=object) if strata is None else np.asarray(strata, dtype=object)
    if layer.shape != values.shape:
        raise ValueError(f"strata must hold one label per user: got {layer.shape} labels for {len(values)} users")
    in_a, in_b = labels == a, labels == b
    cells = [(values[in_a & (layer == s)], values[in_b & (layer == s)]) for s in pd.unique(layer[in_a | in_b])]
    cells = [(x, y) for x, y in cells if len(x) and len(y)]
    n_a, n_b = sum(len(x) for x, _ in cells), sum(len(y) for _, y in cells)
    for name, n in ((a, n_a), (b, n_b)):
        if n < 2:
            present = sorted({str(v) for v in labels})[:10]
            raise ValueError(f"group {name!r} has {n} users (in strata shared with the other group); need at "
                             f"least 2 (labels present: {present})")
    weights = np.array([len(x) + len(y) for x, y in cells], dtype=np.float64)
    weights /= weights.sum()
    rng = np.random.default_rng(seed)
    gap = float(sum(w * (x.mean() - y.mean()) for w, (x, y) in zip(weights, cells)))
    boot = sum(w * _cell_draws(x, y, n_boot, rng, permute=False) for w, (x, y) in zip(weights, cells))
    perm = sum(w * _cell_draws(x, y, n_perm, rng, permute=True) for w, (x, y) in zip(weights, cells))
    alpha = (1 - level) / 2
    low, high = np.quantile(boot, [alpha, 1 - alpha])
    p = (int((np.abs(perm) >= abs(gap) - 1e-12).sum()) + 1) / (n_perm + 1)
    mean_a = float(np.concatenate([x for x, _ in cells]).mean())
    mean_b = float(np.concatenate([y for _, y in cells]).mean())
    return GroupGap(gap, float(low), float(high), float(p), n_a, n_b, str(a), str(b), mean_a, mean_b, level,
                    len(cells))


# ------------------------------------------------------------------ FaiRLLM similarity metrics
def _top(items, k: int, name: str) -> list:
    if isinstance(items, str) or not hasattr(items, "__len__"):
        raise TypeError(f"{name} must be a list of item ids, got {type(items).__name__}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    top = list(items)[:k]
    if len(set(top)) != len(top):
        raise ValueError(f"{name} repeats an item in its top {k}: {top}")
    return top


def jaccard_at_k(sensitive, neutral, k: int) -> float:
    """|S ∩ N| / |S ∪ N| of the two top-k lists (order ignored): 1 for the same items, 0 for disjoint lists.

    >>> jaccard_at_k([1, 2, 3], [3, 4, 1], 3)   # {1, 3} shared of {1, 2, 3, 4}
    0.5
    """
    s, n = set(_top(sensitive, k, "sensitive")), set(_top(neutral, k, "neutral"))
    return len(s & n) / len(s | n) if s | n else 1.0


def serp_at_k(sensitive, neutral, k: int) -> float:
    """SERP*@k (Zhang et al., 2023): the shared items, each weighted by its rank in the sensitive list.

    sum over v in S of [v in N] * (k - rank_S(v) + 1), divided by k(k+1)/2 (ranks from 1), so a list
    whose top-ranked items are kept scores higher than one that keeps only its bottom items; 1 when S
    holds the same items as N (in any order).

    >>> serp_at_k([1, 2, 3], [3, 4, 1], 3)   # item 1 at rank 1 (weight 3) and item 3 at rank 3 (weight 1): 4 / 6
    0.6666666666666666
    """
    s, n = _top(sensitive, k, "sensitive"), set(_top(neutral, k, "neutral"))
    return sum(k - rank + 1 for rank, v in enumerate(s, 1) if v in n) / (k * (k + 1) / 2)


def prag_at_k(sensitive, neutral, k: int) -> float:
    """PRAG*@k (Zhang et al., 2023): how many ordered pairs of the sensitive list the neutral list keeps.

    Over the k(k-1)/2 pairs (v1 above v2) of the sensitive top-k, count those where v1 is in the
    neutral list and ranks above v2 there (an item absent from the neutral list ranks below all of
    it). Normalised by the number of pairs, as the authors' evaluation script does, so the same list
    scores 1 and disjoint lists 0; a one-item list scores 1 when the item is shared.

    >>> prag_at_k([1, 2, 3], [3, 4, 1], 3)   # pairs (1,2) yes, (1,3) no, (2,3) no: 1 / 3
    0.3333333333333333
    """
    s, n = _top(sensitive, k, "sensitive"), _top(neutral, k, "neutral")
    rank_n = {v: r for r, v in enumerate(n)}
    if len(s) < 2:
        return float(len(s) == 1 and s[0] in rank_n)
    far = len(n) + 1   # absent from the neutral list: below every item of it
    kept = sum(1 for i in range(len(s)) for j in range(i + 1, len(s))
               if s[i] in rank_n and rank_n[s[i]] < rank_n.get(s[j], far))
    return kept / (len(s) * (len(s) - 1) / 2)


SIMILARITIES = {"Jaccard": jaccard_at_k, "SERP*": serp_at_k, "PRAG*": prag_at_k}


def list_similarity(sensitive_lists, neutral_lists, k: int, metric: str = "Jaccard") -> np.ndarray:
    """One similarity per row: each sensitive-prompt list against the neutral list of the same user/instruction."""
    if metric not in SIMILARITIES:
        raise ValueError(f"metric must be one of {sorted(SIMILARITIES)}, got {metric!r}")
    sensitive_lists, neutral_lists = list(sensitive_lists), list(neutral_lists)
    if len(sensitive_lists) != len(neutral_lists) or not sensitive_lists:
        raise ValueError(f"need one neutral list per sensitive list, got {len(sensitive_lists)} and "
                         f"{len(neutral_lists)}")
    return np.array([SIMILARITIES[metric](s, n, k) for s, n in zip(sensitive_lists, neutral_lists)])


@dataclass(frozen=True)
class SensitivityTest:
    """FaiRLLM's sensitivity of one attribute, and a permutation test of it.

    ``means``: the mean similarity to the neutral list for each value of the attribute (over users);
    ``snsr`` = max - min of ``means`` (the range), ``snsv`` = their standard deviation; ``p``: the share of
    permutations (value labels shuffled within each user) whose range reaches the observed one.
    """

    attribute: str
    metric: str
    means: pd.Series
    snsr: float
    snsv: float
    p: float
    n_users: int
    n_perm: int

    def sentence(self, digits: int = 3) -> Claim:
        lo, hi = self.means.idxmin(), self.means.idxmax()
        numbers = (f"SNSR {self.snsr:.{digits}f}, SNSV {self.snsv:.{digits}f} over {len(self.means)} values and "
                   f"{self.n_users} users; permutation p {format_p(self.p)}")
        if self.snsr == 0:
            return Claim(f"**{self.attribute}**: every value gives the same mean {self.metric} to the neutral list "
                         f"({self.means.iloc[0]:.{digits}f}; {numbers}).", "no evidence")
        if self.p < 0.05:
            return Claim(f"**{self.attribute}**: the lists move away from the neutral one **more for '{lo}'** "
                         f"({self.metric} {self.means[lo]:.{digits}f}) than for '{hi}' ({self.means[hi]:.{digits}f}); "
                         f"the difference exceeds what shuffling the values gives ({numbers}).", "unequal")
        return Claim(f"**{self.attribute}**: no evidence that one value moves the list more than another "
                     f"({self.metric} from {self.means[lo]:.{digits}f} for '{lo}' to {self.means[hi]:.{digits}f} "
                     f"for '{hi}'; {numbers}).", "no evidence")

    def as_row(self) -> dict:
        return {"attribute": self.attribute, "metric": self.metric, "min": self.means.min(), "max": self.means.max(),
                "SNSR": self.snsr, "SNSV": self.snsv, "p (permutation)": self.p, "users": self.n_users}


def sensitivity_test(similarities, attribute: str = "attribute", metric: str = "Jaccard", n_perm: int = 2000,
                     seed: int = 0) -> SensitivityTest:
    """SNSR and SNSV of one attribute, with a permutation p-value.

    similarities: a DataFrame (users × values of the attribute, e.g. columns "a woman", "a man") of the
    similarity of each value's list to that user's neutral list. Under the null hypothesis that the
    value does not matter, the values are exchangeable within a user, so the test shuffles each row.
    """
    if not isinstance(similarities, pd.DataFrame):
        raise TypeError("similarities must be a DataFrame: one row per user, one column per attribute value")
    values = similarities.to_numpy(dtype=np.float64)
    if values.shape[0] < 2 or values.shape[1] < 2:
        raise ValueError(f"need at least 2 users and 2 values of the attribute, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError("similarities contain NaN or infinite values")
    if n_perm < 100:
        raise ValueError(f"n_perm must be at least 100 for a usable p-value, got {n_perm}")
    means = values.mean(0)
    snsr = float(np.ptp(means))
    rng = np.random.default_rng(seed)
    order = rng.random((n_perm, *values.shape)).argsort(axis=2)       # an independent shuffle of every row
    shuffled = np.take_along_axis(np.broadcast_to(values, order.shape), order, axis=2).mean(1)
    p = (int((np.ptp(shuffled, axis=1) >= snsr - 1e-12).sum()) + 1) / (n_perm + 1)
    return SensitivityTest(attribute, metric, pd.Series(means, index=similarities.columns), snsr,
                           float(means.std()), float(p), values.shape[0], n_perm)


# ------------------------------------------------------------------ the LLM recommender, with and without an attribute
def attribute_messages(history: Sequence[str], about: str | None = None) -> list[dict]:
    """Chat messages asking for the next movie after ``history``; ``about`` (e.g. "I am a woman.") is the
    sensitive sentence, placed after the history so that every variant of a user shares the same prompt start."""
    from course_utils.llm.prompting import SYSTEM, bullet_list

    if isinstance(history, str) or not list(history):
        raise ValueError("history must be a non-empty list of titles")
    if about is not None and (not isinstance(about, str) or not about.strip()):
        raise ValueError(f"about must be a non-empty sentence or None (the neutral prompt), got {about!r}")
    text = f"I watched these movies, oldest first:\n{bullet_list(history)}\n"
    text += (f"About me: {about.strip()}\n" if about else "") + "Which movie will I watch next? Answer with its title."
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]


def attribute_scores(model, tokenizer, histories: Sequence[Sequence[str]], candidate_titles: Sequence[Sequence[str]],
                     sentences: dict[str, str | None], progress: bool = False) -> dict[str, np.ndarray]:
    """The LLM ranker's scores of every user's candidates under every prompt variant.

    sentences: variant name -> sensitive sentence (None for the neutral prompt). Returns
    name -> (n_users, n_candidates) length-normalised log-likelihoods (lesson 09's packed ranker);
    each user's variants share one cached prompt start (system message and history).
    """
    from tqdm.auto import tqdm

    from course_utils.llm.prompting import render_chat
    from course_utils.llm.ranking import PromptPrefix, score_candidates

    if len(histories) != len(candidate_titles) or not len(histories):
        raise ValueError(f"need one candidate list per history, got {len(histories)} and {len(candidate_titles)}")
    if len(sentences) < 2:
        raise ValueError("need at least two prompt variants (e.g. the neutral one and one sensitive sentence)")
    scores = {name: [] for name in sentences}
    for history, titles in tqdm(list(zip(histories, candidate_titles)), disable=not progress, desc="variants"):
        prompts = {name: render_chat(tokenizer, attribute_messages(history, about)) for name, about in sentences.items()}
        prefix = PromptPrefix.from_prompts(model, tokenizer, list(prompts.values()))
        for name, prompt in prompts.items():
            scores[name].append(score_candidates(model, tokenizer, prompt, titles, "mean", prefix=prefix))
    return {name: np.array(rows) for name, rows in scores.items()}


def top_k_columns(scores, k: int) -> np.ndarray:
    """(n_users, k) column indices of each row's k highest scores, best first (ties: the lower column)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or not 0 < k <= scores.shape[1]:
        raise ValueError(f"need a (n_users, n_candidates) array and 0 < k <= n_candidates; got {scores.shape}, k={k}")
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


# ------------------------------------------------------------------ provider fairness
def provider_exposure(top_items, item_provider, item_counts=None, n_boot: int = 2000, seed: int = 0,
                      level: float = 0.95) -> pd.DataFrame:
    """Each provider's share of the recommendations against its share of the catalogue (and of the interactions).

    top_items: (n_users, k) recommended item ids; item_provider: one provider label per catalogue item;
    item_counts: optional training interactions per item. Returns one row per provider: ``catalogue share``,
    ``interaction share``, ``exposure share`` with a bootstrap interval over users (``CI low``/``CI high``),
    and ``exposure / catalogue`` (1 = exposed in proportion to its size).
    """
    top = np.asarray(top_items)
    providers = pd.Series(np.asarray(item_provider, dtype=object))
    if top.ndim != 2 or top.size == 0 or not np.issubdtype(top.dtype, np.integer):
        raise ValueError(f"top_items must be a non-empty (n_users, k) integer array, got shape {top.shape}")
    if top.min() < 0 or top.max() >= len(providers):
        raise ValueError(f"top_items hold ids outside the {len(providers)} items of item_provider")
    if n_boot < 100:
        raise ValueError(f"n_boot must be at least 100 for a usable interval, got {n_boot}")
    codes, names = pd.factorize(providers, sort=True)
    per_user = np.zeros((top.shape[0], len(names)))
    np.add.at(per_user, (np.repeat(np.arange(top.shape[0]), top.shape[1]), codes[top.ravel()]), 1.0)
    rng = np.random.default_rng(seed)
    boot = np.stack([per_user[rng.integers(0, len(per_user), len(per_user))].sum(0) for _ in range(n_boot)])
    boot /= boot.sum(1, keepdims=True)
    alpha = (1 - level) / 2
    table = pd.DataFrame({"catalogue share": np.bincount(codes, minlength=len(names)) / len(codes),
                          "exposure share": per_user.sum(0) / per_user.sum(),
                          "CI low": np.quantile(boot, alpha, axis=0), "CI high": np.quantile(boot, 1 - alpha, axis=0)},
                         index=pd.Index(names, name="provider"))
    if item_counts is not None:
        counts = np.asarray(item_counts, dtype=np.float64)
        if counts.shape != (len(providers),) or (counts < 0).any():
            raise ValueError(f"item_counts must hold one non-negative count per item ({len(providers)})")
        table.insert(1, "interaction share", np.bincount(codes, weights=counts, minlength=len(names)) / counts.sum())
    table["exposure / catalogue"] = table["exposure share"] / table["catalogue share"]
    return table
