"""GPT: causality, cached decoding == full forward, left padding == unpadded, sizes, errors, cache reorder."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from owngpt.config import ModelConfig
from owngpt.errors import OwnGPTError
from owngpt.model.gpt import GPT, sinusoidal_table
from owngpt.model.kv_cache import KVCache

V = 50


def tiny(preset: str = "gpt2", seed: int = 0, **kw) -> GPT:
    args = dict(preset=preset, vocab_size=V, block_size=32, n_layer=2, n_head=4, n_embd=32)
    args.update(kw)
    torch.manual_seed(seed)
    return GPT(ModelConfig(**args)).eval()


VARIANTS = {
    "gpt2": dict(preset="gpt2"),
    "modern": dict(preset="modern"),
    "modern-gqa": dict(preset="modern", n_kv_head=2),
    "gpt2-rope-gqa": dict(preset="gpt2", pos="rope", n_kv_head=1),
    "sinusoidal": dict(preset="gpt2", pos="sinusoidal"),
    "modern-learned-untied": dict(preset="modern", pos="learned", tie_embeddings=False),
}


def ids(B: int, T: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", VARIANTS)
def test_causal(name):
    model = tiny(**VARIANTS[name])
    x = ids(2, 12)
    with torch.no_grad():
        ref = model(x)
        for t in (0, 5, 11):
            y = x.clone()
            y[:, t] = (y[:, t] + 1) % V
            out = model(y)
            assert_close(out[:, :t], ref[:, :t], rtol=0, atol=1e-6)
            assert not torch.allclose(out[:, t], ref[:, t])


@pytest.mark.parametrize("name", VARIANTS)
def test_cached_decoding_equals_full_forward(name):
    model = tiny(**VARIANTS[name])
    x = ids(3, 20)
    with torch.no_grad():
        full = model(x)
        cache = model.new_cache(3)
        parts = [model(x[:, :7], cache=cache)]  # prefill
        parts += [model(x[:, t : t + 1], cache=cache) for t in range(7, 15)]  # one token at a time
        parts.append(model(x[:, 15:], cache=cache))  # several tokens after a prefix
    assert cache.pos == 20
    assert_close(torch.cat(parts, dim=1), full, rtol=1e-5, atol=1e-5)


def _left_pad(seqs: list[torch.Tensor], pad: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    T = max(len(s) for s in seqs)
    x = torch.full((len(seqs), T), pad, dtype=torch.long)
    valid = torch.zeros(len(seqs), T, dtype=torch.bool)
    for i, s in enumerate(seqs):
        x[i, T - len(s) :] = s
        valid[i, T - len(s) :] = True
    return x, valid


@pytest.mark.parametrize("name", VARIANTS)
def test_left_padding_matches_unpadded(name):
    model = tiny(**VARIANTS[name])
    seqs = [ids(1, n, seed=n)[0] for n in (9, 4, 1)]
    x, valid = _left_pad(seqs, pad=7)
    with torch.no_grad():
        batched = model(x, valid=valid)
        assert torch.isfinite(batched).all()  # padding queries stay finite too
        for i, s in enumerate(seqs):
            alone = model(s[None])
            assert_close(batched[i, -len(s) :], alone[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["gpt2", "modern", "modern-gqa"])
def test_left_padding_with_cache(name):
    """Prefill a padded batch, then decode without passing `valid` again: the cache remembers the padding."""
    model = tiny(**VARIANTS[name])
    seqs = [ids(1, n, seed=10 + n)[0] for n in (6, 3)]
    cont = ids(2, 4, seed=99)
    x, valid = _left_pad(seqs)
    with torch.no_grad():
        cache = model.new_cache(2)
        out = [model(x, cache=cache, valid=valid)[:, -1:]]
        out += [model(cont[:, t : t + 1], cache=cache) for t in range(2)]
        # the full mask may also be passed on later steps
        full_valid = torch.cat([valid, torch.ones(2, 3, dtype=torch.bool)], dim=1)
        out.append(model(cont[:, 2:3], cache=cache, valid=full_valid))
        got = torch.cat(out, dim=1)  # (2, 4, V)
        for i, s in enumerate(seqs):
            alone = model(torch.cat([s, cont[i, :3]])[None])[0, len(s) - 1 :]
            assert_close(got[i], alone, rtol=1e-5, atol=1e-5)


def test_cache_reorder_and_reset():
    model = tiny("modern", n_kv_head=2)
    x = ids(3, 10)
    with torch.no_grad():
        cache = model.new_cache(3, max_len=16)
        model(x[:, :8], cache=cache)
        index = torch.tensor([2, 2, 0, 1])  # beams: repeat one row, change the batch size
        cache.reorder(index)
        assert cache.batch_size == 4 and cache.k[0].shape == (4, 2, 16, 8)
        step = model(x[index, 8:10], cache=cache)
        assert_close(step, model(x[index])[:, 8:10], rtol=1e-5, atol=1e-5)
        cache.reset()
        assert cache.pos == 0
        assert_close(model(x[index, :5], cache=cache), model(x[index, :5]), rtol=1e-5, atol=1e-5)


def test_cache_append_aligns_rows_on_their_last_token():
    """Rows prefilled in a cache of their own and appended to another (continuous batching) compute what they
    would alone, whichever side is longer; grow() keeps what is stored."""
    model = tiny("modern", n_kv_head=2)
    x = ids(3, 12)
    with torch.no_grad():
        shared = model.new_cache(1, max_len=8)
        model(x[:1, :3], cache=shared)  # a row 3 tokens in
        joining = model.new_cache(2, max_len=12)
        valid = torch.tensor([[True] * 7, [False, False] + [True] * 5])
        model(x[1:, :7], cache=joining, valid=valid)  # two rows of 7 and 5 tokens, left-padded among themselves
        shared.append(joining)  # grows to hold 7 columns; the first row moves right behind 4 padding columns
        assert shared.batch_size == 3 and shared.pos == 7 and shared.max_len >= 7 and shared.padded
        shared.grow(12)
        assert shared.max_len == 12
        nxt = torch.stack([x[0, 3], x[1, 7], x[2, 7]])[:, None]  # each row's next token
        out = model(nxt, cache=shared)[:, 0]
        lengths = [3, 7, 5]
        seqs = [x[0, :3], x[1, :7], x[2, 2:7]]
        for i, (s, n) in enumerate(zip(seqs, lengths)):
            alone = model(torch.cat([s, nxt[i]])[None])[0, -1]
            assert_close(out[i], alone, rtol=1e-5, atol=1e-5)


def test_context_errors():
    model = tiny()
    with pytest.raises(OwnGPTError, match="longer than the model's context of 32 tokens"):
        model(ids(1, 33))
    cache = model.new_cache(1)
    model(ids(1, 30), cache=cache)
    with pytest.raises(OwnGPTError, match="longer than the model's context of 32 tokens"):
        model(ids(1, 3), cache=cache)
    with pytest.raises(OwnGPTError, match="KV cache of 8 tokens"):
        model(ids(1, 9), cache=model.new_cache(1, max_len=8))
    with pytest.raises(OwnGPTError, match="context of 32"):
        model.new_cache(1, max_len=64)


def test_new_cache_follows_model_dtype():
    model = tiny("modern").to(torch.bfloat16)
    cache = model.new_cache(2)
    assert isinstance(cache, KVCache) and cache.k[0].dtype == torch.bfloat16 and cache.max_len == 32
    with torch.no_grad():
        assert model(ids(2, 5), cache=cache).dtype == torch.bfloat16


def test_parameter_names_and_shapes():
    model = tiny("modern", n_kv_head=2, mlp_hidden=96)
    names = dict(model.named_parameters(remove_duplicate=False))
    assert "transformer.wpe.weight" not in names and "transformer.h.0.attn.c_attn.bias" not in names
    assert names["transformer.h.1.attn.c_attn.weight"].shape == ((4 + 2 * 2) * 8, 32)
    assert names["transformer.h.1.mlp.c_fc.weight"].shape == (2 * 96, 32)  # SwiGLU: gate and up
    assert names["transformer.h.1.mlp.c_proj.weight"].shape == (32, 96)
    assert names["lm_head.weight"] is names["transformer.wte.weight"]
    g = tiny("gpt2")
    gnames = {n for n, _ in g.named_parameters(remove_duplicate=False)}
    assert {"transformer.wpe.weight", "transformer.h.0.ln_1.bias", "transformer.h.0.mlp.c_fc.bias",
            "transformer.ln_f.weight", "lm_head.weight"} <= gnames
    assert set(g.state_dict()) == gnames  # no persistent buffers besides parameters


def test_scaled_init():
    torch.manual_seed(0)
    model = GPT(ModelConfig(preset="gpt2", vocab_size=512, block_size=64, n_layer=8, n_head=4, n_embd=256))
    sd = model.state_dict()
    assert abs(sd["transformer.h.0.mlp.c_fc.weight"].std().item() - 0.02) < 0.001
    assert abs(sd["transformer.h.0.mlp.c_proj.weight"].std().item() - 0.02 / 4) < 0.0005  # 0.02 / sqrt(2 * 8)
    assert sd["transformer.h.0.attn.c_attn.bias"].abs().max() == 0
    assert (sd["transformer.h.0.ln_1.weight"] == 1).all()


def test_gpt2_124m_size_and_flops():
    cfg = ModelConfig(preset="gpt2", vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768)
    with torch.device("meta"):
        model = GPT(cfg)
    assert model.num_params() == 124_439_808
    assert model.num_params(non_embedding=True) == 124_439_808 - 50257 * 768 - 1024 * 768
    n = 124_439_808 - 1024 * 768  # nanoGPT's N: the head (tied wte) counts, the position table does not
    assert model.flops_per_token() == 6 * n + 12 * 12 * 12 * 64 * 1024
    assert model.describe().startswith("GPT gpt2: 124.44M params, 12 layers, 768 wide, 12 heads, ctx 1024,")


def test_describe_baby_gpt():
    model = tiny(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128)
    assert model.describe() == "GPT gpt2: 0.81M params, 4 layers, 128 wide, 4 heads, ctx 64, 5.2 MFLOPs/token"


def test_sinusoidal_table_and_dropout_training():
    pe = sinusoidal_table(10, 6)
    assert_close(pe[3, 0], torch.sin(torch.tensor(3.0)))
    assert_close(pe[3, 1], torch.cos(torch.tensor(3.0)))
    assert_close(pe[3, 4], torch.sin(torch.tensor(3.0) / 10000 ** (4 / 6)))
    model = tiny("modern", dropout=0.5).train()
    x = ids(2, 8)
    a, b = model(x), model(x)
    assert not torch.allclose(a, b)  # dropout active while training
    model.eval()
    assert_close(model(x), model(x))
    loss = torch.nn.functional.cross_entropy(model.train()(x).view(-1, V), x.view(-1))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", ["gpt2", "modern-gqa"])
def test_cpu_bf16_autocast_tracks_fp32(name):
    """Under CPU bf16 autocast (the training default on CPUs with AMX) attention runs in fp32; logits and
    gradients stay close to the fp32 model's."""
    model = tiny(**VARIANTS[name]).train()
    x = ids(2, 16)
    ref = model(x)
    ref.float().logsumexp(-1).mean().backward()
    ref_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    import owngpt.model.gpt as gpt_module

    seen = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(q, k, v, **kw):
        seen.append((q.dtype, k.dtype, v.dtype))
        return sdpa(q, k, v, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gpt_module.F, "scaled_dot_product_attention", spy)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
    assert seen and all(d == (torch.float32,) * 3 for d in seen)  # attention itself in fp32
    assert out.dtype == torch.bfloat16
    assert_close(out.float(), ref, atol=0.05, rtol=0.05)
    out.float().logsumexp(-1).mean().backward()
    for n, p in model.named_parameters():
        assert p.grad.dtype == torch.float32  # master weights and their gradients stay fp32
        cos = torch.nn.functional.cosine_similarity(p.grad.flatten(), ref_grads[n].flatten(), dim=0)
        assert cos > 0.98, n


