"""What a recommender costs to train and to serve (lesson 20, survey section 5.1.2).

Every helper measures one thing and says what it cannot see:

* :func:`timed` — wall-clock and CPU seconds of one call (CPU seconds count every thread of
  this process, not child processes);
* :func:`latency_summary`, :func:`single_user_latencies`, :func:`batched_throughput` — per-user
  latency percentiles (p50/p95) when each user is served alone, and users per second when they
  are scored in batches;
* :func:`tracemalloc_peak` — peak bytes allocated through Python's allocator (numpy and scipy
  report to it; torch's CPU allocator does not, so torch tensors are invisible to it);
* :func:`torch_profiler_peak` — peak bytes held by torch's allocator, walked from the memory
  events of ``torch.profiler`` (numpy/scipy arrays are invisible to it);
* :func:`count_flops` — floating-point operations of torch code (``FlopCounterMode``: matrix
  products and convolutions; element-wise ops, sparse products and ``linalg.inv`` count 0);
  :func:`ease_flops` the analytic count for EASE;
* :func:`energy_estimate` — energy and CO2 from CPU seconds under *stated assumptions*;
* :func:`pareto_front`, :func:`pareto_claim` — which models no other model beats on both cost and accuracy;
* :func:`fit_power_law`, :func:`resize_catalogue`, :func:`extend_sequences`, :func:`ease_size_costs`,
  :func:`sasrec_length_costs` — how cost scales with the catalogue and the history length;
* :func:`profile_recommender` — all of the above for one fitted course model, as one table row;
  :func:`encoder_query_costs` the same for a sentence encoder serving text queries.
"""
from __future__ import annotations

import contextlib
import os
import time
import tracemalloc
from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.sparse as sp

from course_utils.claims import Claim
from course_utils.data.splits import History

SECONDS_PER_KWH = 3.6e6  # joules in a kilowatt-hour


# --- time ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Timed:
    """The result of a call and what it cost."""

    result: object
    wall_seconds: float
    cpu_seconds: float


