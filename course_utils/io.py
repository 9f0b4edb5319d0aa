"""Safe file handling: checksums, atomic writes and verified downloads.

A cache must never be half-written or silently wrong, so every file the
course stores goes through ``atomic_write`` and is checked by hash before use.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from contextlib import contextmanager
from pathlib import Path


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
