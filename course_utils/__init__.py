"""Helpers for the Gen-RecSys course.

The package mirrors the survey (Deldjoo et al., KDD'24): ``data`` and
``metrics`` at the base, one module per model family in ``models``, and the
evaluation and reporting helpers above them. Import by name, e.g.
``from course_utils.metrics import ndcg_at_k``.
"""
__version__ = "0.1.0"
