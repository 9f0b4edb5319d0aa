"""Shilling attacks with fake users, and a detector (lesson 23, survey Section 5.4: manipulability).

An attacker who wants an item recommended more often creates fake accounts
whose profiles hold the *target* item plus *filler* items chosen to make the
fakes look like real users and to tie the target to what real users already
like (Lam & Riedl, 2004; Mobasher et al., 2007). The recommender is retrained
on the poisoned data and the target climbs genuine users' rankings.

The classic attack models were written for star ratings. The course's models
learn from 0/1 interactions, so each one becomes a rule for picking fillers:

* ``"random"``: fillers drawn uniformly from the catalogue;
* ``"average"``: fillers drawn in proportion to item popularity, so a fake's
  profile has the items a typical user has (the 0/1 counterpart of rating each
  filler at its mean);
* ``"bandwagon"``: the ``n_selected`` most popular items in every fake, plus
  random fillers: it ties the target to the items nearly everyone has.

The damage is measured on the genuine users who have not interacted with the
target: the target's rank among the items they have not seen, before and after
(:class:`AttackResult`). :func:`detect_fake_profiles` is one unsupervised
defence: an isolation forest (scikit-learn) over profile features, among them
the degree of similarity with the top neighbours (DegSim; Chirita et al., 2005;
Burke et al., 2006), since fakes made by one rule resemble one another.

Everything is vectorised over users: sampling fillers is one top-k over a
random key matrix, ranking the target is one comparison over a score matrix.
Retraining EASE after adding k fake users (or dropping flagged ones) is a
rank-k Woodbury update of its inverse (:func:`ease_refit`), exact and several
times cheaper than a new fit.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import scipy.sparse as sp

from course_utils.data.splits import History, check_interaction_matrix
from course_utils.models.baselines import EASE

ATTACKS = ("random", "average", "bandwagon")


def _check_item(item, n_items: int, name: str = "target") -> int:
    if isinstance(item, bool) or not isinstance(item, (int, np.integer)):
        raise TypeError(f"{name} must be an integer item id, got {item!r}")
    if not 0 <= int(item) < n_items:
        raise ValueError(f"{name} must lie in [0, {n_items}), got {item}")
    return int(item)


def _check_count(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def item_counts(X) -> np.ndarray:
    """How many users interacted with each item (a 1-D float array, one entry per item)."""
    return np.asarray(check_interaction_matrix(X).sum(axis=0)).ravel()


def pick_targets(X, n_targets: int, min_count: int = 5, max_count: int = 20, seed: int = 0) -> np.ndarray:
    """``n_targets`` distinct unpopular items to push: between ``min_count`` and ``max_count`` interactions.

    Unpopular but not unknown: a product the attacker sells that a few real users have bought.
    """
    n_targets = _check_count("n_targets", n_targets)
    counts = item_counts(X)
    pool = np.flatnonzero((counts >= min_count) & (counts <= max_count))
    if len(pool) < n_targets:
        raise ValueError(f"only {len(pool)} items have {min_count}-{max_count} interactions; asked for {n_targets}")
    return np.sort(np.random.default_rng(seed).choice(pool, size=n_targets, replace=False))


def _top_keys(keys: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` largest keys in each row (one vectorised partition)."""
    return np.argpartition(-keys, k - 1, axis=1)[:, :k]


def inject_profiles(X, target: int, n_profiles: int, attack: str = "random", filler_size: int = 50,
                    n_selected: int = 10, seed: int = 0) -> sp.csr_matrix:
    """Fake profiles (``n_profiles`` × items, 0/1 CSR): the target plus ``filler_size`` filler items each.

    ``X`` is the genuine users × items matrix; the attacker uses only its item
    popularity (public knowledge on most platforms: "bestsellers"). Fillers are
    drawn without replacement and never include the target. For ``"bandwagon"``
    the ``n_selected`` most popular items are part of the ``filler_size`` fillers.
    """
    X = check_interaction_matrix(X)
    n_items = X.shape[1]
    target = _check_item(target, n_items)
    n_profiles = _check_count("n_profiles", n_profiles)
    filler_size = _check_count("filler_size", filler_size)
    if attack not in ATTACKS:
        raise ValueError(f"attack must be one of {ATTACKS}, got {attack!r}")
    if filler_size > n_items - 1:
        raise ValueError(f"filler_size {filler_size} exceeds the {n_items - 1} items other than the target")
    rng = np.random.default_rng(seed)
    counts = item_counts(X)
    uniform = rng.random((n_profiles, n_items))
    if attack == "average":
        # Efraimidis & Spirakis (2006): the k largest u^(1/w) are a weighted sample without replacement.
        weights = np.maximum(counts, 1e-3)
        keys = np.log(np.maximum(uniform, 1e-300)) / weights[None, :]
    else:
        keys = uniform
    keys[:, target] = -np.inf
    if attack == "bandwagon":
        n_selected = _check_count("n_selected", n_selected)
        if n_selected > filler_size:
            raise ValueError(f"n_selected ({n_selected}) cannot exceed filler_size ({filler_size})")
        popular = np.argsort(-counts, kind="stable")
        popular = popular[popular != target][:n_selected]
        keys[:, popular] = np.inf  # always drawn
    fillers = _top_keys(keys, filler_size)
    rows = np.repeat(np.arange(n_profiles), filler_size + 1)
    cols = np.concatenate([fillers, np.full((n_profiles, 1), target)], axis=1).ravel()
    fakes = sp.csr_matrix((np.ones(len(cols), np.float32), (rows, cols)), shape=(n_profiles, n_items))
    fakes.sort_indices()
    return fakes


