"""Cost measurements of lesson 20: hand-computed percentiles, Pareto fronts, energy, FLOPs, memory, scaling."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from course_utils import efficiency as E
from course_utils.data.splits import History


def test_latency_percentiles_on_hand_cases():
    s = E.latency_summary([1, 2, 3, 4, 5])
    assert s["p50"] == 3 and s["p95"] == pytest.approx(4.8) and s["mean"] == 3 and s["max"] == 5 and s["n"] == 5
    # 20 requests of 10 ms and one of 1 s: the median hides the straggler, p95 interpolates towards it.
    s = E.latency_summary([0.01] * 20 + [1.0])
    assert s["p50"] == pytest.approx(0.01) and s["p95"] == pytest.approx(0.01) and s["max"] == 1.0
    s = E.latency_summary([0.01] * 18 + [1.0, 1.0])
    assert s["p95"] == pytest.approx(1.0)  # 5% of requests at 1 s: p95 = 0.01 + 0.05·19 positions in → 1.0
    assert E.latency_summary([7.0])["p95"] == 7.0


@pytest.mark.parametrize("bad", [[], [1.0, -0.1], [np.nan], [np.inf]])
def test_latency_refuses_bad_timings(bad):
    with pytest.raises(ValueError, match="timings|no timings"):
        E.latency_summary(bad)


def test_pareto_front_on_hand_cases():
    cost = [1.0, 2.0, 3.0, 2.0, 5.0]
    value = [0.1, 0.3, 0.2, 0.3, 0.4]
    # A (1, .1) cheapest; B and D tie at (2, .3) and both stay; C (3, .2) beaten by B; E (5, .4) best value.
    assert E.pareto_front(cost, value).tolist() == [True, True, False, True, True]
    assert E.pareto_front([1.0, 1.0], [0.5, 0.4]).tolist() == [True, False]  # same cost, lower value: dominated
    assert E.pareto_front([1.0, np.nan, 0.5], [0.1, 0.9, np.nan]).tolist() == [True, False, False]
    claim = E.pareto_claim(["A", "B", "C"], [1.0, 2.0, 3.0], [0.1, 0.3, 0.2], "latency (ms)")
    assert claim.case == ("A", "B") and "C" in claim.text and "2 of 3" in claim.text


def test_pareto_refuses_mismatched_inputs():
    with pytest.raises(ValueError, match="same length|one length"):
        E.pareto_front([1.0, 2.0], [0.1])
    with pytest.raises(ValueError, match="names"):
        E.pareto_claim(["A"], [1.0, 2.0], [0.1, 0.2], "x")


def test_energy_arithmetic():
    e = E.energy_estimate(cpu_seconds=3600, watts_per_core=10, grid_g_per_kwh=400, pue=1.5)
    assert e["joules"] == pytest.approx(3600 * 10 * 1.5)
    assert e["kwh"] == pytest.approx(0.015)  # 10 W for an hour is 10 Wh; × 1.5 = 15 Wh
    assert e["grams_co2e"] == pytest.approx(6.0)
    text = E.energy_arithmetic("EASE", 3600, 10, 400, 1.5)
    assert "54000 J" in text and "6.000 g CO2e" in text
    for kwargs in ({"cpu_seconds": -1}, {"watts_per_core": np.nan}, {"pue": 0.9}):
        with pytest.raises(ValueError):
            E.energy_estimate(**{"cpu_seconds": 1, "watts_per_core": 1, "grid_g_per_kwh": 1, **kwargs})


def test_flops_of_a_linear_layer_are_2mnk():
    layer, x = torch.nn.Linear(30, 20, bias=False), torch.randn(8, 30)
    _, flops = E.count_flops(layer, x)
    assert flops == 2 * 8 * 30 * 20 == E.matmul_flops(8, 30, 20)
    _, inverse = E.count_flops(torch.linalg.inv, torch.eye(5) * 2)
    assert inverse == 0  # the blind spot the lesson mentions
    with pytest.raises(ValueError, match="positive integer"):
        E.matmul_flops(0, 3, 4)


def test_ease_flops_match_the_flop_counter_on_the_scoring_product():
    n_users, n_items = 7, 12
    counts = E.ease_flops(n_users, n_items, history_lengths=np.array([1, 2, 3, 0, 4, 2, 2]))
    history, B = torch.rand(1, n_items), torch.rand(n_items, n_items)
    assert E.count_flops(torch.matmul, history, B)[1] == counts["score per user (dense)"]
    X = torch.rand(n_users, n_items)
    assert E.count_flops(torch.matmul, X.T, X)[1] == counts["gram (dense)"]
    assert counts["gram (sparse)"] == 2 * (1 + 4 + 9 + 16 + 4 + 4 + 0)
    assert counts["score per user (sparse)"] == pytest.approx(2 * 2 * n_items)
    assert counts["inverse"] == 2 * n_items ** 3


def test_memory_tools_see_what_they_should_and_not_the_rest():
    def numpy_work():
        a = np.ones(1_000_000)  # 8 MB
        return float(a.sum())

    def torch_work():
        a = torch.ones(2_000_000)  # 8 MB
        b = a * 2  # another 8 MB while a is alive
        del a
        return float(b.sum())

    assert E.tracemalloc_peak(numpy_work)[1] >= 8_000_000
    assert E.tracemalloc_peak(torch_work)[1] < 1_000_000  # torch allocates outside Python: invisible
    assert 16_000_000 <= E.torch_profiler_peak(torch_work)[1] < 17_000_000
    assert E.torch_profiler_peak(numpy_work)[1] < 1_000_000
    assert E.memory_events_peak([(2, -5), (1, 10), (3, 4)]) == 10
    assert E.memory_events_peak([]) == 0


def test_serving_helpers_time_every_user():
    X = sp.csr_matrix(np.eye(4, 6, dtype=np.float32))
    history = History(X, [np.array([u]) for u in range(4)])
    score = lambda users, h: np.tile(np.arange(6, dtype=np.float32), (len(users), 1))
    seconds = E.single_user_latencies(score, np.arange(4), history, k=2)
    assert seconds.shape == (4,) and (seconds > 0).all()
    out = E.batched_throughput(score, np.arange(4), history, batch_size=3, k=2)
    assert out["users_per_second"] == pytest.approx(4 / out["seconds"])
    assert E._serve(score, np.array([3]), history, 2).tolist() == [[5, 4]]
    assert E._serve(score, np.array([0]), History(sp.csr_matrix(np.eye(1, 6, 5, dtype=np.float32)), [[5]]),
                    2).tolist() == [[4, 3]]  # the history item 5 is hidden
    with pytest.raises(ValueError, match="users"):
        E.single_user_latencies(score, np.array([]), history)
    with pytest.raises(ValueError, match="positive"):
        E.batched_throughput(score, np.arange(4), history, batch_size=0)
    t = E.timed(sum, [1, 2])
    assert t.result == 3 and t.wall_seconds >= 0 and t.cpu_seconds >= 0


def test_power_law_fit_recovers_the_exponent():
    sizes = np.array([100, 200, 400, 800])
    exponent, prefactor = E.fit_power_law(sizes, 3e-9 * sizes ** 3)
    assert exponent == pytest.approx(3.0) and prefactor == pytest.approx(3e-9)
    assert E.scaling_claim("EASE", 2.9, 3, "n").case == "as theory"
    assert E.scaling_claim("EASE", 2.0, 3, "n").case == "below"
    assert E.scaling_claim("EASE", 4.0, 3, "n").case == "above"
    with pytest.raises(ValueError, match="positive"):
        E.fit_power_law([1, 2], [0.0, 1.0])
    with pytest.raises(ValueError, match="two different sizes"):
        E.fit_power_law([3, 3], [1.0, 2.0])


def test_synthetic_growth():
    X = sp.csr_matrix(np.array([[1, 0, 1], [0, 1, 1]], dtype=np.float32))
    grown = E.grow_catalogue(X, 3, keep=1.0)
    assert grown.shape == (2, 9) and (grown.toarray() == np.tile(X.toarray(), 3)).all()
    thinned = E.grow_catalogue(X, 2, keep=0.5, seed=1)
    assert (thinned[:, :3] != X).nnz == 0 and thinned[:, 3:].nnz <= X.nnz  # the original, then a thinned copy
    with pytest.raises(ValueError, match="factor"):
        E.grow_catalogue(X, 0)
    seqs = E.extend_sequences([np.array([1, 2, 3]), np.array([4])], 7)
    assert seqs.shape == (2, 7) and set(seqs[1]) == {4} and set(seqs[0]) == {1, 2, 3}
    with pytest.raises(ValueError, match="empty"):
        E.extend_sequences([np.array([], dtype=int)], 3)


def test_resize_and_attention_flops():
    X = sp.csr_matrix(np.eye(5, 10, dtype=np.float32))
    assert E.resize_catalogue(X, 4).shape == (5, 4) and E.resize_catalogue(X, 25).shape == (5, 25)
    with pytest.raises(ValueError, match="n_items"):
        E.resize_catalogue(X, 0)
    q = torch.randn(3, 7, 16)
    manual = E.count_flops(lambda: torch.softmax(q @ q.transpose(1, 2), -1) @ q)[1]
    assert manual == E.attention_flops(3, 7, 16, n_blocks=1)  # the counter sees bmm, so the formula is checkable


def tiny_split(n_users=30, n_items=40, per_user=8, seed=0):
    import pandas as pd

    from course_utils.data.splits import leave_one_out_split
    rng = np.random.default_rng(seed)
    rows = [(u, int(i), t) for u in range(n_users)
            for t, i in enumerate(rng.choice(n_items, per_user, replace=False))]
    ratings = pd.DataFrame(rows, columns=["user", "item", "timestamp"]).assign(rating=5)
    return leave_one_out_split(ratings, n_users=n_users, n_items=n_items)


def test_profile_recommender_fills_every_column():
    from course_utils.models.baselines import EASE, Popularity
    split = tiny_split()
    fit = E.timed(EASE(l2=10.0).fit, split.train_matrix())
    row, per_user = E.profile_recommender("EASE", fit.result, split, fit, n_single=5, batch_size=8,
                                          flops_per_user=123.0)
    assert row["MFLOP per user"] == pytest.approx(123e-6) and row["params"] == 40 * 40
    assert per_user.shape == (30,) and 0 <= row["NDCG@10"] <= 1 and row["p95 ms (1 user)"] >= row["p50 ms (1 user)"]
    assert row["peak MB torch"] == 0 and row["users/s (batched)"] > 0
    pop = Popularity().fit(split.train_matrix())
    row, _ = E.profile_recommender("Popularity", pop, split, E.timed(lambda: pop), n_single=3)
    assert np.isnan(row["MFLOP per user"])  # numpy code: the counter sees nothing, and says so with NaN
    row, _ = E.profile_recommender("Popularity", pop, split, E.timed(lambda: pop), n_single=3, params=7)
    assert row["params"] == 7   # e.g. a re-ranker that runs another model's weights


def test_scaling_tables_on_a_tiny_catalogue():
    split = tiny_split()
    rows = E.ease_size_costs(split.train_matrix(), [20, 40, 80], l2=10.0, n_score=8)
    assert [r["items"] for r in rows] == [20, 40, 80] and all(r["fit s"] > 0 for r in rows)
    seq = E.sasrec_length_costs(split.history("valid").sequences, split.n_items, [4, 8], batch_size=4, repeats=1,
                                dim=8)
    assert [r["L"] for r in seq] == [4, 8]
    assert seq[1]["counted train GFLOP"] > seq[0]["counted train GFLOP"]
    assert seq[1]["attention GFLOP (analytic, forward)"] == pytest.approx(4 * seq[0]["attention GFLOP (analytic, forward)"])


# --- section 4b: timed training steps and cost probes ------------------------------------------

def _tiny_trainer():
    torch.manual_seed(0)
    frozen, head = torch.nn.Linear(4, 3, bias=False), torch.nn.Linear(3, 2, bias=False)
    frozen.requires_grad_(False)
    x, y = torch.randn(16, 4), torch.randn(16, 2)
    optimiser = torch.optim.SGD(head.parameters(), lr=0.1)
    calls = []

    def run_steps(n):
        calls.append(n)
        for _ in range(n):
            loss = torch.nn.functional.mse_loss(head(frozen(x)), y)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return frozen, head, x, run_steps, calls


def test_time_steps_runs_the_warmup_then_the_timed_steps():
    _, head, _, run_steps, calls = _tiny_trainer()
    before = head.weight.detach().clone()
    timing = E.time_steps(run_steps, n_steps=3, warmup=1)
    assert calls == [1, 3] and timing["steps_timed"] == 3 and timing["warmup_steps"] == 1
    assert not torch.equal(before, head.weight)            # real optimisation steps happened
    assert timing["seconds_per_step"] > 0 and timing["cpu_seconds_per_step"] >= 0
    calls.clear()
    E.time_steps(run_steps, n_steps=2, warmup=0)
    assert calls == [2]


def test_time_steps_divides_by_the_number_of_steps():
    import time as clock
    timing = E.time_steps(lambda n: clock.sleep(0.02 * n), n_steps=3, warmup=0)
    assert 0.02 <= timing["seconds_per_step"] < 0.05        # 0.06 s over 3 steps, plus call overhead
    assert timing["cpu_seconds_per_step"] < timing["seconds_per_step"]   # sleeping costs no CPU


def test_training_estimate_is_seconds_per_step_times_steps():
    estimate = E.training_estimate({"seconds_per_step": 0.5, "cpu_seconds_per_step": 0.25}, 40)
    assert estimate == {"wall_seconds": 20.0, "cpu_seconds": 10.0, "steps": 40}
    assert E.training_estimate({"seconds_per_step": 1.5, "cpu_seconds_per_step": 3.0}, 1)["cpu_seconds"] == 3.0


@pytest.mark.parametrize("kwargs, match", [
    ({"n_steps": 0}, "n_steps"), ({"n_steps": 1.5}, "n_steps"), ({"n_steps": True}, "n_steps"),
    ({"warmup": -1}, "warmup"), ({"warmup": 0.5}, "warmup")])
def test_time_steps_refuses_bad_counts(kwargs, match):
    with pytest.raises(ValueError, match=match):
        E.time_steps(lambda n: None, **kwargs)


def test_time_steps_and_estimate_refuse_bad_inputs():
    with pytest.raises(ValueError, match="function"):
        E.time_steps("train", 2)
    good = {"seconds_per_step": 1.0, "cpu_seconds_per_step": 1.0}
    for steps in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="total_steps"):
            E.training_estimate(good, steps)
    with pytest.raises(ValueError, match="lacks"):
        E.training_estimate({"seconds_per_step": 1.0}, 10)
    with pytest.raises(ValueError, match="finite and non-negative"):
        E.training_estimate({"seconds_per_step": -1.0, "cpu_seconds_per_step": 1.0}, 10)
    with pytest.raises(ValueError, match="finite and non-negative"):
        E.training_estimate({"seconds_per_step": 1.0, "cpu_seconds_per_step": float("nan")}, 10)


def test_profile_probe_on_a_tiny_model_with_a_frozen_part():
    frozen, head, x, run_steps, calls = _tiny_trainer()
    total, trainable = E._n_params(frozen, head)
    assert (total, trainable) == (4 * 3 + 3 * 2, 3 * 2)
    probe = E.CostProbe("tiny", "00_test", "toy", "row", total, trainable, {"sgd": (run_steps, 50)},
                        lambda i: head(frozen(x[i % 16:i % 16 + 1])), lambda: head(frozen(x)), 16, "a note")
    row = E.profile_probe(probe, n_steps=2, n_queries=4, warmup=1)
    assert calls == [1, 2]
    assert row["lesson steps"] == 50 and row["steps timed"] == 2 and row["trainable share"] == pytest.approx(6 / 18)
    assert row["est. train wall s"] == pytest.approx(50 * row["s per step"])
    # FlopCounterMode on one query: a (1×4)(4×3) and a (1×3)(3×2) product, 2mkn each.
    assert row["MFLOP per query"] * 1e6 == pytest.approx(E.matmul_flops(1, 4, 3) + E.matmul_flops(1, 3, 2))
    assert row["p95 ms (1 query)"] >= row["p50 ms (1 query)"] > 0
    assert row["queries/s (batched)"] == pytest.approx(1e3 / row["ms per query (batched)"])
    two = E.CostProbe("two", "00_test", "toy", "row", total, trainable, {"a": (run_steps, 10), "b": (run_steps, 30)},
                      probe.query, probe.batch, 16)
    row = E.profile_probe(two, n_steps=1, n_queries=1, warmup=0)
    assert row["lesson steps"] == 40 and row["steps timed"] == 2 and row["peak MB torch"] >= 0
    row = E.profile_probe(two, n_steps=1, n_queries=1, warmup=0, memory=False)   # FAST: no profiler pass
    assert np.isnan(row["peak MB torch"]) and row["MFLOP per query"] > 0
    with pytest.raises(ValueError, match="n_queries"):
        E.profile_probe(probe, n_queries=0)
    with pytest.raises(ValueError, match="no training stage"):
        E.profile_probe(E.CostProbe("none", "00", "toy", "row", 1, 1, {}, probe.query, probe.batch, 1))


def test_logged_run_finds_the_latest_row_of_the_mode_by_prefix():
    import pandas as pd
    results = pd.DataFrame([
        {"lesson": "17_x", "mode": "FAST", "model": "UNet (w=1)", "train_seconds": 5.0, "logged_at": "2026-01-01 10:00:00"},
        {"lesson": "17_x", "mode": "FAST", "model": "UNet (w=2)", "train_seconds": 7.0, "logged_at": "2026-01-02 10:00:00"},
        {"lesson": "17_x", "mode": "full", "model": "UNet (w=4)", "train_seconds": 70.0, "logged_at": "2026-01-03 10:00:00"},
        {"lesson": "18_y", "mode": "FAST", "model": "UNet (w=9)", "train_seconds": 1.0, "logged_at": "2026-01-04 10:00:00"}])
    assert E.logged_run(results, "17_x", "UNet", "UNet (w=1)", fast=True) == ("UNet (w=2)", 7.0)
    assert E.logged_run(results, "17_x", "UNet", "UNet (w=1)", fast=False) == ("UNet (w=4)", 70.0)
    name, seconds = E.logged_run(results, "16_z", "VAE", "VAE (λ=30)", fast=True)
    assert name == "VAE (λ=30)" and np.isnan(seconds)
    assert E.logged_run(pd.DataFrame(), "17_x", "UNet", "d", fast=True)[0] == "d"
