"""Run artefacts' helpers: the GPU peak behind MFU, the summary."""

from __future__ import annotations

import pytest
import torch

from owngpt.train import metrics
from owngpt.train.metrics import peak_flops, write_summary


@pytest.mark.parametrize("name, peak", [
    ("NVIDIA H100 80GB HBM3", 989e12), ("NVIDIA H100 PCIe", 756e12), ("NVIDIA A100-SXM4-80GB", 312e12),
    ("NVIDIA A10", 125e12), ("NVIDIA A10G", None), ("NVIDIA L40S", 362e12), ("NVIDIA L4", 121e12), ("Some Future GPU", None),
])
def test_peak_flops_by_gpu_name(monkeypatch, name, peak):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    assert peak_flops(torch.device("cuda"), torch.bfloat16) == peak


def test_no_peak_for_cpus_or_fp32(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")
    assert peak_flops(torch.device("cpu"), torch.bfloat16) is None
    assert peak_flops(torch.device("cuda"), torch.float32) is None  # MFU is quoted against the bf16 peak only


def test_summary_shows_mfu_when_known(tmp_path):
    text = write_summary(tmp_path, {"tokens_per_s": 1000.0, "mfu": 0.4123}).read_text()
    assert "1,000 tokens/s, MFU 41.2%" in text
    assert "MFU" not in write_summary(tmp_path, {"tokens_per_s": 1000.0}).read_text()
    assert metrics._GPU_PEAK_BF16  # the table the denominator comes from
