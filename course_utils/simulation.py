"""Online evaluation on simulated users: A/B tests, interleaving and feedback loops (lesson 21).

A recommender is finally judged by what users do when it serves them. The fashion shop
(``course_utils.data.fashion_shop``) knows every user's true utility, so here an online
experiment can be run, repeated and checked against the truth:

* **A/B test**: users are split at random into two arms, each arm is served one variant,
  and a per-user metric (clicks) is compared with Welch's two-sample t-test
  (:func:`ab_test`). :func:`sample_size_per_arm` is the normal-approximation sample size,
  equal to ``statsmodels``' ``NormalIndPower`` answer.
* **Novelty effect**: an *assumption of the simulator*, stated as code: users click a new
  variant's slate more at first, by a factor ``1 + boost * 0.5 ** (day / half_life)``
  (:func:`novelty_multiplier`). An estimate from the first days then overstates the lift.
* **Team-draft interleaving** (Radlinski et al., 2008): both rankings are merged into one
  slate, a coin deciding each round which team picks first; a click credits the team that
  placed the item (:func:`team_draft_interleave`, :func:`interleaving_credit`), and a sign
  test asks whether one team wins more users than the other (:func:`interleaving_test`).
* **Sensitivity**: the users each design needs to detect a known difference at 80% power,
  estimated by repeated subsampling of per-user outcomes (:func:`detection_rates`).
* **Feedback loop**: a recommender retrained on the clicks it caused, round after round,
  with or without exploration (:func:`feedback_loop`).

Everything is vectorised over users; Python loops run only over slate positions, days,
sample sizes or rounds. LLM-driven simulated users live in ``course_utils.simulation_llm``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats

from course_utils.claims import Claim, _as_finite_1d, _p, format_p  # format_p: re-exported for lesson 21
from course_utils.metrics import _check_k, catalog_coverage, gini, intra_list_diversity, normalised_utility


# ---------------------------------------------------------------- slates
def top_k_slates(scores, k: int, exclude=None) -> np.ndarray:
    """The ``k`` highest-scored items per user, best first (users × k); ties keep the lower item id.

    ``exclude`` (users × items, bool array or sparse matrix) marks items that may not be shown.
    """
    k = _check_k(k)
    scores = np.array(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.size == 0:
        raise ValueError(f"scores must be a non-empty users × items array, got shape {scores.shape}")
    if exclude is not None:
        mask = exclude.toarray() if sp.issparse(exclude) else np.asarray(exclude)
        if mask.shape != scores.shape:
            raise ValueError(f"exclude {mask.shape} must match scores {scores.shape}")
        scores[mask.astype(bool)] = -np.inf
    if k > scores.shape[1] or (np.isfinite(scores).sum(1) < k).any():
        raise ValueError(f"every user needs at least k={k} items that may be shown")
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.lexsort((top, -np.take_along_axis(scores, top, 1)), axis=1)
    return np.take_along_axis(top, order, 1)


def interaction_matrix(users, items, shape) -> sp.csr_matrix:
    """A 0/1 users × items CSR matrix from parallel arrays of user and item ids."""
    users, items = np.asarray(users), np.asarray(items)
    if users.shape != items.shape:
        raise ValueError(f"users and items must have the same shape, got {users.shape} and {items.shape}")
    X = sp.csr_matrix((np.ones(len(users), np.float32), (users, items)), shape=shape)
    X.data[:] = 1.0
    return X


# ---------------------------------------------------------------- A/B tests
def sample_size_per_arm(effect_size: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Users per arm for a two-sided two-sample test of means, normal approximation:

        n = 2 * ((z_{1 - alpha/2} + z_{power}) / d) ** 2,   d = (mean_B - mean_A) / sd.

    It ignores the far tail's tiny share of the power, so it equals
    ``statsmodels.stats.power.NormalIndPower().solve_power(d, alpha=alpha, power=power)`` to 1e-4.
    """
    if not np.isfinite(effect_size) or effect_size == 0:
        raise ValueError(f"effect_size must be a non-zero finite standardised difference, got {effect_size!r}")
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError(f"alpha and power must lie in (0, 1), got {alpha} and {power}")
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return float(2 * (z / effect_size) ** 2)


