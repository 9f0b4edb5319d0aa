"""Several training seeds per headline model: one leaderboard row per seed, per-user values averaged."""
import pytest

from course_utils.data.splits import leave_one_out_split
from course_utils.models.baselines import BPRMF
from course_utils.results import leaderboard, load_results
from course_utils.seeds import seeds_for_mode, train_seeds


def test_seeds_for_mode(monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")
    assert seeds_for_mode(42) == [42]
    monkeypatch.setenv("COURSE_FAST", "0")
    assert seeds_for_mode(42) == [42, 43, 44]
    with pytest.raises(ValueError):
        seeds_for_mode(-1)


def test_train_seeds_logs_one_row_per_seed_and_averages_per_user(planted_ratings, tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_RESULTS", str(tmp_path / "results.jsonl"))
    split = leave_one_out_split(planted_ratings, tie_break="shuffle", seed=0)
    runs = train_seeds("BPR-MF", lambda s: BPRMF(dim=8, n_epochs=3, batch_size=128, seed=s).fit(split.train_matrix()),
                       split, [0, 1, 2], lesson="t", dataset="planted")
    assert list(runs.table.index) == [0, 1, 2] and len(runs.models) == 3
    assert runs.mean() == pytest.approx(runs.values().mean()) and runs.sd() > 0
    assert runs.per_user["NDCG@10"].mean() == pytest.approx(runs.mean())
    frame = load_results()
    assert sorted(frame["seed"]) == [0, 1, 2]
    board = leaderboard(frame)
    assert len(board) == 1 and board.loc[0, "n_seeds"] == 3
    assert board.loc[0, "NDCG@10"] == pytest.approx(runs.mean())
    with pytest.raises(ValueError, match="distinct"):
        train_seeds("x", lambda s: None, split, [1, 1], lesson="t", dataset="planted")
