"""The runtime: devices resolve, autocast follows the CPU's bf16 support, RNG states survive weights_only loads."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from owngpt.errors import OwnGPTError
from owngpt.runtime import autocast, capture_rng_state, cpu_has_bf16_matmul, resolve_device, restore_rng_state


def test_rng_state_round_trip(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    state = capture_rng_state()
    torch.save(state, tmp_path / "rng.pt")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], got[0]) and np.array_equal(expected[1], got[1]) and expected[2] == got[2]


def test_devices_resolve():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(OwnGPTError, match="not a device"):
        resolve_device("tpu")


def test_a_bad_device_name_is_refused_without_naming_a_config_field():
    """--device in generate and chat reaches resolve_device too: the message names the device, not train.device."""
    for bad in ("tpu", "meta", "cuda:x", ""):
        with pytest.raises(OwnGPTError) as info:
            resolve_device(bad)
        assert str(info.value) == f"device {bad!r} is not a device: use auto, cpu, cuda, cuda:N or mps"


def test_cuda_on_a_cpu_only_build_says_which_build_and_how_to_get_a_cuda_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setattr(torch.version, "hip", None, raising=False)
    for name in ("cuda", "cuda:1", torch.device("cuda")):
        with pytest.raises(OwnGPTError) as info:
            resolve_device(name)
        message = str(info.value)
        assert "\n" not in message and f"PyTorch {torch.__version__} (a CPU-only build)" in message
        assert "pip install torch --index-url https://download.pytorch.org/whl/cu126" in message
        assert "https://pytorch.org/get-started/locally/" in message and "--device cpu" in message
    assert resolve_device("auto") in (torch.device("cpu"), torch.device("mps"))


def test_cuda_build_without_a_gpu_and_a_gpu_index_that_does_not_exist(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "12.6")
    with pytest.raises(OwnGPTError, match=r"built with CUDA 12.6\) finds no usable GPU.*nvidia-smi"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(OwnGPTError, match=r"'cuda:5' does not exist: this machine has 1 CUDA GPU \(cuda:0\)"):
        resolve_device("cuda:5")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(OwnGPTError, match=r"has 2 CUDA GPUs \(cuda:0 to cuda:1\)"):
        resolve_device("cuda:2")
    assert resolve_device("cuda:1") == torch.device("cuda:1") and resolve_device("cuda") == torch.device("cuda")


def test_mps_off_a_mac_says_it_needs_apple_silicon_and_macos(monkeypatch):
    import sys

    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(sys, "platform", "linux")
    with pytest.raises(OwnGPTError, match=r"'mps' \(Apple's GPU backend\) needs an Apple silicon Mac with macOS"):
        resolve_device("mps")
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setattr(torch.backends.mps, "is_built", lambda: True)
    with pytest.raises(OwnGPTError, match="Apple silicon Mac .* macOS 12.3 or later"):
        resolve_device("mps")


def test_autocast_choices_on_cpu():
    assert autocast(torch.device("cpu"), "float32")[1] == torch.float32
    assert autocast(torch.device("cpu"), "bfloat16")[1] == torch.bfloat16
    assert autocast(torch.device("cpu"), "auto")[1] == (torch.bfloat16 if cpu_has_bf16_matmul() else torch.float32)


@pytest.mark.parametrize("amx,avx512_bf16,want,native", [
    (True, True, torch.bfloat16, "amx"), (False, True, torch.bfloat16, "avx512_bf16"),
    (False, False, torch.float32, None)])
def test_auto_dtype_follows_the_cpus_native_bf16(monkeypatch, amx, avx512_bf16, want, native):
    """train.dtype auto: bf16 autocast on CPUs with AMX or avx512_bf16 (read from the CPU's feature probes), fp32
    elsewhere; the run summary says why."""
    from owngpt.runtime import cpu_bf16_support, dtype_reason

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    cpu = torch.device("cpu")
    assert cpu_bf16_support() == native and autocast(cpu, "auto")[1] == want
    reason = dtype_reason(cpu, "auto", want)
    assert reason.startswith(str(want).replace("torch.", "")) and (native or "no native bf16") in reason
    assert dtype_reason(cpu, "float32", torch.float32) == "float32 (asked for)"