def test_cpu_tanh_gelu_equals_torch():
    from owngpt.model.gpt import _TanhGELU

    x = torch.linspace(-6, 6, 1001, dtype=torch.float64, requires_grad=True)
    y = _TanhGELU.apply(x)
    ref = torch.nn.functional.gelu(x, approximate="tanh")
    assert_close(y, ref)
    (gx,) = torch.autograd.grad(y.sum(), x)
    (gref,) = torch.autograd.grad(ref.sum(), x)
    assert_close(gx, gref)


def test_rope_matches_hugging_face_llama():
    """Our rotary tables and rotation (half-split pairs) against transformers' Llama implementation."""
    llama = pytest.importorskip("transformers.models.llama.modeling_llama")
    from transformers import LlamaConfig

    from owngpt.model.gpt import apply_rope, rope_lookup, rope_table

    B, H, T, hd, theta = 2, 3, 20, 16, 10000.0
    hf_cfg = LlamaConfig(hidden_size=H * hd, num_attention_heads=H, max_position_embeddings=64, rope_theta=theta)
    positions = torch.arange(T)[None].repeat(B, 1)
    q, k = torch.randn(2, B, H, T, hd, generator=torch.Generator().manual_seed(0), dtype=torch.float64).float()
    cos_hf, sin_hf = llama.LlamaRotaryEmbedding(hf_cfg)(q, positions)
    q_hf, k_hf = llama.apply_rotary_pos_emb(q, k, cos_hf, sin_hf)
    cos, sin = rope_lookup(rope_table(64, hd, theta), positions, torch.float32)
    assert_close(apply_rope(q, cos, sin), q_hf, atol=1e-5, rtol=1e-5)
    assert_close(apply_rope(k, cos, sin), k_hf, atol=1e-5, rtol=1e-5)


def test_position_tables_stay_fp32_through_dtype_casts():
    for kw in (dict(preset="modern"), dict(preset="gpt2", pos="sinusoidal")):
        model = tiny(**kw)
        name = "rope" if kw["preset"] == "modern" else "pe"
        before = getattr(model, name).clone()
        model.bfloat16()
        assert getattr(model, name).dtype == torch.float32 and model.transformer.wte.weight.dtype == torch.bfloat16
        model.float()
        assert torch.equal(getattr(model, name), before)


def test_meta_device_build_then_to_empty_gets_real_position_tables():
    ref = tiny(preset="modern")
    with torch.device("meta"):
        model = GPT(ref.cfg)
    model.to_empty(device="cpu")
    model.load_state_dict(ref.state_dict())
    assert torch.equal(model.rope, ref.rope)
    assert_close(model.eval()(ids(2, 8)), ref(ids(2, 8)))