def target_ranks(scores: np.ndarray, history: sp.csr_matrix, target: int) -> np.ndarray:
    """Per user, the target's rank (1 = top) among the items not in the user's history.

    Ties count half (mid-rank), so a model that gives the target and 100 other
    items the same score is not credited with the best of those places.
    NaN for users who already have the target: nothing to push there.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape != history.shape:
        raise ValueError(f"scores must be users × items like history {history.shape}, got {scores.shape}")
    target = _check_item(target, scores.shape[1])
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinite values")
    seen = history.toarray() > 0
    t = scores[:, target][:, None]
    allowed = ~seen
    allowed[:, target] = False
    above = ((scores > t) & allowed).sum(axis=1)
    tied = ((scores == t) & allowed).sum(axis=1)
    ranks = 1.0 + above + 0.5 * tied
    ranks[seen[:, target]] = np.nan
    return ranks


@dataclass(frozen=True)
class Detection:
    """An unsupervised detector's verdict on every profile: ``scores`` (higher = more suspicious) and ``flagged``."""

    scores: np.ndarray
    flagged: np.ndarray
    features: pd.DataFrame

    def quality(self, is_fake) -> dict[str, float]:
        """Precision and recall of the flags and the AUC of the scores at finding the true fakes."""
        return detection_quality(self.scores, self.flagged, is_fake)


@dataclass(frozen=True)
class AttackResult:
    """One attack on one model: the target's ranks for the genuine users who lacked it, before and after.

    ``ranks_defended`` (and ``detection``) are set when the attack ran with a
    detector: the ranks after retraining without the flagged profiles.
    """

    model: str
    attack: str
    target: int
    n_fake: int
    k: int
    ranks_before: np.ndarray
    ranks_after: np.ndarray
    ranks_defended: np.ndarray | None = None
    detection: dict | None = None

    @property
    def rank_shift(self) -> np.ndarray:
        """Per genuine user, places the target climbed (positive = promoted)."""
        return self.ranks_before - self.ranks_after

    @property
    def mean_rank_shift(self) -> float:
        return float(self.rank_shift.mean())

    def hit_rate(self, stage: str = "after", k: int | None = None) -> float:
        """Share of the genuine users with the target in their top ``k`` (default ``self.k``) at one stage:
        "before" the attack, "after" it, or "defended" (retrained without the flagged profiles)."""
        ranks = {"before": self.ranks_before, "after": self.ranks_after, "defended": self.ranks_defended}
        if stage not in ranks:
            raise ValueError(f"stage must be one of {tuple(ranks)}, got {stage!r}")
        if ranks[stage] is None:
            raise ValueError("this attack ran without a detector: no defended ranks")
        return float((ranks[stage] <= (self.k if k is None else _check_count("k", k))).mean())

    @property
    def hr_before(self) -> float:
        """Share of the genuine users with the target in their top ``k`` before the attack."""
        return self.hit_rate("before")

    @property
    def hr_after(self) -> float:
        return self.hit_rate("after")

    @property
    def hr_defended(self) -> float:
        return self.hit_rate("defended")

    def as_row(self) -> dict:
        row = {"model": self.model, "attack": self.attack, "target": self.target, "fake users": self.n_fake,
               "users": len(self.ranks_before), "mean rank before": float(self.ranks_before.mean()),
               "mean rank after": float(self.ranks_after.mean()), "target rank shift": self.mean_rank_shift,
               f"target HR@{self.k} before": self.hr_before, f"target HR@{self.k} after": self.hr_after}
        if self.ranks_defended is not None:
            row[f"target HR@{self.k} defended"] = self.hr_defended
            row["target rank shift defended"] = float((self.ranks_before - self.ranks_defended).mean())
            row.update({f"detection {name}": value for name, value in (self.detection or {}).items()})
        return row


