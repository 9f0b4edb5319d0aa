"""Execute every lesson headless with papermill and write the build reports.

``make course`` runs ``python -m course_utils.course_runner [--fast]``, which produces

- ``build/notebooks/*.ipynb``: the executed lessons, outputs included;
- ``build/timings.md``: wall seconds per lesson and mode (FAST and full rows kept side by side);
- ``build/results.md``: the leaderboards that the lessons logged, one section per mode.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import sys
import time
import warnings
from pathlib import Path

from course_utils.io import atomic_write
from course_utils.report import report_markdown
from course_utils.results import drop_stale_rows, load_results, results_markdown

ROOT = Path(__file__).resolve().parents[1]


def run_notebook(notebook: Path, out_dir: Path, fast: bool) -> tuple[float, str]:
    """Execute one notebook; return (wall seconds, 'ok' or the error's first line)."""
    import papermill

    start = time.perf_counter()
    try:
        papermill.execute_notebook(str(notebook), str(out_dir / notebook.name), parameters={"FAST": fast},
                                   cwd=str(notebook.parent), progress_bar=False, kernel_name="python3")
        status = "ok"
    except Exception as err:  # keep going: one broken lesson should not hide the others' timings
        status = f"FAILED: {str(err).strip().splitlines()[0][:120] if str(err).strip() else type(err).__name__}"
    return time.perf_counter() - start, status


_LOAD_BENCHMARK = """
import json, time
import sentence_transformers, transformers  # imports are not part of loading: time them apart
from course_utils.config import quiet_progress
from course_utils.hub import load_llm, load_text_encoder
quiet_progress()
start = time.perf_counter(); load_llm(verbose=False); llm = time.perf_counter() - start
start = time.perf_counter(); load_text_encoder(verbose=False); encoder = time.perf_counter() - start
print(json.dumps({"llm": llm, "encoder": encoder}))
"""


def benchmark_model_loading() -> list[dict]:
    """Seconds to load each pretrained model in a fresh process, library imports excluded (budget: LLM ≤ 5 s)."""
    import subprocess

    done = subprocess.run([sys.executable, "-c", _LOAD_BENCHMARK], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        return [{"lesson": "model loading", "mode": "-", "seconds": float("nan"),
                 "status": f"FAILED: {done.stderr.strip().splitlines()[-1][:120] if done.stderr.strip() else ''}",
                 "recorded": time.strftime("%Y-%m-%d %H:%M")}]
    seconds = json.loads(done.stdout.strip().splitlines()[-1])
    return [{"lesson": f"load {name} (from offline cache)" if name == "llm" else f"load {name}", "mode": "-",
             "seconds": round(value, 2), "status": "ok", "recorded": time.strftime("%Y-%m-%d %H:%M")}
            for name, value in seconds.items()]


def timings_markdown(rows: dict[str, dict]) -> str:
    """The timings table: one row per lesson and mode, from the merged record of all builds."""
    import torch

    header = (f"# Lesson timings\n\nMachine: {os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}, "
              f"Python {platform.python_version()}, torch {torch.__version__}, "
              f"CUDA {'yes' if torch.cuda.is_available() else 'no'}.\n\n"
              "Budgets: FAST ≤ 90 s and full ≤ 600 s per lesson on a 2-core CPU. "
              "Wall seconds of one headless run each (benchmarks, not tests).\n\n"
              "| lesson | mode | wall seconds | status | recorded |\n|---|---|---|---|---|\n")
    lines = [f"| {r['lesson']} | {r['mode']} | {r['seconds']:.1f} | {r['status']} | {r['recorded']} |\n"
             for _, r in sorted(rows.items())]
    return header + "".join(lines)


_TIMING_FIELDS = ("lesson", "mode", "seconds", "status", "recorded")
_SECTION = re.compile(r"<!-- begin section: ([^<>\n]+) -->\n.*?<!-- end section: \1 -->\n?", re.S)


def benchmark_sections(path: Path) -> str:
    """Sections that lessons wrote into ``timings.md`` between markers (e.g. lesson 09's LLM-ranker
    benchmark); the table is regenerated on every build, and these are carried over unchanged."""
    if not path.is_file():
        return ""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""
    blocks = [m.group(0).rstrip("\n") + "\n" for m in _SECTION.finditer(text)]
    return "\n" + "\n".join(blocks) if blocks else ""


def _read_timings(path: Path) -> dict[str, dict]:
    """Earlier builds' timing rows; a damaged record is set aside, never allowed to stop the reports.

    The record is read only after every lesson has run, so an exception here would
    throw away a whole build's work. Like the results log, an unreadable file (or
    row) is copied to ``timings.json.corrupt`` with a warning, and the build goes on.
    """
    if not path.exists():
        return {}
    problem, rows = None, {}
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(loaded, dict):
            raise ValueError(f"expected an object of rows, got {type(loaded).__name__}")
    except (OSError, UnicodeDecodeError, ValueError) as error:
        problem, loaded = f"unreadable ({type(error).__name__}: {error})", {}
    for key, row in loaded.items():
        if isinstance(row, dict) and set(_TIMING_FIELDS) <= set(row) and isinstance(row["seconds"], (int, float)):
            rows[key] = row
        else:
            problem = problem or f"row {key!r} is damaged"
    if problem:
        aside = path.with_name(path.name + ".corrupt")
        if path.is_file():
            shutil.copyfile(path, aside)
        warnings.warn(f"{path}: {problem}; kept a copy as {aside.name} and continued with "
                      f"{len(rows)} earlier row(s)", RuntimeWarning, stacklevel=2)
    return rows


def _merge_timings(path: Path, new_rows: list[dict]) -> dict[str, dict]:
    """Earlier builds' rows (other lessons or the other mode) stay; this build's rows replace theirs."""
    rows = _read_timings(path)
    rows.update({f"{r['lesson']}|{r['mode']}": r for r in new_rows})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="FAST mode (COURSE_FAST=1): quick, smaller runs")
    parser.add_argument("--only", nargs="*", default=None, help="lesson name prefixes to run, e.g. 00 01")
    parser.add_argument("--notebooks", type=Path, default=ROOT / "notebooks", help="folder of lessons")
    parser.add_argument("--build", type=Path, default=ROOT / "build", help="folder for the reports")
    args = parser.parse_args(argv)

    build = args.build.resolve()  # notebooks run in their own folder: a relative path would point elsewhere
    out_dir = build / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    mode = "FAST" if args.fast else "full"
    # One results log per mode, so a FAST build never mixes its quick numbers into the full leaderboard.
    results_log = build / f"results-{mode.lower()}.jsonl"
    os.environ["COURSE_FAST"] = "1" if args.fast else "0"
    os.environ["COURSE_RESULTS"] = str(results_log)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("COURSE_PROGRESS", "0")  # executed notebooks are read as static pages: no bar text
    if args.only is None:
        results_log.unlink(missing_ok=True)  # a build of every lesson starts a fresh leaderboard

    notebooks = sorted(args.notebooks.glob("[0-9][0-9]_*.ipynb"))
    if args.only:
        notebooks = [nb for nb in notebooks if any(nb.name.startswith(p) for p in args.only)]
    if not notebooks:
        print("no lessons matched", file=sys.stderr)
        return 2
    rows = []
    for notebook in notebooks:
        print(f"running {notebook.name} ({mode}) ...", flush=True)
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        seconds, status = run_notebook(notebook, out_dir, args.fast)
        print(f"  {seconds:.1f} s, {status}", flush=True)
        if status == "ok":   # a successful rerun replaces all of its lesson's rows; a failed one keeps the old
            drop_stale_rows(results_log, notebook.stem, started)
        rows.append({"lesson": notebook.stem, "mode": mode, "seconds": round(seconds, 1), "status": status,
                     "recorded": time.strftime("%Y-%m-%d %H:%M")})

    if args.only is None:
        rows += benchmark_model_loading()
    merged = _merge_timings(build / "timings.json", rows)
    with atomic_write(build / "timings.json", "w") as handle:
        json.dump(merged, handle, indent=1)
    with atomic_write(build / "timings.md", "w") as handle:
        handle.write(timings_markdown(merged) + benchmark_sections(build / "timings.md"))
    with atomic_write(build / "results.md", "w") as handle:
        handle.write("# Leaderboard\n\nOne row per model, dataset, protocol and mode (seeds averaged), from the lesson "
                     "that owns the model: the first lesson that logs it. Later lessons that log it again, e.g. as a "
                     "baseline, are listed in its `also logged by` cell (same or differs) and in the reruns section. "
                     "Full mode is where results are meant to be good; FAST mode only shows each lesson's point "
                     "quickly.\n")
        for name in ("full", "FAST"):
            log = build / f"results-{name.lower()}.jsonl"
            if log.exists():
                handle.write(f"\n## {name} mode\n\n" + results_markdown(load_results(log)))
    with atomic_write(build / "report.md", "w") as handle:  # lesson 25's holistic table, one section per mode
        handle.write("# Holistic report\n\nLesson 25's table read from the leaderboard alone: every model measured on "
                     "MovieLens-100K on two or more dimensions (accuracy, beyond-accuracy, efficiency, fairness, "
                     "privacy, robustness), with intervals and HELM mean win rates. FAST and full mode are never "
                     "mixed.\n")
        for name in ("full", "FAST"):
            log = build / f"results-{name.lower()}.jsonl"
            if log.exists():
                handle.write(f"\n## {name} mode\n\n" + report_markdown(log))
    print(f"wrote {build / 'timings.md'}, {build / 'results.md'} and {build / 'report.md'}")
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
