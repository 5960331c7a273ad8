"""The LSTM baseline (owngpt/model/lstm.py) and choosing an architecture (model.arch, registry.make_model): shapes,
causality, left padding, checkpoints, pretrain + sft through the real recipes, exact resume, generation, the CLI,
and what stays GPT-only (LoRA, Hugging Face export) or GPT-compatible (old checkpoints and adapters)."""

from __future__ import annotations

import json

import pytest
import torch
from torch.testing import assert_close

from neural_fixtures import (
    causal,
    conv,
    falls,
    greedy_batched_equals_alone,
    padded_rows_equal_alone,
    pretrain_and_sft,
    resume_equals_uninterrupted_run,
    sigkill_then_resume,
)
from owngpt.checkpoint.format import load_model, read_meta, save_checkpoint
from owngpt.checkpoint.meta import CheckpointMeta, make_meta
from owngpt.config import ModelConfig, load_run_config
from owngpt.errors import OwnGPTError
from owngpt.model.gpt import GPT
from owngpt.model.lstm import LSTMConfig, LSTMLM
from owngpt.model.registry import arch_of, config_dict, make_model
from owngpt.model.seq2seq import Seq2Seq
from test_train_loop import write_corpus

V = 40


def lstm(seed: int = 0, **kw) -> LSTMLM:
    torch.manual_seed(seed)
    return LSTMLM(LSTMConfig(**{"vocab_size": V, "block_size": 32, "n_layer": 2, "n_embd": 16, **kw})).eval()


def test_shapes_sizes_and_flops():
    model = lstm(tie_embeddings=True)
    assert model(torch.randint(0, V, (3, 20))).shape == (3, 20, V)
    # 2 layers x 4 gates x (16 in + 16 hidden) x 16 weights + biases, the LayerNorm's 2 x 16; a tied head adds nothing
    lstm_weights = 2 * 4 * 16 * 32
    assert model.num_params() == V * 16 + lstm_weights + 2 * 2 * 4 * 16 + 2 * 16
    assert model.num_params(non_embedding=True) == lstm_weights + 2 * 2 * 4 * 16 + 2 * 16
    assert model.flops_per_token() == 6 * (lstm_weights + V * 16)
    assert lstm().num_params() == model.num_params() + V * 16  # untied, the default
    with pytest.raises(OwnGPTError, match="longer than the model's context of 32"):
        model(torch.zeros(1, 33, dtype=torch.long))


def test_forget_gate_bias_starts_at_one():
    model = lstm()
    bias = model.lstm.bias_ih_l0.detach()
    assert torch.all(bias[16:32] == 1) and torch.all(bias[:16] == 0) and torch.all(bias[32:] == 0)
    assert torch.all(model.lstm.bias_hh_l1 == 0)


def test_causal():
    causal(lstm(), V)


def test_left_padding_changes_nothing():
    g = torch.Generator().manual_seed(1)
    rows = [torch.randint(1, V, (n,), generator=g).tolist() for n in (12, 5, 1, 9)]
    padded_rows_equal_alone(lstm(), rows)
    model = lstm()
    with pytest.raises(ValueError, match="left padding"):  # a hole in the middle is not left padding
        model(torch.ones(1, 4, dtype=torch.long), valid=torch.tensor([[True, False, True, True]]))


def test_cpu_bf16_autocast_and_bf16_weights_run():
    model = lstm().train()
    x = torch.randint(0, V, (2, 9))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # train.dtype=bfloat16 (auto on CPUs with native bf16)
        out = model(x)
    out.float().sum().backward()
    assert_close(out.float(), lstm().train()(x), atol=0.05, rtol=0.05)
    assert all(p.grad is not None for p in model.parameters())
    valid = torch.ones(2, 9, dtype=torch.bool)
    valid[0, :4] = False
    assert model.to(torch.bfloat16).eval()(x, valid=valid).dtype == torch.bfloat16  # generation in bf16 weights


def test_checkpoint_round_trip_gives_identical_logits(tmp_path):
    model = lstm(tie_embeddings=False, dropout=0.1)
    meta = make_meta(arch=arch_of(model), model_config=config_dict(model))
    save_checkpoint(tmp_path / "run", 1, model.state_dict(), meta, None, best=True)
    assert read_meta(tmp_path / "run" / "best").arch == "lstm"
    loaded, meta, _ = load_model(tmp_path / "run", device="cpu")
    assert isinstance(loaded, LSTMLM) and loaded.cfg == model.cfg and not loaded.training
    x = torch.randint(0, V, (2, 10))
    assert torch.equal(loaded(x), model(x))


# ----------------------------------------------------------------------------- choosing the architecture


