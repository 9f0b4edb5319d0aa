"""COURSE_DEVICE and get_device: a GPU that was asked for and is missing fails at once, never quietly."""
import pytest
import torch

from course_utils import config


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: nothing is missing")
@pytest.mark.parametrize("how", ["argument", "environment"])
def test_cuda_requested_without_a_gpu_fails_fast_with_a_clear_message(how, monkeypatch):
    if how == "environment":
        monkeypatch.setenv("COURSE_DEVICE", "cuda")
        call = config.get_device
    else:
        monkeypatch.delenv("COURSE_DEVICE", raising=False)
        call = lambda: config.get_device("cuda")  # noqa: E731
    with pytest.raises(RuntimeError, match="CUDA GPU.*sees none.*Unset COURSE_DEVICE"):
        call()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: nothing is missing")
def test_setup_course_fails_fast_too(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cuda")
    with pytest.raises(RuntimeError, match="COURSE_DEVICE='cuda'"):
        config.setup_course(0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_requested_with_a_gpu_is_used(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cuda")
    assert config.get_device().type == "cuda"
    assert torch.ones(2, device=config.get_device()).sum().item() == 2


def test_device_names_are_checked_and_cpu_always_works(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "CPU ")
    assert config.get_device().type == "cpu"
    with pytest.raises(ValueError, match="'cuda', 'mps' or 'cpu'.*'gpu'"):
        config.get_device("gpu")
