"""`owngpt prune`: magnitude pruning reaches its sparsity; structured pruning is exact surgery (0% is the identity,
removing units equals silencing them), ranks units by importance, shrinks the config, and its run loads, generates
and recovers with the training loop."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from gen_fixtures import greedy, invoke, random_gpt, save_run, tok  # noqa: F401 - fixtures
from owngpt.checkpoint.format import load_model, read_meta
from owngpt.errors import OwnGPTError
from owngpt.export.prune import block_matrices, importance, keep_units, magnitude_prune, prune_run, structured_prune
from owngpt.export.quantize import quantize_run
from owngpt.generate import generate

FAMILIES = (("gpt2", None), ("modern", 2))  # GPT-2 maths (biases, GELU); modern with GQA (2 kv groups of 2 heads)


def small(vocab: int, preset: str, kv: int | None, seed: int = 0):
    from owngpt.config import ModelConfig
    from owngpt.model.gpt import GPT

    torch.manual_seed(seed)
    cfg = ModelConfig(preset=preset, vocab_size=vocab, block_size=64, n_layer=2, n_head=4, n_kv_head=kv, n_embd=32,
                      mlp_hidden=48)
    model = GPT(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)  # large, varied weights (every bias and norm too): units differ clearly
    return model.eval()


def batches_of(vocab: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return lambda: (torch.randint(0, vocab, (4, 24), generator=g), torch.randint(0, vocab, (4, 24), generator=g))


@pytest.mark.parametrize("preset,kv", FAMILIES)
def test_structured_prune_at_zero_is_the_identity(tok, preset, kv):
    model = small(tok.vocab_size, preset, kv)
    x = torch.randint(0, tok.vocab_size, (2, 30))
    same = structured_prune(model, 0.0, "both", None)
    assert same is not model and same.cfg == model.cfg
    assert torch.equal(same(x), model(x))


def silenced(model, groups: list[list[int]], neurons: list[list[int]]):
    """Forward pre-hooks that zero every head (of the listed kv groups' complement) and MLP neuron not kept."""
    cfg = model.cfg
    per_group, hd = cfg.n_head // cfg.n_kv_head, cfg.head_dim
    hooks = []
    for layer, block in enumerate(model.transformer.h):
        head_mask = torch.zeros(cfg.n_head)
        for g in groups[layer]:
            head_mask[g * per_group:(g + 1) * per_group] = 1
        unit_mask = torch.zeros(block.mlp.c_proj.in_features)
        unit_mask[neurons[layer]] = 1
        hooks.append(block.attn.c_proj.register_forward_pre_hook(
            lambda _m, a, mask=head_mask: ((a[0].unflatten(-1, (-1, hd)) * mask[:, None]).flatten(-2),)))
        hooks.append(block.mlp.c_proj.register_forward_pre_hook(lambda _m, a, mask=unit_mask: (a[0] * mask,)))
    return hooks


@pytest.mark.parametrize("preset,kv", FAMILIES)
def test_removing_units_equals_silencing_them(tok, preset, kv):
    """The reference for the surgery on fused c_attn [q|k|v] rows, c_proj columns and SwiGLU's [gate|up] rows: the
    pruned model computes what the full one computes with those heads' outputs and neurons' activations zeroed."""
    model = small(tok.vocab_size, preset, kv)
    groups = [[1], [0]] if kv else [[0, 3], [1, 2]]  # a different choice per layer
    neurons = [sorted(torch.randperm(48)[:20].tolist()) for _ in range(2)]
    pruned = keep_units(model, groups, neurons)
    cfg = pruned.cfg
    assert (cfg.n_head, cfg.n_kv_head, cfg.head_dim, cfg.mlp_hidden) == ((2, 1, 8, 20) if kv else (2, 2, 8, 20))
    x = torch.randint(0, tok.vocab_size, (2, 30))
    hooks = silenced(model, groups, neurons)
    try:
        reference = model(x)
    finally:
        for h in hooks:
            h.remove()
    assert_close(pruned(x), reference, rtol=1e-5, atol=1e-5)
    cache = pruned.new_cache(2)  # the smaller KV cache works: n_kv_head x head_size
    stepwise = torch.cat([pruned(x[:, :12], cache=cache), *[pruned(x[:, t:t + 1], cache=cache) for t in range(12, 30)]], 1)
    assert_close(stepwise, reference, rtol=1e-4, atol=1e-4)


def test_importance_ranks_a_silent_head_and_neuron_lowest(tok):
    model = small(tok.vocab_size, "gpt2", None)
    with torch.no_grad():  # head 2 of layer 0 and neuron 7 of layer 1 contribute nothing: their c_proj columns are 0
        model.transformer.h[0].attn.c_proj.weight[:, 16:24] = 0
        model.transformer.h[1].mlp.c_proj.weight[:, 7] = 0
    heads, neurons = importance(model, batches_of(tok.vocab_size), 2)
    assert heads.shape == (2, 4) and neurons.shape == (2, 48)
    assert heads[0].argmin() == 2 and heads[0, 2] == 0 and neurons[1].argmin() == 7 and neurons[1, 7] == 0
    pruned = structured_prune(model, 0.25, "both", batches_of(tok.vocab_size), 2)
    assert pruned.cfg.n_head == 3 and pruned.cfg.mlp_hidden == 36
    assert model.training is False and pruned.training is False


@pytest.mark.parametrize("structure,want", [("heads", (2, 1, 48)), ("mlp", (4, 2, 24)), ("both", (2, 1, 24))])
def test_structured_prune_shrinks_the_config_and_parameters(tok, structure, want):
    model = small(tok.vocab_size, "modern", 2)  # 4 heads in 2 kv groups, 48 neurons
    pruned = structured_prune(model, 0.5, structure, batches_of(tok.vocab_size), 2)
    assert (pruned.cfg.n_head, pruned.cfg.n_kv_head, pruned.cfg.mlp_hidden) == want
    assert pruned.num_params() < model.num_params()
    assert pruned.cfg.head_dim == model.cfg.head_dim  # heads keep their width


@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.9])
def test_magnitude_prune_reaches_the_sparsity_in_every_matrix(tok, sparsity):
    model = small(tok.vocab_size, "modern", 2)
    before = {n: m.weight.detach().clone() for n, m in block_matrices(model)}
    wte = model.transformer.wte.weight.detach().clone()
    zero_fraction = magnitude_prune(model, sparsity)
    total = 0
    for name, m in block_matrices(model):
        w, old = m.weight.detach(), before[name]
        zeros = int((w == 0).sum())
        assert zeros == round(sparsity * w.numel())
        kept = w != 0
        assert torch.equal(w[kept], old[kept])  # survivors unchanged
        if zeros and bool(kept.any()):
            assert old[~kept].abs().max() <= old[kept].abs().min()  # the smallest went
        total += w.numel()
    assert math.isclose(zero_fraction, sum(round(sparsity * w.numel()) for w in before.values()) / total)
    assert torch.equal(model.transformer.wte.weight, wte)  # embeddings (and the tied head) are never pruned


