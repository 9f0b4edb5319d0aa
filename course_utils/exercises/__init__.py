"""Checkers for the lessons' exercises: a hint on a wrong answer, a confirmation on a right one.

Each lesson with checkable exercises has a module here (``lesson01`` ...) whose
functions take the student's answer and return :class:`Feedback`. A checker
never raises on a wrong or missing answer: it says what to look at next. It
raises only when the answer has the wrong *type*, so that a slip such as passing
a string where a number is expected is reported as such.

    >>> from course_utils.exercises import check_number
    >>> check_number(0.25, 0.25, hint="count the hits").correct
    True
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Feedback:
    """The verdict on one answer: ``correct`` and a message for the student."""

    correct: bool
    message: str
    answered: bool = True

    def _repr_markdown_(self) -> str:
        mark = "✅ Correct." if self.correct else "❌ Not yet." if self.answered else "✏️"
        return f"{mark} {self.message}"

    def __bool__(self) -> bool:
        return self.correct


NOT_ANSWERED = Feedback(False, "No answer yet: replace `None` with your answer and run the cell again.", answered=False)


def check_number(answer, expected: float, *, hint: str, confirm: str = "", rtol: float = 0.02,
                 atol: float = 1e-9) -> Feedback:
    """A numeric answer within ``rtol`` (relative) or ``atol`` (absolute) of ``expected``."""
    if answer is None:
        return NOT_ANSWERED
    if isinstance(answer, bool) or not isinstance(answer, (int, float, np.integer, np.floating)):
        raise TypeError(f"expected a number, got {type(answer).__name__}: {answer!r}")
    if not np.isfinite(float(answer)):
        return Feedback(False, f"{answer} is not a finite number. {hint}")
    if np.isclose(float(answer), expected, rtol=rtol, atol=atol):
        return Feedback(True, confirm or f"{float(answer):.4g} matches the expected {expected:.4g}.")
    return Feedback(False, f"{float(answer):.4g} is not it. {hint}")


def check_choice(answer, expected, *, options, hint: str, confirm: str = "") -> Feedback:
    """An answer that must be one of ``options`` (e.g. a model name or 'yes'/'no')."""
    if answer is None:
        return NOT_ANSWERED
    normalise = (lambda v: v.strip().lower()) if isinstance(answer, str) else (lambda v: v)
    allowed = {normalise(o): o for o in options}
    if normalise(answer) not in allowed:
        return Feedback(False, f"{answer!r} is not one of the options {list(options)}.")
    if normalise(answer) == normalise(expected):
        return Feedback(True, confirm or f"{expected!r} is right.")
    return Feedback(False, f"{answer!r} is not it. {hint}")


def check_array(answer, expected, *, hint: str, confirm: str = "", rtol: float = 1e-4, atol: float = 1e-6) -> Feedback:
    """An array answer with the expected shape and values."""
    if answer is None:
        return NOT_ANSWERED
    got = np.asarray(answer, dtype=np.float64)
    want = np.asarray(expected, dtype=np.float64)
    if got.shape != want.shape:
        return Feedback(False, f"expected shape {want.shape}, got {got.shape}. {hint}")
    if np.allclose(got, want, rtol=rtol, atol=atol):
        return Feedback(True, confirm or "All values match.")
    worst = int(np.argmax(np.abs(got - want).ravel()))
    return Feedback(False, f"entry {tuple(int(i) for i in np.unravel_index(worst, want.shape))} is {got.ravel()[worst]:.4g}, expected about "
                           f"{want.ravel()[worst]:.4g}. {hint}")
