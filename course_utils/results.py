"""The course leaderboard: a small log that every lesson appends its model runs to.

Rows live in a JSON-lines file (``$COURSE_RESULTS``, else ``build/results.jsonl``
in the course checkout). ``make course`` renders it to ``build/results.md``,
and the holistic evaluation lesson reads it back.

Three promises keep the log trustworthy:

- **No lost rows.** ``make test`` runs two notebooks at once against one log, so
  every update (read, replace the rerun's row, rewrite) happens under a file lock,
  and the rewrite is atomic: a reader sees the old file or the new one, never half.
- **One bad line costs one row.** A damaged line (a crash of an older version, a
  hand edit) is skipped with a warning and moved to ``<log>.corrupt`` at the next
  write, instead of blocking all later logging.
- **Seeds are runs, not reruns.** A row's key is (lesson, model, dataset, protocol,
  mode, seed): three seeds of one model are three rows, and the tables show their
  mean, their spread and how many seeds there were.
"""
from __future__ import annotations

import json
import math
import numbers
import os
import time
import warnings
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from course_utils.config import cache_dir, is_fast
from course_utils.io import atomic_write, file_lock

KEY = ("lesson", "model", "dataset", "protocol", "mode", "seed")
GROUP = KEY[:-1]  # a model's runs over several seeds share these fields
TABLE_COLUMNS = ("model", "dataset", "protocol", "NDCG@10", "HR@10", "train_seconds", "params", "lesson", "mode")
# Fields every row carries; a metric may not take one of these names (it would overwrite the field).
RESERVED = frozenset((*KEY, "train_seconds", "params", "notes", "logged_at", "n_seeds"))


def course_root() -> Path | None:
    """The checkout this package lives in, if it is one (it has ``notebooks/`` beside the package)."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "notebooks").is_dir() else None


def results_path() -> Path:
    """``$COURSE_RESULTS`` (an absolute path), else ``build/results.jsonl`` in the checkout, else the cache."""
    if os.environ.get("COURSE_RESULTS"):
        path = Path(os.environ["COURSE_RESULTS"]).expanduser()
        if not path.is_absolute():
            # Notebooks run with the notebooks/ folder as working directory, tests with the
            # checkout: a relative path would send their rows to two different logs.
            raise ValueError(f"COURSE_RESULTS must be an absolute path, got {str(path)!r}; "
                             f"e.g. export COURSE_RESULTS=\"$PWD/{path}\"")
        return path
    root = course_root()
    return (root / "build" if root else cache_dir()) / "results.jsonl"


def _parse_lines(path: Path) -> tuple[list[dict], list[str]]:
    """The rows of a log, and the lines that are not a JSON object (kept verbatim, not lost)."""
    if not path.exists():
        return [], []
    if not path.is_file():
        raise IsADirectoryError(f"the results log {path} is a folder; move it away or set COURSE_RESULTS")
    rows, bad = [], []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                row = None
            if isinstance(row, dict) and isinstance(row.get("model"), str):
                rows.append(row)
            else:
                bad.append(line.rstrip("\n"))
    return rows, bad


def _read_rows(path: Path) -> list[dict]:
    rows, bad = _parse_lines(path)
    if bad:
        warnings.warn(f"{path}: skipped {len(bad)} damaged line(s) (first: {bad[0][:60]!r}); the next "
                      f"log_result moves them to {path.name}.corrupt", RuntimeWarning, stacklevel=3)
    return rows


def _check_number(name: str, value, *, integer: bool = False) -> None:
    """A finite, non-negative real number (NumPy scalars included; bools are not numbers here)."""
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        expected = "a non-negative integer" if integer else "a finite number"
        raise TypeError(f"{name} must be {expected}, got {value!r} ({type(value).__name__})")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")


def _check_text(name: str, value) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value


def _check_metrics(metrics) -> dict[str, float]:
    if not isinstance(metrics, Mapping):
        raise TypeError(f"metrics must be a dict of name -> number, got {type(metrics).__name__}")
    if not metrics:
        raise ValueError("metrics is empty: log at least one metric")
    clean = {}
    for name, value in metrics.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"metric names must be non-empty strings, got {name!r}")
        if name in RESERVED:
            raise ValueError(f"a metric may not be called {name!r}: that name is a field of every row "
                             f"({', '.join(sorted(RESERVED))}); rename the metric")
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise ValueError(f"metrics must be finite numbers; got {name}={value!r}")
        clean[name] = float(value)
    return clean


def _rows_setting_aside_damage(path: Path) -> list[dict]:
    """The log's rows; damaged lines are moved to ``<name>.corrupt`` (kept, not lost) with a warning.
    Call it under the log's lock, before rewriting the log."""
    rows, bad = _parse_lines(path)
    if bad:
        with open(path.with_name(path.name + ".corrupt"), "a", encoding="utf-8") as aside:
            aside.writelines(line + "\n" for line in bad)
        warnings.warn(f"{path}: moved {len(bad)} damaged line(s) to {path.name}.corrupt", RuntimeWarning,
                      stacklevel=3)
    return rows


