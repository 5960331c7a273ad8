"""Presets load and build a model; RunConfig survives YAML; unknown keys and bad values are named; depth sizes."""

from __future__ import annotations

import math
import re

import pytest
import torch
import yaml

from owngpt.config import (ModelConfig, RunConfig, list_presets, load_run_config, run_config_from_dict, save_yaml,
                           to_dict)
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


@pytest.mark.parametrize("override", [
    "model.n_head=0", "model.n_kv_head=0", "model.n_layer=0", "model.block_size=0", "model.vocab_size=-1",
    "model.n_embd=0", "model.mlp_hidden=0", "model.depth=0", "model.dropout=1.5", "model.dropout=-0.1",
    "model.norm_eps=0", "model.rope_theta=0",
    "train.batch_size=0", "train.grad_accum=0", "train.eval_batches=0", "train.log_interval=0", "train.keep_last=0",
    "train.max_nonfinite=0", "train.max_steps=-1", "train.max_tokens=-1", "train.warmup_steps=-1",
    "train.eval_interval=-1", "train.save_interval=-1", "train.patience=-1", "train.grad_clip=-1",
    "train.weight_decay=-0.1", "train.threads=-1", "train.lr=-0.001", "train.min_lr=-0.5", "train.min_lr=0.5",
    "train.beta1=1", "train.beta2=1.5", "train.eps=0", "train.max_time=10 minutes", "train.device=gpu",
    "train.device=cuda:x",
])
def test_bad_values_are_named(override):
    key, value = override.split("=")
    with pytest.raises(OwnGPTError, match=re.escape(key)) as info:
        load_run_config("tiny-cpu", [override])
    assert value in str(info.value)


@pytest.mark.parametrize("overrides", [["train.max_steps=0", "train.eval_interval=0", "train.grad_clip=0"],
                                       ["train.lr=0", "train.min_lr=0"], ["train.device=cuda:1"], ["train.device=mps"],
                                       ["train.max_time=1.5h"], ["model.dropout=0.5", "model.n_kv_head=1"]])
def test_edge_values_are_accepted(overrides):
    load_run_config("tiny-cpu", overrides)


def test_depth_fills_in_sizes_and_learning_rates():
    rc = run_config_from_dict({"model": {"depth": 4}})
    m = rc.model
    assert (m.n_layer, m.n_embd, m.n_head, m.n_kv_head) == (4, 256, 4, 4)
    assert rc.train.lr == pytest.approx(6e-4 * math.sqrt(768 / 256), rel=1e-3)
    assert rc.train.min_lr == pytest.approx(rc.train.lr / 10, rel=1e-3)
    gpt2 = run_config_from_dict({"model": {"depth": 12}})
    assert (gpt2.model.n_layer, gpt2.model.n_embd, gpt2.model.n_head) == (12, 768, 12)
    assert (gpt2.train.lr, gpt2.train.min_lr) == (6e-4, 6e-5)
    plain = ModelConfig()  # no depth: the old defaults
    assert (plain.n_layer, plain.n_head, plain.n_embd) == (4, 4, 128)


def test_given_sizes_and_learning_rates_win_over_depth():
    m = ModelConfig(depth=6, n_embd=512, n_layer=2)
    assert (m.depth, m.n_layer, m.n_embd, m.n_head) == (6, 2, 512, 8)  # n_head from the final width
    rc = load_run_config("small", ["model.n_embd=512", "model.n_layer=2"])
    assert (rc.model.n_layer, rc.model.n_embd, rc.model.n_head) == (2, 512, 8)
    assert (rc.train.lr, rc.train.min_lr) == (1e-3, 1e-4)  # small.yaml gives them
    rc = run_config_from_dict({"model": {"depth": 12}, "train": {"lr": 1e-3}})
    assert (rc.train.lr, rc.train.min_lr) == (1e-3, 1e-4)  # an lr given: min_lr keeps its default
    rc = run_config_from_dict({"model": {"depth": 12}, "train": {"min_lr": 0.0}})
    assert (rc.train.lr, rc.train.min_lr) == (6e-4, 0.0)


def test_depth_override_resizes_a_preset():
    rc = load_run_config("small", ["model.depth=12"])
    assert (rc.model.n_layer, rc.model.n_embd, rc.model.n_head, rc.train.lr, rc.train.min_lr) == (
        12, 768, 12, 6e-4, 6e-5)
    rc = load_run_config("tiny-cpu", ["model.depth=2", "model.n_head=2", "train.lr=2e-3"])  # tiny-cpu gives sizes
    assert (rc.model.n_layer, rc.model.n_embd, rc.model.n_head, rc.train.lr) == (2, 128, 2, 2e-3)


def test_init_from_drops_the_presets_from_scratch_embedding_rate():
    """tiny-cpu's 30x embedding rate is for new tables: continued pretraining from a checkpoint (train.init_from, as
    `pretrain --init-from` and prune's recovery set it) trains at one rate unless the rate is given too."""
    assert load_run_config("tiny-cpu").train.embed_lr_scale == 30.0
    assert load_run_config("tiny-cpu", ["train.init_from=runs/base"]).train.embed_lr_scale == 1.0
    given = load_run_config("tiny-cpu", ["train.init_from=runs/base", "train.embed_lr_scale=5"])
    assert given.train.embed_lr_scale == 5.0
    from owngpt.pipeline import BASELINE_TRAINING  # the LSTM and encoder-decoder train as they were measured

    baseline = load_run_config("tiny-cpu", ["model.arch=seq2seq", *BASELINE_TRAINING])
    assert (baseline.train.optimizer, baseline.train.embed_lr_scale, baseline.model.tie_embeddings) == ("adamw", 1, True)


@pytest.mark.parametrize("overrides", [["model.depth=3"], ["model.depth=6", "model.n_embd=512", "model.n_layer=2"],
                                       ["model.depth=5", "train.lr=1e-3"]])
def test_depth_round_trips_through_yaml(tmp_path, overrides):
    rc = load_run_config("small", overrides)
    save_yaml(rc, tmp_path / "c.yaml")
    assert load_run_config(str(tmp_path / "c.yaml")) == rc
