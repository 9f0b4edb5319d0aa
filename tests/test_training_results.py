
import pytest
import torch

from course_utils.results import leaderboard, load_results, log_result, results_markdown
from course_utils.training import count_parameters, fit_loop


def test_fit_loop_early_stops_and_restores_best_weights():
    module = torch.nn.Linear(1, 1)
    scores = iter([0.1, 0.5, 0.4, 0.3, 0.2, 0.9])

    def train_epoch(epoch):
        with torch.no_grad():
            module.weight.fill_(float(epoch))  # weights record which epoch wrote them
        return 1.0 / epoch

    result = fit_loop(train_epoch, n_epochs=6, validate=lambda: next(scores), patience=3, module=module,
                      progress=False)
    assert result.best_epoch == 2 and result.best_score == 0.5
    assert len(result.history) == 5  # stopped after three epochs without improvement
    assert module.weight.item() == 2.0
    assert result.train_seconds >= 0 and count_parameters(module) == 2


def test_fit_loop_rejects_bad_arguments_and_nan():
    with pytest.raises(ValueError, match="n_epochs"):
        fit_loop(lambda e: 0.0, n_epochs=0)
    with pytest.raises(FloatingPointError, match="NaN"):
        fit_loop(lambda e: float("nan"), n_epochs=2, progress=False)


def test_results_log_replaces_reruns_and_renders(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")
    path = tmp_path / "results.jsonl"
    common = dict(dataset="ml-100k", protocol="loo", lesson="01", path=path)
    log_result("EASE", {"NDCG@10": 0.07, "HR@10": 0.14}, train_seconds=0.4, params=100, **common)
    log_result("Pop", {"NDCG@10": 0.04, "HR@10": 0.08}, train_seconds=0.0, params=10, **common)
    log_result("EASE", {"NDCG@10": 0.08, "HR@10": 0.15}, train_seconds=0.5, params=100, **common)
    frame = load_results(path)
    assert len(frame) == 2 and set(frame["mode"]) == {"FAST"}
    board = leaderboard(frame)
    assert board.loc[0, "model"] == "EASE" and board.loc[0, "NDCG@10"] == 0.08
    table = results_markdown(frame)
    assert table.splitlines()[0].startswith(
        "| model | dataset | protocol | NDCG@10 | HR@10 | NDCG@10 sd | n_seeds | train_seconds")
    assert "| EASE | ml-100k | loo | 0.0800 | 0.1500 |  | 1 | 0.50 | 100 |" in table
    assert table.index("EASE") < table.index("Pop")


def test_results_log_validates(tmp_path):
    kwargs = dict(dataset="d", protocol="p", lesson="l", train_seconds=1, params=1, path=tmp_path / "r.jsonl")
    with pytest.raises(ValueError, match="finite"):
        log_result("m", {"NDCG@10": float("nan")}, **kwargs)
    with pytest.raises(ValueError, match="empty"):
        log_result("m", {}, **kwargs)
    with pytest.raises(ValueError, match="model"):
        log_result("", {"x": 1.0}, **kwargs)
    with pytest.raises(ValueError, match="unknown metric"):
        leaderboard(load_results(tmp_path / "none.jsonl").assign(model=["a"]), metric="NDCG@99")
