"""One look for every figure in the course, plus the few plots that several lessons share."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from course_utils.training import FitResult


def set_theme() -> None:
    """The course's seaborn theme: readable on slides and in notebooks."""
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    plt.rcParams.update({"figure.figsize": (7, 4), "figure.dpi": 100, "axes.titleweight": "bold"})


def plot_learning_curves(runs: dict[str, FitResult], ax=None):
    """Training loss (left) and validation metric (right) per epoch for several runs."""
    if not runs:
        raise ValueError("runs is empty: pass {name: FitResult}")
    if ax is None:
        _, ax = plt.subplots(1, 2, figsize=(11, 3.8))
    for name, run in runs.items():
        ax[0].plot(run.history["epoch"], run.history["loss"], label=name)
        if "valid" in run.history:
            valid = run.history.dropna(subset=["valid"])
            ax[1].plot(valid["epoch"], valid["valid"], marker="o", label=name)
            ax[1].axvline(run.best_epoch, ls=":", color=ax[1].lines[-1].get_color())
    ax[0].set(title="training loss", xlabel="epoch")
    ax[1].set(title="validation metric (dotted: best epoch)", xlabel="epoch")
    ax[1].legend()
    return ax


def plot_leaderboard(frame: pd.DataFrame, metric: str = "NDCG@10", ax=None, highlight: str | None = None):
    """Horizontal bars of ``metric`` per model, best at the top."""
    if frame.empty or metric not in frame:
        raise ValueError(f"nothing to plot: the frame is empty or lacks {metric!r}")
    ordered = frame.sort_values(metric)
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.35 * len(ordered) + 1.2))
    colors = ["C3" if m == highlight else "C0" for m in ordered["model"]]
    ax.barh(ordered["model"], ordered[metric], color=colors)
    for y, value in enumerate(ordered[metric]):
        ax.text(value, y, f" {value:.4f}", va="center", fontsize=9)
    ax.set(xlabel=metric, title=f"leaderboard: {metric}")
    return ax


def plot_long_tail(counts: np.ndarray, ax=None, label: str = "items"):
    """Interaction counts sorted from most to least popular, on a log scale."""
    counts = np.sort(np.asarray(counts))[::-1]
    if ax is None:
        _, ax = plt.subplots()
    ax.plot(np.arange(1, len(counts) + 1), counts)
    ax.set(yscale="log", xlabel=f"{label} ranked by popularity", ylabel="interactions (log)",
           title=f"long tail: top 10% of {label} hold {counts[: max(1, len(counts) // 10)].sum() / counts.sum():.0%}")
    return ax


def show_images(images: np.ndarray, titles=None, n_cols: int = 8, size: float = 1.4):
    """A grid of grey-scale images (N × H × W) with optional titles."""
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"images must be N × H × W, got shape {images.shape}")
    n_rows = int(np.ceil(len(images) / n_cols))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(size * n_cols, size * n_rows * 1.15), squeeze=False)
    for index, ax in enumerate(axes.flat):
        ax.axis("off")
        if index < len(images):
            ax.imshow(images[index], cmap="gray_r")
            if titles is not None:
                ax.set_title(str(titles[index]), fontsize=7)
    fig.tight_layout()
    return fig
