"""Presets load and build a model; RunConfig survives YAML; unknown keys name the nearest valid key."""

from __future__ import annotations

import pytest
import torch
import yaml

from owngpt.config import RunConfig, list_presets, load_run_config, run_config_from_dict, save_yaml, to_dict
from owngpt.errors import OwnGPTError

PRETRAIN_PRESETS = ["tiny-cpu", "baby-gpt", "small", "gpt2-124m"]


def test_pretrain_presets_exist():
    assert set(PRETRAIN_PRESETS) <= set(list_presets())


@pytest.mark.parametrize("name", PRETRAIN_PRESETS)
def test_preset_loads_and_builds(name):
    rc = load_run_config(name)
    assert rc.train.max_steps > 0 and rc.train.lr > rc.train.min_lr >= 0
    gpt = pytest.importorskip("owngpt.model.gpt")
    small = load_run_config(name, ["model.vocab_size=128", "model.n_layer=1"] if name == "gpt2-124m" else
                            ["model.vocab_size=128"])
    model = gpt.GPT(small.model)
    T = min(8, small.model.block_size)
    logits = model(torch.randint(0, 128, (1, T)))
    assert logits.shape == (1, T, 128)


def test_baby_gpt_matches_nanogpt():
    rc = load_run_config("baby-gpt")
    m, t = rc.model, rc.train
    assert (m.preset, m.n_layer, m.n_head, m.n_embd, m.block_size, m.dropout) == ("gpt2", 4, 4, 128, 64, 0.0)
    assert (t.batch_size, t.lr, t.min_lr, t.warmup_steps, t.max_steps, t.beta2, t.weight_decay, t.grad_clip) == (
        12, 1e-3, 1e-4, 100, 2000, 0.99, 0.1, 1.0)


@pytest.mark.parametrize("name", PRETRAIN_PRESETS)
def test_round_trip_through_yaml(tmp_path, name):
    rc = load_run_config(name, ["train.lr=0.0003", "train.max_time=10m"])
    save_yaml(rc, tmp_path / "c.yaml")
    back = run_config_from_dict(yaml.safe_load((tmp_path / "c.yaml").read_text()))
    assert back == rc and isinstance(back, RunConfig)
    assert load_run_config(str(tmp_path / "c.yaml")) == rc
    assert to_dict(back)["train"]["lr"] == 0.0003


def test_unknown_key_names_nearest():
    with pytest.raises(OwnGPTError, match="'train.lrr'|'lrr'.*did you mean 'lr'"):
        load_run_config("tiny-cpu", ["train.lrr=1e-3"])
    with pytest.raises(OwnGPTError, match="did you mean 'n_layer'"):
        load_run_config("tiny-cpu", ["model.n_layers=3"])
    with pytest.raises(OwnGPTError, match="did you mean 'tiny-cpu'"):
        load_run_config("tiny-cpy")
