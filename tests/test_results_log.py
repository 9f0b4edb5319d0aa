"""The results log under stress: concurrent writers, damaged lines, hostile arguments, several seeds.

The concurrency test uses real processes writing one real file, as ``make test``
does when two notebooks run at once: no mocks of the file system or the lock.
"""
import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from course_utils import course_runner
from course_utils.results import leaderboard, load_results, log_result, results_markdown, seed_summary

COMMON = dict(dataset="ml-100k", protocol="loo", lesson="01", train_seconds=1.0, params=10)

_WRITER = textwrap.dedent("""
    import sys
    from course_utils.results import log_result
    path, worker, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    for i in range(n):
        log_result(f"model-{worker}-{i}", {"NDCG@10": i / n}, dataset="d", protocol="p", lesson="l",
                   train_seconds=0.0, params=1, path=path)
""")


def test_concurrent_writers_lose_no_row(tmp_path):
    """Three processes x 150 appends to one log: every one of the 450 rows must be there."""
    path, workers, per_worker = tmp_path / "results.jsonl", 3, 150
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(path), str(w), str(per_worker)],
                              stderr=subprocess.PIPE, text=True) for w in range(workers)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    frame = load_results(path)
    expected = {f"model-{w}-{i}" for w in range(workers) for i in range(per_worker)}
    assert set(frame["model"]) == expected and len(frame) == workers * per_worker


def test_a_damaged_line_is_skipped_and_set_aside_not_fatal(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "0")
    path = tmp_path / "results.jsonl"
    log_result("EASE", {"NDCG@10": 0.07}, path=path, **COMMON)
    with open(path, "a") as handle:
        handle.write('{"model": "Pop", "NDCG@10": 0.0')  # a write cut off mid-line
    with pytest.warns(RuntimeWarning, match="skipped 1 damaged line"):
        assert list(load_results(path)["model"]) == ["EASE"]
    with pytest.warns(RuntimeWarning, match="moved 1 damaged line"):
        log_result("ItemKNN", {"NDCG@10": 0.05}, path=path, **COMMON)
    assert list(load_results(path)["model"]) == ["EASE", "ItemKNN"]  # the good rows survive, no warning now
    assert (tmp_path / "results.jsonl.corrupt").read_text() == '{"model": "Pop", "NDCG@10": 0.0\n'


@pytest.mark.parametrize("metric_name", ["model", "mode", "seed", "params", "train_seconds"])
def test_a_metric_may_not_overwrite_a_field(tmp_path, metric_name):
    with pytest.raises(ValueError, match=f"may not be called '{metric_name}'"):
        log_result("EASE", {"NDCG@10": 0.1, metric_name: 1.0}, path=tmp_path / "r.jsonl", **COMMON)


def test_numpy_numbers_and_unknown_params_are_accepted(tmp_path):
    path = tmp_path / "r.jsonl"
    row = log_result("EASE", {"NDCG@10": np.float32(0.25), "HR@10": np.float64(0.5)}, path=path,
                     **{**COMMON, "params": np.int64(7), "train_seconds": np.float32(1.5)})
    assert row["NDCG@10"] == 0.25 and row["params"] == 7
    log_result("Pop", {"NDCG@10": 0.1}, path=path, **{**COMMON, "params": None})
    for line in path.read_text().splitlines():
        json.loads(line)  # strict JSON throughout
    table = results_markdown(load_results(path))
    assert "| Pop | ml-100k | loo | 0.1000 |" in table


