"""GGUF export (owngpt/export/gguf.py, `owngpt export-gguf`): the file read back with gguf's reader, the rope
permutation checked against GGML's rotation, refusals, and (slow, with llama-cpp-python) llama.cpp's greedy tokens."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")

from owngpt.checkpoint.format import save_checkpoint  # noqa: E402
from owngpt.checkpoint.meta import CheckpointMeta  # noqa: E402
from owngpt.config import ModelConfig  # noqa: E402
from owngpt.errors import OwnGPTError  # noqa: E402
from owngpt.export.gguf import export_gguf, export_run_gguf, permute_rope  # noqa: E402
from owngpt.model.gpt import GPT, apply_rope, rope_lookup, rope_table  # noqa: E402
from owngpt.tokenizer import chat_template_jinja, train_bpe, train_char  # noqa: E402

TEXT = "the quick brown fox jumps over the lazy dog. hello world! 你好，世界。AI模型 0123456789\n" * 30
EXTRA_ROWS = 3  # embedding rows past the tokenizer (a vocabulary padded for speed)


@pytest.fixture(scope="module")
def tok():
    return train_bpe([TEXT], 320)


def tiny(preset: str, vocab: int, seed: int = 0, **kw) -> GPT:
    """A tiny GPT with large random weights, so greedy decoding has peaked, varied choices."""
    torch.manual_seed(seed)
    cfg = ModelConfig(preset=preset, vocab_size=vocab, block_size=64, n_layer=2, n_head=4, n_embd=64, **kw)
    model = GPT(cfg)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.35)
    return model.eval()


def save_run(path, tok, model, **meta):
    save_checkpoint(path, 1, model.state_dict(), CheckpointMeta(model_config=asdict(model.cfg), tokenizer_hash=tok.hash,
                                                                **meta), None, tokenizer=tok, best=True)
    return path


def field(reader, key):
    """A metadata value as Python: a str, a number, a bool, or a list of them."""
    f = reader.fields[key]
    values = [f.parts[i] for i in f.data]
    if f.types[0] == gguf.GGUFValueType.STRING:
        return bytes(values[0]).decode("utf-8")
    if f.types[0] == gguf.GGUFValueType.ARRAY:
        if f.types[-1] == gguf.GGUFValueType.STRING:
            return [bytes(v).decode("utf-8") for v in values]
        return [v.tolist()[0] for v in values]
    return values[0].tolist()[0]


def tensors(reader) -> dict:
    return {t.name: t for t in reader.tensors}


# ----------------------------------------------------------------------------- the gpt2 layout


def test_gpt2_run_reads_back_with_every_tensor_and_setting(tmp_path, tok):
    from typer.testing import CliRunner

    import owngpt.cli.gguf  # noqa: F401 - registers export-gguf
    from owngpt.cli import app

    model = tiny("gpt2", tok.vocab_size + EXTRA_ROWS)
    run = save_run(tmp_path / "run", tok, model)
    result = CliRunner().invoke(app, ["export-gguf", str(run), str(tmp_path / "m.gguf")])
    assert result.exit_code == 0, result.output
    r = gguf.GGUFReader(tmp_path / "m.gguf")
    assert field(r, "general.architecture") == "gpt2"
    assert field(r, "gpt2.context_length") == 64
    assert field(r, "gpt2.embedding_length") == 64 and field(r, "gpt2.block_count") == 2
    assert field(r, "gpt2.feed_forward_length") == 256
    assert field(r, "gpt2.attention.head_count") == 4 and field(r, "gpt2.attention.head_count_kv") == 4
    assert field(r, "gpt2.attention.layer_norm_epsilon") == pytest.approx(1e-5)
    t = tensors(r)
    per_layer = ["attn_norm.weight", "attn_norm.bias", "attn_qkv.weight", "attn_qkv.bias", "attn_output.weight",
                 "attn_output.bias", "ffn_norm.weight", "ffn_norm.bias", "ffn_up.weight", "ffn_up.bias",
                 "ffn_down.weight", "ffn_down.bias"]
    assert set(t) == {"token_embd.weight", "position_embd.weight", "output_norm.weight", "output_norm.bias"} | {
        f"blk.{i}.{n}" for i in range(2) for n in per_layer}  # tied head: no output.weight
    V = tok.vocab_size + EXTRA_ROWS
    assert list(t["token_embd.weight"].shape) == [64, V]  # GGML order: (in, rows)
    assert list(t["blk.0.attn_qkv.weight"].shape) == [64, 192]
    assert list(t["blk.1.ffn_down.weight"].shape) == [256, 64]
    assert {x.tensor_type.name for x in t.values()} == {"F32"}
    qkv = np.asarray(t["blk.1.attn_qkv.weight"].data)  # (out, in), as nn.Linear stores it
    np.testing.assert_array_equal(qkv, model.transformer.h[1].attn.c_attn.weight.detach().numpy())


def test_tokenizer_and_chat_template_are_in_the_file(tmp_path, tok):
    V = tok.vocab_size + EXTRA_ROWS
    export_gguf(tiny("gpt2", V), tok, tmp_path / "m.gguf")
    r = gguf.GGUFReader(tmp_path / "m.gguf")
    assert field(r, "tokenizer.ggml.model") == "gpt2" and field(r, "tokenizer.ggml.pre") == "gpt-2"
    tokens = field(r, "tokenizer.ggml.tokens")
    vocab = tok.spec["model"]["vocab"]
    assert len(tokens) == V
    assert all(vocab[name] == i for i, name in enumerate(tokens[: tok.vocab_size]))
    assert tokens[:4] == ["<|endoftext|>", "<|pad|>", "<|im_start|>", "<|im_end|>"]
    types = field(r, "tokenizer.ggml.token_type")
    assert types[:8] == [gguf.TokenType.CONTROL] * 8
    assert set(types[8: tok.vocab_size]) == {gguf.TokenType.NORMAL}
    assert types[tok.vocab_size:] == [gguf.TokenType.UNUSED] * EXTRA_ROWS
    merges = field(r, "tokenizer.ggml.merges")
    assert merges == [m if isinstance(m, str) else " ".join(m) for m in tok.spec["model"]["merges"]] and merges
    assert (field(r, "tokenizer.ggml.bos_token_id"), field(r, "tokenizer.ggml.eos_token_id")) == (tok.eot_id, tok.eot_id)
    assert field(r, "tokenizer.ggml.eot_token_id") == tok.im_end_id
    assert field(r, "tokenizer.ggml.padding_token_id") == tok.pad_id
    assert field(r, "tokenizer.ggml.add_bos_token") is False
    assert field(r, "tokenizer.chat_template") == chat_template_jinja(tok)


# ----------------------------------------------------------------------------- the llama layout


def test_modern_gqa_model_gets_the_llama_layout(tmp_path, tok):
    model = tiny("modern", tok.vocab_size, n_kv_head=2, tie_embeddings=False, rope_theta=5000.0)
    export_gguf(model, tok, tmp_path / "m.gguf")
    r = gguf.GGUFReader(tmp_path / "m.gguf")
    assert field(r, "general.architecture") == "llama"
    assert field(r, "llama.attention.head_count") == 4 and field(r, "llama.attention.head_count_kv") == 2
    assert field(r, "llama.rope.freq_base") == pytest.approx(5000.0)
    assert field(r, "llama.rope.dimension_count") == 16
    assert field(r, "llama.attention.layer_norm_rms_epsilon") == pytest.approx(1e-6)
    assert field(r, "llama.feed_forward_length") == 192  # 8/3 * 64 rounded up to 64
    t = tensors(r)
    assert list(t["blk.0.attn_q.weight"].shape) == [64, 64] and list(t["blk.0.attn_k.weight"].shape) == [64, 32]
    assert list(t["blk.0.ffn_gate.weight"].shape) == [64, 192] and list(t["blk.0.ffn_down.weight"].shape) == [192, 64]
    assert list(t["output.weight"].shape) == [64, tok.vocab_size]  # untied head written
    assert not any("bias" in name for name in t)
    up = model.transformer.h[0].mlp.c_fc.weight.detach()[192:]  # c_fc = [gate | up]
    np.testing.assert_array_equal(np.asarray(t["blk.0.ffn_up.weight"].data), up.numpy())


def ggml_rope(x: torch.Tensor, theta: float) -> torch.Tensor:
    """GGML's normal (llama) rope: adjacent pairs (x[2i], x[2i+1]) of each head rotated by pos * theta^(-2i/hd)."""
    T, nh, hd = x.shape
    inv = 1.0 / theta ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd)  # angles in fp32, as owngpt's table
    ang = torch.arange(T, dtype=torch.float32)[:, None, None] * inv  # (T, 1, hd/2)
    cos, sin = ang.cos().double(), ang.sin().double()
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).reshape(T, nh, hd)


