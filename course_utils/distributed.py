"""Data-parallel training of Mult-VAE with ``torch.distributed`` (lesson 20, survey section 5.1.2).

Data parallelism in three lines: every process (a *rank*) holds the same model, computes the
gradient on its own share of each global batch, and the ranks average their gradients with an
all-reduce before every optimiser step, so all ranks take the same step and stay identical.

Here the averaging is written out (one ``all_reduce`` of all gradients flattened into one buffer,
as DistributedDataParallel does with its gradient buckets), so that the time spent communicating
can be measured apart from the time spent computing. Each rank's loss is its rows' summed loss
divided by the *global* batch size, so the summed gradients equal the single-process gradient of
the whole batch, for any split of the rows. The random dropout masks and latent noise are drawn for
the whole global batch from a generator seeded by (seed, step) and sliced per rank, so a run on
W processes follows the single-process run up to floating-point summation order.

The workers are started with ``torch.multiprocessing`` in *spawn* mode: each is a fresh Python
that imports this module (never a notebook's globals), which works the same in Jupyter, under
pytest-xdist and in a script. A free port is picked for the rendezvous, and a run that exceeds its
timeout is stopped with a clear error instead of hanging.
"""
from __future__ import annotations

import os
import socket
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from course_utils.data.splits import check_interaction_matrix
from course_utils.models.autoencoders import MultVAE, MultVAENet, annealed_beta


