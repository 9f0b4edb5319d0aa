"""The course leaderboard: a small log that every lesson appends its model runs to.

Rows live in a JSON-lines file (``$COURSE_RESULTS``, else ``build/results.jsonl``
in the course checkout). ``make course`` renders it to ``build/results.md``,
and the holistic evaluation lesson reads it back.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import pandas as pd

from course_utils.config import cache_dir, is_fast
from course_utils.io import atomic_write

KEY = ("lesson", "model", "dataset", "protocol", "mode")
TABLE_COLUMNS = ("model", "dataset", "protocol", "NDCG@10", "HR@10", "train_seconds", "params", "lesson", "mode")


def course_root() -> Path | None:
    """The checkout this package lives in, if it is one (it has ``notebooks/`` beside the package)."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "notebooks").is_dir() else None


def results_path() -> Path:
    if os.environ.get("COURSE_RESULTS"):
        return Path(os.environ["COURSE_RESULTS"])
    root = course_root()
    return (root / "build" if root else cache_dir()) / "results.jsonl"


def _read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number} is not valid JSON ({err}); delete the file to start afresh") from err
    return rows


def log_result(model: str, metrics: dict, *, dataset: str, protocol: str, lesson: str,
               train_seconds: float, params: int, notes: str = "", path: str | os.PathLike | None = None) -> dict:
    """Record one model run. A rerun of the same lesson/model/dataset/protocol/mode replaces the old row."""
    if not model or not isinstance(model, str):
        raise ValueError(f"model must be a non-empty name, got {model!r}")
    if not metrics:
        raise ValueError("metrics is empty: log at least one metric")
    bad = {k: v for k, v in metrics.items() if not isinstance(v, (int, float)) or not math.isfinite(v)}
    if bad:
        raise ValueError(f"metrics must be finite numbers; got {bad}")
    if train_seconds < 0 or params < 0:
        raise ValueError(f"train_seconds and params must be >= 0, got {train_seconds} and {params}")
    row = {"model": model, "dataset": dataset, "protocol": protocol, "lesson": lesson,
           "mode": "FAST" if is_fast() else "full", "train_seconds": round(float(train_seconds), 2),
           "params": int(params), "notes": notes, "logged_at": time.strftime("%Y-%m-%d %H:%M:%S"),
           **{k: float(v) for k, v in metrics.items()}}
    path = Path(path) if path else results_path()
    rows = [r for r in _read_rows(path) if tuple(r.get(k) for k in KEY) != tuple(row[k] for k in KEY)]
    with atomic_write(path, "w") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in [*rows, row])
    return row


def load_results(path: str | os.PathLike | None = None, dataset: str | None = None,
                 protocol: str | None = None) -> pd.DataFrame:
    """All logged runs as a frame, optionally filtered to one dataset and protocol."""
    frame = pd.DataFrame(_read_rows(Path(path) if path else results_path()))
    if frame.empty:
        return frame
    if dataset is not None:
        frame = frame[frame["dataset"] == dataset]
    if protocol is not None:
        frame = frame[frame["protocol"] == protocol]
    return frame.reset_index(drop=True)


def leaderboard(frame: pd.DataFrame, metric: str = "NDCG@10") -> pd.DataFrame:
    """Rows sorted best first by ``metric``, with the table's columns first."""
    if frame.empty:
        return frame
    if metric not in frame.columns:
        raise ValueError(f"unknown metric {metric!r}; logged metrics include {sorted(frame.columns)}")
    first = [c for c in TABLE_COLUMNS if c in frame.columns]
    rest = [c for c in frame.columns if c not in first and c not in {"notes", "logged_at"}]
    return frame.sort_values(metric, ascending=False)[first + rest].reset_index(drop=True)


def results_markdown(frame: pd.DataFrame, metric: str = "NDCG@10") -> str:
    """A Markdown table with one row per model run, grouped by dataset and protocol."""
    if frame.empty:
        return "_No results logged yet._\n"
    lines = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
    ordered = frame.assign(_neg=-frame[metric].fillna(-1)).sort_values(["dataset", "protocol", "_neg"])
    for _, row in ordered.iterrows():
        cells = []
        for col in TABLE_COLUMNS:
            value = row.get(col)
            if isinstance(value, float) and col not in {"train_seconds"}:
                cells.append("" if math.isnan(value) else f"{value:.4f}")
            elif col == "params":
                cells.append(f"{int(value):,}")
            else:
                cells.append(str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
