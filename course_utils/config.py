"""Run-time configuration shared by every lesson: seeds, device, FAST mode, offline detection.

Everything here reads the environment once and is cheap to call again, so
notebooks can simply call ``setup_course()`` at the top.
"""
from __future__ import annotations

import functools
import os
import random
import socket
from pathlib import Path

import numpy as np

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _env_flag(name: str, default: bool = False) -> bool:
    """Read a boolean environment variable, refusing values we cannot interpret."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"environment variable {name}={raw!r}: expected one of 1/0, true/false, yes/no, on/off")


def is_fast() -> bool:
    """FAST mode: small epochs and subsets so a lesson runs in about a minute.

    On in tests and CI (``COURSE_FAST=1``), off for students by default.
    """
    return _env_flag("COURSE_FAST", default=False)


def seed_everything(seed: int = 42) -> int:
    """Seed Python, NumPy and torch (CPU and CUDA) so that reruns give the same numbers."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    try:
        import torch
    except ImportError:  # torch-free helpers (data, metrics) still work
        return seed
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return seed


def get_device(prefer: str | None = None):
    """Pick CUDA, then Apple's MPS, then CPU; ``prefer`` (or ``COURSE_DEVICE``) forces one."""
    import torch

    choice = prefer or os.environ.get("COURSE_DEVICE")
    if choice:
        if choice not in {"cuda", "mps", "cpu"}:
            raise ValueError(f"device must be 'cuda', 'mps' or 'cpu', got {choice!r}")
        return torch.device(choice)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@functools.lru_cache(maxsize=None)
def is_offline(host: str = "huggingface.co", timeout: float = 1.5) -> bool:
    """True when the Hugging Face hub cannot be reached (or ``HF_HUB_OFFLINE=1`` says so).

    The answer is cached for the session: a lesson asks many times, the network
    does not change that quickly, and a failed DNS lookup can cost seconds.
    """
    if _env_flag("HF_HUB_OFFLINE") or _env_flag("COURSE_OFFLINE"):
        return True
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return False
    except OSError:
        return True


def cache_dir(*parts: str) -> Path:
    """Directory for downloads and converted models: ``$COURSE_CACHE`` or ``~/.cache/gen-recsys-course``.

    Kept outside the repository so that git never sees licensed data or large weights.
    """
    root = Path(os.environ.get("COURSE_CACHE") or Path.home() / ".cache" / "gen-recsys-course")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def quiet_progress() -> None:
    """Silence library progress bars and chatty warnings; tests and CI call this."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass


def limit_cpu_threads() -> int:
    """Use at most half the cores (at least one) for torch's CPU kernels, unless OMP_NUM_THREADS says otherwise.

    The course's models are small: extra threads buy little, and when they compete
    with another process for the cores (a second notebook, a test worker) their
    spin-waiting made training over ten times slower on a 2-core machine.
    """
    import torch

    requested = os.environ.get("OMP_NUM_THREADS")
    threads = int(requested) if requested and requested.isdigit() else max(1, min(4, (os.cpu_count() or 2) // 2))
    torch.set_num_threads(threads)
    return threads


def setup_course(seed: int = 42, fast: bool | None = None) -> dict:
    """One call at the top of every lesson: seed, quiet logs, pick a device, report the mode.

    ``fast=None`` follows ``COURSE_FAST``; True or False (e.g. a papermill parameter)
    is written back to ``COURSE_FAST`` so that every helper, the results log
    included, agrees on the mode.
    """
    if fast is not None:
        if not isinstance(fast, bool):
            raise ValueError(f"fast must be True, False or None, got {fast!r}")
        os.environ["COURSE_FAST"] = "1" if fast else "0"
    seed_everything(seed)
    quiet_progress()
    info = {"seed": seed, "fast": is_fast(), "offline": is_offline()}
    try:
        info["device"] = str(get_device())
        info["cpu_threads"] = limit_cpu_threads()
    except ImportError:
        info["device"] = "cpu (torch not installed)"
    return info
