"""Sentences that state a result, generated from the run's own numbers.

A course is trusted for its sentences as much as for its code. A fixed sentence
such as "X beats Y" can be contradicted by the very table above it after a
library update or a new seed. So every result sentence in a lesson comes from
one of these helpers, which return the text *and* which case held (a
:class:`Claim`), and lessons may assert on the case.

* :func:`claim` picks between two texts written in advance, by a condition the
  run decides.
* :func:`compare_models` compares two models user by user: the paired
  difference of a per-user metric, a bootstrap confidence interval and a paired
  t-test. A difference whose interval covers zero is reported as
  "no significant difference", never as a win.
* :func:`seed_spread_claim` says whether a gap between two models is larger
  than the seed-to-seed spread of either.
* :func:`best_claim` names the best entry of a table.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

VERDICTS = ("better", "level", "worse")


@dataclass(frozen=True)
class Claim:
    """A sentence about a result, and which case of the result it describes."""

    text: str
    case: str | bool

    def _repr_markdown_(self) -> str:  # a cell that ends with a claim shows it as Markdown
        return self.text

    def __str__(self) -> str:
        return self.text


def claim(condition, if_true: str, if_false: str) -> Claim:
    """The text for the case that held: ``if_true`` when ``condition`` is true, else ``if_false``.

    >>> claim(0.07 > 0.04, "EASE beats popularity.", "Popularity is not beaten.").case
    True
    """
    held = bool(condition)
    return Claim(if_true if held else if_false, held)


def join_claims(*claims: Claim | str) -> Claim:
    """Several claims (or plain connecting text) as one paragraph; the case is the tuple of cases."""
    texts = [str(c).strip() for c in claims if str(c).strip()]
    return Claim(" ".join(texts), tuple(c.case for c in claims if isinstance(c, Claim)))


def paired_bootstrap_ci(differences, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval for the mean of paired differences (resampling users).

    differences: 1-D array, one value per user (model A's metric minus model B's).
    """
    diff = _as_finite_1d(differences, "differences")
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level}")
    if n_boot < 100:
        raise ValueError(f"n_boot must be at least 100 for a usable interval, got {n_boot}")
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for start in range(0, n_boot, 500):  # chunks keep memory flat for large user sets
        stop = min(start + 500, n_boot)
        idx = rng.integers(0, len(diff), size=(stop - start, len(diff)))
        means[start:stop] = diff[idx].mean(axis=1)
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(high)