def log_result(model: str, metrics: dict, *, dataset: str, protocol: str, lesson: str,
               train_seconds: float, params: int | None, notes: str = "", seed: int | None = None,
               path: str | os.PathLike | None = None) -> dict:
    """Record one model run and return the row written.

    A rerun of the same lesson/model/dataset/protocol/mode/seed replaces the old row;
    another ``seed`` adds a row, so a model trained with three seeds has three rows.
    ``params=None`` means the parameter count is not known (shown blank).
    """
    _check_text("model", model)
    for name, value in (("dataset", dataset), ("protocol", protocol), ("lesson", lesson)):
        _check_text(name, value)
    values = _check_metrics(metrics)
    _check_number("train_seconds", train_seconds)
    if params is not None:
        _check_number("params", params, integer=True)
    if seed is not None:
        _check_number("seed", seed, integer=True)
    if not isinstance(notes, str):
        raise TypeError(f"notes must be a string, got {type(notes).__name__}")
    row = {"model": model, "dataset": dataset, "protocol": protocol, "lesson": lesson,
           "mode": "FAST" if is_fast() else "full", "seed": None if seed is None else int(seed),
           "train_seconds": round(float(train_seconds), 2), "params": None if params is None else int(params),
           "notes": notes, "logged_at": time.strftime("%Y-%m-%d %H:%M:%S"), **values}
    path = Path(path) if path else results_path()
    key = tuple(row[k] for k in KEY)
    with file_lock(path):  # read, replace and rewrite as one step: concurrent writers must not lose rows
        rows = _rows_setting_aside_damage(path)
        rows = [r for r in rows if tuple(r.get(k) for k in KEY) != key]
        with atomic_write(path, "w") as handle:
            handle.writelines(json.dumps(r) + "\n" for r in [*rows, row])
    return row


def drop_stale_rows(path: str | os.PathLike, lesson: str, since: str) -> int:
    """Remove ``lesson``'s rows logged before ``since`` ("YYYY-MM-DD HH:MM:SS"), e.g. after a successful rerun
    of that lesson: rows it no longer logs (a model dropped from a mode, a renamed protocol) do not linger.
    Returns how many were removed. Other lessons' rows, and this lesson's newer ones, are kept."""
    import re

    if not isinstance(lesson, str) or not lesson:
        raise ValueError(f"lesson must be a non-empty name, got {lesson!r}")
    if not isinstance(since, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", since):
        raise ValueError(f"since must read 'YYYY-MM-DD HH:MM:SS' (the format of logged_at), got {since!r}")
    path = Path(path)
    if not path.is_file():
        return 0
    with file_lock(path):
        rows = _rows_setting_aside_damage(path)
        kept = [r for r in rows if r.get("lesson") != lesson or str(r.get("logged_at", "")) >= since]
        with atomic_write(path, "w") as handle:
            handle.writelines(json.dumps(r) + "\n" for r in kept)
    return len(rows) - len(kept)


def load_results(path: str | os.PathLike | None = None, dataset: str | None = None,
                 protocol: str | None = None) -> pd.DataFrame:
    """All logged runs as a frame (one row per run, seeds kept apart), optionally filtered."""
    frame = pd.DataFrame(_read_rows(Path(path) if path else results_path()))
    if frame.empty:
        return frame
    if "seed" not in frame.columns:  # logs written before seeds were recorded
        frame["seed"] = None
    if dataset is not None:
        frame = frame[frame["dataset"] == dataset]
    if protocol is not None:
        frame = frame[frame["protocol"] == protocol]
    return frame.reset_index(drop=True)


def _metric_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in RESERVED and pd.api.types.is_numeric_dtype(frame[c])]


