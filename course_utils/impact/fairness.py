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

import numpy as np

from course_utils.claims import Claim, format_p

__all__ = ["GroupGap", "group_gap"]


def _values(per_user, name: str = "per_user") -> np.ndarray:
    try:
        array = np.asarray(per_user, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be numbers, got {type(per_user).__name__}") from err
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array (one value per user), got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


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

    @property
    def significant(self) -> bool:
        """Both pieces of evidence agree: the interval excludes zero and p < 1 - level."""
        return (self.ci_low > 0 or self.ci_high < 0) and self.p < 1 - self.level

    def sentence(self, metric: str = "NDCG@10", digits: int = 4) -> Claim:
        """A generated sentence; the case is "a higher", "b higher" or "no gap"."""
        numbers = (f"{metric} {self.mean_a:.{digits}f} for {self.a} ({self.n_a} users) against "
                   f"{self.mean_b:.{digits}f} for {self.b} ({self.n_b} users); gap {self.gap:+.{digits}f}, "
                   f"{self.level:.0%} CI {self.ci_low:+.{digits}f} to {self.ci_high:+.{digits}f}, "
                   f"permutation p {format_p(self.p)}")
        if self.significant:
            higher = self.a if self.gap > 0 else self.b
            return Claim(f"**{higher}** users get a significantly higher {metric} ({numbers}).",
                         "a higher" if self.gap > 0 else "b higher")
        return Claim(f"**No significant gap** between {self.a} and {self.b} users ({numbers}).", "no gap")

    def _repr_markdown_(self) -> str:
        return self.sentence().text

    def as_row(self) -> dict:
        return {"A": self.a, "B": self.b, "n A": self.n_a, "n B": self.n_b, "mean A": self.mean_a,
                "mean B": self.mean_b, "gap (A - B)": self.gap, "CI low": self.ci_low, "CI high": self.ci_high,
                "p (permutation)": self.p}


def group_gap(per_user, groups, a, b, n_boot: int = 2000, seed: int = 0, level: float = 0.95,
              n_perm: int | None = None) -> GroupGap:
    """Gap of a per-user metric between user groups ``a`` and ``b`` (mean a - mean b).

    per_user: one metric value per user (e.g. NDCG@10 from ``evaluate(..., per_user=True)``).
    groups: one group label per user, same length (e.g. the users' gender "M"/"F").
    Users whose label is neither ``a`` nor ``b`` are ignored. The interval resamples
    users with replacement within each group (``n_boot`` times); the p-value
    shuffles the labels among the users of both groups (``n_perm`` times, default
    ``n_boot``) and counts shuffles whose absolute gap reaches the observed one,
    with the usual +1 so that p is never exactly zero.

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
    x, y = values[labels == a], values[labels == b]
    for name, group in ((a, x), (b, y)):
        if len(group) < 2:
            present = sorted({str(v) for v in labels})[:10]
            raise ValueError(f"group {name!r} has {len(group)} users; need at least 2 (labels present: {present})")
    rng = np.random.default_rng(seed)
    gap = float(x.mean() - y.mean())
    boot = np.empty(n_boot)
    for start in range(0, n_boot, 500):  # chunks keep memory flat
        m = min(500, n_boot - start)
        boot[start:start + m] = (x[rng.integers(0, len(x), (m, len(x)))].mean(1)
                                 - y[rng.integers(0, len(y), (m, len(y)))].mean(1))
    alpha = (1 - level) / 2
    low, high = np.quantile(boot, [alpha, 1 - alpha])
    pooled = np.concatenate([x, y])
    total, n_a = pooled.sum(), len(x)
    reached = 0
    for start in range(0, n_perm, 500):
        m = min(500, n_perm - start)
        order = rng.random((m, len(pooled))).argsort(axis=1)[:, :n_a]  # a random subset of size n_a per row
        sum_a = pooled[order].sum(1)
        perm_gap = sum_a / n_a - (total - sum_a) / len(y)
        reached += int((np.abs(perm_gap) >= abs(gap) - 1e-12).sum())
    p = (reached + 1) / (n_perm + 1)
    return GroupGap(gap, float(low), float(high), float(p), n_a, len(y), str(a), str(b),
                    float(x.mean()), float(y.mean()), level)