@dataclass(frozen=True)
class ABResult:
    """Arm B against arm A on a per-user metric: Welch's t-test and its confidence interval."""

    a: str
    b: str
    metric: str
    mean_a: float
    mean_b: float
    diff: float
    low: float
    high: float
    statistic: float
    p_value: float
    n_a: int
    n_b: int
    alpha: float = 0.05

    @property
    def relative_lift(self) -> float:
        return self.diff / self.mean_a if self.mean_a else float("nan")

    @property
    def winner(self) -> str:
        """``b`` or ``a`` when the difference is significant at ``alpha``, else "no winner"."""
        if self.p_value >= self.alpha:
            return "no winner"
        return self.b if self.diff > 0 else self.a

    @property
    def decision(self) -> tuple[str, float]:
        """What a rerun must reproduce: the winner and the p-value (rounded to 12 digits)."""
        return self.winner, round(self.p_value, 12)

    def sentence(self, digits: int = 3) -> str:
        values = (f"{self.metric} {self.mean_b:.{digits}f} for **{self.b}** against {self.mean_a:.{digits}f} for "
                  f"**{self.a}**: lift {self.diff:+.{digits}f} ({self.relative_lift:+.1%}), "
                  f"{1 - self.alpha:.0%} CI {self.low:+.{digits}f} to {self.high:+.{digits}f}, "
                  f"Welch t = {self.statistic:.2f}, p {_p(self.p_value)}, {self.n_a} + {self.n_b} users")
        if self.winner == "no winner":
            return f"No significant difference ({values})."
        return f"**{self.winner}** wins ({values})."

    def _repr_markdown_(self) -> str:
        return self.sentence()


