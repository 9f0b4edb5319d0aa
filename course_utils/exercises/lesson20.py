"""Checkers for lesson 20's exercises: a tail percentile, EASE's FLOPs, an energy estimate, a speed-up,
a training time estimated from timed steps.

Each checker computes the expected value with the same helpers the lesson uses
(``course_utils.efficiency``), so a student's hand computation is checked against the code.
"""
from __future__ import annotations

import math

from course_utils.efficiency import energy_estimate, latency_summary, matmul_flops, training_estimate
from course_utils.exercises import NOT_ANSWERED, Feedback, check_number

EXERCISE_1_LATENCIES_MS = (12, 15, 11, 14, 90, 13, 12, 16, 13, 12, 14, 11, 13, 15, 12, 13, 14, 12, 95, 13)
EXERCISE_3 = dict(cpu_seconds=2 * 3600 * 8, watts_per_core=12.0, grid_g_per_kwh=300.0, pue=1.2)
EXERCISE_4 = dict(single_ms=100.0, compute_ms=50.0, allreduce_ms=30.0)
EXERCISE_7 = dict(seconds_per_step=0.35, epochs=3, n_items=2400, batch_size=64)


def check_exercise_1(answer) -> Feedback:
    """answer: the p95 latency (ms) of ``EXERCISE_1_LATENCIES_MS``, numpy's linear-interpolation percentile."""
    expected = latency_summary(EXERCISE_1_LATENCIES_MS)["p95"]
    median = latency_summary(EXERCISE_1_LATENCIES_MS)["p50"]
    return check_number(answer, expected, rtol=0.01,
                        hint="Sort the 20 values; p95 sits at position 0.95 × (20 − 1) = 18.05 (counting from 0), "
                             "so interpolate between the 19th and 20th smallest values.",
                        confirm=f"p95 = {expected:.2f} ms while the median is {median:.0f} ms: two slow requests out "
                                "of twenty set the tail, and the tail is what a user waiting on a page feels.")


def check_exercise_2(answer, n_items: int = 1682) -> Feedback:
    """answer: FLOPs to score one user with EASE as a DENSE product (1 × n_items history row @ n_items × n_items B)."""
    expected = matmul_flops(1, n_items, n_items)
    return check_number(answer, expected, rtol=1e-3,
                        hint="A (m × k) @ (k × n) product does m·n dot products of length k, and each term is one "
                             "multiply and one add.",
                        confirm=f"2 · {n_items}² = {expected:,} FLOPs. The sparse product the code runs touches only "
                                "the rows of B the user has seen: 2·|h|·n_items, about |h|/n_items of that.")


def check_exercise_3(answer) -> Feedback:
    """answer: grams of CO2e for ``EXERCISE_3`` (8 cores busy for 2 hours at 12 W, 300 g/kWh, PUE 1.2)."""
    if answer is None:
        return NOT_ANSWERED
    expected = energy_estimate(**EXERCISE_3)["grams_co2e"]
    return check_number(answer, expected, rtol=0.01,
                        hint="CPU-seconds × watts per core × PUE gives joules; divide by 3.6 million for kWh; "
                             "multiply by the grid's grams per kWh.",
                        confirm=f"{expected:.1f} g CO2e: 57,600 CPU-s × 12 W × 1.2 = 829 kJ = 0.23 kWh, × 300 g/kWh. "
                                "Every factor is an assumption; change the grid and the answer moves most.")


def check_exercise_4(answer) -> Feedback:
    """answer: the speed-up of 2 data-parallel ranks in ``EXERCISE_4`` (single step / parallel step)."""
    expected = EXERCISE_4["single_ms"] / (EXERCISE_4["compute_ms"] + EXERCISE_4["allreduce_ms"])
    return check_number(answer, expected, rtol=0.01,
                        hint="A parallel step is each rank's compute on half the batch followed by the all-reduce: "
                             "divide the single-process step time by their sum.",
                        confirm=f"{expected:.2f}×, not 2×: the all-reduce adds time that a single process never "
                                "spends. Overlapping it with the backward pass (DDP's buckets) hides part of it.")


def check_exercise_7(answer) -> Feedback:
    """answer: the estimated training seconds of ``EXERCISE_7`` (seconds per step × epochs × batches per epoch)."""
    if answer is None:
        return NOT_ANSWERED
    steps = EXERCISE_7["epochs"] * math.ceil(EXERCISE_7["n_items"] / EXERCISE_7["batch_size"])
    per_step = EXERCISE_7["seconds_per_step"]
    expected = training_estimate({"seconds_per_step": per_step, "cpu_seconds_per_step": per_step}, steps)["wall_seconds"]
    return check_number(answer, expected, rtol=0.01,
                        hint="Count the optimisation steps first: one per batch, and a last, smaller batch is still "
                             "a step (round the batches per epoch up); then multiply by the seconds per step.",
                        confirm=f"{steps} steps × {per_step} s = {expected:.1f} s. An estimate: it leaves out what the "
                                "trainer does once (building the optimiser, caching inputs) and any validation.")
