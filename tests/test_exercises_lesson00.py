"""Lesson 00's exercise checkers on the real data: right answers pass, wrong ones get a hint."""
import pytest

from course_utils.data.fashion_mnist import load_fashion_mnist
from course_utils.data.fashion_shop import make_fashion_shop
from course_utils.exercises import NOT_ANSWERED
from course_utils.exercises.lesson00 import (check_exercise_1, check_exercise_2, favourite_category_share,
                                             long_tail_shares)


def test_exercise_1_long_tail(movielens):
    head, rare = long_tail_shares(movielens.ratings)
    assert 0.3 < head < 0.6 and 0.1 < rare < 0.35    # MovieLens-100K's known long tail
    assert check_exercise_1((head, rare), movielens.ratings).correct
    wrong = check_exercise_1((head, 0.5), movielens.ratings)
    assert not wrong.correct and "rare share" in wrong.message and "top-10%" not in wrong.message
    assert check_exercise_1(None, movielens.ratings) is NOT_ANSWERED
    with pytest.raises(TypeError, match="pair"):
        check_exercise_1(0.4, movielens.ratings)


@pytest.fixture(scope="module")
def shop():
    return make_fashion_shop(n_users=100, seed=1, images=load_fashion_mnist(verbose=False))


def test_exercise_2_favourite_category_share(shop):
    share = favourite_category_share(shop)
    assert 0.1 < share < 0.9, "the favourite category dominates but does not take every purchase"
    assert check_exercise_2(share, shop).correct
    wrong = check_exercise_2(1.0, shop)
    assert not wrong.correct and "favourite_category" in wrong.message
    assert check_exercise_2(None, shop) is NOT_ANSWERED