def ab_test(metric_a, metric_b, a: str = "A", b: str = "B", metric: str = "clicks per user",
            alpha: float = 0.05) -> ABResult:
    """Welch's two-sample t-test of B against A, with the Welch–Satterthwaite CI of mean_B - mean_A."""
    x, y = _as_finite_1d(metric_a, "metric_a"), _as_finite_1d(metric_b, "metric_b")
    if len(x) < 2 or len(y) < 2:
        raise ValueError(f"each arm needs at least 2 users, got {len(x)} and {len(y)}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    va, vb = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    se = np.sqrt(va + vb)
    diff = y.mean() - x.mean()
    if se == 0:
        raise ValueError("both arms are constant: the t statistic is undefined")
    df = (va + vb) ** 2 / (va ** 2 / (len(x) - 1) + vb ** 2 / (len(y) - 1))
    t = diff / se
    half = stats.t.ppf(1 - alpha / 2, df) * se
    return ABResult(a, b, metric, float(x.mean()), float(y.mean()), float(diff), float(diff - half),
                    float(diff + half), float(t), float(2 * stats.t.sf(abs(t), df)), len(x), len(y), alpha)


def split_halves(users, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random halves of ``users`` (arm A, arm B), from ``seed``."""
    users = np.asarray(users)
    if users.ndim != 1 or len(users) < 4:
        raise ValueError(f"need a 1-D array of at least 4 users to split, got shape {users.shape}")
    shuffled = np.random.default_rng(seed).permutation(users)
    return np.sort(shuffled[: len(users) // 2]), np.sort(shuffled[len(users) // 2:])


def run_ab_test(shop, slates_a, slates_b, users, seed: int, a: str = "A", b: str = "B") -> ABResult:
    """Serve arm A's users their ``slates_a`` rows and arm B's their ``slates_b`` rows; compare clicks.

    ``slates_a``/``slates_b``: (shop.n_users, k) slates of each variant for every user.
    """
    slates_a, slates_b = np.asarray(slates_a), np.asarray(slates_b)
    if slates_a.shape != slates_b.shape or slates_a.ndim != 2 or slates_a.shape[1] == 0:
        raise ValueError(f"both variants need non-empty slates of the same shape, got {slates_a.shape} "
                         f"and {slates_b.shape}")
    arm_a, arm_b = split_halves(users, seed)
    rng = np.random.default_rng([seed, 1])
    clicks_a = shop.respond(arm_a, slates_a[arm_a], seed=rng).sum(1)
    clicks_b = shop.respond(arm_b, slates_b[arm_b], seed=rng).sum(1)
    return ab_test(clicks_a, clicks_b, a, b)


# ---------------------------------------------------------------- novelty
def novelty_multiplier(days, boost: float, half_life: float) -> np.ndarray:
    """The simulator's novelty assumption: clicks on the new variant scale by 1 + boost * 0.5 ** (day / half_life)."""
    days = np.asarray(days, dtype=np.float64)
    if boost < 0 or not np.isfinite(boost):
        raise ValueError(f"boost must be a non-negative number, got {boost!r}")
    if not half_life > 0:
        raise ValueError(f"half_life must be positive (days), got {half_life!r}")
    if (days < 0).any():
        raise ValueError("days must be non-negative")
    return 1.0 + boost * 0.5 ** (days / half_life)


def simulate_novelty(shop, slates_a, slates_b, users, n_days: int, boost: float, half_life: float,
                     seed: int) -> pd.DataFrame:
    """Daily A/B results while the new variant B's novelty wears off; one row per day.

    Each user visits once a day and sees their arm's slate; B's click probabilities are
    multiplied by :func:`novelty_multiplier` (capped at 1). Columns: day, multiplier,
    mean clicks per arm, lift (B - A) with its Welch CI and p-value.
    """
    if not isinstance(n_days, (int, np.integer)) or n_days <= 0:
        raise ValueError(f"n_days must be a positive integer, got {n_days!r}")
    arm_a, arm_b = split_halves(users, seed)
    rng = np.random.default_rng([seed, 2])
    days = np.arange(n_days)
    mult = novelty_multiplier(days, boost, half_life)
    p_a = shop.click_probability(arm_a, np.asarray(slates_a)[arm_a])
    p_b = shop.click_probability(arm_b, np.asarray(slates_b)[arm_b])
    clicks_a = (rng.random((n_days, *p_a.shape)) < p_a).sum(2)                       # days × users
    clicks_b = (rng.random((n_days, *p_b.shape)) < np.minimum(p_b * mult[:, None, None], 1.0)).sum(2)
    rows = []
    for day in days:
        r = ab_test(clicks_a[day], clicks_b[day])
        rows.append({"day": int(day), "multiplier": mult[day], "clicks A": r.mean_a, "clicks B": r.mean_b,
                     "lift": r.diff, "low": r.low, "high": r.high, "p": r.p_value})
    frame = pd.DataFrame(rows)
    frame.attrs["per_user"] = (clicks_a, clicks_b)   # for pooled estimates over any window of days
    return frame


def pooled_lift(novelty: pd.DataFrame, first_day: int, last_day: int) -> ABResult:
    """A/B result on each user's clicks per day averaged over days ``first_day``..``last_day``."""
    clicks_a, clicks_b = novelty.attrs["per_user"]
    if not 0 <= first_day <= last_day < len(clicks_a):
        raise ValueError(f"need 0 <= first_day <= last_day < {len(clicks_a)}, got {first_day} and {last_day}")
    window = slice(first_day, last_day + 1)
    return ab_test(clicks_a[window].mean(0), clicks_b[window].mean(0), metric="clicks per user per day")


# ---------------------------------------------------------------- team-draft interleaving
def team_draft_interleave(rankings_a, rankings_b, k: int, coins) -> tuple[np.ndarray, np.ndarray]:
    """Team-draft interleaving of two rankings per user (Radlinski, Kurup & Joachims, 2008).

    In each round both teams pick once; ``coins[u, round]`` (True: A first) decides the
    order. A team picks its highest-ranked item not yet in the slate. Returns the slates
    (users × k) and the team of each position (users × k: 0 = A, 1 = B).
    rankings_a, rankings_b: (users, L) distinct item ids per row, L >= k; coins: (users, ceil(k / 2)) bool.
    """
    k = _check_k(k)
    ra, rb = np.asarray(rankings_a), np.asarray(rankings_b)
    if ra.ndim != 2 or ra.shape != rb.shape or ra.size == 0:
        raise ValueError(f"rankings must be non-empty users × L arrays of the same shape, got {ra.shape} and {rb.shape}")
    if ra.shape[1] < k:
        raise ValueError(f"rankings have {ra.shape[1]} items, fewer than k={k}")
    for r in (ra, rb):
        s = np.sort(r, axis=1)
        if (s[:, 1:] == s[:, :-1]).any():
            raise ValueError("each ranking must list distinct items")
    coins = np.asarray(coins)
    if coins.shape != (len(ra), (k + 1) // 2) or coins.dtype != bool:
        raise ValueError(f"coins must be a bool array of shape {(len(ra), (k + 1) // 2)}, got {coins.dtype} {coins.shape}")
    n_users = len(ra)
    rows = np.arange(n_users)
    items = np.unique(np.concatenate([ra.ravel(), rb.ravel()]))
    ra_idx, rb_idx = np.searchsorted(items, ra), np.searchsorted(items, rb)   # compact ids for the "taken" mask
    taken = np.zeros((n_users, len(items)), bool)
    slates, teams = np.empty((n_users, k), ra.dtype), np.empty((n_users, k), np.int8)
    size = np.zeros((n_users, 2), np.int64)
    for pos in range(k):
        a_turn = (size[:, 0] < size[:, 1]) | ((size[:, 0] == size[:, 1]) & coins[rows, pos // 2])
        free_a = ~taken[rows[:, None], ra_idx]
        free_b = ~taken[rows[:, None], rb_idx]
        pick_a = ra_idx[rows, free_a.argmax(1)]
        pick_b = rb_idx[rows, free_b.argmax(1)]
        pick = np.where(a_turn, pick_a, pick_b)
        taken[rows, pick] = True
        slates[:, pos], teams[:, pos] = items[pick], np.where(a_turn, 0, 1)
        size[rows, teams[:, pos]] += 1
    return slates, teams


def interleaving_credit(teams, clicks) -> np.ndarray:
    """Per user: +1 if team B got more clicks, -1 if team A did, 0 for a tie (users × k inputs)."""
    teams, clicks = np.asarray(teams), np.asarray(clicks)
    if teams.shape != clicks.shape or teams.ndim != 2 or teams.size == 0:
        raise ValueError(f"teams and clicks must be non-empty users × k arrays of one shape, got {teams.shape} "
                         f"and {clicks.shape}")
    if not np.isin(teams, (0, 1)).all():
        raise ValueError("teams must hold 0 (A) or 1 (B)")
    clicks = clicks.astype(bool)
    return np.sign((clicks & (teams == 1)).sum(1) - (clicks & (teams == 0)).sum(1)).astype(np.int64)


def sign_test_p(wins_a, wins_b) -> np.ndarray:
    """Two-sided sign-test p-value(s) for win counts (ties dropped), equal to scipy's ``binomtest(.., p=0.5)``."""
    wa, wb = np.asarray(wins_a), np.asarray(wins_b)
    n = wa + wb
    p = np.minimum(1.0, 2 * stats.binom.cdf(np.minimum(wa, wb), np.maximum(n, 1), 0.5))
    return np.where(n == 0, 1.0, p)


@dataclass(frozen=True)
class InterleavingResult:
    """Team-draft outcome over users: wins, ties, the preference Δ and the sign test."""

    a: str
    b: str
    wins_a: int
    wins_b: int
    ties: int
    p_value: float
    alpha: float = 0.05

    @property
    def delta(self) -> float:
        """Chapelle et al. (2012): (wins_B + ties / 2) / users - 0.5; positive when B is preferred."""
        return (self.wins_b + self.ties / 2) / (self.wins_a + self.wins_b + self.ties) - 0.5

    @property
    def winner(self) -> str:
        if self.p_value >= self.alpha:
            return "no winner"
        return self.b if self.wins_b > self.wins_a else self.a

    @property
    def decision(self) -> tuple[str, float]:
        return self.winner, round(self.p_value, 12)

    def sentence(self) -> str:
        n = self.wins_a + self.wins_b + self.ties
        values = (f"**{self.b}** wins {self.wins_b} users, **{self.a}** {self.wins_a}, {self.ties} ties of {n}; "
                  f"Δ = {self.delta:+.3f}, sign test p {_p(self.p_value)}")
        if self.winner == "no winner":
            return f"Interleaving finds no significant preference ({values})."
        return f"Interleaving prefers **{self.winner}** ({values})."

    def _repr_markdown_(self) -> str:
        return self.sentence()


def interleaving_test(credit, a: str = "A", b: str = "B", alpha: float = 0.05) -> InterleavingResult:
    """Sign test on per-user credits (+1 B, -1 A, 0 tie) from :func:`interleaving_credit`."""
    credit = np.asarray(credit)
    if credit.ndim != 1 or credit.size == 0 or not np.isin(credit, (-1, 0, 1)).all():
        raise ValueError("credit must be a non-empty 1-D array of -1, 0 and 1")
    wa, wb = int((credit < 0).sum()), int((credit > 0).sum())
    return InterleavingResult(a, b, wa, wb, int((credit == 0).sum()), float(sign_test_p(wa, wb)), alpha)


def run_interleaving(shop, rankings_a, rankings_b, users, k: int, seed: int, a: str = "A",
                     b: str = "B") -> tuple[InterleavingResult, np.ndarray]:
    """Interleave both variants for every user of ``users``, sample clicks, test; returns (result, credit)."""
    users = np.asarray(users)
    rng = np.random.default_rng([seed, 3])
    coins = rng.random((len(users), (k + 1) // 2)) < 0.5
    slates, teams = team_draft_interleave(np.asarray(rankings_a)[users], np.asarray(rankings_b)[users], k, coins)
    credit = interleaving_credit(teams, shop.respond(users, slates, seed=rng))
    return interleaving_test(credit, a, b), credit


# ---------------------------------------------------------------- sensitivity by subsampling
def detection_rates(design: str, outcomes, sizes, n_repeats: int, seed: int, alpha: float = 0.05) -> np.ndarray:
    """Share of ``n_repeats`` experiments of each size in ``sizes`` that find B better at ``alpha``.

    ``design="ab"``: ``outcomes = (metric_a, metric_b)``, each (sessions, users): every
    experiment draws ``size`` (user, session) pairs at random and gives half of them arm A's
    outcome, half arm B's, then runs Welch's t-test. ``design="interleaving"``: ``outcomes``
    is the credit (sessions, users) of :func:`interleaving_credit`; the sign test decides.
    """
    sizes = np.asarray(sizes)
    if sizes.ndim != 1 or sizes.size == 0 or (sizes < 4).any():
        raise ValueError("sizes must be a non-empty list of experiment sizes of at least 4 users")
    if n_repeats < 10:
        raise ValueError(f"n_repeats must be at least 10, got {n_repeats}")
    rng = np.random.default_rng(seed)
    if design == "ab":
        metric_a, metric_b = (np.asarray(o, np.float64) for o in outcomes)
        if metric_a.shape != metric_b.shape or metric_a.ndim != 2:
            raise ValueError(f"A/B outcomes must be two (sessions, users) arrays of one shape, got "
                             f"{metric_a.shape} and {metric_b.shape}")
        shape = metric_a.shape
    elif design == "interleaving":
        credit = np.asarray(outcomes)
        if credit.ndim != 2:
            raise ValueError(f"interleaving credit must be (sessions, users), got shape {credit.shape}")
        shape = credit.shape
    else:
        raise ValueError(f"design must be 'ab' or 'interleaving', got {design!r}")
    rates = []
    for size in sizes:
        session = rng.integers(shape[0], size=(n_repeats, size))
        user = rng.integers(shape[1], size=(n_repeats, size))
        if design == "ab":
            half = size // 2
            xa, xb = metric_a[session[:, :half], user[:, :half]], metric_b[session[:, half:], user[:, half:]]
            t, p = stats.ttest_ind(xb, xa, axis=1, equal_var=False)
            found = (p < alpha) & (xb.mean(1) > xa.mean(1))
        else:
            c = credit[session, user]
            wa, wb = (c < 0).sum(1), (c > 0).sum(1)
            found = (sign_test_p(wa, wb) < alpha) & (wb > wa)
        rates.append(np.nan_to_num(found.astype(float)).mean())
    return np.array(rates)


def users_needed(sizes, rates, target: float = 0.8) -> float:
    """The experiment size where the detection rate first reaches ``target``, interpolated on a log scale
    between the two grid sizes around it; ``nan`` if no size reaches it."""
    sizes, rates = np.asarray(sizes, np.float64), np.asarray(rates, np.float64)
    if sizes.shape != rates.shape or sizes.ndim != 1 or sizes.size == 0:
        raise ValueError(f"sizes and rates must be 1-D of one length, got {sizes.shape} and {rates.shape}")
    above = np.flatnonzero(rates >= target)
    if above.size == 0:
        return float("nan")
    i = above[0]
    if i == 0 or rates[i] == rates[i - 1]:
        return float(sizes[i])
    w = (target - rates[i - 1]) / (rates[i] - rates[i - 1])
    return float(np.exp(np.log(sizes[i - 1]) + w * (np.log(sizes[i]) - np.log(sizes[i - 1]))))


# ---------------------------------------------------------------- feedback loops
def explore_slates(greedy, exclude, epsilon: float, rng: np.random.Generator) -> np.ndarray:
    """Epsilon-greedy slates: each position is replaced, with probability ``epsilon``, by a random item
    that is neither excluded nor already in the greedy slate (items stay distinct)."""
    greedy = np.asarray(greedy)
    if not 0 <= epsilon <= 1:
        raise ValueError(f"epsilon must lie in [0, 1], got {epsilon!r}")
    if epsilon == 0:
        return greedy.copy()
    keys = rng.random(np.shape(exclude))
    np.put_along_axis(keys, greedy, -1.0, axis=1)
    random_items = top_k_slates(keys, greedy.shape[1], exclude=exclude)
    return np.where(rng.random(greedy.shape) < epsilon, random_items, greedy)


def feedback_loop(shop, initial_log: sp.csr_matrix, make_model, n_rounds: int, k: int, epsilon: float,
                  seed: int, item_vectors=None, users=None) -> pd.DataFrame:
    """Retrain ``make_model()`` on the logged clicks every round, serve top-k (epsilon-greedy) slates,
    log the new clicks; one row per round.

    Columns: round, exposure Gini (how unequally impressions spread over items), coverage
    (share of the catalogue shown), ILD (mean intra-list diversity over ``item_vectors``),
    utility (true utility of the slates on the random-0 / best-k-1 scale of
    ``metrics.normalised_utility``, among items the user has not clicked), model utility (the
    same for the model's own top-k before exploration: what the model has learned), clicks
    per user, and the log's size. Items a user already clicked are not shown again.
    """
    from course_utils.data.splits import History

    if not isinstance(n_rounds, (int, np.integer)) or n_rounds <= 0:
        raise ValueError(f"n_rounds must be a positive integer, got {n_rounds!r}")
    k = _check_k(k)
    users = np.arange(shop.n_users) if users is None else np.asarray(users)
    log = sp.csr_matrix(initial_log, dtype=np.float32)
    if log.shape != (shop.n_users, shop.n_items):
        raise ValueError(f"initial_log must be {(shop.n_users, shop.n_items)}, got {log.shape}")
    vectors = shop.item_features if item_vectors is None else np.asarray(item_vectors)
    utility = shop.true_utility(users)
    rng = np.random.default_rng([seed, 4])
    rows = []
    for r in range(n_rounds):
        model = make_model().fit(log)
        clicked = log[users].toarray() > 0
        scores = model.score(users, History(log, []))
        greedy = top_k_slates(scores, k, exclude=clicked)
        slates = explore_slates(greedy, clicked, epsilon, rng)
        clicks = shop.respond(users, slates, seed=rng)
        log = log + interaction_matrix(np.repeat(users, k)[clicks.ravel()], slates[clicks], log.shape)
        log.data[:] = 1.0
        exposure = np.bincount(slates.ravel(), minlength=shop.n_items)
        rows.append({"round": r, "exposure Gini": gini(exposure), "coverage": catalog_coverage(slates, shop.n_items),
                     "ILD": float(intra_list_diversity(slates, vectors).mean()),
                     "utility": float(normalised_utility(utility, slates, allowed=~clicked).mean()),
                     "model utility": float(normalised_utility(utility, greedy, allowed=~clicked).mean()),
                     "clicks": float(clicks.sum(1).mean()), "log size": int(log.nnz)})
    return pd.DataFrame(rows)


def seed_interval(values, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and t-interval across seeds (mean, low, high); with one seed the interval is (nan, nan)."""
    x = _as_finite_1d(values, "values")
    if len(x) < 2:
        return float(x.mean()), float("nan"), float("nan")
    half = stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    return float(x.mean()), float(x.mean() - half), float(x.mean() + half)


def seed_difference_claim(differences, what: str, digits: int = 3) -> Claim:
    """A sentence on per-seed differences (e.g. exploring minus greedy, one value per seed) with their
    t-interval across seeds; the case is "higher", "lower", "level" or "one seed"."""
    mean, low, high = seed_interval(differences)
    n = len(np.atleast_1d(differences))
    if n < 2:
        return Claim(f"{what}: {mean:+.{digits}f} from a single seed, so its spread is unknown.", "one seed")
    values = f"{what}: {mean:+.{digits}f} (95% CI over {n} seeds {low:+.{digits}f} to {high:+.{digits}f})"
    if low > 0 or high < 0:
        case = "higher" if low > 0 else "lower"
        return Claim(f"{values}, **{case}**.", case)
    return Claim(f"{values}: **no clear difference**.", "level")