def timed(fn: Callable, *args, **kwargs) -> Timed:
    """Call ``fn(*args, **kwargs)`` and measure wall-clock and CPU seconds (all threads of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args, **kwargs)
    return Timed(result, time.perf_counter() - wall, time.process_time() - cpu)


def _checked_seconds(seconds) -> np.ndarray:
    values = np.asarray(seconds, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("no timings given: need at least one measured duration")
    if not np.isfinite(values).all() or (values < 0).any():
        raise ValueError("timings must be finite and non-negative seconds")
    return values


def latency_summary(seconds) -> dict[str, float]:
    """p50, p95, mean and max of per-request durations (numpy's linear-interpolation percentiles).

    >>> latency_summary([1, 2, 3, 4, 5])["p95"]
    4.8
    """
    values = _checked_seconds(seconds)
    p50, p95 = np.percentile(values, [50, 95])
    return {"p50": float(p50), "p95": float(p95), "mean": float(values.mean()), "max": float(values.max()),
            "n": int(values.size)}


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return np.take_along_axis(part, np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1), axis=1)


def _serve(score_fn, users: np.ndarray, history: History, k: int) -> np.ndarray:
    """What serving means here: score the catalogue, hide the history, keep the top k."""
    scores = np.array(score_fn(users, history), dtype=np.float32)
    rows, cols = history.matrix[users].nonzero()
    scores[rows, cols] = -np.inf
    return _top_k(scores, k)


def _checked_users(users) -> np.ndarray:
    users = np.asarray(users)
    if users.ndim != 1 or users.size == 0 or not np.issubdtype(users.dtype, np.integer):
        raise ValueError(f"users must be a non-empty 1-D array of integer ids, got shape {users.shape}")
    return users.astype(np.int64)


def single_user_latencies(score_fn, users, history: History, k: int = 10, warmup: int = 2) -> np.ndarray:
    """Seconds to serve each user alone (one request = score + mask history + top-k), after ``warmup`` calls."""
    users = _checked_users(users)
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    for u in users[:warmup]:
        _serve(score_fn, np.array([u]), history, k)
    seconds = np.empty(len(users))
    for i, u in enumerate(users):
        start = time.perf_counter()
        _serve(score_fn, np.array([u]), history, k)
        seconds[i] = time.perf_counter() - start
    return seconds


def batched_throughput(score_fn, users, history: History, batch_size: int = 256, k: int = 10) -> dict[str, float]:
    """Serve ``users`` in batches: total seconds, users per second and seconds per user."""
    users = _checked_users(users)
    if batch_size <= 0 or k <= 0:
        raise ValueError(f"batch_size and k must be positive, got {batch_size} and {k}")
    start = time.perf_counter()
    for lo in range(0, len(users), batch_size):
        _serve(score_fn, users[lo:lo + batch_size], history, k)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "users_per_second": len(users) / seconds, "seconds_per_user": seconds / len(users)}


# --- memory ----------------------------------------------------------------------------------

def tracemalloc_peak(fn: Callable, *args, **kwargs) -> tuple[object, int]:
    """(result, peak bytes allocated through Python's allocator during the call, above the start level).

    Sees numpy and scipy buffers; does not see torch tensors (torch allocates outside Python).
    """
    already = tracemalloc.is_tracing()
    if not already:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    try:
        result = fn(*args, **kwargs)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        if not already:
            tracemalloc.stop()
    return result, max(int(peak), 0)


@contextlib.contextmanager
def _quiet_stderr():
    """Silence file descriptor 2 (the profiler's C++ start/stop log lines), restoring it afterwards."""
    try:
        saved = os.dup(2)
    except OSError:  # no real descriptor (some embedded interpreters): nothing to silence
        yield
        return
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def memory_events_peak(events) -> int:
    """Peak of the running sum of (start time, bytes) allocation events; frees are negative."""
    items = sorted((float(t), int(b)) for t, b in events)
    if not items:
        return 0
    return max(int(np.cumsum([b for _, b in items]).max()), 0)


def torch_profiler_peak(fn: Callable, *args, **kwargs) -> tuple[object, int]:
    """(result, peak bytes held by torch's CPU allocator during the call), from ``torch.profiler``.

    Each operator's own allocations (minus its own frees) and each later free are replayed in
    time order; the maximum of the running sum is the peak. Numpy/scipy memory is invisible here,
    and the resolution is one operator (allocations inside one op are taken at its start).
    """
    from torch.profiler import ProfilerActivity, profile

    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn(*args, **kwargs)
    events = []
    for event in prof.events():
        value = event.cpu_memory_usage if event.name == "[memory]" else event.self_cpu_memory_usage
        if value:
            events.append((event.time_range.start, value))
    return result, memory_events_peak(events)


# --- FLOPs -----------------------------------------------------------------------------------

def count_flops(fn: Callable, *args, **kwargs) -> tuple[object, int]:
    """(result, FLOPs of the torch operators run by the call), counted by ``FlopCounterMode``.

    A multiply-add counts 2. Only matrix products, convolutions and attention are counted:
    numpy/scipy work (EASE, ItemKNN) and ``torch.linalg.inv`` show up as 0.
    """
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        result = fn(*args, **kwargs)
    return result, int(counter.get_total_flops())


def matmul_flops(m: int, k: int, n: int) -> int:
    """FLOPs of an (m × k) @ (k × n) product: m·n dot products of length k, 2 operations per term."""
    for name, value in (("m", m), ("k", k), ("n", n)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return 2 * int(m) * int(k) * int(n)


def ease_flops(n_users: int, n_items: int, history_lengths=None) -> dict[str, float]:
    """Analytic FLOPs of EASE: the Gram matrix, its inverse, and scoring one user.

    Dense counts: XᵀX is 2·n_users·n_items², a Gauss-Jordan inverse about 2·n_items³, one user's
    scores (history row @ B) 2·n_items². With ``history_lengths`` (|h_u| per user), the sparse
    counts the code actually runs: each user adds |h_u|² multiply-adds to XᵀX, and scoring a user
    costs 2·|h_u|·n_items (given here for the mean |h_u|).
    """
    out = {"gram (dense)": float(matmul_flops(n_items, n_users, n_items)), "inverse": 2.0 * float(n_items) ** 3,
           "score per user (dense)": float(matmul_flops(1, n_items, n_items))}
    if history_lengths is not None:
        lengths = np.asarray(history_lengths, dtype=np.float64)
        if lengths.ndim != 1 or len(lengths) != n_users or (lengths < 0).any():
            raise ValueError(f"history_lengths must hold {n_users} counts >= 0, got shape {lengths.shape}")
        out["gram (sparse)"] = 2.0 * float((lengths ** 2).sum())
        out["score per user (sparse)"] = 2.0 * float(lengths.mean()) * n_items
    return out


# --- energy ----------------------------------------------------------------------------------

def energy_estimate(cpu_seconds: float, watts_per_core: float, grid_g_per_kwh: float,
                    pue: float = 1.0) -> dict[str, float]:
    """Energy and emissions of ``cpu_seconds`` of busy cores under stated assumptions.

    joules = cpu_seconds × watts_per_core × PUE; kWh = joules / 3.6e6; grams CO2e = kWh × grid intensity.
    """
    for name, value in (("cpu_seconds", cpu_seconds), ("watts_per_core", watts_per_core),
                        ("grid_g_per_kwh", grid_g_per_kwh), ("pue", pue)):
        if isinstance(value, bool) or not np.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if pue < 1:
        raise ValueError(f"pue (power usage effectiveness) is at least 1 by definition, got {pue}")
    joules = cpu_seconds * watts_per_core * pue
    kwh = joules / SECONDS_PER_KWH
    return {"joules": joules, "kwh": kwh, "grams_co2e": kwh * grid_g_per_kwh}


def energy_arithmetic(name: str, cpu_seconds: float, watts_per_core: float, grid_g_per_kwh: float,
                      pue: float = 1.0) -> str:
    """The arithmetic of :func:`energy_estimate` written out, for one model."""
    e = energy_estimate(cpu_seconds, watts_per_core, grid_g_per_kwh, pue)
    return (f"{name}: {cpu_seconds:.1f} CPU-s × {watts_per_core:g} W per core × PUE {pue:g} = {e['joules']:.0f} J "
            f"= {e['kwh']:.2e} kWh; × {grid_g_per_kwh:g} g CO2e/kWh = {e['grams_co2e']:.3f} g CO2e")


# --- Pareto ----------------------------------------------------------------------------------

def pareto_front(cost, value) -> np.ndarray:
    """Bool mask of the points no other point dominates (lower ``cost`` and higher ``value`` are better).

    A point is dominated when another is at least as good on both and strictly better on one;
    two identical points are both on the front. NaN points are never on it.
    """
    cost, value = np.asarray(cost, dtype=np.float64), np.asarray(value, dtype=np.float64)
    if cost.ndim != 1 or cost.shape != value.shape or cost.size == 0:
        raise ValueError(f"cost and value must be non-empty 1-D arrays of one length, got shapes "
                         f"{cost.shape} and {value.shape}")
    valid = np.isfinite(cost) & np.isfinite(value)
    c, v = cost[:, None], value[:, None]  # row i, column j: does j dominate i?
    dominated = ((cost[None, :] <= c) & (value[None, :] >= v)
                 & ((cost[None, :] < c) | (value[None, :] > v)) & valid[None, :]).any(axis=1)
    return valid & ~dominated


def pareto_claim(names, cost, value, cost_name: str, value_name: str = "NDCG@10") -> Claim:
    """A sentence naming the models on the front, cheapest first; the case is the tuple of their names."""
    names = list(names)
    cost, value = np.asarray(cost, float), np.asarray(value, float)
    if len(names) != len(cost):
        raise ValueError(f"{len(names)} names for {len(cost)} points")
    on = pareto_front(cost, value)
    order = [i for i in np.argsort(cost, kind="stable") if on[i]]
    front = [names[i] for i in order]
    listed = ", ".join(f"**{names[i]}** ({value_name} {value[i]:.4f}, {cost_name} {cost[i]:.3g})" for i in order)
    off = [n for n, o in zip(names, on) if not o]
    text = (f"On {value_name} against {cost_name}, {len(front)} of {len(names)} models are on the Pareto front, "
            f"cheapest first: {listed}.")
    if off:
        text += f" Each of the others ({', '.join(off)}) is beaten on both axes by some model on the front."
    return Claim(text, tuple(front))


# --- scaling ---------------------------------------------------------------------------------

def fit_power_law(sizes, seconds) -> tuple[float, float]:
    """Least-squares fit of log(seconds) = a + b·log(size); returns (exponent b, prefactor e^a)."""
    x, y = np.asarray(sizes, float), np.asarray(seconds, float)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise ValueError(f"need two 1-D arrays of one length >= 2, got shapes {x.shape} and {y.shape}")
    if (x <= 0).any() or (y <= 0).any() or not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("sizes and seconds must be positive and finite for a log-log fit")
    if len(np.unique(x)) < 2:
        raise ValueError("need at least two different sizes to fit an exponent")
    slope, intercept = np.polyfit(np.log(x), np.log(y), 1)
    return float(slope), float(np.exp(intercept))


def grow_catalogue(X: sp.csr_matrix, factor: int, keep: float = 0.8, seed: int = 0) -> sp.csr_matrix:
    """A synthetic catalogue ``factor`` times larger: each item is copied ``factor`` times, and each copy
    keeps each of the original item's interactions with probability ``keep`` (the first copy is the original).

    Users stay the same; the copies are near-duplicates with perturbed audiences, so the Gram matrix
    stays well-conditioned and EASE's cost grows as it would with a larger catalogue.
    """
    if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor < 1:
        raise ValueError(f"factor must be a whole number >= 1, got {factor!r}")
    if not 0 < keep <= 1:
        raise ValueError(f"keep must lie in (0, 1], got {keep}")
    X = sp.csr_matrix(X, dtype=np.float32)
    rng = np.random.default_rng(seed)
    blocks = [X]
    for _ in range(1, factor):
        copy = X.copy().tocoo()
        kept = rng.random(copy.nnz) < keep
        blocks.append(sp.csr_matrix((copy.data[kept], (copy.row[kept], copy.col[kept])), shape=X.shape))
    return sp.hstack(blocks, format="csr")


def extend_sequences(sequences, length: int, seed: int = 0) -> np.ndarray:
    """(n_users, length) histories: each user's real items, repeated in shuffled order until ``length``.

    Synthetic histories longer than MovieLens provides, for timing attention against history length.
    """
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length <= 0:
        raise ValueError(f"length must be a positive integer, got {length!r}")
    rng = np.random.default_rng(seed)
    rows = []
    for i, seq in enumerate(sequences):
        seq = np.asarray(seq, dtype=np.int64)
        if seq.size == 0:
            raise ValueError(f"sequence {i} is empty: nothing to extend")
        reps = [seq] + [rng.permutation(seq) for _ in range(int(np.ceil(length / seq.size)))]
        rows.append(np.concatenate(reps)[-length:])
    return np.stack(rows)


def scaling_claim(what: str, exponent: float, theory: float, size_name: str, tolerance: float = 0.35) -> Claim:
    """Compare a fitted exponent with the theoretical one; the case is 'as theory', 'below' or 'above'."""
    if abs(exponent - theory) <= tolerance:
        return Claim(f"{what} grows as {size_name}^{exponent:.2f}, within {tolerance} of the theoretical "
                     f"exponent {theory:g}.", "as theory")
    if exponent < theory:
        return Claim(f"{what} grows as {size_name}^{exponent:.2f}, **below** the theoretical exponent {theory:g}: "
                     "at these sizes, terms of lower order (and fixed overheads) still dominate the cost.", "below")
    return Claim(f"{what} grows as {size_name}^{exponent:.2f}, **above** the theoretical exponent {theory:g}: "
                 "something beyond the arithmetic grows too (memory traffic, caches, a busy machine).", "above")


# --- one row of the cost table ---------------------------------------------------------------

def profile_recommender(name: str, model, split, train: Timed, n_single: int = 50, batch_size: int = 256,
                        k: int = 10, seed: int = 0, flops_per_user: float | None = None,
                        params: int | None = None) -> tuple[dict, np.ndarray]:
    """Every cost of one fitted course model, and its per-user test NDCG@10 (course protocol).

    ``train`` is the :class:`Timed` fit. Latency: ``n_single`` random users served one at a time;
    throughput: every user in batches of ``batch_size``; memory and FLOPs: ``model.score`` on one batch.
    ``flops_per_user`` overrides the counter (for numpy/scipy models, whose FLOPs it cannot see);
    ``params`` overrides ``model.n_params`` (e.g. to count a re-ranker's base model, or stored vectors).
    """
    from course_utils.evaluation import evaluate

    history = split.history("test")
    rng = np.random.default_rng(seed)
    users = np.arange(split.n_users)
    single = latency_summary(single_user_latencies(model.score, rng.choice(users, n_single, replace=False),
                                                   history, k))
    serve_all = timed(batched_throughput, model.score, users, history, batch_size, k)
    batch = users[:batch_size]
    _, py_peak = tracemalloc_peak(model.score, batch, history)  # the model's own scoring, without the top-k
    _, torch_peak = torch_profiler_peak(model.score, batch, history)
    if flops_per_user is None:
        _, counted = count_flops(model.score, batch, history)
        flops_per_user = counted / len(batch) if counted else float("nan")
    _, per_user = evaluate(model.score, split, "test", per_user=True)
    params = getattr(model, "n_params", None) if params is None else params
    row = {"model": name, "params": np.nan if params is None else int(params),
           "train wall s": train.wall_seconds, "train CPU s": train.cpu_seconds,
           "p50 ms (1 user)": 1e3 * single["p50"], "p95 ms (1 user)": 1e3 * single["p95"],
           "ms per user (batched)": 1e3 * serve_all.result["seconds_per_user"],
           "users/s (batched)": serve_all.result["users_per_second"], "serve CPU s (all users)": serve_all.cpu_seconds,
           "peak MB tracemalloc": py_peak / 1e6, "peak MB torch": torch_peak / 1e6,
           "MFLOP per user": flops_per_user / 1e6, "NDCG@10": float(per_user["NDCG@10"].mean())}
    return row, per_user["NDCG@10"]


def sasrec_length_costs(sequences, n_items: int, lengths, batch_size: int = 64, repeats: int = 3, dim: int = 64,
                        device: str = "cpu", seed: int = 0) -> list[dict]:
    """Seconds of one SASRec training step and of scoring one batch, and their FLOPs, per history length L.

    Histories are ``extend_sequences`` of the real ones (synthetic, long enough for every L); the
    model is the course's SASRec (full-softmax loss) with random weights: cost does not depend on them.
    Times are the best of ``repeats`` (on CUDA, after a synchronise).
    """
    import torch

    from course_utils.models.sequential import SASRec

    sync = torch_sync(device)
    rng = np.random.default_rng(seed)
    users = rng.choice(len(sequences), batch_size, replace=len(sequences) < batch_size)
    out = []
    for length in lengths:
        model = SASRec(max_len=int(length), dim=dim, dropout=0.0, seed=seed, device=device)
        model.n_items_ = n_items
        model.net_ = model._build(n_items).to(model.device)
        rows = torch.as_tensor(extend_sequences([sequences[u] for u in users], int(length) + 1, seed) + 1,
                               device=model.device)
        optimizer = torch.optim.Adam(model.net_.parameters(), lr=1e-3)

        def step():
            loss = model._batch_loss(rows, torch.as_tensor(users, device=model.device), rng)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            sync()

        def infer():
            model._next_logits(rows[:, 1:].cpu().numpy())
            sync()

        step()  # warm-up
        train_s = min(timed(step).wall_seconds for _ in range(repeats))
        infer_s = min(timed(infer).wall_seconds for _ in range(repeats))
        model.net_.train()
        _, train_flops = count_flops(lambda: model._batch_loss(rows, torch.as_tensor(users, device=model.device),
                                                               rng).backward())
        _, infer_flops = count_flops(infer)
        attention = attention_flops(batch_size, int(length), dim, model.n_blocks)
        out.append({"L": int(length), "train step s": train_s, "score batch s": infer_s,
                    "counted train GFLOP": train_flops / 1e9, "counted score GFLOP": infer_flops / 1e9,
                    "attention GFLOP (analytic, forward)": attention / 1e9})
    return out


def torch_sync(device: str):
    """A function that waits for the device's queued work (a no-op on the CPU)."""
    import torch

    if str(device).startswith("cuda"):
        return torch.cuda.synchronize
    return lambda: None


def resize_catalogue(X: sp.csr_matrix, n_items: int, seed: int = 0) -> sp.csr_matrix:
    """A catalogue of ``n_items`` items: a random subset of the real items when smaller, else
    :func:`grow_catalogue` cut to size (the real items first, then perturbed copies)."""
    if isinstance(n_items, bool) or not isinstance(n_items, (int, np.integer)) or n_items <= 0:
        raise ValueError(f"n_items must be a positive integer, got {n_items!r}")
    X = sp.csr_matrix(X)
    if n_items <= X.shape[1]:
        keep = np.sort(np.random.default_rng(seed).choice(X.shape[1], n_items, replace=False))
        return X[:, keep]
    return grow_catalogue(X, int(np.ceil(n_items / X.shape[1])), seed=seed)[:, :n_items]


def attention_flops(batch: int, length: int, dim: int, n_blocks: int) -> float:
    """Forward FLOPs of the attention products of ``n_blocks`` blocks: QKᵀ and weights·V, 2·L²·d each per sequence."""
    return float(n_blocks) * 2 * matmul_flops(int(batch) * int(length), int(dim), int(length))


def ease_size_costs(X: sp.csr_matrix, sizes, l2: float = 500.0, n_score: int = 256, seed: int = 0) -> list[dict]:
    """Seconds to fit EASE and to score ``n_score`` users on catalogues of each size in ``sizes`` (resize_catalogue)."""
    from course_utils.models.baselines import EASE

    out = []
    for size in sizes:
        resized = resize_catalogue(X, int(size), seed=seed)
        fit = timed(EASE(l2).fit, resized)
        users = np.arange(min(n_score, resized.shape[0]))
        score = timed(fit.result.score, users, History(resized, []))
        out.append({"items": resized.shape[1], "interactions": resized.nnz, "fit s": fit.wall_seconds,
                    "score s": score.wall_seconds,
                    "inverse GFLOP (analytic)": ease_flops(resized.shape[0], resized.shape[1])["inverse"] / 1e9})
    return out


# --- pretrained text models ------------------------------------------------------------------

def encoder_query_costs(encoder, texts, batch_size: int = 64, warmup: int = 2) -> dict:
    """Per-query cost of a sentence encoder (one forward pass per user's history text).

    Single: each text encoded alone (p50/p95). Batched: all texts in batches of ``batch_size``.
    FLOPs and torch peak memory: one text. The dot product with the item vectors (n_items × dim) is
    not included: 2·n_items·dim FLOPs, negligible next to the encoder.
    """
    texts = [str(t) for t in texts]
    if not texts or not all(t.strip() for t in texts):
        raise ValueError("texts must be a non-empty list of non-empty strings")
    encode = lambda batch: encoder.encode(batch, batch_size=batch_size, convert_to_numpy=True,
                                          normalize_embeddings=True, show_progress_bar=False)
    for text in texts[:warmup]:
        encode([text])
    single = [timed(encode, [t]).wall_seconds for t in texts]
    batched = timed(encode, texts)
    _, flops = count_flops(encode, texts[:1])
    _, peak = torch_profiler_peak(encode, texts[:1])
    return {"single": latency_summary(single), "users_per_second": len(texts) / batched.wall_seconds,
            "seconds_per_user": batched.wall_seconds / len(texts), "flops": flops, "peak_bytes": peak,
            "params": int(sum(p.numel() for p in encoder.parameters()))}


# --- the rest of the course: training steps and cost probes -----------------------------------

def time_steps(run_steps: Callable[[int], object], n_steps: int = 3, warmup: int = 1) -> dict:
    """Seconds per optimisation step of a trainer, timed over ``n_steps`` real steps after ``warmup``.

    ``run_steps(n)`` must run exactly ``n`` optimisation steps (the lesson's own trainer on real
    batches). The warm-up call pays the one-off costs (first backward, allocator, caches) and is not
    timed. Per-step figures are the timed call's seconds divided by ``n_steps``; whatever the trainer
    does once per call (building its optimiser) is spread over the steps, so a few steps slightly
    overstate the cost of one.
    """
    for name, value, low in (("n_steps", n_steps, 1), ("warmup", warmup, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if not callable(run_steps):
        raise ValueError("run_steps must be a function of the number of steps")
    if warmup:
        run_steps(int(warmup))
    run = timed(run_steps, int(n_steps))
    return {"seconds_per_step": run.wall_seconds / n_steps, "cpu_seconds_per_step": run.cpu_seconds / n_steps,
            "steps_timed": int(n_steps), "warmup_steps": int(warmup)}


def training_estimate(timing: dict, total_steps: int) -> dict:
    """Training cost extrapolated from :func:`time_steps`: seconds per step × the lesson's step count.

    >>> training_estimate({"seconds_per_step": 0.5, "cpu_seconds_per_step": 0.75}, 40)["wall_seconds"]
    20.0
    """
    if isinstance(total_steps, bool) or not isinstance(total_steps, (int, np.integer)) or total_steps < 1:
        raise ValueError(f"total_steps must be a positive integer, got {total_steps!r}")
    missing = {"seconds_per_step", "cpu_seconds_per_step"} - set(timing)
    if missing:
        raise ValueError(f"timing lacks {sorted(missing)}: pass the dict time_steps returns")
    per_wall, per_cpu = float(timing["seconds_per_step"]), float(timing["cpu_seconds_per_step"])
    if not (np.isfinite(per_wall) and np.isfinite(per_cpu)) or per_wall < 0 or per_cpu < 0:
        raise ValueError(f"per-step seconds must be finite and non-negative, got {per_wall}, {per_cpu}")
    return {"wall_seconds": per_wall * total_steps, "cpu_seconds": per_cpu * total_steps, "steps": int(total_steps)}


@dataclass
class CostProbe:
    """One course model, built at its lesson's configuration, with the calls that cost it.

    ``stages``: {stage: (run_steps, total_steps)}; ``run_steps(n)`` runs n real optimisation steps with the
    lesson's trainer, ``total_steps`` is the number the lesson runs in this mode (most models have one stage).
    ``query(i)``: serve query i alone (one ``unit``); ``batch()``: serve ``batch_size`` queries at once.
    ``params``/``trainable``: all parameters the model runs on / those its training updates (the rest is a
    frozen pretrained part).
    """

    name: str
    lesson: str
    dataset: str
    unit: str
    params: int
    trainable: int
    stages: dict
    query: Callable[[int], object]
    batch: Callable[[], object]
    batch_size: int
    note: str = ""
    measure: Callable[[int], object] | None = None   # what FLOPs and memory are counted on; None: ``query``
    warmup: int | None = None   # untimed warm-up steps; None: profile_probe's ``warmup``
    trains: bool = True   # False: no optimiser; the one "training" stage is a one-off build (an index, a kNN)


def profile_probe(probe: CostProbe, n_steps: int = 3, n_queries: int = 10, warmup: int = 1,
                  warm_batch: bool = True, memory: bool = True) -> dict:
    """Every cost of one :class:`CostProbe` as one table row; the training figures are estimates from
    ``n_steps`` timed steps per stage (summed over the stages), after ``warmup`` untimed steps.

    Serving: one query under the FLOP counter and one under the memory profiler (``probe.measure`` when
    given; untimed, they also warm the model up), ``n_queries`` timed queries one at a time, then one
    timed batch (after an untimed warm-up batch when ``warm_batch``). With ``warmup=0`` the first step
    carries its one-off costs, as it does in a lesson's own run. ``memory=False`` skips the profiler
    pass (a whole extra query; FAST mode saves it) and reports the peak as NaN: not measured, not zero.
    """
    if isinstance(n_queries, bool) or not isinstance(n_queries, (int, np.integer)) or n_queries < 1:
        raise ValueError(f"n_queries must be a positive integer, got {n_queries!r}")
    if not probe.stages:
        raise ValueError(f"{probe.name}: no training stage given")
    wall = cpu = 0.0
    total = 0
    for run_steps, lesson_steps in probe.stages.values():
        steps = time_steps(run_steps, n_steps, warmup if probe.warmup is None else probe.warmup)
        estimate = training_estimate(steps, lesson_steps)
        wall, cpu, total = wall + estimate["wall_seconds"], cpu + estimate["cpu_seconds"], total + lesson_steps
    measure = probe.measure or probe.query
    _, flops = count_flops(measure, 0)          # untimed calls, which also warm the model up
    _, peak = torch_profiler_peak(measure, 0) if memory else (None, float("nan"))
    single = latency_summary([timed(probe.query, i).wall_seconds for i in range(n_queries)])
    if warm_batch:
        probe.batch()
    batched = timed(probe.batch)
    return {"model": probe.name, "lesson": probe.lesson, "dataset": probe.dataset, "unit": probe.unit,
            "params": int(probe.params), "trainable params": int(probe.trainable),
            "trainable share": probe.trainable / probe.params,
            "s per step": wall / total, "steps timed": n_steps * len(probe.stages), "lesson steps": int(total),
            "est. train wall s": wall, "est. train CPU s": cpu,
            "p50 ms (1 query)": 1e3 * single["p50"], "p95 ms (1 query)": 1e3 * single["p95"],
            "ms per query (batched)": 1e3 * batched.wall_seconds / probe.batch_size,
            "queries/s (batched)": probe.batch_size / batched.wall_seconds,
            "CPU s per query (batched)": batched.cpu_seconds / probe.batch_size,
            "peak MB torch": peak / 1e6, "MFLOP per query": flops / 1e6 if flops else float("nan"),
            "note": probe.note}


def _n_params(*modules) -> tuple[int, int]:
    params = {id(p): p for m in modules for p in m.parameters()}.values()
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def cross_encoder_probe(split, documents, titles, first_stage, encoder, *, fast: bool, seed: int = 0,
                        name: str = "Dense → cross-encoder", serve_batch: int = 8) -> CostProbe:
    """Lesson 08: MiniLM cross-encoder, BCE fine-tuning (8 steps of 16 pairs FAST, 96 of 32 full); a query is one
    user whose first stage's top 50 are scored (50 pairs, max 64 tokens each)."""
    from course_utils.llm import cross_encoders as ce

    (n_steps, batch_size), top_k = ((8, 16) if fast else (96, 32)), 50
    cross, _ = ce.load_cross_encoder("minilm", max_length=64, seed=seed, text_encoder=encoder, verbose=False)
    rng = np.random.default_rng(seed)
    pairs = ce.sample_training_pairs(split, documents, titles, {"first stage": first_stage}, 4 * batch_size, rng)
    history = split.history("test")
    users = rng.choice(split.n_users, 64, replace=False)
    blocks = np.argsort(-first_stage.score(users, history), axis=1)[:, :top_k]
    texts = ce.user_texts(users, history, titles, 5)
    docs = np.asarray(documents, dtype=object)
    pair_queries = lambda rows: [texts[r] for r in rows for _ in range(top_k)]
    params, _ = _n_params(cross.model)
    trainable = params - cross.model.get_input_embeddings().weight.numel()   # the lesson freezes the word table
    return CostProbe(name, "08_cross_encoders", "ml-100k", "user", params, trainable,
                     {"fine-tuning": (lambda n: ce.train_cross_encoder(cross, pairs, n, batch_size, 5e-5, seed=seed),
                                      n_steps)},
                     lambda i: ce.pair_logits(cross, pair_queries([i % len(users)]), docs[blocks[i % len(users)]]),
                     lambda: ce.pair_logits(cross, pair_queries(range(serve_batch)), docs[blocks[:serve_batch].ravel()]),
                     serve_batch,
                     "a user = the first stage's top 50 as 50 (user text, item text) pairs; the first stage (EASE here) not included")


def lora_probes(split, items, llm, tokenizer, *, fast: bool, seed: int = 0, serve_batch: int = 8) -> list[CostProbe]:
    """Lesson 10: LoRA (r 8, q/v of the top 4 of 30 layers) trained from cached lower-layer states, and the soft
    prompt (16 vectors) trained through the whole model; a query is one (user, movie) yes/no pair, a full pass."""
    from course_utils.llm import tuning as tu

    rng = np.random.default_rng(seed)
    n_lora, n_soft, batch = (8, 4, 8) if fast else (256, 64, 8)
    users = tu.balanced_users(split, "valid", 8, rng)
    pairs = tu.yes_no_pairs(split, items, "valid", users)
    prompts = [tu.chat_prompt(tokenizer, text) for text in pairs["instruction"]]
    labels = pairs["label"].to_numpy()
    lora = tu.add_lora(llm, r=8, top_layers=4, seed=seed)
    lora_batch = min(batch, n_lora)
    states = tu.lower_layer_states(llm, tokenizer, prompts[:lora_batch], 4)
    soft = tu.add_soft_prompt(llm, tokenizer, n_virtual_tokens=16)
    soft_batch = min(batch, n_soft)
    answers = ["Yes" if y else "No" for y in labels]
    probes = []
    for model, name, size, run, b in (
            (lora, f"LoRA, {n_lora} examples", n_lora,
             lambda n: tu.fit_from_states(lora, tokenizer, states * n, np.tile(labels[:lora_batch], n), 4,
                                          batch_size=lora_batch, lr=2e-3, seed=seed), lora_batch),
            (soft, f"soft prompt, {n_soft} examples", n_soft,
             lambda n: tu.fit_on_targets(soft, tokenizer, prompts[:soft_batch] * n, answers[:soft_batch] * n,
                                         batch_size=soft_batch, lr=3e-3, seed=seed), soft_batch)):
        counts = tu.trainable_parameters(model)
        probes.append(CostProbe(
            name, "10_tuning_llms", "ml-100k", "pair", counts["total"], counts["trainable"],
            {"tuning": (run, int(np.ceil(size / b)))}, lambda i, m=model: tu.score_yes_no(m, tokenizer, [prompts[i % len(prompts)]]),
            lambda m=model: tu.score_yes_no(m, tokenizer, prompts[:serve_batch], batch_size=serve_batch), serve_batch,
            ("steps on the top 4 layers only; the lower 26 run once per example to cache their states (not timed)"
             if "LoRA" in name else "every step runs the whole frozen model forwards and backwards; no separate warm-up "
             "step (the LoRA probe's warm-up already ran the same frozen SmolLM2 forwards and backwards)"),
            warmup=None if "LoRA" in name else 0))
    return probes


def lit_probe(shop, *, fast: bool, name: str = "fashion-lit image profile"):
    """Lesson 14: LiT (small ViT + locked MiniLM, open_clip), 12 epochs FAST / 25 full of batch 256 over the 2,400
    training products; a query is one new product's image encoded. Returns the probe and the untrained model."""
    from course_utils.multimodal import clip as clip_mod

    config = clip_mod.default_config(fast)
    model = clip_mod.build_lit_model(config)
    train_items, _ = clip_mod.product_split(config, pd_codes(shop))
    captions = clip_mod.captions_of(shop.items, config)
    batch = config["batch_size"]
    sub = train_items[:batch]
    total = config["epochs"] * int(np.ceil(len(train_items) / batch))
    params, trainable = _n_params(model)
    images = shop.images
    probe = CostProbe(
        name, "14_contrastive_clip", "fashion-shop", "image", params, trainable,
        {"contrastive": (lambda n: clip_mod.train_clip(model, images[sub], [captions[i] for i in sub],
                                                        {**config, "epochs": n}, device="cpu"), total)},
        lambda i: clip_mod.encode_images(model, images[i:i + 1]),
        lambda: clip_mod.encode_images(model, images[:256]), 256,
        "the locked MiniLM runs once per caption, outside the steps; serving encodes images only")
    return probe, model, config


def pd_codes(shop) -> np.ndarray:
    """The shop's category labels as the integer codes lesson 14's product split uses."""
    import pandas as pd

    from course_utils.data.fashion_mnist import CLASS_NAMES
    return pd.Categorical(shop.items["category"], categories=CLASS_NAMES).codes.astype(np.int64)


def albef_probe(shop, encoder, *, fast: bool, seed: int = 0, name: str = "ALBEF fused") -> CostProbe:
    """Lesson 15: ALBEF (CNN image encoder, 2-layer text BERT, 1 fusion layer, dim 64), ITC + ITM + MLM, 3 epochs
    FAST / 8 full of batch 64 over 2,400 products; a query is one product's fused embedding (both towers + fusion)."""
    import torch

    from course_utils.multimodal import fusion

    captions = fusion.product_captions(shop.items)
    order = np.random.default_rng(seed).permutation(shop.n_items)
    warm = np.sort(order[int(0.2 * shop.n_items):])
    words = fusion.CaptionTokenizer(encoder.tokenizer, [captions[i] for i in warm])
    tokens, pixels = words(captions), fusion.image_tensor(shop.images)
    config = fusion.AlbefConfig(vocab_size=words.vocab_size, dim=64, text_layers=2, fusion_layers=1,
                                max_length=tokens["input_ids"].shape[1])
    torch.manual_seed(seed)
    model = fusion.ALBEF(config, words.mask_token_id, words.pad_token_id)
    sub = warm[:64]
    sub_tokens = {k: v[sub] for k, v in tokens.items()}
    groups = fusion.visual_groups(shop.items)
    total = (3 if fast else 8) * int(np.ceil(len(warm) / 64))
    params, trainable = _n_params(model)
    encode = lambda rows: fusion.fused_embedding(model, fusion.encode_items(model, pixels[rows],
                                                                            {k: v[rows] for k, v in tokens.items()}))
    return CostProbe(name, "15_fusion_albef", "fashion-shop", "product", params, trainable,
                     {"ITC+ITM+MLM": (lambda n: fusion.fit_albef(model, pixels[sub], sub_tokens, n, 64, 1e-3,
                                                                 groups[sub], seed), total)}, lambda i: encode(np.array([i])), lambda: encode(np.arange(256)), 256,
                     "serving: one product through both towers and the fusion layer; profiles are means of these")


def mvae_probe(shop, split, text_vectors, *, fast: bool, seed: int = 0,
               name: str = "Multimodal Mult-VAE (PoE, InfoNCE λ=30)", contrast_weight: float = 30.0) -> CostProbe:
    """Lesson 16: the item VAE (images + MiniLM text vectors, 4 epochs FAST / 15 full of batch 256 over 3,000 items)
    then the user Mult-VAE on the items' posteriors (6 epochs FAST / up to 60 full, batch 64 over 500 users,
    early stopping); a query is one user scored over the catalogue."""
    import torch

    from course_utils.multimodal import mvae

    item_epochs, rec_epochs = (4, 6) if fast else (15, 60)
    torch.manual_seed(seed)
    vae = mvae.TwoModalityVAE(text_vectors.shape[1], 16, channels=8)
    images = shop.images
    sub = np.arange(256)
    experts = mvae.item_experts(vae, images, text_vectors)
    mu, logvar = mvae.combine_experts(*experts)
    X = split.train_matrix()
    rec = mvae.MultimodalMultVAE(mu, logvar, seed=seed, n_epochs=1, patience=3, lr=1e-2, batch_size=64)
    rec.fit(X[:64])

    def item_run(n):   # one epoch over 256 items = one step of batch 256
        mvae.train_item_vae(vae, images[sub], text_vectors[sub], contrast_weight=contrast_weight, n_epochs=n,
                            lr=3e-3, temperature=8.0, seed=seed)

    def rec_run(n):    # one epoch over 64 users = one step of batch 64
        rec.n_epochs = n
        rec.fit(X[:64])

    item_steps = item_epochs * int(np.ceil(shop.n_items / 256))
    rec_steps = rec_epochs * int(np.ceil(split.n_users / 64))
    history = split.history("test")
    params = sum(p.numel() for p in vae.parameters()) + sum(p.numel() for p in rec.net_.parameters())
    return CostProbe(name, "16_multimodal_vae", "fashion-shop", "user", params, params,
                     {"item VAE": (item_run, item_steps), "user Mult-VAE": (rec_run, rec_steps)},
                     lambda i: rec.score(np.array([i]), history),
                     lambda: rec.score(np.arange(split.n_users), history), split.n_users,
                     f"two stages: {item_steps} item-VAE steps, then up to {rec_steps} user steps (early stopping "
                     "may end sooner: the estimate is an upper bound)")


def unet_probe(shop, *, fast: bool, seed: int = 0, guidance: float = 1.0,
               name: str = "Conditional UNet + CFG (w=1)") -> CostProbe:
    """Lesson 17: a diffusers UNet2DModel with category/tone embeddings (12×12, 240 steps of 24 FAST; 16×16, 1,000
    steps of 32 full); a query is one generated image: DDIM 10 steps FAST / 20 full, two UNet passes per step
    under classifier-free guidance (one when w = 0)."""
    import torch

    from course_utils.multimodal import image_diffusion as D

    size, steps, batch, ddim = (12, 240, 24, 10) if fast else (16, 1000, 32, 20)
    category = torch.as_tensor(shop.item_features[:, :10].argmax(1))
    tone = torch.as_tensor(shop.item_features[:, 10:13].argmax(1))
    images = D.to_model_space(shop.images, size)
    torch.manual_seed(seed)
    unet = D.ConditionalUNet(size, (16, 32))
    scheduler = D.make_scheduler()
    params, trainable = _n_params(unet)
    requests = torch.arange(10).repeat(2)
    return CostProbe(name, "17_diffusion_generation", "fashion-shop", "image", params, trainable,
                     {"denoising": (lambda n: D.train_diffusion(unet, images, category, tone, n_steps=n, batch_size=batch,
                                                                lr=4e-3, p_uncond=0.15, seed=seed, scheduler=scheduler),
                                    steps)},
                     lambda i: D.generate(unet, requests[i:i + 1], guidance=guidance, n_steps=ddim, seed=seed,
                                          scheduler=scheduler),
                     lambda: D.generate(unet, requests, guidance=guidance, n_steps=ddim, seed=seed, scheduler=scheduler),
                     len(requests), f"DDIM {ddim} steps × {1 if guidance == 0 else 2} UNet passes per image")


def connector_probe(shop, clip, llm, tokenizer, *, fast: bool, seed: int = 0,
                    name: str = "LLaVA-style connector (mlp)", serve_batch: int = 8) -> CostProbe:
    """Lesson 18: the LLaVA-1.5 MLP projector between lesson 14's LiT vision tower and the frozen SmolLM2
    (6 steps FAST / 40 full of batch 8, caption loss through the whole LLM); a query is one greedy caption
    (6 new tokens) of one image."""
    import torch

    from course_utils.data.fashion_shop import NOUN
    from course_utils.multimodal import connector as C

    config = C.default_config("mlp", fast)
    items = np.arange(16)
    features = C.visual_features(clip, shop.images[items], grid=config["grid"])
    titles = shop.items["title"].to_numpy()[items]
    words = [NOUN[c] for c in shop.items["category"].to_numpy()[items]]
    captions = [C.training_caption(w, t) for w, t in zip(words, titles)]
    torch.manual_seed(config["seed"])
    projector = C.make_projector("mlp", features.shape[-1], llm.config.hidden_size)
    C.freeze(llm)
    params = C.n_trainable(projector) + sum(p.numel() for p in llm.parameters()) \
        + sum(p.numel() for p in clip.visual.parameters())
    b = config["batch_size"]
    prompt, embed = C.prompt_embeddings(llm, tokenizer, config["prompt"]), llm.get_input_embeddings()
    targets = C.tokenize_captions(tokenizer, captions)

    @torch.no_grad()
    def forward_once(i):   # one pass over prompt, image and a 6-token caption: the matrix products of cached decoding
        i = i % len(items)
        batch = C.assemble_inputs(projector(features[i:i + 1]), prompt, [targets[i][:5]], embed,
                                  tokenizer.eos_token_id, tokenizer.pad_token_id)
        return llm(inputs_embeds=batch["inputs_embeds"], attention_mask=batch["attention_mask"], logits_to_keep=6)

    return CostProbe(name, "18_multimodal_llm", "fashion-shop", "caption", params, C.n_trainable(projector),
                     {"caption loss": (lambda n: C.train_projector(projector, llm, tokenizer, features[:b], captions[:b],
                                                                   {**config, "steps": n}), config["steps"])},
                     lambda i: C.describe(llm, tokenizer, projector, features[i % len(items):i % len(items) + 1],
                                          max_new_tokens=6),
                     lambda: C.describe(llm, tokenizer, projector, features[:serve_batch], max_new_tokens=6),
                     serve_batch,
                     "up to 6 new tokens per caption, greedy; the vision tower runs once per image (counted in the parameters, "
                     "not in the per-query time); FLOPs and memory of one pass over prompt, image and 6 caption tokens "
                     "(what cached decoding multiplies); no separate warm-up step (the LoRA probe's warm-up already ran "
                     "SmolLM2 forwards and backwards)", measure=forward_once, warmup=0)


def logged_run(results, lesson: str, prefix: str, default: str, fast: bool) -> tuple[str, float]:
    """(model name, logged train_seconds) of ``lesson``'s leaderboard row whose name starts with ``prefix`` in
    this mode (the latest); ``(default, nan)`` when the lesson has not logged one."""
    if results is None or len(results) == 0 or "lesson" not in results:
        return default, float("nan")
    rows = results[(results["lesson"] == lesson) & (results["mode"] == ("FAST" if fast else "full"))
                   & results["model"].astype(str).str.startswith(prefix)]
    if rows.empty:
        return default, float("nan")
    row = rows.sort_values("logged_at").iloc[-1]
    seconds = row.get("train_seconds")
    return str(row["model"]), float("nan") if seconds is None or not np.isfinite(seconds) else float(seconds)