def test_bad_input_is_refused(tok, tmp_path):
    model = small(tok.vocab_size, "gpt2", None)
    for bad in (1.0, 1.5, -0.1, float("nan")):
        with pytest.raises(OwnGPTError, match="--sparsity must be at least 0 and below 1"):
            magnitude_prune(model, bad)
        with pytest.raises(OwnGPTError, match="--sparsity must be"):
            structured_prune(model, bad, "heads", None)
    with pytest.raises(OwnGPTError, match="would remove all 4 heads"):
        structured_prune(model, 0.9, "heads", batches_of(tok.vocab_size))
    with pytest.raises(OwnGPTError, match="pass --data DIR"):
        structured_prune(model, 0.5, "mlp", None)
    with pytest.raises(OwnGPTError, match="--structured must be one of"):
        structured_prune(model, 0.5, "layers", None)
    run = save_run(tmp_path, tok, random_gpt(tok.vocab_size))
    with pytest.raises(OwnGPTError, match="regrow the zeroed weights"):
        prune_run(run, tmp_path / "p", 0.5, recover_steps=5, data=str(tmp_path))
    quantize_run(run, tmp_path / "q")
    with pytest.raises(OwnGPTError, match="already quantized .*prune the full-precision run"):
        prune_run(tmp_path / "q", tmp_path / "p", 0.5)


def test_pruned_runs_load_and_generate(tok, tmp_path):
    import owngpt.cli.compress  # noqa: F401 - registers `prune`

    run = save_run(tmp_path, tok, random_gpt(tok.vocab_size, "gpt2"))
    result = invoke(["prune", str(run), "--out", str(tmp_path / "u"), "--sparsity", "0.4"])
    assert result.exit_code == 0, result.output
    assert "40.0% of block weights zero" in result.output
    model, meta, _ = load_model(tmp_path / "u", device="cpu")
    assert meta.arch == "gpt" and meta.recorded("pruned")["structure"] == "unstructured"
    assert all(int((m.weight == 0).sum()) == round(0.4 * m.weight.numel()) for _, m in block_matrices(model))
    gen = invoke(["generate", str(tmp_path / "u"), "the", "--max-new-tokens", "8", "--temperature", "0",
                  "--device", "cpu", "--dtype", "float32"])
    assert gen.exit_code == 0, gen.output


def test_structured_prune_with_recovery_through_the_training_loop(tmp_path):
    """A pruned model saved to out/pruned, then continued by the pretraining recipe into out (best/ holds it)."""
    from neural_fixtures import write_prepared

    data = tmp_path / "data"
    tok = write_prepared(data)
    run = save_run(tmp_path, tok, small(tok.vocab_size, "modern", 2))
    settings = ["train.batch_size=4", "train.eval_batches=2", "train.device=cpu", "train.dtype=float32",
                "train.compile=off", "train.tensorboard=false"]
    done = prune_run(run, tmp_path / "p", 0.5, structure="both", data=str(data), n_batches=2, recover_steps=4,
                     overrides=settings)
    assert done["params_after"] < done["params_before"] and done["recovery"]["steps"] == 4
    pruned, meta, _ = load_model(tmp_path / "p" / "pruned", device="cpu")
    recovered, rmeta, rtok = load_model(tmp_path / "p", device="cpu")
    assert pruned.cfg == recovered.cfg and recovered.cfg.n_head == 2 and recovered.cfg.mlp_hidden == 24
    assert read_meta(tmp_path / "p" / "best").step == 4  # the recovered checkpoint, not the pruned one
    assert not all(torch.equal(a, b) for a, b in zip(pruned.state_dict().values(), recovered.state_dict().values()))
    out = generate(recovered, rtok, ["the number"], greedy(6))
    assert isinstance(out[0], str)
