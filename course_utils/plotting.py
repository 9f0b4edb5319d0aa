"""One look for every figure in the course, plus the few plots that several lessons share."""
from __future__ import annotations

import functools

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
import numpy as np
import pandas as pd
import seaborn as sns

from course_utils.training import FitResult


def set_theme() -> None:
    """The course's seaborn theme: readable on slides and in notebooks; no grid over images."""
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    plt.rcParams.update({"figure.figsize": (7, 4), "figure.dpi": 100, "axes.titleweight": "bold"})
    _no_grid_over_images()


def _no_grid_over_images() -> None:
    """Turn the grid off on any axes that shows an image (imshow, matshow).

    The whitegrid style draws grid lines at the ticks, and on an image the ticks sit at the
    cell centres: the lines would cut every cell of a heatmap in half. Idempotent.
    """
    if getattr(Axes.imshow, "_course_no_grid", False):
        return
    original = Axes.imshow

    @functools.wraps(original)
    def imshow(self, *args, **kwargs):
        image = original(self, *args, **kwargs)
        self.grid(False)
        return image

    imshow._course_no_grid = True
    Axes.imshow = imshow


LOSS_SCALES = ("auto", "shared", "relative")


def plot_learning_curves(runs: dict[str, FitResult], ax=None, loss_scale: str = "auto"):
    """Training loss (left) and validation metric (right) per epoch for several runs.

    Different models often minimise losses on different scales (a squared error and a
    multinomial log-likelihood, CE and BCE): drawn on one axis, the smaller ones look flat.
    ``loss_scale="relative"`` divides each run's loss by its first-epoch value (the axis
    says so); ``"shared"`` draws raw losses; ``"auto"`` (default) picks "relative" when the
    runs' first-epoch losses differ by more than a factor of 3, else "shared".
    """
    if not runs:
        raise ValueError("runs is empty: pass {name: FitResult}")
    if loss_scale not in LOSS_SCALES:
        raise ValueError(f"loss_scale must be one of {LOSS_SCALES}, got {loss_scale!r}")
    firsts = [float(run.history["loss"].iloc[0]) for run in runs.values()]
    if loss_scale == "auto":
        positive = min(firsts) > 0
        loss_scale = "relative" if positive and max(firsts) / min(firsts) > 3 else "shared"
    if loss_scale == "relative" and min(firsts) <= 0:
        raise ValueError(f"relative losses need a positive first-epoch loss for every run, got {firsts}")
    if ax is None:
        _, ax = plt.subplots(1, 2, figsize=(11, 3.8))
    for (name, run), first in zip(runs.items(), firsts):
        loss = run.history["loss"] / (first if loss_scale == "relative" else 1.0)
        ax[0].plot(run.history["epoch"], loss, label=name)
        if "valid" in run.history:
            valid = run.history.dropna(subset=["valid"])
            ax[1].plot(valid["epoch"], valid["valid"], marker="o", label=name)
            ax[1].axvline(run.best_epoch, ls=":", color=ax[1].lines[-1].get_color())
    if loss_scale == "relative":
        ax[0].set(title="training loss (each run relative to its epoch 1)", ylabel="loss ÷ its epoch-1 value")
    else:
        ax[0].set(title="training loss", ylabel="loss")
    ax[0].set(xlabel="epoch")
    ax[1].set(title="validation metric (dotted: best epoch)", xlabel="epoch")
    if len(runs) > 1:
        ax[0].legend(fontsize=8)
    if ax[1].lines:
        ax[1].legend(fontsize=8)
    return ax


def annotate_points(ax, xs, ys, labels, fontsize: int = 7, color=None) -> list:
    """Label points without letting the labels overlap each other (or labels already on ``ax``).

    Each label tries a few offsets around its point and keeps the first whose box is free;
    call it after everything is plotted, since the boxes depend on the axis limits.
    """
    if not len(xs) == len(ys) == len(labels):
        raise ValueError(f"xs, ys and labels must have one entry per point, got {len(xs)}, {len(ys)}, {len(labels)}")
    renderer = ax.figure.canvas.get_renderer()
    taken = [text.get_window_extent(renderer) for text in ax.texts]
    offsets = [(4, 4), (4, -10), (-4, 4), (-4, -10), (8, 12), (8, -18), (-8, 12), (-8, -18), (12, 0), (-12, 0)]
    placed = []
    for x, y, label in zip(xs, ys, labels):
        best, best_overlap = None, None
        for dx, dy in offsets:
            text = ax.annotate(str(label), (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize,
                               color=color, ha="left" if dx >= 0 else "right")
            box = text.get_window_extent(renderer)
            overlap = sum(max(0.0, min(box.x1, o.x1) - max(box.x0, o.x0)) * max(0.0, min(box.y1, o.y1) - max(box.y0, o.y0))
                          for o in taken)
            if best is None or overlap < best_overlap:
                if best is not None:
                    best.remove()
                best, best_overlap = text, overlap
            else:
                text.remove()
            if overlap == 0:
                break
        taken.append(best.get_window_extent(renderer))
        placed.append(best)
    return placed


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