def ease_refit(X, l2: float) -> Callable[[sp.csr_matrix, np.ndarray | None], EASE]:
    """EASE(l2) refitted on ``X`` plus ``added`` rows and without the rows where ``drop`` is True, exactly and fast.

    EASE's solution needs P = (XᵀX + λI)⁻¹. Adding users U (k rows) changes the
    Gram matrix by UᵀU, so by the Woodbury identity
    (A + UᵀSU)⁻¹ = A⁻¹ − A⁻¹Uᵀ(S⁻¹ + UA⁻¹Uᵀ)⁻¹UA⁻¹, with S = +1 for added and −1
    for removed rows. That costs O(items² · k) instead of a new O(items³)
    inverse: an attacker (or a defender) can try many fake-user sets cheaply.
    The returned function's models equal ``EASE(l2).fit(...)`` on the changed
    data (tests assert it).
    """
    X = check_interaction_matrix(X)
    base = EASE(l2)  # validates l2
    gram = (X.T @ X).toarray().astype(np.float64)
    gram[np.diag_indices_from(gram)] += base.l2
    P0 = np.linalg.inv(gram)

    def refit(added: sp.csr_matrix, drop: np.ndarray | None = None) -> EASE:
        added = sp.csr_matrix(added)
        if added.shape[1] != X.shape[1]:
            raise ValueError(f"added rows must have {X.shape[1]} items, got {added.shape[1]}")
        parts = [(added, 1.0)]
        if drop is not None:
            drop = np.asarray(drop, bool)
            if drop.shape != (X.shape[0],):
                raise ValueError(f"drop must be a boolean mask of X's {X.shape[0]} rows, got shape {drop.shape}")
            parts.append((X[drop], -1.0))
        parts = [(m, sign) for m, sign in parts if m.shape[0] > 0]
        model = EASE(base.l2)
        P = P0
        if parts:
            U = sp.vstack([m for m, _ in parts]).toarray().astype(np.float64)
            signs = np.concatenate([np.full(m.shape[0], sign) for m, sign in parts])
            PU = P0 @ U.T
            core = np.diag(1.0 / signs) + U @ PU
            P = P0 - PU @ np.linalg.solve(core, PU.T)
        B = -P / np.diag(P)[None, :]
        np.fill_diagonal(B, 0.0)
        model.B_ = B.astype(np.float32)
        return model

    return refit


def _genuine_scores(model, X: sp.csr_matrix) -> np.ndarray:
    return np.asarray(model.score(np.arange(X.shape[0]), History(X, [])), dtype=np.float64)


def shilling_attack(make_model: Callable[[], object], X, target: int, n_fake: int, attack: str = "random",
                    filler_size: int = 50, n_selected: int = 10, seed: int = 0, k: int = 10,
                    clean_scores: np.ndarray | None = None, detector: Callable | None = None,
                    model_name: str | None = None, refit: Callable | None = None) -> AttackResult:
    """Inject ``n_fake`` fake profiles pushing ``target``, retrain, and measure the target's ranks.

    make_model: returns a fresh unfitted model with ``fit(X)`` and ``score(users, history)``.
    X: the genuine users × items 0/1 matrix; the fakes are appended as extra rows
    and the genuine users are scored on their own histories by both models.
    clean_scores: the clean model's genuine users × items scores, to skip refitting
    it when several attacks share it.
    detector: e.g. :func:`detect_fake_profiles`; called on the poisoned matrix, it
    must return a :class:`Detection`. The model is then retrained without the
    flagged rows (genuine users flagged by mistake lose their say in training,
    but are still scored).
    refit: optional ``refit(added, drop=None) -> fitted model``, a fast exact way to
    train on ``X`` plus the ``added`` rows, without the rows of ``X`` where the
    boolean mask ``drop`` is True (e.g. :func:`ease_refit`); by default
    ``make_model().fit`` on that matrix.
    """
    X = check_interaction_matrix(X)
    k = _check_count("k", k)
    target = _check_item(target, X.shape[1])
    if clean_scores is None:
        clean_scores = _genuine_scores(make_model().fit(X), X)
    fakes = inject_profiles(X, target, n_fake, attack, filler_size, n_selected, seed)
    poisoned = sp.vstack([X, fakes]).tocsr()
    keep = ~(X[:, target].toarray().ravel() > 0)
    history = X[keep]
    before = target_ranks(np.asarray(clean_scores)[keep], history, target)
    if refit is None:
        def refit(added, drop=None):
            rows = X if drop is None else X[~np.asarray(drop, bool)]
            return make_model().fit(sp.vstack([rows, added]).tocsr())
    after = target_ranks(_genuine_scores(refit(fakes), X)[keep], history, target)
    defended, quality = None, None
    if detector is not None:
        found = detector(poisoned)
        is_fake = np.r_[np.zeros(X.shape[0], bool), np.ones(n_fake, bool)]
        quality = found.quality(is_fake)
        flagged = np.asarray(found.flagged, bool)
        defended_model = refit(fakes[~flagged[X.shape[0]:]], flagged[:X.shape[0]])
        defended = target_ranks(_genuine_scores(defended_model, X)[keep], history, target)
    name = model_name or type(make_model()).__name__
    return AttackResult(name, attack, target, int(n_fake), k, before, after, defended, quality)


