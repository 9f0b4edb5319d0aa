"""One small training loop for every model in the course.

A model supplies ``train_epoch(epoch) -> mean loss`` and, optionally,
``validate() -> metric`` (higher is better). The loop shows a progress bar,
keeps the best weights, stops early when validation stalls and records wall time.
"""
from __future__ import annotations

import copy
import math
import numbers
import os
import time
from dataclasses import dataclass
from typing import Callable

import pandas as pd
from tqdm.auto import tqdm


def progress_bars_enabled() -> bool:
    """False when ``COURSE_PROGRESS=0``: headless runs (tests, the course runner) set it.

    A notebook executed without a live frontend keeps only the progress widget's text
    fallback ("0%| | 0/300"), which then shows in every static render of the lesson.
    """
    return os.environ.get("COURSE_PROGRESS", "1").strip().lower() not in ("0", "false", "no", "off")


@dataclass
class FitResult:
    """What a training run leaves behind: per-epoch history, best epoch and score, seconds."""

    history: pd.DataFrame
    best_epoch: int
    best_score: float | None
    train_seconds: float


def fit_loop(train_epoch: Callable[[int], float], n_epochs: int, validate: Callable[[], float] | None = None,
             patience: int = 3, eval_every: int = 1, module=None, desc: str = "training",
             progress: bool = True) -> FitResult:
    """Run up to ``n_epochs`` epochs with early stopping on ``validate``.

    ``module`` (a torch module) is snapshotted at its best validation score and
    restored at the end, so the returned model is the one that was selected.
    """
    if n_epochs <= 0:
        raise ValueError(f"n_epochs must be positive, got {n_epochs}")
    if patience <= 0 or eval_every <= 0:
        raise ValueError(f"patience and eval_every must be positive, got {patience} and {eval_every}")
    rows, best_score, best_epoch, best_state, stale = [], None, n_epochs, None, 0
    start = time.perf_counter()
    bar = tqdm(range(1, n_epochs + 1), desc=desc, disable=not (progress and progress_bars_enabled()), leave=False)
    for epoch in bar:
        row = {"epoch": epoch, "loss": float(train_epoch(epoch))}
        if row["loss"] != row["loss"]:  # NaN: training diverged, stop rather than waste the budget
            raise FloatingPointError(f"{desc}: loss became NaN at epoch {epoch}; try a smaller learning rate")
        if validate is not None and (epoch % eval_every == 0 or epoch == n_epochs):
            row["valid"] = float(validate())
            if best_score is None or row["valid"] > best_score:
                best_score, best_epoch, stale = row["valid"], epoch, 0
                if module is not None:
                    best_state = copy.deepcopy(module.state_dict())
            else:
                stale += 1
        rows.append(row)
        bar.set_postfix({k: f"{v:.4f}" for k, v in row.items() if k != "epoch"})
        if stale >= patience:
            break
    if best_state is not None:
        module.load_state_dict(best_state)
    if validate is None:
        best_epoch = rows[-1]["epoch"]
    return FitResult(pd.DataFrame(rows), best_epoch, best_score, time.perf_counter() - start)


def check_finite(**values) -> None:
    """Refuse hyper-parameters that are not finite real numbers, naming the culprit.

    Comparisons such as ``l2 <= 0`` are False for NaN, so a NaN slips through every
    range check and only shows up as NaN scores much later; ``lr=inf`` likewise
    passes ``lr > 0``. Models call this before their range checks.
    """
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
        if not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")


def count_parameters(module) -> int:
    """Number of trainable parameters of a torch module."""
    return int(sum(p.numel() for p in module.parameters() if p.requires_grad))