def aggregate_seeds(frame: pd.DataFrame, metric: str = "NDCG@10") -> pd.DataFrame:
    """One row per (lesson, model, dataset, protocol, mode): the mean over its seeds.

    Adds ``n_seeds`` (how many runs were averaged) and ``<metric> sd``, the sample
    standard deviation across seeds (NaN, shown blank, for a single run). A row
    logged without a seed counts as one run.
    """
    if frame.empty:
        return frame
    group = [c for c in GROUP if c in frame.columns]
    metrics = _metric_columns(frame) + (["train_seconds"] if "train_seconds" in frame.columns else [])
    grouped = frame.groupby(group, sort=False, dropna=False)
    out = grouped[metrics].mean()
    out["n_seeds"] = grouped.size()
    out[f"{metric} sd"] = grouped[metric].std(ddof=1) if metric in frame.columns else float("nan")
    for column in ("params", "notes", "logged_at"):
        if column in frame.columns:
            out[column] = grouped[column].last()
    return out.reset_index()


def seed_summary(frame: pd.DataFrame, metric: str = "NDCG@10") -> pd.DataFrame:
    """Per model: mean, sd (sample, across seeds), min, max and n of ``metric``, best mean first.

    Lessons use it to say whether a gap between two models is larger than the
    seed-to-seed spread of either. Rows are grouped by lesson, model, dataset,
    protocol and mode, so filter the frame first to compare within one setting.
    """
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"frame must be a DataFrame from load_results, got {type(frame).__name__}")
    if frame.empty:
        raise ValueError("the frame is empty: no runs to summarise")
    if metric not in frame.columns:
        raise ValueError(f"unknown metric {metric!r}; logged metrics include {sorted(_metric_columns(frame))}")
    group = [c for c in GROUP if c in frame.columns]
    stats = frame.groupby(group, sort=False, dropna=False)[metric].agg(["mean", "std", "min", "max", "count"])
    stats = stats.rename(columns={"std": "sd", "count": "n"})
    return stats.sort_values("mean", ascending=False).reset_index()


def leaderboard(frame: pd.DataFrame, metric: str = "NDCG@10") -> pd.DataFrame:
    """One row per model setting (seeds averaged), best first by ``metric``, with the table's columns first."""
    if frame.empty:
        return frame
    if metric not in frame.columns:
        raise ValueError(f"unknown metric {metric!r}; logged metrics include {sorted(frame.columns)}")
    board = aggregate_seeds(frame, metric)
    first = [c for c in (*TABLE_COLUMNS[:5], f"{metric} sd", "n_seeds", *TABLE_COLUMNS[5:]) if c in board.columns]
    rest = [c for c in board.columns if c not in first and c not in {"notes", "logged_at"}]
    return board.sort_values(metric, ascending=False)[first + rest].reset_index(drop=True)


