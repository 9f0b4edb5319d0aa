import pandas as pd

from course_utils import training
from course_utils.training import fit_loop, progress_bars_enabled


def test_course_progress_zero_turns_the_bars_off(monkeypatch):
    monkeypatch.delenv("COURSE_PROGRESS", raising=False)
    assert progress_bars_enabled()
    for value in ("0", "false", "OFF"):
        monkeypatch.setenv("COURSE_PROGRESS", value)
        assert not progress_bars_enabled()
    seen = []

    def spy(iterable, **kwargs):
        seen.append(kwargs["disable"])
        return __import__("tqdm").tqdm(iterable, **kwargs)

    monkeypatch.setattr(training, "tqdm", spy)
    monkeypatch.setenv("COURSE_PROGRESS", "0")
    result = fit_loop(lambda epoch: 1.0 / epoch, 2)
    monkeypatch.setenv("COURSE_PROGRESS", "1")
    fit_loop(lambda epoch: 1.0 / epoch, 2)
    assert seen == [True, False] and isinstance(result.history, pd.DataFrame)
