"""Lesson 09's exercise checkers: right, wrong and unanswered."""
import pytest

from course_utils.exercises.lesson09 import check_exercise_1, check_exercise_2, check_exercise_3
from course_utils.llm.constrained import trie_from_tokens


def test_exercise_1_chance_hit_rate():
    assert check_exercise_1(0.25).correct
    assert not check_exercise_1(0.5).correct and "positions" in check_exercise_1(0.5).message
    assert not check_exercise_1(None).answered
    with pytest.raises(TypeError):
        check_exercise_1("0.25")


def test_exercise_2_expected_rating():
    assert check_exercise_2(3.6).correct
    assert not check_exercise_2(4).correct
    assert not check_exercise_2(None).answered


def test_exercise_3_trie_root():
    trie = trie_from_tokens([[5, 6], [5, 7], [8]], end_token=0)
    assert check_exercise_3(2, trie).correct
    assert not check_exercise_3(3, trie).correct and "next_tokens" in check_exercise_3(3, trie).message
    assert not check_exercise_3(None, trie).answered
