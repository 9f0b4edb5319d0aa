"""Execute every lesson headless with papermill and write the build reports.

``make course`` runs ``python -m course_utils.course_runner [--fast]``, which produces

- ``build/notebooks/*.ipynb``: the executed lessons, outputs included;
- ``build/timings.md``: wall seconds per lesson and mode;
- ``build/results.md``: the leaderboard that the lessons logged.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

from course_utils.io import atomic_write
from course_utils.results import load_results, results_markdown

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


def timings_markdown(rows: list[tuple[str, str, float, str]]) -> str:
    import torch

    header = (f"# Lesson timings\n\nMachine: {os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}, "
              f"Python {platform.python_version()}, torch {torch.__version__}, "
              f"CUDA {'yes' if torch.cuda.is_available() else 'no'}. Recorded {time.strftime('%Y-%m-%d %H:%M')}.\n\n"
              "Budgets: FAST ≤ 90 s and full ≤ 600 s per lesson on a 2-core CPU.\n\n"
              "| lesson | mode | wall seconds | status |\n|---|---|---|---|\n")
    return header + "".join(f"| {name} | {mode} | {secs:.1f} | {status} |\n" for name, mode, secs, status in rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="FAST mode (COURSE_FAST=1): quick, smaller runs")
    parser.add_argument("--only", nargs="*", default=None, help="lesson name prefixes to run, e.g. 00 01")
    parser.add_argument("--notebooks", type=Path, default=ROOT / "notebooks", help="folder of lessons")
    parser.add_argument("--build", type=Path, default=ROOT / "build", help="folder for the reports")
    args = parser.parse_args(argv)

    build = args.build
    out_dir = build / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    os.environ["COURSE_FAST"] = "1" if args.fast else "0"
    os.environ["COURSE_RESULTS"] = str(build / "results.jsonl")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if args.only is None:
        (build / "results.jsonl").unlink(missing_ok=True)  # a full build starts a fresh leaderboard

    notebooks = sorted(args.notebooks.glob("[0-9][0-9]_*.ipynb"))
    if args.only:
        notebooks = [nb for nb in notebooks if any(nb.name.startswith(p) for p in args.only)]
    if not notebooks:
        print("no lessons matched", file=sys.stderr)
        return 2
    mode = "FAST" if args.fast else "full"
    rows = []
    for notebook in notebooks:
        print(f"running {notebook.name} ({mode}) ...", flush=True)
        seconds, status = run_notebook(notebook, out_dir, args.fast)
        print(f"  {seconds:.1f} s, {status}", flush=True)
        rows.append((notebook.stem, mode, seconds, status))

    with atomic_write(build / "timings.md", "w") as handle:
        handle.write(timings_markdown(rows))
    with atomic_write(build / "results.md", "w") as handle:
        handle.write(f"# Leaderboard ({mode} mode)\n\nOne row per model run, as logged by the lessons.\n\n")
        handle.write(results_markdown(load_results()))
    print(f"wrote {build / 'timings.md'} and {build / 'results.md'}")
    return 0 if all(r[3] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