@pytest.mark.parametrize("n_head,n_kv_head", [(4, 4), (4, 2)])
def test_permuted_q_and_k_give_owngpt_attention_scores_under_ggml_rope(n_head, n_kv_head):
    torch.manual_seed(0)
    T, C, hd, theta = 7, 64, 16, 10000.0
    x = torch.randn(T, C, dtype=torch.float64)
    wq, wk = torch.randn(n_head * hd, C, dtype=torch.float64), torch.randn(n_kv_head * hd, C, dtype=torch.float64)
    cos, sin = rope_lookup(rope_table(T, hd, theta).double(), torch.arange(T), torch.float64)
    q = apply_rope((x @ wq.T).view(T, n_head, hd).transpose(0, 1)[None], cos, sin)[0]  # (nh, T, hd)
    k = apply_rope((x @ wk.T).view(T, n_kv_head, hd).transpose(0, 1)[None], cos, sin)[0]
    k = k.repeat_interleave(n_head // n_kv_head, dim=0)
    mine = q @ k.transpose(1, 2)  # (nh, T, T)
    gq = ggml_rope((x @ permute_rope(wq, n_head).T).view(T, n_head, hd), theta).transpose(0, 1)
    gk = ggml_rope((x @ permute_rope(wk, n_kv_head).T).view(T, n_kv_head, hd), theta).transpose(0, 1)
    gk = gk.repeat_interleave(n_head // n_kv_head, dim=0)
    torch.testing.assert_close(gq @ gk.transpose(1, 2), mine)
    assert not torch.allclose((x @ wq.T).view(T, n_head, hd), (x @ permute_rope(wq, n_head).T).view(T, n_head, hd))


# ----------------------------------------------------------------------------- dtypes


def test_q8_0_and_bf16_quantize_matrices_and_keep_norms_and_positions_f32(tmp_path, tok):
    model = tiny("gpt2", tok.vocab_size)
    types = export_gguf(model, tok, tmp_path / "q.gguf", "q8_0")
    assert types["blk.0.attn_qkv.weight"] == "Q8_0" and types["token_embd.weight"] == "Q8_0"
    assert types["position_embd.weight"] == "F32" and types["blk.0.attn_norm.weight"] == "F32"
    assert types["blk.0.attn_qkv.bias"] == "F32"
    r = gguf.GGUFReader(tmp_path / "q.gguf")
    t = tensors(r)["blk.0.ffn_up.weight"]
    back = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type)
    w = model.transformer.h[0].mlp.c_fc.weight.detach().numpy()
    # q8_0: each block of 32 scaled by its max |w| / 127, so the error is half a step, plus up to 127 times the
    # rounding of the fp16 scale (2^-11 relative): 0.57 of a step in all
    step = np.abs(w).reshape(-1, 32).max(axis=1) / 127
    assert (np.abs(back - w).reshape(-1, 32) <= 0.57 * step[:, None]).all()
    assert np.abs(back - w).max() > 0  # it was really quantized
    assert field(r, "general.file_type") == gguf.LlamaFileType.MOSTLY_Q8_0
    types = export_gguf(model, tok, tmp_path / "b.gguf", "bf16")
    assert types["blk.0.attn_qkv.weight"] == "BF16" and types["output_norm.weight"] == "F32"


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("kw,said", [
    (dict(preset="modern", pos="sinusoidal"), "sinusoidal positions"),
    (dict(preset="gpt2", n_kv_head=2), "grouped-query"),
    (dict(preset="modern", norm="layernorm"), "norm='rmsnorm'"),
    (dict(preset="modern", bias=True), "bias=False"),
    (dict(preset="gpt2", mlp="swiglu"), "mlp='gelu'"),
])
def test_settings_llama_cpp_cannot_express_are_refused_with_the_reason(tmp_path, tok, kw, said):
    preset = kw.pop("preset")
    with pytest.raises(OwnGPTError, match=said):
        export_gguf(tiny(preset, tok.vocab_size, **kw), tok, tmp_path / "m.gguf")
    assert not (tmp_path / "m.gguf").exists()


def test_other_models_tokenizers_and_lora_runs_are_refused(tmp_path, tok):
    from owngpt.model.registry import make_model

    lstm = make_model(ModelConfig(arch="lstm", vocab_size=tok.vocab_size, n_layer=1, n_embd=32))
    with pytest.raises(OwnGPTError, match="lstm model"):
        export_gguf(lstm, tok, tmp_path / "m.gguf")
    char = train_char([TEXT])
    with pytest.raises(OwnGPTError, match="byte-level BPE"):
        export_gguf(tiny("gpt2", char.vocab_size), char, tmp_path / "m.gguf")
    with pytest.raises(OwnGPTError, match="dtype must be one of"):
        export_gguf(tiny("gpt2", tok.vocab_size), tok, tmp_path / "m.gguf", "q4_0")
    with pytest.raises(OwnGPTError, match="does not exist"):
        export_gguf(tiny("gpt2", tok.vocab_size), tok, tmp_path / "missing" / "m.gguf")
    with pytest.raises(OwnGPTError, match="is a folder"):
        export_gguf(tiny("gpt2", tok.vocab_size), tok, tmp_path)
    run = save_run(tmp_path / "lora", tok, tiny("gpt2", tok.vocab_size), weights_filtered=True)
    with pytest.raises(OwnGPTError, match="only LoRA adapters.*owngpt export-gguf .* FILE --adapter"):
        export_run_gguf(run, tmp_path / "m.gguf")


def test_cli_prints_one_error_line(tmp_path, tok, capsys):
    from owngpt.cli import main

    run = save_run(tmp_path / "run", tok, tiny("modern", tok.vocab_size, pos="sinusoidal"))
    with pytest.raises(SystemExit) as e:
        main(["export-gguf", str(run), str(tmp_path / "m.gguf")])
    assert e.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: sinusoidal positions")


# ----------------------------------------------------------------------------- llama.cpp itself (slow)


@pytest.mark.slow
@pytest.mark.parametrize("preset,kw", [("gpt2", {}), ("modern", {"n_kv_head": 2})])
def test_llama_cpp_generates_owngpt_greedy_tokens(tmp_path, tok, preset, kw):
    pytest.importorskip("llama_cpp")
    from owngpt.export.gguf import llama_cpp_greedy, open_llama
    from owngpt.generate import GenerationConfig
    from owngpt.generate.engine import generate_ids

    model = tiny(preset, tok.vocab_size + EXTRA_ROWS, seed=1, **kw)
    export_gguf(model, tok, tmp_path / "m.gguf")
    prompt = tok.encode("the quick brown fox")
    n = 40
    mine = generate_ids(model, [prompt], GenerationConfig(max_new_tokens=n, temperature=0.0))[0]
    theirs = llama_cpp_greedy(open_llama(tmp_path / "m.gguf", n_ctx=64), prompt, n)
    assert len(set(mine)) > 3, "a degenerate model would not test much"
    assert theirs == mine
