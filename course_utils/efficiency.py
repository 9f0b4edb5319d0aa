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
                        k: int = 10, seed: int = 0, flops_per_user: float | None = None) -> tuple[dict, np.ndarray]:
    """Every cost of one fitted course model, and its per-user test NDCG@10 (course protocol).

    ``train`` is the :class:`Timed` fit. Latency: ``n_single`` random users served one at a time;
    throughput: every user in batches of ``batch_size``; memory and FLOPs: ``model.score`` on one batch.
    ``flops_per_user`` overrides the counter (for numpy/scipy models, whose FLOPs it cannot see).
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
    params = getattr(model, "n_params", None)
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
