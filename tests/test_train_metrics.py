"""Run artefacts' helpers: the GPU peak behind MFU, the summary."""

from __future__ import annotations

import json

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


def _records(val: list[float], train: list[float], every: int = 10) -> list[dict]:
    out = []
    for i, loss in enumerate(train, 1):
        out.append({"step": i, "kind": "train", "loss": loss})
        if i % every == 0:
            out.append({"step": i, "kind": "val", "loss": val[i // every - 1]})
    return out


def test_overfitting_is_flagged_where_val_rises_while_train_falls(tmp_path):
    from owngpt.train.metrics import overfitting, write_summary

    train = [3.0 - 0.02 * i for i in range(60)]  # falls all along
    val = [2.9, 2.7, 2.6, 2.65, 2.7, 2.8]  # best at step 30, then up
    found = overfitting(_records(val, train))
    assert found["step"] == 30 and found["val_best"] == 2.6 and found["val_last"] == 2.8
    assert found["train_last"] < found["train_at_best"]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _records(val, train)))
    summary = write_summary(tmp_path, {"best_val_loss": 2.6, "best_step": 30}).read_text()
    assert "overfitting from step 30" in summary and "train.patience" in summary


def test_no_overfitting_while_val_improves_or_train_rises_too():
    from owngpt.train.metrics import overfitting

    falling = [3.0 - 0.02 * i for i in range(60)]
    assert overfitting(_records([2.9, 2.8, 2.7, 2.6, 2.5, 2.4], falling)) is None
    assert overfitting(_records([2.9, 2.7, 2.6, 2.65, 2.6, 2.6], falling)) is None  # within tolerance at the end
    rising = [2.0 + 0.02 * i for i in range(60)]  # val and train both worse: divergence, not overfitting
    assert overfitting(_records([2.9, 2.7, 2.6, 2.65, 2.7, 2.8], rising)) is None