@pytest.mark.parametrize("bad, error, message", [
    (dict(train_seconds=float("nan")), ValueError, "train_seconds must be finite"),
    (dict(train_seconds=float("inf")), ValueError, "train_seconds must be finite"),
    (dict(train_seconds=-1.0), ValueError, "train_seconds must be finite and >= 0"),
    (dict(train_seconds="3"), TypeError, "train_seconds must be a finite number"),
    (dict(params=2.5), TypeError, "params must be a non-negative integer"),
    (dict(params=-1), ValueError, "params must be finite and >= 0"),
    (dict(seed=-3), ValueError, "seed must be finite and >= 0"),
    (dict(seed=1.5), TypeError, "seed must be a non-negative integer"),
    (dict(dataset=""), ValueError, "dataset must be a non-empty string"),
    (dict(notes=None), TypeError, "notes must be a string"),
])
def test_bad_arguments_are_refused_with_a_message(tmp_path, bad, error, message):
    with pytest.raises(error, match=message):
        log_result("EASE", {"NDCG@10": 0.1}, path=tmp_path / "r.jsonl", **{**COMMON, **bad})
    assert not (tmp_path / "r.jsonl").exists()  # nothing half-logged


def test_bad_metrics_are_refused(tmp_path):
    kwargs = dict(path=tmp_path / "r.jsonl", **COMMON)
    with pytest.raises(TypeError, match="metrics must be a dict"):
        log_result("EASE", [("NDCG@10", 0.1)], **kwargs)
    with pytest.raises(ValueError, match="finite numbers; got NDCG@10=True"):
        log_result("EASE", {"NDCG@10": True}, **kwargs)
    with pytest.raises(ValueError, match="finite numbers"):
        log_result("EASE", {"NDCG@10": "0.1"}, **kwargs)


def _three_seeds(path):
    for seed, (ndcg, hr) in enumerate([(0.10, 0.2), (0.12, 0.3), (0.14, 0.4)]):
        log_result("SASRec", {"NDCG@10": ndcg, "HR@10": hr}, seed=seed, path=path, **COMMON)
    log_result("EASE", {"NDCG@10": 0.11, "HR@10": 0.25}, path=path, **COMMON)  # no seed: as before


def test_seeds_are_separate_rows_and_the_tables_average_them(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "0")
    path = tmp_path / "r.jsonl"
    _three_seeds(path)
    log_result("SASRec", {"NDCG@10": 0.14, "HR@10": 0.4}, seed=2, path=path, **COMMON)  # a rerun replaces
    frame = load_results(path)
    assert len(frame) == 4 and sorted(frame["seed"].dropna()) == [0, 1, 2]
    board = leaderboard(frame)
    assert list(board["model"]) == ["SASRec", "EASE"] and list(board["n_seeds"]) == [3, 1]
    assert board.loc[0, "NDCG@10"] == pytest.approx(0.12) and board.loc[0, "HR@10"] == pytest.approx(0.3)
    assert board.loc[0, "NDCG@10 sd"] == pytest.approx(0.02)  # sample sd of 0.10, 0.12, 0.14
    assert math.isnan(board.loc[1, "NDCG@10 sd"])
    table = results_markdown(frame)
    assert "| SASRec | ml-100k | loo | 0.1200 | 0.3000 | 0.0200 | 3 | 1.00 | 10 |" in table
    assert "| EASE | ml-100k | loo | 0.1100 | 0.2500 |  | 1 | 1.00 | 10 |" in table


def test_seed_summary(tmp_path):
    path = tmp_path / "r.jsonl"
    _three_seeds(path)
    summary = seed_summary(load_results(path), "NDCG@10").set_index("model")
    assert list(summary.index) == ["SASRec", "EASE"]
    sas = summary.loc["SASRec"]
    assert (sas["mean"], sas["sd"], sas["min"], sas["max"], sas["n"]) == pytest.approx((0.12, 0.02, 0.10, 0.14, 3))
    assert summary.loc["EASE", "n"] == 1 and math.isnan(summary.loc["EASE", "sd"])
    with pytest.raises(ValueError, match="unknown metric 'NDCG@99'"):
        seed_summary(load_results(path), "NDCG@99")
    with pytest.raises(ValueError, match="empty"):
        seed_summary(pd.DataFrame(), "NDCG@10")