def paired_verdict(low: float, high: float, p_value: float, level: float = 0.95) -> str:
    """One rule for every paired comparison in the course: "better", "worse" or "level".

    An effect counts only when both pieces of evidence agree: the interval of the
    difference (low, high) excludes zero, and the test's p-value is below
    1 - level. The percentile bootstrap interval is a little narrower than the
    t-interval on small samples, so near the edge the two can disagree (an
    interval just above zero with p = 0.056); such a case is "level", never a
    win. ``evidence_disagrees`` tells the sentence to say so.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level}")
    if low > high:
        raise ValueError(f"interval low {low} is above high {high}")
    significant = p_value < 1 - level
    if significant and low > 0:
        return "better"
    if significant and high < 0:
        return "worse"
    return "level"


def evidence_disagrees(low: float, high: float, p_value: float, level: float = 0.95) -> bool:
    """True when the interval and the test give different answers on significance."""
    return (low > 0 or high < 0) != (p_value < 1 - level)


@dataclass(frozen=True)
class Comparison:
    """Model A against model B on one per-user metric; ``verdict`` is A's view: better, level or worse."""

    a: str
    b: str
    metric: str
    mean_a: float
    mean_b: float
    diff: float
    low: float
    high: float
    p_value: float
    n_users: int
    level: float
    verdict: str
    unit: str = "users"  # what was paired: users, or queries, products, reviews...

    @property
    def claim(self) -> Claim:
        return Claim(self.sentence(), self.verdict)

    def interval(self, digits: int = 4) -> str:
        """The paired evidence in brackets, for citing after a "better", "worse" or "level"."""
        return (f"paired difference {self.diff:+.{digits}f}, {self.level:.0%} CI {self.low:+.{digits}f} to "
                f"{self.high:+.{digits}f}, paired t-test p {_p(self.p_value)}, {self.n_users} {self.unit}")

    def sentence(self, digits: int = 4) -> str:
        values = f"{self.metric} {self.mean_a:.{digits}f} against {self.mean_b:.{digits}f}"
        if self.verdict == "level" and evidence_disagrees(self.low, self.high, self.p_value, self.level):
            which = ("the interval excludes zero but the t-test does not reject" if self.p_value >= 1 - self.level
                     else "the t-test rejects but the interval includes zero")
            head = f"**{self.a}** and **{self.b}** show no significant difference: a borderline case, {which}"
        elif self.verdict == "level":
            head = f"**{self.a}** and **{self.b}** show no significant difference"
        else:
            head = f"**{self.a}** is **{self.verdict}** than **{self.b}**"
        return f"{head} ({values}; {self.interval(digits)})."

    def _repr_markdown_(self) -> str:
        return self.sentence()

    def as_row(self) -> dict:
        return {"A": self.a, "B": self.b, f"{self.metric} A": self.mean_a, f"{self.metric} B": self.mean_b,
                "A - B": self.diff, "CI low": self.low, "CI high": self.high, "p (paired t)": self.p_value,
                "verdict": self.verdict}


def compare_models(per_user_a, per_user_b, a: str = "A", b: str = "B", metric: str = "NDCG@10",
                   level: float = 0.95, n_boot: int = 2000, seed: int = 0, unit: str = "users") -> Comparison:
    """Paired comparison of two models evaluated on the same users, in the same order.

    ``unit`` names what was paired, for the sentence ("users" by default; "queries",
    "products" or "reviews" when a lesson pairs those instead).

    per_user_a, per_user_b: 1-D arrays of a per-user metric (e.g. the second value
    returned by ``evaluate(..., per_user=True)``, indexed by metric name). The
    verdict follows ``paired_verdict``: "better"/"worse" only when the bootstrap
    interval of the mean difference excludes zero *and* the paired t-test rejects
    at the same level; otherwise "level" (no significant difference), and the
    sentence says so when the two tests disagree.
    """
    x = _as_finite_1d(per_user_a, "per_user_a")
    y = _as_finite_1d(per_user_b, "per_user_b")
    if x.shape != y.shape:
        raise ValueError(f"paired comparison needs the same users for both models; got {len(x)} and {len(y)} values")
    if len(x) < 2:
        raise ValueError(f"need at least 2 users to compare models, got {len(x)}")
    diff = x - y
    low, high = paired_bootstrap_ci(diff, n_boot=n_boot, level=level, seed=seed)
    if np.allclose(diff, diff[0]):
        p_value = 1.0 if diff[0] == 0 else 0.0  # no variance: the t statistic is undefined
    else:
        p_value = float(stats.ttest_rel(x, y).pvalue)
    verdict = paired_verdict(low, high, p_value, level)
    return Comparison(a, b, metric, float(x.mean()), float(y.mean()), float(diff.mean()), low, high, p_value,
                      len(x), level, verdict, unit)


def compare_table(per_user: dict[str, np.ndarray], reference: str, metric: str = "NDCG@10", **kwargs) -> pd.DataFrame:
    """Every model of ``per_user`` against ``reference``, one row each (a table of Comparison rows)."""
    if reference not in per_user:
        raise ValueError(f"reference {reference!r} is not among the models {sorted(per_user)}")
    rows = [compare_models(values, per_user[reference], name, reference, metric, **kwargs).as_row()
            for name, values in per_user.items() if name != reference]
    return pd.DataFrame(rows).set_index("A")