@dataclass(frozen=True)
class VAEConfig:
    """Mult-VAE and its training, shared by the single-process and the data-parallel run."""

    hidden_dim: int = 600
    latent_dim: int = 200
    dropout: float = 0.5
    beta_cap: float = 0.2
    anneal_steps: int = 2000
    lr: float = 1e-3
    batch_size: int = 128  # the GLOBAL batch: each of W ranks computes about batch_size / W rows
    n_epochs: int = 10
    seed: int = 0

    def __post_init__(self):
        for name in ("hidden_dim", "latent_dim", "anneal_steps", "batch_size", "n_epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0 <= self.dropout < 1 or self.lr <= 0 or self.beta_cap < 0:
            raise ValueError(f"need 0 <= dropout < 1, lr > 0, beta_cap >= 0; got {self.dropout}, {self.lr}, "
                             f"{self.beta_cap}")


def build_net(n_items: int, config: VAEConfig) -> MultVAENet:
    """The same initial weights on every rank: the seed decides them."""
    torch.manual_seed(config.seed)
    return MultVAENet(n_items, (config.hidden_dim,), config.latent_dim, config.dropout)


def batch_noise(n_rows: int, n_items: int, config: VAEConfig, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Dropout keep-mask (n_rows × n_items) and latent noise (n_rows × latent) of one global batch."""
    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
    keep = (torch.rand(n_rows, n_items, generator=generator) >= config.dropout).float()
    eps = torch.randn(n_rows, config.latent_dim, generator=generator)
    return keep, eps


def summed_loss(net: MultVAENet, x: torch.Tensor, keep: torch.Tensor, eps: torch.Tensor, beta: float) -> torch.Tensor:
    """Σ over the rows of x of the Mult-VAE loss (multinomial NLL + β·KL), with the given noise."""
    mu, logvar = net.encode(x * keep)
    logits = net.decoder(mu + eps * torch.exp(0.5 * logvar))
    nll = -(F.log_softmax(logits, dim=1) * x).sum(dim=1)
    kl = 0.5 * (torch.exp(logvar) + mu ** 2 - 1.0 - logvar).sum(dim=1)
    return (nll + beta * kl).sum()


def epoch_batches(n_rows: int, config: VAEConfig, epoch: int) -> list[np.ndarray]:
    """The global batches of one epoch (row positions), the same on every rank."""
    order = np.random.default_rng([config.seed, epoch]).permutation(n_rows)
    return [order[lo:lo + config.batch_size] for lo in range(0, n_rows, config.batch_size)]


def flat_gradient(net: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.reshape(-1) for p in net.parameters()])


def _assign_gradient(net: torch.nn.Module, flat: torch.Tensor) -> None:
    offset = 0
    for p in net.parameters():
        p.grad.copy_(flat[offset:offset + p.numel()].view_as(p))
        offset += p.numel()


def train_vae(X: sp.csr_matrix, config: VAEConfig, rank: int = 0, world_size: int = 1,
              max_steps: int | None = None, reduce: bool = True) -> dict:
    """Train on ``X`` (users × items) as rank ``rank`` of ``world_size`` (1: a plain single process).

    Returns the final ``state`` dict, the loss per epoch, the first step's (averaged) gradient as one flat
    tensor (``first_gradient``), and seconds: ``setup_seconds`` (building the model and the optimiser; in a
    fresh process the first Adam also imports parts of torch), ``compute_seconds`` and
    ``communicate_seconds`` (the all-reduce). ``max_steps`` stops early (the gradient check uses 1).
    ``reduce=False`` skips the all-reduce, so a rank keeps the gradient of its own share (for tests).
    """
    import torch.distributed as dist

    if not 0 <= rank < world_size:
        raise ValueError(f"rank must lie in 0..world_size-1 = {world_size - 1}, got {rank}")
    reduce = reduce and world_size > 1
    if reduce and not (dist.is_available() and dist.is_initialized()):
        raise ValueError(f"world_size={world_size} needs a process group (torch.distributed.init_process_group) "
                         "to average gradients; use run_data_parallel, or reduce=False to keep one rank's share")

    X = check_interaction_matrix(X)
    rows = np.flatnonzero(X.getnnz(axis=1))
    start = time.perf_counter()
    net = build_net(X.shape[1], config)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    setup = time.perf_counter() - start
    compute = communicate = 0.0
    losses, step, first_gradient = [], 0, None
    for epoch in range(config.n_epochs):
        net.train()
        total = 0.0
        for batch in epoch_batches(len(rows), config, epoch):
            start = time.perf_counter()
            keep, eps = batch_noise(len(batch), X.shape[1], config, step)
            mine = np.arange(rank, len(batch), world_size)  # this rank's share of the global batch
            x = torch.as_tensor(X[rows[batch[mine]]].toarray())
            loss = summed_loss(net, x, keep[mine], eps[mine], annealed_beta(step, config.anneal_steps,
                                                                           config.beta_cap)) / len(batch)
            optimizer.zero_grad()
            loss.backward()
            compute += time.perf_counter() - start
            if reduce:
                start = time.perf_counter()
                # One buffer: every gradient, then the loss (for the log). Σ over ranks of (rows' loss / global batch).
                flat = torch.cat([flat_gradient(net), loss.detach().reshape(1)])
                dist.all_reduce(flat, op=dist.ReduceOp.SUM)
                _assign_gradient(net, flat[:-1])
                communicate += time.perf_counter() - start
                total += flat[-1].item() * len(batch)
            else:
                total += loss.item() * len(batch)
            if step == 0:
                first_gradient = flat_gradient(net).clone()
            step += 1
            start = time.perf_counter()
            optimizer.step()
            compute += time.perf_counter() - start
            if max_steps is not None and step >= max_steps:
                break
        losses.append(total / len(rows))
        if max_steps is not None and step >= max_steps:
            break
    return {"state": {k: v.detach().clone() for k, v in net.state_dict().items()}, "losses": losses,
            "first_gradient": first_gradient, "setup_seconds": setup, "compute_seconds": compute,
            "communicate_seconds": communicate, "steps": step}


def as_recommender(state: dict, n_items: int, config: VAEConfig) -> MultVAE:
    """A course ``MultVAE`` (``score(users, history)``) holding trained weights ``state``."""
    model = MultVAE(hidden_dims=(config.hidden_dim,), latent_dim=config.latent_dim, dropout=config.dropout,
                    device="cpu")
    model.net_ = build_net(n_items, config)
    model.net_.load_state_dict(state)
    model.net_.eval()
    return model


# --- running W processes ---------------------------------------------------------------------

def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1 (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _worker(rank: int, world_size: int, port: int, X, config_dict: dict, out_dir: str, threads: int,
            max_steps, launched_at: float, timeout_s: float) -> None:
    """One rank: join the group, train, write its result file (spawned: runs in a fresh interpreter)."""
    import torch.distributed as dist

    started = time.time()
    torch.set_num_threads(threads)
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    start = time.perf_counter()
    dist.init_process_group("gloo", rank=rank, world_size=world_size, timeout=timedelta(seconds=timeout_s))
    init_seconds = time.perf_counter() - start
    try:
        start = time.perf_counter()
        result = train_vae(X, VAEConfig(**config_dict), rank, world_size, max_steps=max_steps)
        result["train_seconds"] = time.perf_counter() - start - result["setup_seconds"]  # the training loop
        result["start_seconds"], result["init_seconds"] = started - launched_at, init_seconds
        if rank != 0:
            result["state"] = None  # identical on every rank; rank 0's copy is enough
        path = Path(out_dir) / f"rank{rank}.pt"
        torch.save(result, path.with_suffix(".tmp"))
        os.replace(path.with_suffix(".tmp"), path)  # atomic: the parent never reads half a file
    finally:
        dist.destroy_process_group()


def run_data_parallel(X: sp.csr_matrix, config: VAEConfig, world_size: int = 2, threads: int = 1,
                      max_steps: int | None = None, timeout_s: float = 300.0) -> dict:
    """Train with ``world_size`` spawned processes (gloo backend); returns rank 0's result plus timings.

    The result has rank 0's trained ``state``, losses and ``first_gradient``; per rank (lists) the
    ``start_seconds`` (spawn to the worker running: a fresh Python importing torch), ``init_seconds``
    (joining the group, which includes waiting for the slowest rank), ``setup_seconds`` (model and
    optimiser), ``train_seconds`` (the training loop), ``compute_seconds`` and ``communicate_seconds``;
    and the parent's ``wall_seconds`` from spawn to the last result read.
    """
    import torch.multiprocessing as mp

    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be a positive integer, got {world_size!r}")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s}")
    X = check_interaction_matrix(X)
    if X.getnnz(axis=1).astype(bool).sum() < world_size:
        raise ValueError(f"{world_size} processes need at least {world_size} users with interactions")
    wall = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="course-ddp-") as out_dir:
        context = mp.start_processes(
            _worker, args=(world_size, free_port(), X, asdict(config), out_dir, threads, max_steps, time.time(),
                           timeout_s), nprocs=world_size, join=False, start_method="spawn")
        deadline = time.monotonic() + timeout_s
        try:
            while not context.join(timeout=max(0.1, min(1.0, deadline - time.monotonic()))):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"data-parallel training did not finish within {timeout_s:.0f} s; "
                                       "the workers were stopped. Is another process using the cores?")
        except mp.ProcessRaisedException as error:
            raise RuntimeError(f"a data-parallel worker failed:\n{error}") from None
        finally:
            for process in context.processes:
                if process.is_alive():
                    process.terminate()
        ranks = [torch.load(Path(out_dir) / f"rank{r}.pt", weights_only=False) for r in range(world_size)]
    result = dict(ranks[0])
    for key in ("setup_seconds", "compute_seconds", "communicate_seconds", "train_seconds", "start_seconds",
                "init_seconds"):
        result[key] = [r[key] for r in ranks]
    result["wall_seconds"] = time.perf_counter() - wall
    return result


def gradient_check(X: sp.csr_matrix, config: VAEConfig, world_size: int = 2, timeout_s: float = 120.0,
                   parallel: dict | None = None) -> dict:
    """The first step's gradient averaged over ``world_size`` processes against one process on the whole batch.

    ``parallel`` reuses the result of a :func:`run_data_parallel` call (its ``first_gradient``) instead of
    starting processes again. Returns both flat gradients and the largest absolute and relative difference.
    """
    if parallel is None:
        parallel = run_data_parallel(X, config, world_size, max_steps=1, timeout_s=timeout_s)
    single = train_vae(X, config, max_steps=1)["first_gradient"]
    diff = (parallel["first_gradient"] - single).abs().max().item()
    return {"parallel": parallel["first_gradient"], "single": single, "max_abs_diff": diff,
            "max_rel_diff": diff / max(single.abs().max().item(), 1e-30)}
