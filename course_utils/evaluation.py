"""Offline evaluation protocols: full ranking (the course default) and sampled ranking.

A model is evaluated through a *score function* ``score_fn(users, history)``
that returns a ``len(users) × n_items`` array; ``history`` is the
``splits.History`` the model may look at. Items the user already has in that
history are masked out, and ties are broken by a fixed random order of the
items, never by item id (id order can leak information, see ``splits``).
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
import pandas as pd
import scipy.sparse as sp

from course_utils import metrics
from course_utils.data.splits import History, Split
from course_utils.results import log_result

ScoreFn = Callable[[np.ndarray, History], np.ndarray]
DEFAULT_KS = (10, 20)


def _checked_scores(score_fn: ScoreFn, users: np.ndarray, history: History, n_items: int) -> np.ndarray:
    """The scores of ``users`` as a dense float array, refused when they cannot be ranked honestly.

    NaN has no order, and +inf ties with +inf: with such scores the metrics would
    only measure the random tie order, yet look plausible. -inf is allowed (a
    model may rule items out), but not for every item of a user.
    """
    scores = score_fn(users, history)
    if sp.issparse(scores):  # e.g. history @ similarity without .toarray(); zeros are real scores here
        scores = scores.toarray()
    try:
        scores = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise TypeError(f"score_fn must return a {len(users)} × {n_items} array of numbers, "
                        f"got {type(scores).__name__} ({error})") from error
    if scores.shape != (len(users), n_items):
        raise ValueError(f"score_fn returned shape {scores.shape}, expected ({len(users)}, {n_items})")
    if np.isnan(scores).any():
        raise ValueError("score_fn returned NaN scores; check the model for divergence")
    if np.isposinf(scores).any():
        raise ValueError("score_fn returned +inf scores: they tie with each other, so the ranking would "
                         "only reflect the tie order; return finite scores (or -inf to rule items out)")
    if np.isneginf(scores).all(axis=1).any():
        raise ValueError("score_fn returned -inf for every item of some user: nothing left to rank")
    return scores


def ranks_of_targets(scores: np.ndarray, targets: sp.csr_matrix, exclude: sp.csr_matrix,
                     tie_order: np.ndarray) -> np.ndarray:
    """1-based rank of every target item among the non-excluded items, padded with inf.

    scores: B × n_items; targets, exclude: B × n_items sparse 0/1; tie_order: a
    permutation of the items used to break equal scores. Returns B × max_targets.
    """
    allowed = ~exclude.toarray().astype(bool)
    if (targets.multiply(exclude)).nnz:
        raise ValueError("some target items are also in the excluded history; the split overlaps")
    rows, cols = targets.nonzero()
    target_scores = scores[rows, cols]
    row_scores = scores[rows]
    better = (row_scores > target_scores[:, None]) & allowed[rows]
    tied = (row_scores == target_scores[:, None]) & allowed[rows] & (tie_order[None, :] < tie_order[cols][:, None])
    rank = 1 + better.sum(axis=1) + tied.sum(axis=1)
    per_row = np.bincount(rows, minlength=targets.shape[0])
    slot = np.arange(len(rows)) - np.repeat(np.cumsum(per_row) - per_row, per_row)
    out = np.full((targets.shape[0], max(per_row.max(initial=0), 1)), np.inf)
    out[rows, slot] = rank
    return out


def summarize_ranks(ranks: np.ndarray, n_candidates, ks=DEFAULT_KS) -> dict[str, np.ndarray]:
    """Per-user values of every ranking metric, keyed 'NDCG@10', 'HR@10', ..., 'MRR', 'AUC'."""
    ranks = metrics._check_ranks(ranks)
    out = {}
    for k in ks:
        out[f"NDCG@{k}"] = metrics.ndcg_at_k(ranks, k)
        out[f"HR@{k}"] = metrics.hit_rate_at_k(ranks, k)
        out[f"Recall@{k}"] = metrics.recall_at_k(ranks, k)
        out[f"Precision@{k}"] = metrics.precision_at_k(ranks, k)
        out[f"MAP@{k}"] = metrics.map_at_k(ranks, k)
    out["MRR"] = metrics.mrr(ranks)
    # A user whose every candidate is relevant has no pair to misorder: count that as AUC 1
    # rather than fail the whole evaluation (it happens on tiny catalogues, never on MovieLens).
    n_candidates = np.broadcast_to(np.asarray(n_candidates, dtype=np.float64), (len(ranks),))
    has_negative = n_candidates > np.isfinite(ranks).sum(axis=1)
    out["AUC"] = np.ones(len(ranks))
    if has_negative.any():
        out["AUC"][has_negative] = metrics.auc(ranks[has_negative], n_candidates[has_negative])
    return out


def _mean(per_user: dict[str, np.ndarray]) -> dict[str, float]:
    return {name: float(values.mean()) for name, values in per_user.items()}


def _batches(users: np.ndarray, batch_size: int):
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    for start in range(0, len(users), batch_size):
        yield users[start:start + batch_size]


def evaluate(score_fn: ScoreFn, split: Split, stage: str = "test", ks=DEFAULT_KS, batch_size: int = 256,
             seed: int = 0, per_user: bool = False):
    """Full-ranking evaluation: every item outside the user's history competes with the targets.

    Returns a dict of mean metrics (and the per-user arrays as well when ``per_user``).
    """
    for k in ks:
        metrics._check_k(k)
    targets, history = split.targets(stage), split.history(stage)
    users = np.flatnonzero(targets.getnnz(axis=1))
    if len(users) == 0:
        raise ValueError(f"the {stage} set is empty: nothing to evaluate")
    tie_order = np.random.default_rng(seed).permutation(split.n_items)
    collected = []
    for batch in _batches(users, batch_size):
        scores = _checked_scores(score_fn, batch, history, split.n_items)
        exclude = history.matrix[batch]
        ranks = ranks_of_targets(scores, targets[batch], exclude, tie_order)
        n_candidates = split.n_items - exclude.getnnz(axis=1)
        collected.append(summarize_ranks(ranks, n_candidates, ks))
    values = {name: np.concatenate([c[name] for c in collected]) for name in collected[0]}
    return (_mean(values), values) if per_user else _mean(values)


def sample_negatives(forbidden: sp.csr_matrix, n_negatives: int, rng: np.random.Generator,
                     weights: np.ndarray | None = None) -> np.ndarray:
    """Draw ``n_negatives`` distinct items per row, never a forbidden one, uniformly or ∝ ``weights``.

    Vectorised with the Gumbel-top-k trick: adding Gumbel noise to log-weights and
    keeping the k largest is sampling without replacement.
    """
    n_rows, n_items = forbidden.shape
    allowed_counts = n_items - forbidden.getnnz(axis=1)
    if n_negatives <= 0 or (allowed_counts < n_negatives).any():
        raise ValueError(f"cannot draw {n_negatives} negatives: some rows allow only {allowed_counts.min()} items")
    log_w = np.zeros(n_items) if weights is None else np.log(np.maximum(np.asarray(weights, np.float64), 1e-12))
    keys = log_w[None, :] + rng.gumbel(size=(n_rows, n_items))
    keys[forbidden.toarray().astype(bool)] = -np.inf
    return np.argpartition(-keys, n_negatives - 1, axis=1)[:, :n_negatives]


def evaluate_sampled(score_fn: ScoreFn, split: Split, stage: str = "test", n_negatives: int = 100,
                     sampler: str = "uniform", ks=DEFAULT_KS, seed: int = 0, batch_size: int = 256,
                     per_user: bool = False):
    """Sampled evaluation: each target competes only with ``n_negatives`` sampled items.

    ``sampler`` is 'uniform' or 'popularity' (∝ training counts). Common in papers,
    but Krichene & Rendle (2020) show it can reorder models; lessons 01 and 19 show how.
    Returns the mean metrics (and the per-user arrays as well when ``per_user``, for
    paired comparisons; the same ``seed`` draws the same negatives for every model).
    """
    if sampler not in {"uniform", "popularity"}:
        raise ValueError(f"sampler must be 'uniform' or 'popularity', got {sampler!r}")
    targets, history = split.targets(stage), split.history(stage)
    users = np.flatnonzero(targets.getnnz(axis=1))
    if len(users) == 0:
        raise ValueError(f"the {stage} set is empty: nothing to evaluate")
    rng = np.random.default_rng(seed)
    weights = np.asarray(split.train_matrix().sum(axis=0)).ravel() if sampler == "popularity" else None
    tie_order = rng.permutation(split.n_items)
    collected = []
    for batch in _batches(users, batch_size):
        scores = _checked_scores(score_fn, batch, history, split.n_items)
        forbidden = (history.matrix[batch] + targets[batch]).tocsr()
        negatives = sample_negatives(forbidden, n_negatives, rng, weights)
        # Keep only targets and sampled negatives as candidates by excluding everything else.
        keep = targets[batch].toarray().astype(bool)
        np.put_along_axis(keep, negatives, True, axis=1)
        ranks = ranks_of_targets(scores, targets[batch], sp.csr_matrix(~keep), tie_order)
        collected.append(summarize_ranks(ranks, keep.sum(axis=1), ks))
    values = {name: np.concatenate([c[name] for c in collected]) for name in collected[0]}
    return (_mean(values), values) if per_user else _mean(values)


def top_k(scores: np.ndarray, k: int, exclude: sp.csr_matrix | None = None) -> np.ndarray:
    """Indices of the k best items per row (best first), skipping ``exclude``d items.

    Raises ValueError when a row has fewer than k items left after exclusion:
    padding the list with items the user already has would look like a real list.
    """
    k = metrics._check_k(k)
    scores = np.array(scores, dtype=np.float64, copy=True)
    if scores.ndim != 2:
        raise ValueError(f"scores must be a 2-D array (users × items), got shape {scores.shape}")
    if k > scores.shape[1]:
        raise ValueError(f"k={k} exceeds the catalogue of {scores.shape[1]} items")
    if exclude is not None:
        if exclude.shape != scores.shape:
            raise ValueError(f"exclude has shape {exclude.shape}, scores {scores.shape}")
        available = scores.shape[1] - exclude.getnnz(axis=1)
        if (available < k).any():
            user = int(np.argmax(available < k))
            raise ValueError(f"k={k}, but row {user} has only {available[user]} items outside its history; "
                             f"ask for at most {available.min()} items")
        scores[exclude.toarray().astype(bool)] = -np.inf
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def recommend_top_k(score_fn: ScoreFn, split: Split, stage: str = "test", k: int = 10,
                    batch_size: int = 256) -> np.ndarray:
    """Top-k lists for every user (n_users × k), history masked; feeds the beyond-accuracy metrics."""
    metrics._check_k(k)
    history = split.history(stage)
    users = np.arange(split.n_users)
    lists = [top_k(_checked_scores(score_fn, b, history, split.n_items), k, history.matrix[b])
             for b in _batches(users, batch_size)]
    return np.concatenate(lists)


METRIC_NAMES = ("NDCG", "HR", "Recall", "Precision", "MAP")  # each as NAME@k; MRR and AUC take no k


def parse_metric(metric: str) -> tuple[str, int | None]:
    """Split 'NDCG@10' into ('NDCG', 10), 'MRR' into ('MRR', None); a clear ValueError for anything else."""
    if not isinstance(metric, str):
        raise TypeError(f"metric must be a string such as 'NDCG@10', got {type(metric).__name__}")
    if metric in ("MRR", "AUC"):
        return metric, None
    name, at, k = metric.partition("@")
    if not at or name not in METRIC_NAMES or not k.isdigit() or int(k) <= 0:
        raise ValueError(f"metric must be NAME@k with NAME one of {', '.join(METRIC_NAMES)} and k a positive "
                         f"integer (e.g. 'NDCG@10'), or 'MRR' / 'AUC'; got {metric!r}")
    return name, int(k)


def validation_metric(split: Split, metric: str = "NDCG@10") -> Callable:
    """A ``validate(model) -> float`` for early stopping: ``metric`` on the split's validation stage."""
    _, k = parse_metric(metric)  # fail now, not after the first training epoch
    ks = (k,) if k is not None else DEFAULT_KS
    return lambda model: evaluate(model.score, split, "valid", ks=ks)[metric]


