"""Safe file handling: checksums, atomic writes and verified downloads.

A cache must never be half-written or silently wrong, so every file the
course stores goes through ``atomic_write`` and is checked by hash before use.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout


class ChecksumError(ValueError):
    """A file's content does not match the hash we expected."""


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks so large files do not fill memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: str | os.PathLike, expected: str) -> None:
    """Raise ``ChecksumError`` unless ``path`` hashes to ``expected``."""
    actual = sha256_file(path)
    if actual != expected.lower():
        raise ChecksumError(f"{path}: SHA-256 is {actual}, expected {expected}")


@contextmanager
def file_lock(path: str | os.PathLike, timeout: float = 900.0):
    """Hold an exclusive lock on ``path`` (through ``path.lock`` beside it) across processes.

    Two notebooks that update the same file, or build the same cache entry, at the
    same time would otherwise each read the old state and the last writer would
    win: rows disappear, or one process deletes a folder the other is reading.
    The lock is released when the block ends, also on an exception or a crash
    (the operating system drops it with the process). After ``timeout`` seconds
    of waiting a ``TimeoutError`` names the lock file, so a stuck lock can be found.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target.with_name(target.name + ".lock")
    try:
        with FileLock(str(lock_path), timeout=timeout):
            yield
    except Timeout as error:
        raise TimeoutError(f"waited {timeout:.0f} s for {lock_path}: another process holds it. If none is "
                           f"running, delete that file.") from error


def remove_path(path: str | os.PathLike) -> None:
    """Delete whatever is at ``path``: a file, a link or a whole folder (nothing if absent).

    Caches are rebuilt by deleting the damaged entry, which may be a folder where
    a file belongs or the reverse; ``unlink`` and ``rmtree`` each fail on the other kind.
    """
    target = Path(path)
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    elif target.exists() or target.is_symlink():
        target.unlink()


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb"):
    """Write to a temporary file beside ``path`` and rename it into place only on success.

    A crash or an exception leaves the old file (or nothing), never a partial one.
    """
    if mode not in {"w", "wb"}:
        raise ValueError(f"atomic_write supports mode 'w' or 'wb', got {mode!r}")
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(f"cannot write the file {target}: a folder of that name is in the way; "
                                "move or delete the folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o666 & ~_current_umask())  # mkstemp creates 0600; give the usual mode
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def download(url: str, path: str | os.PathLike, sha256: str, timeout: float = 30.0) -> Path:
    """Download ``url`` to ``path`` atomically; keep it only if its SHA-256 matches."""
    target = Path(path)
    with urllib.request.urlopen(url, timeout=timeout) as response, atomic_write(target) as out:
        digest = hashlib.sha256()
        for block in iter(lambda: response.read(1 << 20), b""):
            digest.update(block)
            out.write(block)
        if digest.hexdigest() != sha256.lower():
            # Raising inside atomic_write discards the temporary file.
            raise ChecksumError(f"{url}: SHA-256 is {digest.hexdigest()}, expected {sha256}")
    return target
