"""Data-parallel Mult-VAE: two gloo processes give the single-process gradient; bad inputs fail clearly."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from course_utils.distributed import (VAEConfig, as_recommender, epoch_batches, free_port, gradient_check,
                                      run_data_parallel, train_vae)
from course_utils.data.splits import History


def tiny_matrix(n_users=24, n_items=30, seed=0):
    rng = np.random.default_rng(seed)
    X = (rng.random((n_users, n_items)) < 0.2).astype(np.float32)
    X[np.arange(n_users), rng.integers(0, n_items, n_users)] = 1.0  # nobody empty
    return sp.csr_matrix(X)


TINY = VAEConfig(hidden_dim=16, latent_dim=4, batch_size=10, n_epochs=2, seed=3)


def test_two_processes_average_to_the_single_process_gradient_and_weights():
    X = tiny_matrix()
    result = run_data_parallel(X, TINY, world_size=2, timeout_s=300)
    check = gradient_check(X, TINY, parallel=result)
    assert check["max_rel_diff"] < 1e-5, check["max_abs_diff"]
    single = train_vae(X, TINY)
    assert result["steps"] == single["steps"] == 2 * 3  # 24 users, global batch 10: 3 steps per epoch
    for key, value in single["state"].items():
        assert torch.allclose(result["state"][key], value, atol=1e-5), key
    assert np.allclose(result["losses"], single["losses"], rtol=1e-5)
    assert all(s > 0 for s in result["communicate_seconds"]) and len(result["start_seconds"]) == 2


def test_rank_shares_cover_the_global_batch_and_sum_to_its_loss():
    X = tiny_matrix()
    full = train_vae(X, TINY, max_steps=1)["first_gradient"]
    halves = [train_vae(X, TINY, rank=r, world_size=2, max_steps=1, reduce=False)["first_gradient"] for r in range(2)]
    # reduce=False: no all-reduce, so each rank keeps the gradient of its own share; the shares add up.
    assert torch.allclose(halves[0] + halves[1], full, atol=1e-6)


def test_epoch_batches_are_a_permutation_and_the_same_on_every_call():
    batches = epoch_batches(25, TINY, epoch=1)
    assert sorted(np.concatenate(batches).tolist()) == list(range(25))
    assert all(np.array_equal(a, b) for a, b in zip(batches, epoch_batches(25, TINY, epoch=1)))


def test_trained_state_serves_the_course_contract():
    X = tiny_matrix()
    model = as_recommender(train_vae(X, TINY)["state"], X.shape[1], TINY)
    scores = model.score(np.array([0, 5]), History(X, [np.flatnonzero(X[u].toarray()) for u in range(X.shape[0])]))
    assert scores.shape == (2, X.shape[1]) and np.isfinite(scores).all()


def test_free_port_is_bindable():
    import socket
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_bad_inputs_are_refused_clearly():
    X = tiny_matrix()
    with pytest.raises(ValueError, match="world_size"):
        run_data_parallel(X, TINY, world_size=0)
    with pytest.raises(ValueError, match="threads"):
        run_data_parallel(X, TINY, threads=0)
    with pytest.raises(ValueError, match="timeout_s"):
        run_data_parallel(X, TINY, timeout_s=0)
    with pytest.raises(ValueError, match="need at least 3 users"):
        run_data_parallel(sp.csr_matrix(np.eye(2, 5, dtype=np.float32)), TINY, world_size=3)
    with pytest.raises(ValueError, match="batch_size"):
        VAEConfig(batch_size=0)
    with pytest.raises(ValueError, match="dropout"):
        VAEConfig(dropout=1.0)
    with pytest.raises(ValueError, match="no interactions"):
        train_vae(sp.csr_matrix((3, 4), dtype=np.float32), TINY)


def test_a_run_over_its_timeout_stops_with_a_clear_error():
    X = tiny_matrix()
    with pytest.raises(TimeoutError, match="did not finish within"):
        run_data_parallel(X, VAEConfig(hidden_dim=16, latent_dim=4, batch_size=10, n_epochs=10_000), timeout_s=3)


def test_averaging_without_a_process_group_is_refused():
    with pytest.raises(ValueError, match="needs a process group"):
        train_vae(tiny_matrix(), TINY, rank=0, world_size=2)
    with pytest.raises(ValueError, match="rank must lie"):
        train_vae(tiny_matrix(), TINY, rank=2, world_size=2, reduce=False)