def test_relative_results_path_is_refused(monkeypatch):
    from course_utils.results import results_path

    monkeypatch.setenv("COURSE_RESULTS", "build/results.jsonl")
    with pytest.raises(ValueError, match="COURSE_RESULTS must be an absolute path"):
        results_path()


@pytest.mark.parametrize("damage", ['{"01_x|FAST": {"lesson": "01_x"', "[1, 2]", '{"a|b": 3}'],
                         ids=["truncated", "not-an-object", "damaged-row"])
def test_runner_recovers_from_a_damaged_timings_record(tmp_path, damage):
    timings = tmp_path / "timings.json"
    timings.write_text(damage)
    new = {"lesson": "02_y", "mode": "FAST", "seconds": 1.0, "status": "ok", "recorded": "now"}
    with pytest.warns(RuntimeWarning, match="timings.json"):
        merged = course_runner._merge_timings(timings, [new])
    assert merged == {"02_y|FAST": new}
    assert (tmp_path / "timings.json.corrupt").read_text() == damage


def test_results_markdown_gives_other_measures_their_own_tables_and_shows_notes(tmp_path):
    path = tmp_path / "r.jsonl"
    log_result("EASE", {"NDCG@10": 0.08, "HR@10": 0.15}, path=path, notes="100 users", **COMMON)
    log_result("LoRA-64", {"AUC": 0.71}, path=path, **{**COMMON, "protocol": "yes/no AUC"})
    log_result("Zero-shot", {"AUC": 0.52}, path=path, **{**COMMON, "protocol": "yes/no AUC"})
    log_result("UNet", {"category_acc": 0.48, "FD": 148.7}, path=path,
               **{**COMMON, "dataset": "fashion-shop", "protocol": "generation"})
    table = results_markdown(load_results(path))
    assert "| EASE | ml-100k | loo | 0.0800 | 0.1500 |" in table and "| 100 users |" in table
    auc = table[table.index("**ml-100k, yes/no AUC**"):]
    assert auc.splitlines()[2].startswith("| model | AUC | n_seeds |") and "| LoRA-64 | 0.7100 |" in auc
    assert "NDCG" not in auc.split("**fashion-shop")[0] and "category_acc" not in auc.split("**ml-100k")[0]
    generation = table[table.index("**fashion-shop, generation**"):]
    assert "| UNet | 0.4800 | 148.7000 |" in generation or "| UNet | 148.7000 | 0.4800 |" in generation


def test_each_model_gets_one_row_from_the_lesson_that_owns_it(tmp_path):
    path = tmp_path / "r.jsonl"
    base = {**COMMON}
    log_result("EASE", {"NDCG@10": 0.0711}, path=path, **{**base, "lesson": "03_autoregressive"})
    log_result("EASE", {"NDCG@10": 0.0711}, path=path, **{**base, "lesson": "01_baselines"})
    log_result("EASE", {"NDCG@10": 0.0650}, path=path, **{**base, "lesson": "05_diffusion"})  # a drifted rerun
    log_result("EASE", {"NDCG@10": 0.0500}, path=path, **{**base, "lesson": "07", "protocol": "sampled"})
    log_result("Judge", {"accuracy": 0.8}, path=path, **{**base, "lesson": "17", "protocol": "judge"})
    log_result("Judge", {"accuracy": 0.8}, path=path, **{**base, "lesson": "18", "protocol": "judge"})
    table = results_markdown(load_results(path))
    main, details = table.split("<details>")
    owner_lines = [line for line in main.splitlines() if line.startswith("| EASE | ml-100k | loo |")]
    assert len(owner_lines) == 1 and "| 01_baselines |" in owner_lines[0]
    assert "03 (same), 05 (differs)" in owner_lines[0]
    assert "| EASE | ml-100k | sampled |" in main  # another protocol is another row
    assert "18 (same)" in main.split("**ml-100k, judge**")[1]
    assert "Reruns by later lessons (3 rows)" in details
    assert "| EASE | ml-100k | loo | 0.0650 | 1 | 05_diffusion |" in details