def seed_spread_claim(values_a, values_b, a: str, b: str, metric: str = "NDCG@10", digits: int = 4) -> Claim:
    """Is the gap between two models' seed means larger than either model's seed-to-seed spread?

    values_a, values_b: the metric of each model under each training seed. The case
    is "beyond spread" when the gap between the means exceeds the larger of the two
    ranges (max - min across seeds), else "within spread"; with one seed, "one seed".
    """
    x = _as_finite_1d(values_a, "values_a")
    y = _as_finite_1d(values_b, "values_b")
    gap = x.mean() - y.mean()
    if len(x) < 2 or len(y) < 2:
        return Claim(f"{a} vs {b}: {metric} gap {gap:+.{digits}f} from a single seed, so the seed-to-seed spread "
                     "is unknown here (full mode trains 3 seeds).", "one seed")
    spread = max(np.ptp(x), np.ptp(y))
    if abs(gap) > spread:
        return Claim(f"Across {len(x)} seeds, the {metric} gap between {a} and {b} ({gap:+.{digits}f}) is larger "
                     f"than the seed-to-seed spread (range up to {spread:.{digits}f}).", "beyond spread")
    return Claim(f"Across {len(x)} seeds, the {metric} gap between {a} and {b} ({gap:+.{digits}f}) is **smaller than "
                 f"the seed-to-seed spread** (range up to {spread:.{digits}f}): another seed could reverse it.",
                 "within spread")


def best_claim(values: pd.Series | dict, metric: str = "NDCG@10", higher_is_better: bool = True,
               digits: int = 4) -> Claim:
    """Name the best entry of a one-metric table; the case is the winner's name."""
    series = pd.Series(values, dtype=float).dropna()
    if series.empty:
        raise ValueError("no values to compare")
    best = series.idxmax() if higher_is_better else series.idxmin()
    runner_up = series.drop(best)
    text = f"**{best}** has the best {metric} ({series[best]:.{digits}f})"
    if not runner_up.empty:
        second = runner_up.idxmax() if higher_is_better else runner_up.idxmin()
        text += f", ahead of {second} ({runner_up[second]:.{digits}f})"
    return Claim(text + ".", str(best))


CORRECTIONS = ("holm", "bonferroni")


def adjust_p_values(p_values, method: str = "holm") -> np.ndarray:
    """p-values adjusted for multiple comparisons, in the input order (compare each with the usual level).

    ``"bonferroni"`` multiplies each by the number of tests m; ``"holm"`` (Holm, 1979)
    multiplies the i-th smallest by m - i + 1 and keeps the sequence non-decreasing.
    Both bound the chance of any false "significant" among the m tests by the level;
    Holm never rejects less than Bonferroni. Equal to statsmodels' ``multipletests``.

    >>> adjust_p_values([0.01, 0.015, 0.03, 0.2], "holm").round(3).tolist()
    [0.04, 0.045, 0.06, 0.2]
    """
    if method not in CORRECTIONS:
        raise ValueError(f"method must be one of {CORRECTIONS}, got {method!r}")
    p = _as_finite_1d(p_values, "p_values")
    if len(p) < 2:
        raise ValueError(f"a multiple-comparison correction needs at least 2 p-values (2 comparisons), got {len(p)}: "
                         "one comparison needs no correction")
    if (p < 0).any() or (p > 1).any():
        raise ValueError(f"p-values must lie in [0, 1], got range [{p.min()}, {p.max()}]")
    m = len(p)
    if method == "bonferroni":
        return np.minimum(1.0, p * m)
    order = np.argsort(p, kind="stable")
    stepped = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    adjusted = np.empty(m)
    adjusted[order] = stepped
    return adjusted


def _as_finite_1d(values, name: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be numbers, got {type(values).__name__}") from err
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def format_p(p_value: float) -> str:
    """A p-value for a sentence, to follow a 'p': '< 0.001' or '= 0.042'."""
    return "< 0.001" if p_value < 0.001 else f"= {p_value:.3f}"


_p = format_p
