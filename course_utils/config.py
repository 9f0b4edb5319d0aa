"""Run-time configuration shared by every lesson: seeds, device, FAST mode, offline detection.

Everything here reads the environment once and is cheap to call again, so
notebooks can simply call ``setup_course()`` at the top.
"""
from __future__ import annotations

import functools
import os
import random
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from course_utils.io import remove_path

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
    """Pick CUDA, then Apple's MPS, then CPU; ``prefer`` (or ``COURSE_DEVICE``) forces one.

    A forced device that is not there is an error, not a quiet fall-back to the CPU:
    ``COURSE_DEVICE=cuda`` on a machine without a GPU would otherwise "pass" a GPU run
    while measuring CPU times.
    """
    import torch

    choice = prefer or os.environ.get("COURSE_DEVICE")
    if choice:
        choice = choice.strip().lower()
        if choice not in {"cuda", "mps", "cpu"}:
            raise ValueError(f"device must be 'cuda', 'mps' or 'cpu', got {choice!r}")
        source = f"get_device({prefer!r})" if prefer else f"COURSE_DEVICE={os.environ['COURSE_DEVICE']!r}"
        if choice == "cuda" and not torch.cuda.is_available():
            built = "built without CUDA" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
            raise RuntimeError(f"{source} asks for a CUDA GPU, but torch {torch.__version__} ({built}) sees none. "
                               "Unset COURSE_DEVICE to run on the CPU, or check the GPU with nvidia-smi.")
        mps = getattr(torch.backends, "mps", None)
        if choice == "mps" and not (mps is not None and mps.is_available()):
            raise RuntimeError(f"{source} asks for Apple's MPS, but this torch sees none. "
                               "Unset COURSE_DEVICE to run on the CPU.")
        return torch.device(choice)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


DEFAULT_HUB = "https://huggingface.co"
OFFLINE_ASSETS_FILE = Path(__file__).with_name("offline-assets.txt")


def hub_endpoint() -> str:
    """The Hugging Face hub the course talks to: ``$HF_ENDPOINT`` (a mirror, a proxy) or huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_HUB).rstrip("/")


@functools.lru_cache(maxsize=None)
def _answers(url: str, timeout: float) -> bool:
    """True when ``url`` answers an HTTP request within ``timeout`` seconds (any status counts).

    A bare TCP connect is not enough: a captive portal or a broken proxy accepts
    the connection and then never replies, and the hub libraries would wait on it
    for minutes. The timeout bounds the connect and every read.
    """
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "gen-recsys-course"})
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True  # it answered, if only with an error status: the host is reachable
    except (OSError, ValueError):  # refused, unresolvable, timed out, TLS failure, malformed URL
        return False


def is_offline(host: str | None = None, timeout: float = 3.0) -> bool:
    """True when the hub (``host=None``: ``$HF_ENDPOINT`` or huggingface.co) does not answer, or ``HF_HUB_OFFLINE=1``.

    ``host`` may be a host name ("files.grouplens.org") or a URL. The answer is
    cached for the session: a lesson asks many times, the network does not change
    that quickly, and a host that does not answer costs ``timeout`` seconds.
    """
    if _env_flag("HF_HUB_OFFLINE") or _env_flag("COURSE_OFFLINE"):
        return True
    url = hub_endpoint() if host is None else (host if "://" in host else f"https://{host}")
    return not _answers(url, float(timeout))


is_offline.cache_clear = _answers.cache_clear  # tests that change the environment start afresh


def offline_requirement(package: str) -> str:
    """The pinned requirement (``"recbole==1.2.1"``) of an offline carrier, from ``offline-assets.txt``.

    The Makefile, the README and every install hint the code prints read the pins
    from that one file, so they cannot drift apart. Unknown packages come back unpinned.
    """
    for line in OFFLINE_ASSETS_FILE.read_text().splitlines():
        requirement = line.split("#")[0].strip()
        if requirement.split("==")[0].strip().lower() == package.lower():
            return requirement
    return package


def cache_dir(*parts: str) -> Path:
    """Directory for downloads and converted models: ``$COURSE_CACHE`` or ``~/.cache/gen-recsys-course``.

    Kept outside the repository so that git never sees licensed data or large weights.
    ``COURSE_CACHE`` must be absolute: notebooks run in ``notebooks/`` and tests in the
    checkout, so a relative path would give each its own cache. A stray file where
    one of the cache's own folders belongs is removed (the cache is rebuilt), with a note.
    """
    raw = os.environ.get("COURSE_CACHE")
    root = Path(raw).expanduser() if raw else Path.home() / ".cache" / "gen-recsys-course"
    if not root.is_absolute():
        raise ValueError(f"COURSE_CACHE must be an absolute path, got {raw!r}; "
                         f"e.g. export COURSE_CACHE=\"$PWD/{raw}\"")
    if root.exists() and not root.is_dir():
        raise ValueError(f"COURSE_CACHE={str(root)!r} is a file, not a folder; point it at a folder "
                         "or move the file away")
    path = root
    for part in parts:
        path = path / part
        if path.exists() and not path.is_dir():
            print(f"[cache] {path} should be a folder but is a file; deleting it so the cache can be rebuilt")
            remove_path(path)
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