def test_owner_rows_needs_the_key_columns():
    import pandas as pd

    from course_utils.results import owner_rows
    with pytest.raises(ValueError, match="lesson"):
        owner_rows(pd.DataFrame({"model": ["EASE"], "dataset": ["d"], "protocol": ["p"], "mode": ["full"]}))
    owners, reruns = owner_rows(pd.DataFrame())
    assert owners.empty and reruns.empty


def test_drop_stale_rows_removes_only_that_lessons_older_rows(tmp_path, monkeypatch):
    from course_utils.results import drop_stale_rows
    monkeypatch.setenv("COURSE_FAST", "1")
    path = tmp_path / "results.jsonl"
    for model, lesson, stamp in [("Old", "20_x", "2026-01-01 10:00:00"), ("Kept", "20_x", "2026-01-01 12:00:00"),
                                 ("Other", "19_y", "2026-01-01 09:00:00")]:
        log_result(model, {"NDCG@10": 0.1}, dataset="d", protocol="p", lesson=lesson, train_seconds=0.0, params=None,
                   path=path)
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        rows[-1]["logged_at"] = stamp                       # as if logged at that time
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with open(path, "a") as handle:
        handle.write('{"model": "cut off')               # a damaged line is set aside, not dropped
    with pytest.warns(RuntimeWarning, match="moved 1 damaged line"):
        assert drop_stale_rows(path, "20_x", "2026-01-01 11:00:00") == 1
    assert sorted(load_results(path)["model"]) == ["Kept", "Other"]
    assert (tmp_path / "results.jsonl.corrupt").read_text() == '{"model": "cut off\n'
    assert drop_stale_rows(path, "20_x", "2026-01-01 11:00:00") == 0
    assert drop_stale_rows(tmp_path / "missing.jsonl", "20_x", "2026-01-01 11:00:00") == 0
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        drop_stale_rows(path, "20_x", "yesterday")
    with pytest.raises(ValueError, match="lesson"):
        drop_stale_rows(path, "", "2026-01-01 11:00:00")


def test_a_successful_rerun_of_one_lesson_leaves_no_stale_rows(tmp_path, monkeypatch):
    """`make course --only NN`: the rows a lesson no longer logs go; a failed rerun keeps the old ones."""
    build = tmp_path / "build"
    build.mkdir()
    log = build / "results-fast.jsonl"
    monkeypatch.setenv("COURSE_FAST", "1")
    log_result("Dropped", {"NDCG@10": 0.1}, dataset="d", protocol="p", lesson="90_toy", train_seconds=0.0,
               params=None, path=log)
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    rows[0]["logged_at"] = "2020-01-01 00:00:00"
    log.write_text(json.dumps(rows[0]) + "\n")
    outcome = {"status": "FAILED: boom"}

    def fake_run(notebook, out_dir, fast):
        log_result("Current", {"NDCG@10": 0.2}, dataset="d", protocol="p", lesson="90_toy", train_seconds=0.0,
                   params=None)
        return 0.1, outcome["status"]

    monkeypatch.setattr(course_runner, "run_notebook", fake_run)
    monkeypatch.setenv("COURSE_RESULTS", str(tmp_path / "unused.jsonl"))   # the runner points it at its build
    lessons = tmp_path / "notebooks"
    lessons.mkdir()
    (lessons / "90_toy.ipynb").write_text("{}")
    course_runner.main(["--fast", "--only", "90", "--notebooks", str(lessons), "--build", str(build)])
    assert sorted(load_results(log)["model"]) == ["Current", "Dropped"]     # failed: the old row stays
    outcome["status"] = "ok"
    course_runner.main(["--fast", "--only", "90", "--notebooks", str(lessons), "--build", str(build)])
    assert list(load_results(log)["model"]) == ["Current"]
