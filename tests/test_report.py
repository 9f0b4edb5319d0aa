"""The holistic report (lesson 25): reading the log, dimensions, directions, normalisation, win rates, modes."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from course_utils import report as R
from course_utils.results import log_result
from course_utils.syllabus import LESSONS

ACC = "accuracy: NDCG@10"
LAT = "efficiency: p50 ms (1 user)"


def _log(path, model, metrics, protocol, lesson="01_baselines_and_protocol", dataset="ml-100k", **kw):
    log_result(model, metrics, dataset=dataset, protocol=protocol, lesson=lesson, train_seconds=kw.pop("train", 1.0),
               params=None, path=path, **kw)


def test_dimension_of_protocol_prefixes():
    assert R.dimension_of("loo-time[file]") == "accuracy"
    assert R.dimension_of("beyond-accuracy: loo-time[file], top-10") == "beyond-accuracy"
    assert R.dimension_of("serving cost, 2-core CPU, FAST epochs") == "efficiency"
    assert R.dimension_of("fairness: user gender groups") == "fairness"
    assert R.dimension_of("privacy: membership inference") == "privacy"
    assert R.dimension_of("robustness: bandwagon shilling") == "robustness"
    with pytest.raises(ValueError, match="protocol"):
        R.dimension_of("")


@pytest.mark.parametrize("name, direction", [
    ("NDCG@10", "higher"), ("coverage", "higher"), ("novelty (bits)", "higher"), ("users/s (batched)", "higher"),
    ("p50 ms (1 user)", "lower"), ("exposure Gini", "lower"), ("train CPU s", "lower"), ("MFLOP per user", "lower"),
    ("g CO2e per 1M users served", "lower"), ("attack success rate", "lower"), ("peak MB torch", "lower"),
    ("NDCG@10 gap (F - M)", "zero"), ("target rank shift", "lower"), ("popularity lift", "zero"),
    ("membership AUC", "half"), ("NDCG@10 gap (F - M) CI low", None), ("AUC CI high", None), ("p", None),
    ("target HR@10 before", None), ("false-positive rate", "lower"), ("gender SNSR (Jaccard@5)", "lower"),
    ("clean texts", None), ("pre-1980 exposure share", None), ("target rank shift after detection", "lower"),
    ("NDCG@10 gap (45+ - under 25)", "zero"), ("membership AUC p", None)])
def test_metric_direction(name, direction):
    assert R.metric_direction(name) == direction


def test_empty_log_gives_empty_tables_not_errors(tmp_path):
    path = tmp_path / "results.jsonl"
    board = R.read_board(path)
    assert board.empty
    long = R.long_table(board)
    assert long.empty
    matrix, measures, modes = R.holistic_matrix(long)
    assert matrix.empty and measures == [] and modes.empty
    cov = R.coverage(long)
    assert len(cov) == len(R.MODELS) and (cov["dimensions measured"] == 0).all()
    assert (cov["fairness"] == "not measured").all()
    assert "No model" in R.report_markdown(path)
    assert R.unregistered(long) == []


def _partial_log(path):
    _log(path, "EASE", {"NDCG@10": 0.07, "HR@10": 0.12}, "loo-time[file]")
    _log(path, "Popularity", {"NDCG@10": 0.045}, "loo-time[file]")
    _log(path, "EASE", {"NDCG@10": 0.07}, "loo-time[file]", lesson="02_autoencoders")   # a rerun by a later lesson
    _log(path, "EASE", {"p50 ms (1 user)": 0.7, "MFLOP per user": 0.3}, "serving cost, 2-core CPU, FAST epochs",
         lesson="20_efficiency", train=0.5)
    _log(path, "EASE", {"NDCG@10 gap (M - F)": -0.001, "NDCG@10 gap (M - F) CI low": -0.03,
                        "NDCG@10 gap (M - F) CI high": 0.02, "NDCG@10 gap (M - F) p": 0.9},
         "fairness: user gender groups, loo-time[file]", lesson="23_societal_impact")


def test_partial_log_missing_dimensions_stay_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")
    path = tmp_path / "results.jsonl"
    _partial_log(path)
    board = R.read_board(path)
    assert len(board[(board["model"] == "EASE") & (board["protocol"] == "loo-time[file]")]) == 1   # the owner only
    long = R.long_table(board)
    matrix, measures, modes = R.holistic_matrix(long)
    assert list(matrix.index) == ["EASE"]          # Popularity has one dimension only: not in the holistic table
    assert matrix.loc["EASE", ACC] == pytest.approx(0.07)
    assert matrix.loc["EASE", "efficiency: train CPU s"] == pytest.approx(0.5)
    assert "beyond-accuracy: coverage" not in matrix.columns          # nobody measured it
    fair = long[long["dimension"] == "fairness"].iloc[0]
    assert (fair["CI low"], fair["CI high"]) == (pytest.approx(-0.03), pytest.approx(0.02))
    table = R.display_table(long, matrix, measures)
    assert "[-0.030, 0.020]" in table.loc["EASE", "fairness: NDCG@10 gap (M - F)"]
    cov = R.coverage(long).set_index(["model", "dataset"])
    assert cov.loc[("EASE", "ml-100k"), "privacy"] == "not measured"
    assert cov.loc[("EASE", "ml-100k"), "efficiency"] == "FAST"
    assert cov.loc[("Popularity", "ml-100k"), "dimensions measured"] == 1
    assert "EASE" in R.report_markdown(path)


def test_full_mode_rows_win_and_are_labelled(tmp_path, monkeypatch):
    path = tmp_path / "results.jsonl"
    monkeypatch.setenv("COURSE_FAST", "1")
    _partial_log(path)
    _log(path, "SASRec", {"NDCG@10": 0.05}, "loo-time[file]", lesson="03_autoregressive")
    _log(path, "SASRec", {"p50 ms (1 user)": 3.0}, "serving cost, 2-core CPU, FAST epochs", lesson="20_efficiency")
    monkeypatch.setenv("COURSE_FAST", "0")
    _log(path, "EASE", {"NDCG@10": 0.08}, "loo-time[file]")
    _log(path, "EASE", {"p50 ms (1 user)": 0.9}, "serving cost, 2-core CPU, full epochs", lesson="20_efficiency")
    long = R.long_table(R.read_board(path))
    matrix, _, modes = R.holistic_matrix(long)
    assert matrix.loc["EASE", ACC] == pytest.approx(0.08) and modes.loc["EASE", ACC] == "full"
    assert matrix.loc["EASE", LAT] == pytest.approx(0.9) and modes.loc["EASE", LAT] == "full"
    assert matrix.loc["SASRec", ACC] == pytest.approx(0.05) and modes.loc["SASRec", ACC] == "FAST"   # only FAST exists
    # never averaged across modes: the value is one mode's, exactly
    assert set(long[(long["model"] == "EASE") & (long["protocol"] == "loo-time[file]")]["mode"]) == {"full"}


def test_normalise_is_direction_aware():
    matrix = pd.DataFrame({ACC: [0.07, 0.05, 0.06], LAT: [5.0, 0.5, np.nan],
                           "fairness: gap": [-0.01, 0.03, 0.0]}, index=["A", "B", "C"])
    measures = [R.Measure("accuracy", "NDCG@10", "higher"), R.Measure("efficiency", "p50 ms (1 user)", "lower"),
                R.Measure("fairness", "gap", "zero")]
    scores = R.normalise(matrix, measures)
    assert scores[ACC].tolist() == pytest.approx([1.0, 0.0, 0.5])
    assert scores.loc["B", LAT] == 1.0 and scores.loc["A", LAT] == 0.0      # lower latency is better
    assert np.isnan(scores.loc["C", LAT])                                   # not measured stays missing, not zero
    assert scores["fairness: gap"].tolist() == pytest.approx([2 / 3, 0.0, 1.0])  # closest to 0 is best
    ties = R.normalise(pd.DataFrame({ACC: [0.1, 0.1]}), measures[:1])
    assert ties[ACC].tolist() == [1.0, 1.0]
    half = R.normalise(pd.DataFrame({"privacy: membership AUC": [0.5, 0.9, 0.2]}),
                       [R.Measure("privacy", "membership AUC", "half")])
    assert half.iloc[:, 0].tolist() == pytest.approx([1.0, 0.0, 0.25])
    with pytest.raises(ValueError, match="direction"):
        R.normalise(matrix[[ACC]], [R.Measure("accuracy", "NDCG@10", "sideways")])


def test_win_rates_hand_computed():
    matrix = pd.DataFrame({ACC: [0.07, 0.05, 0.06], LAT: [5.0, 0.5, 1.0],
                           "fairness: gap": [-0.01, 0.03, np.nan]}, index=["A", "B", "C"])
    measures = [R.Measure("accuracy", "NDCG@10", "higher"), R.Measure("efficiency", "p50 ms (1 user)", "lower"),
                R.Measure("fairness", "gap", "zero")]
    wins = R.win_rates(matrix, measures)
    # A: accuracy 2/2, latency 0/2, fairness 1/1 -> (1 + 0 + 1) / 3
    assert wins.loc["A", "mean win rate"] == pytest.approx(2 / 3)
    assert wins.loc["B", "mean win rate"] == pytest.approx(1 / 3)     # 0, 1, 0
    assert wins.loc["C", "mean win rate"] == pytest.approx(0.5)       # 0.5, 0.5, fairness skipped
    assert wins.loc["C", "dimensions"] == 2 and wins.loc["A", "dimensions"] == 3
    tie = R.win_rates(pd.DataFrame({ACC: [0.1, 0.1, 0.0]}, index=list("xyz")), measures[:1])
    assert tie.loc["x", "accuracy"] == pytest.approx(0.75)           # beats z, ties y (half)


def test_merge_recomputed_log_wins():
    board = R.board_from_rows([{"model": "EASE", "dataset": "ml-100k", "protocol": "loo-time[file]",
                                "lesson": "01", "mode": "full", "NDCG@10": 0.08}]).assign(source="log")
    recomputed = R.board_from_rows([
        {"model": "EASE", "dataset": "ml-100k", "protocol": "loo-time[file]", "lesson": R.LESSON, "mode": "FAST",
         "NDCG@10": 0.07},
        {"model": "EASE", "dataset": "ml-100k", "protocol": R.FAIRNESS_PROTOCOL, "lesson": R.LESSON, "mode": "FAST",
         "NDCG@10 gap (M - F)": 0.01}])
    merged = R.merge_recomputed(board, recomputed)
    assert len(merged) == 2
    assert merged[merged["dimension"] == "accuracy"]["NDCG@10"].tolist() == [0.08]
    assert merged[merged["dimension"] == "fairness"]["source"].tolist() == [R.RECOMPUTED]
    with pytest.raises(ValueError, match="columns"):
        R.board_from_rows([{"model": "EASE"}])


def test_rank_correlation_and_its_claim():
    r = R.rank_correlation([1, 2, 3, 4, 5, 6], [2, 4, 6, 8, 10, 12], n_boot=200)
    assert r["rho"] == pytest.approx(1.0) and r["enough"] and r["ci_low"] == pytest.approx(1.0)
    few = R.rank_correlation([1, 2, 3, np.nan], [3, 2, 1, 0])
    assert few["n"] == 3 and not few["enough"] and few["rho"] == pytest.approx(-1.0)
    assert R.correlation_claim([1, 2, 3], [3, 2, 1], "a", "b").case == "too few"
    assert R.correlation_claim(range(8), range(8), "a", "b", n_boot=200).case == "+"
    with pytest.raises(ValueError, match="same length"):
        R.rank_correlation([1, 2], [1, 2, 3])


def test_beyond_accuracy_metrics_adds_intervals():
    per_user = pd.DataFrame({"novelty (bits)": [1.0, 2.0, 3.0, 4.0]})
    metrics = R.beyond_accuracy_metrics(pd.Series({"coverage": 0.3, "novelty (bits)": 2.5}), per_user, n_boot=200)
    assert metrics["coverage"] == 0.3 and "coverage CI low" not in metrics     # catalogue-level: no per-user CI
    assert 1.0 <= metrics["novelty (bits) CI low"] <= 2.5 <= metrics["novelty (bits) CI high"] <= 4.0


def test_registry_is_unique_and_points_at_syllabus_lessons():
    reg = R.registry()
    assert not reg.duplicated(["model", "dataset"]).any()
    assert set(reg["lesson"]) <= {number for number, *_ in LESSONS}
    assert set(reg["dataset"]) <= {"ml-100k", "fashion-shop"}


def test_registry_covers_the_models_the_notebooks_logged():
    """Every model lessons 01-21 logged in the last `make test` run is registered (skipped without that log)."""
    log = Path(__file__).resolve().parents[1] / "build" / "test" / "results.jsonl"
    if not log.exists():
        pytest.skip("no build/test/results.jsonl: run `make test` once")
    long = R.long_table(R.read_board(log))
    old = long[long["lesson"].str[:2] <= "21"]
    assert R.unregistered(old) == []


def test_course_runner_writes_the_report_beside_the_leaderboard(tmp_path, monkeypatch):
    """``make course`` writes build/report.md from each mode's log (the notebooks' execution is faked here)."""
    from course_utils import course_runner

    def fake_run(notebook, out_dir, fast):   # what a lesson does: log its rows to $COURSE_RESULTS
        _partial_log(None)
        return 0.1, "ok"

    monkeypatch.setattr(course_runner, "run_notebook", fake_run)
    monkeypatch.setenv("COURSE_RESULTS", str(tmp_path / "unused.jsonl"))   # the runner points it at its build
    lessons = tmp_path / "notebooks"
    lessons.mkdir()
    (lessons / "01_fake.ipynb").write_text("{}")
    assert course_runner.main(["--fast", "--only", "01", "--notebooks", str(lessons), "--build",
                               str(tmp_path / "build")]) == 0
    report = (tmp_path / "build" / "report.md").read_text()
    assert "## FAST mode" in report and "## full mode" not in report
    assert "| EASE |" in report and "| model | mean win rate | dimensions |" in report
    assert "| EASE |  | 3 |" in report     # alone in every column: no win rate, three dimensions measured


def test_registry_holds_every_literal_model_name_the_notebooks_log():
    """`log_result("X", ...)`, `evaluate_and_log("X", ...)`, `train_seeds("X", ...)` in any lesson: X is registered."""
    import json
    import re

    pattern = re.compile(r'(?:log_result|evaluate_and_log|train_seeds)\(\s*"([^"{}]+)"')
    found = {}
    for path in sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        source = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        for name in pattern.findall(source):
            found.setdefault(name, path.stem)
    assert found, "the pattern found no literal model names: has the logging API changed?"
    missing = {name: lesson for name, lesson in found.items() if R.registered_name(name) is None}
    assert not missing, f"add these to report.MODELS: {missing}"


def test_several_protocols_for_one_measure_keep_the_worst_case(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")
    path = tmp_path / "results.jsonl"
    _partial_log(path)
    for attack, shift in (("random", 100.0), ("bandwagon", -250.0), ("average", 30.0)):
        _log(path, "EASE", {"target rank shift": shift}, f"robustness: shilling attack, {attack}", lesson="23_x")
    long = R.long_table(R.read_board(path))
    matrix, measures, _ = R.holistic_matrix(long)
    assert matrix.loc["EASE", "robustness: target rank shift"] == 100.0      # the attack that pushed it most
    picked = R.pick_rows(long, next(m for m in measures if m.metric == "target rank shift"))
    assert picked.loc["EASE", "protocol"] == "robustness: shilling attack, random"


def test_accuracy_by_task_names_each_tasks_metric(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")
    path = tmp_path / "results.jsonl"
    _partial_log(path)
    _log(path, "ConvRec: full", {"success rate": 0.7, "success rate CI low": 0.6, "success rate CI high": 0.8},
         "conversational, 60 dialogues", lesson="13_conversational", dataset="fashion-shop")
    _log(path, "explainer", {"hallucination rate": 0.2}, "explanations", lesson="11_rag", dataset="fashion-shop")
    table = R.accuracy_by_task(R.long_table(R.read_board(path))).set_index("model")
    assert table.loc["ConvRec: full", "metric"] == "success rate"
    assert table.loc["ConvRec: full", "value"] == "0.700 [0.600, 0.800]"
    assert table.loc["explainer", "better"] == "lower"
    assert table.loc["EASE", "metric"] == "NDCG@10"
    assert R.accuracy_by_task(R.long_table(R.read_board(tmp_path / "empty.jsonl"))).empty


def test_a_wildcard_entry_matches_the_setting_a_lesson_chose():
    assert R.registered_name("Conditional UNet + CFG (w=2)", "fashion-shop") == "Conditional UNet + CFG (w=*)"
    assert R.registered_name("Conditional UNet + CFG (w=2)", "ml-100k") is None
    assert R.registered_name("EASE", "ml-100k") == "EASE"
    assert R.registered_name("EASE (first stage) x", "ml-100k") is None
    long = pd.DataFrame([{"model": "Conditional UNet + CFG (w=4)", "dataset": "fashion-shop", "dimension": "accuracy",
                          "mode": "full", "source": "log"}])
    assert R.unregistered(long) == []
    cov = R.coverage(long).set_index("model")
    assert cov.loc["Conditional UNet + CFG (w=*)", "accuracy"] == "full"


def test_a_fairness_copy_of_a_core_measure_is_not_counted_twice():
    # Lesson 23 logs exposure Gini under a "fairness:" protocol too; the win rate must count it once.
    long = pd.DataFrame([{"model": "EASE", "dimension": "fairness", "dataset": "ml-100k",
                          "protocol": "fairness: popularity bias", "measure": name, "value": 0.5, "CI low": np.nan,
                          "CI high": np.nan, "direction": "lower", "mode": "FAST", "lesson": "23", "source": "log"}
                         for name in ("exposure Gini", "NDCG@10 gap (F - M)")])
    names = [(m.dimension, m.metric) for m in R.measures_in(long)]
    assert names.count(("beyond-accuracy", "exposure Gini")) == 1 and ("fairness", "exposure Gini") not in names
    assert ("fairness", "NDCG@10 gap (F - M)") in names
