"""Training a lesson's headline models with several seeds, so that gaps can be read against training noise.

A confidence interval over test users (``claims.compare_models``) says how much
a result would move with other *users*; it says nothing about another random
initialisation or another order of mini-batches. In full mode every lesson
trains its headline models with three seeds, logs one leaderboard row per seed
(the leaderboard shows mean and sd), and says when a gap between two models is
smaller than the seed-to-seed spread. FAST mode keeps one seed.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from course_utils.config import is_fast
from course_utils.data.splits import Split
from course_utils.evaluation import DEFAULT_KS, evaluate
from course_utils.results import log_result

N_SEEDS_FULL = 3


def seeds_for_mode(seed: int, n_full: int = N_SEEDS_FULL) -> list[int]:
    """``[seed]`` in FAST mode, ``[seed, seed + 1, ...]`` (``n_full`` of them) in full mode."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if n_full < 1:
        raise ValueError(f"n_full must be at least 1, got {n_full}")
    return [int(seed)] if is_fast() else [int(seed) + i for i in range(n_full)]


@dataclass
class SeedRuns:
    """One model trained under several seeds and evaluated on the test stage.

    ``table`` has one row per seed (test metrics and training seconds);
    ``per_user[metric]`` is each test user's metric averaged over the seeds, in
    the evaluator's user order, ready for ``claims.compare_models``.
    """

    name: str
    seeds: list[int]
    models: list = field(repr=False)
    table: pd.DataFrame
    per_user: dict[str, np.ndarray] = field(repr=False)

    @property
    def model(self):
        """The model trained with the first seed (the one later cells inspect)."""
        return self.models[0]

    def values(self, metric: str = "NDCG@10") -> np.ndarray:
        """The metric under each seed."""
        return self.table[metric].to_numpy()

    def mean(self, metric: str = "NDCG@10") -> float:
        return float(self.table[metric].mean())

    def sd(self, metric: str = "NDCG@10") -> float:
        """Sample standard deviation across seeds (NaN with one seed)."""
        return float(self.table[metric].std(ddof=1)) if len(self.seeds) > 1 else float("nan")

    def summary(self, metrics=("NDCG@10", "HR@10")) -> dict:
        out = {"seeds": len(self.seeds)}
        for metric in metrics:
            out[metric] = self.mean(metric)
            out[f"{metric} sd"] = self.sd(metric)
        out["train seconds"] = float(self.table["train_seconds"].mean())
        return out


def train_seeds(name: str, fit: Callable[[int], object], split: Split, seeds: list[int], *, lesson: str,
                dataset: str, notes: str = "", log: bool = True, ks=DEFAULT_KS) -> SeedRuns:
    """Fit ``fit(seed)`` for every seed, evaluate each on test, log one leaderboard row per seed.

    ``fit(seed)`` returns a fitted model with ``score(users, history)``; its training
    time is read from ``fit_seconds_``, else ``fit_result_.train_seconds``, else
    timed here.
    """
    if not seeds:
        raise ValueError("seeds is empty: give at least one seed, e.g. seeds_for_mode(SEED)")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {seeds}")
    models, rows, per_user = [], [], []
    for seed in seeds:
        start = time.perf_counter()
        model = fit(seed)
        elapsed = time.perf_counter() - start
        seconds = getattr(model, "fit_seconds_", None)
        if seconds is None and getattr(model, "fit_result_", None) is not None:
            seconds = model.fit_result_.train_seconds
        seconds = elapsed if seconds is None else float(seconds)
        means, values = evaluate(model.score, split, "test", ks=ks, per_user=True)
        if log:
            log_result(name, means, dataset=dataset, protocol=split.protocol, lesson=lesson, train_seconds=seconds,
                       params=int(getattr(model, "n_params", 0)) or None, notes=notes,
                       seed=seed if len(seeds) > 1 else None)
        models.append(model)
        rows.append({"seed": seed, **means, "train_seconds": seconds})
        per_user.append(values)
    averaged = {metric: np.mean([values[metric] for values in per_user], axis=0) for metric in per_user[0]}
    return SeedRuns(name, list(seeds), models, pd.DataFrame(rows).set_index("seed"), averaged)