def profile_features(X, n_neighbors: int = 10) -> pd.DataFrame:
    """Per profile (row of ``X``), features that tell shilling profiles from real ones.

    * ``profile length``: number of items;
    * ``mean log popularity`` and ``sd log popularity`` of the profile's items
      (popularity counted on ``X`` itself, as the platform sees it);
    * ``DegSim``: mean cosine similarity with the ``n_neighbors`` most similar
      other profiles (Chirita et al., 2005): fakes built by one rule are close.
    """
    X = check_interaction_matrix(X)
    n_neighbors = _check_count("n_neighbors", n_neighbors)
    if n_neighbors >= X.shape[0]:
        raise ValueError(f"n_neighbors ({n_neighbors}) must be smaller than the number of profiles ({X.shape[0]})")
    length = np.asarray(X.sum(axis=1)).ravel()
    log_pop = sp.csr_matrix(X.multiply(np.log1p(item_counts(X))[None, :]))
    mean = np.asarray(log_pop.sum(axis=1)).ravel() / np.maximum(length, 1)
    mean_sq = np.asarray(log_pop.multiply(log_pop).sum(axis=1)).ravel() / np.maximum(length, 1)
    unit = sp.diags(1.0 / np.sqrt(np.maximum(length, 1))) @ X
    sim = (unit @ unit.T).toarray()
    np.fill_diagonal(sim, -np.inf)
    top = -np.partition(-sim, n_neighbors - 1, axis=1)[:, :n_neighbors]
    return pd.DataFrame({"profile length": length, "mean log popularity": mean,
                         "sd log popularity": np.sqrt(np.maximum(mean_sq - mean**2, 0.0)),
                         "DegSim": top.mean(axis=1)})


def detect_fake_profiles(X, contamination: float | str = "auto", n_neighbors: int = 10, seed: int = 0,
                         n_estimators: int = 100) -> Detection:
    """Flag suspicious profiles with an isolation forest over :func:`profile_features` (no labels needed).

    ``contamination`` is the share of profiles to flag (the defender's guess at
    the attack size): the profiles with the highest anomaly scores. ``"auto"``
    uses scikit-learn's default threshold instead (Liu et al., 2008).
    """
    from sklearn.ensemble import IsolationForest

    if not (contamination == "auto" or (isinstance(contamination, float) and 0 < contamination <= 0.5)):
        raise ValueError(f"contamination must be 'auto' or a float in (0, 0.5], got {contamination!r}")
    features = profile_features(X, n_neighbors)
    # fitted with "auto", so that scikit-learn does not score the data twice; the share is applied below
    forest = IsolationForest(n_estimators=n_estimators, random_state=seed).fit(features.to_numpy())
    normality = forest.score_samples(features.to_numpy())
    if contamination == "auto":
        flagged = normality < forest.offset_
    else:
        flagged = np.zeros(len(normality), bool)
        flagged[np.argsort(normality, kind="stable")[:max(1, int(round(contamination * len(normality))))]] = True
    return Detection(-normality, flagged, features)


def detection_quality(scores, flagged, is_fake) -> dict[str, float]:
    """Precision and recall of ``flagged`` and the ROC AUC of ``scores`` (higher = more suspicious) against ``is_fake``."""
    from sklearn.metrics import roc_auc_score

    scores = np.asarray(scores, dtype=np.float64)
    flagged, is_fake = np.asarray(flagged, bool), np.asarray(is_fake, bool)
    if not (scores.shape == flagged.shape == is_fake.shape) or scores.ndim != 1:
        raise ValueError(f"scores, flagged and is_fake must be 1-D of one length, got {scores.shape}, "
                         f"{flagged.shape}, {is_fake.shape}")
    if is_fake.all() or not is_fake.any():
        raise ValueError("is_fake must contain both fake and genuine profiles")
    hits = float((flagged & is_fake).sum())
    return {"precision": hits / flagged.sum() if flagged.any() else 0.0, "recall": hits / is_fake.sum(),
            "AUC": float(roc_auc_score(is_fake, scores)), "flagged": float(flagged.sum())}
