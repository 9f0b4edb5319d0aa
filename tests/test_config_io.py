import hashlib

import numpy as np
import pytest
import torch

from course_utils import config
from course_utils.io import ChecksumError, atomic_write, download, sha256_file, verify_sha256


def test_seed_everything_makes_runs_repeatable():
    config.seed_everything(7)
    a = (np.random.rand(3), torch.rand(3))
    config.seed_everything(7)
    b = (np.random.rand(3), torch.rand(3))
    assert np.array_equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize("bad", [-1, 1.5, "3"])
def test_seed_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="seed"):
        config.seed_everything(bad)


def test_fast_flag_reads_environment(monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")
    assert config.is_fast()
    monkeypatch.setenv("COURSE_FAST", "off")
    assert not config.is_fast()
    monkeypatch.setenv("COURSE_FAST", "maybe")
    with pytest.raises(ValueError, match="COURSE_FAST"):
        config.is_fast()


def test_offline_flag_and_device(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config.is_offline.cache_clear()
    assert config.is_offline()
    assert config.get_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="device"):
        config.get_device("tpu")


def test_cache_dir_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    assert config.cache_dir("x", "y") == tmp_path / "x" / "y"
    assert (tmp_path / "x" / "y").is_dir()


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target, "w") as handle:
            handle.write("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]  # no temporary file left behind


def test_checksums_and_verified_download(tmp_path):
    source = tmp_path / "payload.bin"
    source.write_bytes(b"gen-recsys" * 100)
    good = hashlib.sha256(source.read_bytes()).hexdigest()
    assert sha256_file(source) == good
    verify_sha256(source, good)
    with pytest.raises(ChecksumError):
        verify_sha256(source, "0" * 64)
    out = download(source.as_uri(), tmp_path / "copy.bin", good)
    assert out.read_bytes() == source.read_bytes()
    with pytest.raises(ChecksumError):
        download(source.as_uri(), tmp_path / "bad.bin", "0" * 64)
    assert not (tmp_path / "bad.bin").exists()  # a failed download leaves nothing


def test_setup_course_writes_the_mode_back(monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "0")
    assert config.setup_course(3, fast=True)["fast"] and config.is_fast()
    assert not config.setup_course(3, fast=False)["fast"] and not config.is_fast()
    monkeypatch.setenv("COURSE_FAST", "1")
    assert config.setup_course(3, fast=None)["fast"]  # None leaves the environment in charge
    with pytest.raises(ValueError, match="fast"):
        config.setup_course(3, fast="yes")