def _cell(column: str, value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if column in {"params", "n_seeds"}:
        return f"{int(value):,}"
    if column == "train_seconds":
        return f"{float(value):.2f}"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def results_markdown(frame: pd.DataFrame, metric: str = "NDCG@10") -> str:
    """Markdown tables, one row per model setting (mean over seeds).

    Ranking runs (those that logged ``metric``) share one table, grouped by dataset
    and protocol. Runs measured otherwise (an AUC, a captioning score, a generation
    quality) get a table per dataset and protocol with the measures that group logged.
    Notes (e.g. "evaluated on 100 users") are shown, so a subsampled row says so.
    """
    if frame.empty:
        return "_No results logged yet._\n"
    board, reruns = owner_rows(aggregate_seeds(frame, metric), metric)
    ranked = board[board[metric].notna()] if metric in board.columns else board.iloc[:0]
    other = board.drop(ranked.index)
    parts = []
    if not ranked.empty:
        metric_first = [*TABLE_COLUMNS[3:5], *([metric] if metric not in TABLE_COLUMNS else [])]
        columns = [*TABLE_COLUMNS[:3], *metric_first, f"{metric} sd", "n_seeds", *TABLE_COLUMNS[5:], "also logged by",
                   "notes"]
        ordered = ranked.assign(_neg=-ranked[metric]).sort_values(["dataset", "protocol", "_neg"])
        parts.append(_table(ordered, columns))
    for (dataset, protocol), group in other.groupby(["dataset", "protocol"], sort=True):
        measures = [c for c in _metric_columns(group) if c not in {"train_seconds", "n_seeds"}
                    and not c.endswith(" sd") and group[c].notna().any()]
        columns = ["model", *measures, "n_seeds", *TABLE_COLUMNS[5:], "also logged by", "notes"]
        parts.append(f"**{dataset}, {protocol}**\n\n" + _table(group.sort_values("model"), columns))
    if not reruns.empty:
        columns = ["model", "dataset", "protocol", *([metric] if metric in reruns.columns else []), "n_seeds",
                   "lesson", "mode", "notes"]
        parts.append(f"<details><summary>Reruns by later lessons ({len(reruns)} rows): the same model, dataset, "
                     "protocol and mode logged again, e.g. as a baseline</summary>\n\n"
                     + _table(reruns.sort_values(["dataset", "protocol", "model", "lesson"]), columns)
                     + "\n</details>\n")
    return "\n".join(parts)


OWNER_KEY = ("model", "dataset", "protocol", "mode")


def owner_rows(board: pd.DataFrame, metric: str = "NDCG@10", tolerance: float = 1e-4):
    """Split seed-averaged rows into one row per model, dataset, protocol and mode, and the reruns.

    Several lessons log the same baseline (EASE, Popularity) on the same protocol.
    The row kept is the one from the lesson that owns the model: the first lesson,
    in course order, that logs it. Its ``also logged by`` cell lists the other
    lessons and says whether their ``metric`` (or, for a table without it, every
    measure they share) reproduced the owner's within ``tolerance``, so a rerun
    that drifted is visible instead of hidden. Returns (owners, reruns).
    """
    if board.empty:
        return board.assign(**{"also logged by": ""}), board
    missing = [c for c in (*OWNER_KEY, "lesson") if c not in board.columns]
    if missing:
        raise ValueError(f"rows need the columns {missing} to find each model's owner")
    ordered = board.assign(_lesson=board["lesson"].astype(str)).sort_values("_lesson", kind="stable")
    key = list(OWNER_KEY)
    is_rerun = ordered.duplicated(key, keep="first")
    owners, reruns = ordered[~is_rerun].copy(), ordered[is_rerun]
    measures = [c for c in _metric_columns(board) if c not in {"train_seconds", "n_seeds"} and not c.endswith(" sd")]
    also = {}
    for values, group in reruns.groupby(key, sort=False, dropna=False):
        owner = owners.loc[(owners[key] == pd.Series(values, index=key)).all(axis=1)].iloc[0]
        compared = [metric] if pd.notna(owner.get(metric)) else [m for m in measures if pd.notna(owner.get(m))]
        cells = []
        for _, rerun in group.iterrows():
            gaps = [abs(rerun[m] - owner[m]) for m in compared if pd.notna(rerun.get(m))]
            same = bool(gaps) and max(gaps) <= tolerance
            cells.append(f"{_short_lesson(rerun['lesson'])} ({'same' if same else 'differs'})")
        also[owner.name] = ", ".join(cells)
    owners["also logged by"] = [also.get(i, "") for i in owners.index]
    return owners.drop(columns="_lesson"), reruns.drop(columns="_lesson")


def _short_lesson(lesson) -> str:
    """'03_autoregressive' -> '03'; anything else as it is."""
    text = str(lesson)
    head = text.split("_", 1)[0]
    return head if head.isdigit() else text


def _table(rows: pd.DataFrame, columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for _, row in rows.iterrows():
        lines.append("| " + " | ".join(_cell(col, row.get(col)).replace("|", "/") for col in columns) + " |")
    return "\n".join(lines) + "\n"
