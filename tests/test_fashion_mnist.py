"""Fashion-MNIST: the IDX parser, the balanced subset, and the loader's sources and errors."""
from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from course_utils.config import is_offline
from course_utils.data.fashion_mnist import (
    CLASS_NAMES, DEBIAN_DIR, IDX_SHA256, SUBSET_FILE, FashionMNIST, balanced_subset, build_subset, load_fashion_mnist,
    load_subset_file, read_fashion_idx, read_idx, save_subset,
)
from course_utils.io import ChecksumError

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "data" / SUBSET_FILE
needs_debian = pytest.mark.skipif(not (DEBIAN_DIR / "train-images-idx3-ubyte.gz").is_file(),
                                  reason="Debian package dataset-fashion-mnist not installed")
# The original IDX files, for the damaged-asset tests: the Debian package's folder, or
# $FASHION_MNIST_IDX_DIR (e.g. the package unpacked with `apt-get download` + `dpkg-deb -x`).
REAL_IDX_DIR = Path(os.environ.get("FASHION_MNIST_IDX_DIR") or DEBIAN_DIR)
needs_real_idx = pytest.mark.skipif(not (REAL_IDX_DIR / "train-images-idx3-ubyte.gz").is_file(),
                                    reason="original Fashion-MNIST IDX files not available")


def write_idx(path: Path, array: np.ndarray) -> None:
    """Minimal IDX writer, the inverse of ``read_idx``, to build test files."""
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as handle:
        handle.write(payload)


def fake_fashion_dir(path: Path, per_class: int = 3) -> Path:
    """A tiny folder laid out like the Debian package: ``per_class`` random images per class."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(len(CLASS_NAMES), dtype=np.uint8), per_class)
    rng.shuffle(labels)
    images = rng.integers(0, 256, size=(len(labels), 28, 28), dtype=np.uint8)
    path.mkdir(parents=True, exist_ok=True)
    write_idx(path / "train-images-idx3-ubyte.gz", images)
    write_idx(path / "train-labels-idx1-ubyte.gz", labels)
    return path


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No data-dir override, an empty course cache, and a fresh answer from ``is_offline``."""
    monkeypatch.delenv("COURSE_DATA_DIR", raising=False)
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "cache"))
    is_offline.cache_clear()
    yield monkeypatch
    is_offline.cache_clear()  # do not leak a forced answer into other tests


# ---------------------------------------------------------------- IDX parser
@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
@pytest.mark.parametrize("array", [
    np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
    np.array([-5, 0, 7, 2**30], dtype=np.int32),
    np.linspace(-1, 1, 6, dtype=np.float32).reshape(3, 2),
])
def test_read_idx_round_trip(tmp_path, name, array):
    write_idx(tmp_path / name, array)
    back = read_idx(tmp_path / name)
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)


def test_read_idx_rejects_bad_magic_and_wrong_size(tmp_path):
    write_idx(tmp_path / "good.idx", np.zeros((2, 2), dtype=np.uint8))
    raw = (tmp_path / "good.idx").read_bytes()
    (tmp_path / "magic.idx").write_bytes(b"\x01" + raw[1:])
    (tmp_path / "type.idx").write_bytes(raw[:2] + b"\x42" + raw[3:])
    (tmp_path / "short.idx").write_bytes(raw[:-1])
    for name in ("magic.idx", "type.idx"):
        with pytest.raises(ValueError, match="not an IDX file"):
            read_idx(tmp_path / name)
    with pytest.raises(ValueError, match="header says shape"):
        read_idx(tmp_path / "short.idx")


def test_read_fashion_idx_checks_which_file_is_which(tmp_path):
    source = fake_fashion_dir(tmp_path / "src")
    images, labels = read_fashion_idx(source)
    assert images.shape == (30, 28, 28) and labels.shape == (30,)
    # A labels file where the images should be has the wrong magic number (2049, not 2051).
    shutil.copy(source / "train-labels-idx1-ubyte.gz", source / "train-images-idx3-ubyte.gz")
    with pytest.raises(ValueError, match="magic number 2049, expected 2051"):
        read_fashion_idx(source)
    with pytest.raises(ValueError, match="split"):
        read_fashion_idx(source, "validation")


# ---------------------------------------------------------------- the subset
def test_balanced_subset_is_balanced_sorted_and_seeded():
    labels = np.repeat(np.arange(10), 50)
    index = balanced_subset(labels, per_class=7, seed=3)
    assert len(index) == 70 and np.all(np.diff(index) > 0)
    assert np.all(np.bincount(labels[index]) == 7)
    np.testing.assert_array_equal(index, balanced_subset(labels, per_class=7, seed=3))
    assert not np.array_equal(index, balanced_subset(labels, per_class=7, seed=4))


