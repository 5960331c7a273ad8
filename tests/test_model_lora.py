"""LoRA: exact no-op at init, merge == base + adapter, frozen base, strict adapter matching, adapter folders."""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.testing import assert_close

from owngpt.errors import OwnGPTError
from owngpt.model.lora import (
    LoRAConfig,
    LoRALinear,
    apply_lora,
    has_lora,
    load_adapter,
    load_lora,
    lora_state_dict,
    merge_lora,
    read_adapter,
    save_adapter,
    write_adapter,
)


# ----------------------------------------------------------------------------- a tiny model with GPT-2's Linear names


@dataclass
class TinyConfig:
    vocab_size: int = 32
    n_embd: int = 16
    n_layer: int = 2
    tie: bool = True


class TinyAttn(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.c_attn = nn.Linear(d, 3 * d)
        self.c_proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.c_attn(x).chunk(3, dim=-1)  # 3 x (B, T, d)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y)


class TinyMLP(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.c_fc = nn.Linear(d, 4 * d)
        self.c_proj = nn.Linear(4 * d, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x)))


class TinyBlock(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.ln_1, self.attn, self.ln_2, self.mlp = nn.LayerNorm(d), TinyAttn(d), nn.LayerNorm(d), TinyMLP(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class TinyGPT(nn.Module):
    def __init__(self, cfg: TinyConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(cfg.vocab_size, cfg.n_embd),
            h=nn.ModuleList(TinyBlock(cfg.n_embd) for _ in range(cfg.n_layer)),
            ln_f=nn.LayerNorm(cfg.n_embd),
        ))
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie:
            self.lm_head.weight = self.transformer.wte.weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.transformer.wte(idx)
        for block in self.transformer.h:
            x = block(x)
        return self.lm_head(self.transformer.ln_f(x))


def tiny(seed: int = 0, **kw) -> TinyGPT:
    torch.manual_seed(seed)
    return TinyGPT(TinyConfig(**kw)).eval()


def tokens(seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 32, (2, 7), generator=torch.Generator().manual_seed(seed))


def perturb(model: nn.Module, seed: int = 3) -> None:
    """Stand-in for training: random non-zero A and B."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)


CFG = LoRAConfig(rank=4, alpha=8.0, dropout=0.0)

# ----------------------------------------------------------------------------- apply


def test_fresh_adapter_gives_exactly_the_base_outputs():
    base = tiny()
    model = copy.deepcopy(base)
    names = apply_lora(model, LoRAConfig(rank=4, alpha=8.0, dropout=0.1))
    model.eval()
    x = tokens()
    assert torch.equal(model(x), base(x))
    assert names == [f"transformer.h.{i}.{n}" for i in range(2) for n in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")]


def test_only_lora_params_train_and_base_names_are_kept():
    base = tiny()
    model = copy.deepcopy(base)
    wrapped = apply_lora(model, CFG)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert len(trainable) == 2 * len(wrapped)
    # The base weights keep their names, so a base state dict still loads.
    assert set(base.state_dict()) <= set(model.state_dict())
    missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and all("lora_" in k for k in missing)

    layer = model.transformer.h[0].attn.c_attn
    assert isinstance(layer, LoRALinear)
    assert layer.lora_A.shape == (4, 16) and layer.lora_B.shape == (48, 4)
    assert torch.count_nonzero(layer.lora_B) == 0 and torch.count_nonzero(layer.lora_A) > 0
    assert layer.scaling == 2.0


def test_training_step_changes_only_the_adapters():
    model = tiny()
    apply_lora(model, CFG)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    x = tokens()
    for _ in range(2):  # B is zero at first, so A only gets gradient from the second step on
        loss = F.cross_entropy(model(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = model.state_dict()
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed and all("lora_" in k for k in changed)
    assert any(k.endswith("lora_A") for k in changed) and any(k.endswith("lora_B") for k in changed)


def test_targets_are_suffixes_and_unknown_targets_list_the_layers():
    model = tiny()
    assert apply_lora(model, LoRAConfig(targets=["attn.c_proj"])) == ["transformer.h.0.attn.c_proj", "transformer.h.1.attn.c_proj"]
    with pytest.raises(OwnGPTError, match="already has LoRA"):
        apply_lora(model, CFG)
    with pytest.raises(OwnGPTError, match=r"no Linear layer matches the LoRA targets \['q_proj'\].*c_attn"):
        apply_lora(tiny(), LoRAConfig(targets=["q_proj"]))


def test_tied_lm_head_is_refused_untied_is_fine():
    with pytest.raises(OwnGPTError, match="lm_head.*tied to transformer.wte.weight"):
        apply_lora(tiny(), LoRAConfig(targets=["lm_head"]))
    assert apply_lora(tiny(tie=False), LoRAConfig(targets=["lm_head"])) == ["lm_head"]


def test_config_validation():
    with pytest.raises(OwnGPTError, match="rank"):
        LoRAConfig(rank=0)
    with pytest.raises(OwnGPTError, match="dropout"):
        LoRAConfig(dropout=1.0)
    assert LoRAConfig(targets="c_attn, c_fc").targets == ["c_attn", "c_fc"]


def test_lora_state_dict_holds_only_adapters():
    model = tiny()
    wrapped = apply_lora(model, CFG)
    state = lora_state_dict(model)
    assert len(state) == 2 * len(wrapped)
    assert all("lora_" in k for k in state)


# ----------------------------------------------------------------------------- merge


@pytest.mark.parametrize("tie", [True, False])
def test_merge_equals_base_plus_adapter(tie):
    base = tiny(tie=tie)
    model = copy.deepcopy(base)
    targets = ["c_attn", "c_proj", "c_fc"] + ([] if tie else ["lm_head"])
    apply_lora(model, LoRAConfig(rank=4, alpha=8.0, dropout=0.2, targets=targets))
    perturb(model)
    model.eval()
    x = tokens()
    with torch.no_grad():
        adapted = model(x)
    assert not torch.allclose(adapted, base(x))  # the adapter really changes the outputs
    merged = merge_lora(model)
    assert not has_lora(merged)
    assert list(merged.state_dict()) == list(base.state_dict())  # the base's exact parameter names, in order
    assert all(type(m) is nn.Linear for n, m in merged.named_modules() if n.endswith(("c_attn", "c_proj", "c_fc")))
    with torch.no_grad():
        assert_close(merged(x), adapted, rtol=1e-5, atol=1e-5)
    # Untouched weights are bitwise the base's.
    assert torch.equal(merged.transformer.wte.weight, base.transformer.wte.weight)
    with pytest.raises(OwnGPTError, match="no LoRA adapters"):
        merge_lora(merged)


# ----------------------------------------------------------------------------- load / mismatch


def test_load_lora_round_trip():
    src = tiny()
    apply_lora(src, CFG)
    perturb(src)
    dst = tiny()  # same seed: same base weights
    load_lora(dst, lora_state_dict(src), CFG)
    x = tokens()
    assert torch.equal(dst(x), src(x))


def test_adapter_with_another_rank_is_refused_and_model_untouched():
    src = tiny()
    apply_lora(src, LoRAConfig(rank=2, alpha=4.0))
    dst = tiny()
    with pytest.raises(OwnGPTError) as e:
        load_lora(dst, lora_state_dict(src), CFG)
    msg = str(e.value)
    assert "transformer.h.0.attn.c_attn.lora_A" in msg and "(2, 16)" in msg and "(4, 16)" in msg
    assert not has_lora(dst)


def test_adapter_for_another_width_or_depth_is_refused():
    src = tiny(n_embd=24)
    apply_lora(src, CFG)
    with pytest.raises(OwnGPTError, match=r"'transformer.h.0.attn.c_attn.lora_A' has shape \(4, 24\) but the model needs \(4, 16\)"):
        load_lora(tiny(), lora_state_dict(src), CFG)
    deeper = tiny(n_layer=3)
    apply_lora(deeper, CFG)
    with pytest.raises(OwnGPTError, match=r"transformer.h.2.attn.c_attn.lora_A.*no place for"):
        load_lora(tiny(), lora_state_dict(deeper), CFG)
    shallow = tiny(n_layer=1)
    apply_lora(shallow, CFG)
    with pytest.raises(OwnGPTError, match=r"no tensor 'transformer.h.1.attn.c_attn.lora_A'"):
        load_lora(tiny(), lora_state_dict(shallow), CFG)


# ----------------------------------------------------------------------------- adapter folders


BASE_META = {"model_config": asdict(TinyConfig()), "sha256": "ab" * 32, "tokenizer_hash": "tok1", "step": 100}


def test_save_and_load_adapter_round_trip(tmp_path):
    src = tiny()
    apply_lora(src, CFG)
    perturb(src)
    save_adapter(tmp_path / "adapter", src, CFG, BASE_META)
    info = json.loads((tmp_path / "adapter" / "adapter.json").read_text())
    assert info["lora"] == asdict(CFG)
    assert info["base"] == {"model_config": asdict(TinyConfig()), "sha256": "ab" * 32, "tokenizer_hash": "tok1", "step": 100}
    assert "transformer.h.1.mlp.c_fc" in info["modules"]
    state, _ = read_adapter(tmp_path / "adapter")
    assert all("lora_" in k for k in state)

    dst = tiny()
    assert load_adapter(tmp_path / "adapter", dst, base_meta=dict(BASE_META)) == CFG
    x = tokens()
    assert torch.equal(dst(x), src(x))


def test_write_adapter_from_a_checkpoint_state(tmp_path):
    """The sft recipe exports an adapter from an adapter-only checkpoint state (no model at hand)."""
    src = tiny()
    apply_lora(src, CFG)
    perturb(src)
    write_adapter(tmp_path / "a", {k: v for k, v in src.state_dict().items() if "lora_" in k}, CFG, BASE_META)
    dst = tiny()
    load_adapter(tmp_path / "a", dst)
    assert torch.equal(dst(tokens()), src(tokens()))
    with pytest.raises(OwnGPTError, match="no LoRA tensors"):
        write_adapter(tmp_path / "b", tiny().state_dict(), CFG, BASE_META)


def test_adapter_for_another_base_is_refused(tmp_path):
    src = tiny()
    apply_lora(src, CFG)
    save_adapter(tmp_path / "a", src, CFG, BASE_META)
    with pytest.raises(OwnGPTError, match=r"sha256 abababababab… \(step 100\), but this base has cdcdcdcdcdcd… \(step 7\)"):
        load_adapter(tmp_path / "a", tiny(), base_meta=dict(BASE_META, sha256="cd" * 32, step=7))
    with pytest.raises(OwnGPTError, match="tokenizer hash"):
        load_adapter(tmp_path / "a", tiny(), base_meta=dict(BASE_META, tokenizer_hash="tok2"))
    with pytest.raises(OwnGPTError, match="n_layer=2, but this model has n_layer=3"):
        load_adapter(tmp_path / "a", tiny(n_layer=3))


def test_corrupt_or_missing_adapter_is_refused(tmp_path):
    with pytest.raises(OwnGPTError, match="not an adapter folder"):
        load_adapter(tmp_path, tiny())
    src = tiny()
    apply_lora(src, CFG)
    save_adapter(tmp_path / "a", src, CFG, BASE_META)
    weights = tmp_path / "a" / "adapter.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(OwnGPTError, match="corrupt"):
        load_adapter(tmp_path / "a", tiny())


# ----------------------------------------------------------------------------- with the real GPT and checkpoints


def _gpt_checkpoint(tmp_path):
    gpt = pytest.importorskip("owngpt.model.gpt")
    from owngpt.config import ModelConfig
    from owngpt.train.checkpoint import save_checkpoint

    torch.manual_seed(0)
    cfg = ModelConfig(preset="gpt2", vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=32)
    model = gpt.GPT(cfg).eval()
    save_checkpoint(tmp_path / "base", 5, model.state_dict(), {"model_config": asdict(cfg), "tokenizer_hash": None},
                    None, best=True)
    return model


def test_merge_adapter_into_checkpoint_with_gpt(tmp_path):
    from owngpt.model.lora import merge_adapter_into_checkpoint
    from owngpt.train.checkpoint import load_model, read_meta

    base = _gpt_checkpoint(tmp_path)
    model, meta, _ = load_model(tmp_path / "base")
    wrapped = apply_lora(model, CFG)
    assert len(wrapped) == 4 * 2  # attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj per block
    perturb(model)
    save_adapter(tmp_path / "adapter", model, CFG, meta)
    x = torch.randint(0, 64, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        adapted = model(x)

    out = merge_adapter_into_checkpoint(tmp_path / "base", tmp_path / "adapter", tmp_path / "merged")
    merged, merged_meta, _ = load_model(tmp_path / "merged")
    assert out == tmp_path / "merged" / "best"
    assert merged_meta["merged_adapter"]["base_sha256"] == read_meta(tmp_path / "base" / "best")["sha256"]
    assert list(merged.state_dict()) == list(base.state_dict())
    with torch.no_grad():
        assert_close(merged(x), adapted, rtol=1e-5, atol=1e-5)
    with pytest.raises(OwnGPTError, match="not empty"):
        merge_adapter_into_checkpoint(tmp_path / "base", tmp_path / "adapter", tmp_path / "merged")


def test_lora_merge_cli(tmp_path):
    from typer.testing import CliRunner

    from owngpt.cli import _register, app
    from owngpt.train.checkpoint import load_model

    _gpt_checkpoint(tmp_path)
    model, meta, _ = load_model(tmp_path / "base")
    apply_lora(model, CFG)
    perturb(model)
    save_adapter(tmp_path / "adapter", model, CFG, meta)
    _register()
    runner = CliRunner()
    result = runner.invoke(app, ["lora", "merge", "--help"])
    assert result.exit_code == 0 and "--adapter" in result.output
    result = runner.invoke(app, ["lora", "merge", "--base", str(tmp_path / "base"), "--adapter",
                                 str(tmp_path / "adapter"), "--out", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m" / "best" / "model.safetensors").is_file()


# ----------------------------------------------------------------------------- with fit(): adapter-only checkpoints


class RandomBatches:
    """Endless seeded (x, y) batches for the tiny model."""

    def __init__(self, seed: int) -> None:
        self.g = torch.Generator().manual_seed(seed)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.randint(0, 32, (4, 9), generator=self.g)
        return t[:, :-1].contiguous(), t[:, 1:].contiguous()


def test_fit_saves_only_adapters_and_they_export(tmp_path):
    from owngpt.config import TrainConfig
    from owngpt.train.checkpoint import best_or_latest, load_checkpoint
    from owngpt.train.loop import fit

    model = tiny()
    apply_lora(model, CFG)
    cfg = TrainConfig(max_steps=4, lr=1e-2, warmup_steps=1, eval_interval=2, eval_batches=1, batch_size=4,
                      tensorboard=False, device="cpu", compile="off")
    fit(model, RandomBatches(0), RandomBatches(1), cfg, tmp_path / "run", run_config={}, quiet=True,
        weights_filter=lambda name: "lora_" in name)
    state, meta, _ = load_checkpoint(best_or_latest(tmp_path / "run"))
    assert meta["weights_filtered"] and state and all("lora_" in k for k in state)
    assert any(torch.count_nonzero(v) for k, v in state.items() if k.endswith("lora_B"))  # it trained

    write_adapter(tmp_path / "adapter", state, CFG, BASE_META)
    fresh = tiny()
    load_adapter(tmp_path / "adapter", fresh)
    model.load_state_dict(state, strict=False)  # the best checkpoint's adapters
    model.eval()
    assert torch.equal(fresh(tokens()), model(tokens()))
