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


def test_autocast_choices_on_cpu():
    assert autocast(torch.device("cpu"), "float32")[1] == torch.float32
    assert autocast(torch.device("cpu"), "bfloat16")[1] == torch.bfloat16
    assert autocast(torch.device("cpu"), "auto")[1] == (torch.bfloat16 if cpu_has_bf16_matmul() else torch.float32)