@pytest.mark.parametrize("per_class", [0, -1, 2.5])
def test_balanced_subset_rejects_bad_per_class(per_class):
    with pytest.raises(ValueError, match="per_class must be a positive integer"):
        balanced_subset(np.repeat(np.arange(10), 5), per_class=per_class)


def test_balanced_subset_rejects_too_many_per_class():
    with pytest.raises(ValueError, match="fewer than per_class=6"):
        balanced_subset(np.repeat(np.arange(10), 5), per_class=6)


def test_save_and_load_subset_file(tmp_path):
    subset = build_subset(fake_fashion_dir(tmp_path / "src"), per_class=2, seed=0)
    digest = save_subset(subset, tmp_path / "s.npz")
    assert (tmp_path / "s.npz.sha256").read_text() == f"{digest}  s.npz\n"
    back = load_subset_file(tmp_path / "s.npz")
    for key in ("images", "labels", "source_index"):
        np.testing.assert_array_equal(back[key], subset[key])


def test_script_builds_a_verified_subset(tmp_path):
    source = fake_fashion_dir(tmp_path / "src")
    out = tmp_path / "out" / "subset.npz"
    script = [sys.executable, str(REPO / "data" / "make_fashion_subset.py"), "--source-dir", str(source)]
    done = subprocess.run([*script, "--out", str(out), "--per-class", "2"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert np.all(np.bincount(load_subset_file(out)["labels"]) == 2)
    refused = subprocess.run([*script, "--out", str(out), "--per-class", "0"], capture_output=True, text=True)
    assert refused.returncode != 0 and "--per-class must be positive" in refused.stderr


# ---------------------------------------------------------------- the loader
def test_shipped_subset_loads(clean_env, capsys):
    data = load_fashion_mnist()
    assert isinstance(data, FashionMNIST) and len(data) == 3000
    assert data.images.shape == (3000, 28, 28) and data.images.dtype == np.uint8
    assert np.all(np.bincount(data.labels, minlength=10) == 300)
    assert data.class_names == CLASS_NAMES and data.label_names[0] == CLASS_NAMES[data.labels[0]]
    assert len(np.unique(data.source_index)) == 3000 and data.source_index.max() < 60000
    assert "shipped subset" in data.source
    assert "shipped subset" in capsys.readouterr().out
    load_fashion_mnist(verbose=False)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("how", ["env", "argument"])
def test_corrupt_shipped_file_is_an_error(clean_env, tmp_path, how):
    copy = tmp_path / "data"
    copy.mkdir()
    shutil.copy(SHIPPED, copy)
    shutil.copy(SHIPPED.with_name(SUBSET_FILE + ".sha256"), copy)
    raw = bytearray((copy / SUBSET_FILE).read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (copy / SUBSET_FILE).write_bytes(bytes(raw))
    if how == "env":
        clean_env.setenv("COURSE_DATA_DIR", str(copy))
    with pytest.raises(ChecksumError, match="corrupt: SHA-256 checksum") as error:
        load_fashion_mnist(data_dir=copy if how == "argument" else None, verbose=False)
    assert "make_fashion_subset.py" in str(error.value)


def test_missing_checksum_file_is_an_error(clean_env, tmp_path):
    shutil.copy(SHIPPED, tmp_path)
    with pytest.raises(ChecksumError, match="checksum file .* is missing"):
        load_fashion_mnist(data_dir=tmp_path, verbose=False)


@needs_debian
def test_debian_route_gives_the_shipped_subset(clean_env, tmp_path):
    from_debian = load_fashion_mnist(data_dir=tmp_path, verbose=False)
    assert "Debian" in from_debian.source
    shipped = load_fashion_mnist(verbose=False)
    np.testing.assert_array_equal(from_debian.images, shipped.images)
    np.testing.assert_array_equal(from_debian.labels, shipped.labels)
    np.testing.assert_array_equal(from_debian.source_index, shipped.source_index)


@needs_debian
def test_full_train_split_from_debian(clean_env):
    data = load_fashion_mnist(subset=False, verbose=False)
    assert data.images.shape == (60000, 28, 28) and "Debian" in data.source
    assert np.all(np.bincount(data.labels) == 6000)


@pytest.mark.parametrize("subset", [True, False])
def test_error_lists_every_source_tried(clean_env, tmp_path, subset):
    clean_env.setenv("COURSE_OFFLINE", "1")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError) as error:
        load_fashion_mnist(subset=subset, verbose=False, data_dir=empty, debian_dir=empty)
    message = str(error.value)
    assert ("shipped subset" in message) == subset
    for expected in ("Debian files", "train-images-idx3-ubyte.gz not found", "torchvision", "offline",
                     "apt install dataset-fashion-mnist", "pip install torchvision"):
        assert expected in message


def _torchvision_cache(tmp_path, source_dir):
    """The layout torchvision leaves after a download: unpacked IDX files in FashionMNIST/raw."""
    raw = tmp_path / "cache" / "fashion-mnist" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in IDX_SHA256:
        with gzip.open(Path(source_dir) / f"{name}.gz") as packed:
            (raw / name).write_bytes(packed.read())
    return raw


@needs_real_idx
def test_torchvision_route_uses_an_earlier_download_offline(clean_env, tmp_path):
    pytest.importorskip("torchvision")
    clean_env.setenv("COURSE_OFFLINE", "1")
    _torchvision_cache(tmp_path, REAL_IDX_DIR)
    empty = tmp_path / "empty"
    empty.mkdir()
    data = load_fashion_mnist(subset=False, verbose=False, data_dir=empty, debian_dir=empty)
    assert "torchvision" in data.source
    np.testing.assert_array_equal(data.images, read_fashion_idx(REAL_IDX_DIR)[0])


def _truncate(path):
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size // 2)


def _flip(path):
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


def _folder_instead(path):
    path.unlink()
    path.mkdir()


DAMAGE = {"truncated": _truncate, "bit-flipped": _flip, "folder-in-place": _folder_instead}


@needs_real_idx
@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_torchvision_cache_is_deleted_not_reused(clean_env, tmp_path, capsys, damage):
    """A bad earlier download is noticed, deleted (so a later online run fetches it afresh) and explained."""
    pytest.importorskip("torchvision")
    clean_env.setenv("COURSE_OFFLINE", "1")
    raw = _torchvision_cache(tmp_path, REAL_IDX_DIR)
    DAMAGE[damage](raw / "train-images-idx3-ubyte")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no intact earlier download"):
        load_fashion_mnist(subset=False, verbose=False, data_dir=empty, debian_dir=empty)
    assert "train-images-idx3-ubyte" in capsys.readouterr().out and not raw.exists()


def test_torchvision_cache_of_other_bytes_is_refused(clean_env, tmp_path):
    """Files that parse as IDX but are not Fashion-MNIST (here random images) fail the pinned hashes."""
    pytest.importorskip("torchvision")
    clean_env.setenv("COURSE_OFFLINE", "1")
    source = fake_fashion_dir(tmp_path / "src")
    shutil.copy(source / "train-images-idx3-ubyte.gz", source / "t10k-images-idx3-ubyte.gz")
    shutil.copy(source / "train-labels-idx1-ubyte.gz", source / "t10k-labels-idx1-ubyte.gz")
    raw = _torchvision_cache(tmp_path, source)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no intact earlier download"):
        load_fashion_mnist(subset=False, verbose=False, data_dir=empty, debian_dir=empty)
    assert not raw.exists()


@needs_real_idx
@pytest.mark.parametrize("damage", ["truncated", "bit-flipped"])
def test_damaged_debian_files_are_refused_with_a_fix(clean_env, tmp_path, damage):
    copy = shutil.copytree(REAL_IDX_DIR, tmp_path / "debian")
    DAMAGE[damage](copy / "train-labels-idx1-ubyte.gz")
    clean_env.setenv("COURSE_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="apt install --reinstall dataset-fashion-mnist"):
        load_fashion_mnist(subset=False, verbose=False, debian_dir=copy)


def test_subset_rewritten_with_its_checksum_is_refused(clean_env, tmp_path):
    """The pin lives in the code: a different file with a matching .sha256 beside it is still not the subset."""
    subset = build_subset(fake_fashion_dir(tmp_path / "src"), per_class=2, seed=0)
    copy = tmp_path / "data"
    save_subset(subset, copy / SUBSET_FILE)  # writes the .npz and a matching .sha256
    with pytest.raises(ChecksumError, match="not the course's subset"):
        load_fashion_mnist(data_dir=copy, verbose=False)


@pytest.mark.parametrize("damage", ["truncated", "folder-in-place"])
def test_damaged_shipped_subset_is_refused_with_a_fix(clean_env, tmp_path, damage):
    copy = tmp_path / "data"
    copy.mkdir()
    shutil.copy(SHIPPED, copy)
    shutil.copy(SHIPPED.with_name(SUBSET_FILE + ".sha256"), copy)
    DAMAGE[damage](copy / SUBSET_FILE)
    with pytest.raises(ChecksumError, match="git checkout"):
        load_fashion_mnist(data_dir=copy, verbose=False)