def test_model_arch_picks_the_model():
    from owngpt.tokenizer import train_char
    from owngpt.tokenizer.template import assistant_header

    for arch, cls in (("gpt", GPT), ("lstm", LSTMLM), ("seq2seq", Seq2Seq)):
        cfg = load_run_config("tiny-cpu", [f"model.arch={arch}", "model.vocab_size=64"]).model
        assert isinstance(make_model(cfg), cls)
    cfg = load_run_config("tiny-cpu", ["model.arch=lstm", "model.n_layer=2", "model.n_embd=48"]).model
    model = make_model(cfg)
    assert (model.cfg.n_layer, model.cfg.n_embd, model.cfg.block_size) == (2, 48, 128)
    tok = train_char(["hello assistant\n"])
    s2s_cfg = load_run_config("tiny-cpu", ["model.arch=seq2seq", f"model.vocab_size={tok.vocab_size}"]).model
    s2s = make_model(s2s_cfg, tok)
    assert s2s.cfg.header == assistant_header(tok) and s2s.cfg.header[0] == tok.im_start_id
    with pytest.raises(OwnGPTError, match="model.arch must be one of"):
        load_run_config("tiny-cpu", ["model.arch=rnn"])


def test_gpt_checkpoints_record_arch_and_old_ones_still_load(tmp_path):
    torch.manual_seed(0)
    gpt = GPT(ModelConfig(preset="gpt2", vocab_size=V, block_size=16, n_layer=1, n_head=2, n_embd=16)).eval()
    assert config_dict(gpt)["arch"] == "gpt"
    old = {k: v for k, v in config_dict(gpt).items() if k != "arch"}  # written before model.arch existed
    save_checkpoint(tmp_path / "old", 1, gpt.state_dict(), CheckpointMeta.from_dict({"model_config": old}), None)
    loaded, _, _ = load_model(tmp_path / "old", device="cpu")
    x = torch.randint(0, V, (1, 8))
    assert isinstance(loaded, GPT) and loaded.cfg.arch == "gpt" and torch.equal(loaded(x), gpt(x))


def test_lora_and_hf_export_refuse_baselines(tmp_path):
    from owngpt.export.hf import save_hf_gpt2
    from owngpt.model.lora import LoRAConfig, apply_lora

    model = lstm()
    with pytest.raises(OwnGPTError, match="LoRA adapters are made for GPT models, and this is a lstm model"):
        apply_lora(model, LoRAConfig(targets=["lm_head"]))
    with pytest.raises(OwnGPTError, match="only GPT models export to Hugging Face GPT-2, and this is a lstm model"):
        save_hf_gpt2(model, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_adapter_made_before_arch_existed_still_fits_its_gpt_base(tmp_path):
    from owngpt.checkpoint.adapter import _check_base

    gpt = GPT(ModelConfig(preset="gpt2", vocab_size=V, block_size=16, n_layer=1, n_head=2, n_embd=16))
    old = {k: v for k, v in config_dict(gpt).items() if k != "arch"}
    _check_base(tmp_path, {"base": {"model_config": old}}, gpt, None)  # no error
    with pytest.raises(OwnGPTError, match="arch='lstm'"):
        _check_base(tmp_path, {"base": {"model_config": {**old, "arch": "lstm"}}}, gpt, None)


# ----------------------------------------------------------------------------- trained through the real recipes


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return pretrain_and_sft(tmp_path_factory.mktemp("lstm"), "lstm")


def test_pretrain_and_sft_learn(trained):
    assert falls(trained["pretrain_losses"], 0.6) and falls(trained["sft_losses"], 0.7)
    meta = read_meta(trained["base"] / "best")
    assert meta.arch == "lstm" and meta.model_config["n_embd"] == 32
    assert meta.model_config["vocab_size"] % 64 == 0  # the padded vocabulary, as for the GPT
    assert json.loads(json.dumps(meta.run_config))["model"]["arch"] == "lstm"
    sft_meta = read_meta(trained["chat"] / "best")
    assert sft_meta.arch == "lstm" and sft_meta.base_sha256 == meta.sha256


def test_generation_batched_equals_alone(trained):
    model, _, tok = load_model(trained["chat"], device="cpu")
    greedy_batched_equals_alone(model, tok, [conv(3)[:1], conv(12)[:3], [{"role": "user", "content": "hi"}]])


def test_continued_pretraining_from_a_baseline_is_refused(trained, tmp_path):
    """A run's config.yaml records a ModelConfig, which cannot describe an LSTM: continuing one is resuming it."""
    from owngpt.train.pretrain import setup

    run_cfg = load_run_config("tiny-cpu", [f"train.data={trained['base'].parent / 'data'}",
                                           f"train.init_from={trained['base']}",
                                           f"train.out_dir={tmp_path / 'more'}", "model.dropout=0.2"])
    with pytest.raises(OwnGPTError, match="holds an lstm model; continued pretraining starts from GPT checkpoints"):
        setup(run_cfg)


def test_cli_generate_on_an_lstm_run(trained):
    from gen_fixtures import invoke

    result = invoke(["generate", str(trained["base"]), "the number", "--max-new-tokens", "10", "--temperature", "0",
                     "--device", "cpu", "--no-stream"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("the number")


# ----------------------------------------------------------------------------- exact resume


@pytest.fixture
def data(tmp_path):
    return write_corpus(tmp_path / "data")


def test_resume_equals_uninterrupted_run(tmp_path, data):
    resume_equals_uninterrupted_run(tmp_path, data, "lstm")


def test_sigkill_mid_run_then_resume(tmp_path, data):
    sigkill_then_resume(tmp_path, data, "lstm")
