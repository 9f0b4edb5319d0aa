"""Beyond-accuracy metrics added for lesson 19 (survey Section 5.1.3): hand-computed cases."""
import numpy as np
import pytest

from course_utils import metrics


def _gini_pairs(x):
    x = np.asarray(x, float)
    return np.abs(x[:, None] - x[None, :]).sum() / (2 * x.size ** 2 * x.mean())


def test_gini_hand_computed():
    assert metrics.gini([1, 1, 1, 1]) == pytest.approx(0.0)
    assert metrics.gini([5]) == pytest.approx(0.0)
    assert metrics.gini([0, 0, 0, 1]) == pytest.approx(0.75)
    assert metrics.gini([1, 2, 3]) == pytest.approx(2 / 9)
    assert metrics.gini([3, 1, 2]) == pytest.approx(2 / 9)       # order does not matter
    assert metrics.gini(np.array([2, 4, 6])) == pytest.approx(2 / 9)  # scale does not matter


def test_gini_equals_mean_absolute_difference_form():
    rng = np.random.default_rng(0)
    x = rng.poisson(3.0, size=50).astype(float)
    assert metrics.gini(x) == pytest.approx(_gini_pairs(x))


def test_gini_approaches_one_when_concentrated():
    x = np.zeros(1000)
    x[0] = 7
    assert metrics.gini(x) == pytest.approx(0.999)


@pytest.mark.parametrize("bad, words", [
    ([], "empty"),
    ([1, -1, 2], "non-negative"),
    ([0, 0], "all-zero"),
    ([[1, 2], [3, 4]], "1-D"),
    ([1, np.nan], "finite"),
])
def test_gini_bad_input(bad, words):
    with pytest.raises(ValueError, match=words):
        metrics.gini(bad)