def tune_on_validation(make_model: Callable, grid: list[dict], split: Split, metric: str = "NDCG@10",
                       fit=lambda model, X: model.fit(X)):
    """Fit one model per setting on the training part and keep the best by validation ``metric``.

    Returns (best settings, best fitted model, table of every setting). The test
    set is never touched here: choosing on test would flatter the model.
    """
    if not grid:
        raise ValueError("grid is empty: give at least one setting, e.g. [{'l2': 500}]")
    validate = validation_metric(split, metric)
    X, rows, best = split.train_matrix(), [], None
    for settings in grid:
        start = time.perf_counter()
        model = fit(make_model(**settings), X)
        seconds = time.perf_counter() - start
        score = validate(model)
        rows.append({**settings, f"valid {metric}": score, "fit seconds": seconds})
        if best is None or score > best[0]:
            best = (score, settings, model, seconds)
    table = pd.DataFrame(rows)
    best[2].fit_seconds_ = best[3]
    return best[1], best[2], table


def evaluate_and_log(name: str, model, split: Split, *, lesson: str, dataset: str,
                     train_seconds: float, notes: str = "", ks=DEFAULT_KS, seed: int | None = None) -> dict:
    """Full-ranking test metrics for a fitted model, logged to the course leaderboard.

    ``seed`` is the seed the model was *trained* with: runs with different seeds
    become separate rows that the leaderboard averages. The evaluation's own tie
    order stays fixed, so every run is measured the same way.
    """
    scores = evaluate(model.score, split, "test", ks=ks)
    params = getattr(model, "n_params", None)
    log_result(name, scores, dataset=dataset, protocol=split.protocol, lesson=lesson, train_seconds=train_seconds,
               params=None if params is None else int(params), notes=notes, seed=seed)
    return scores
