"""LoRA adapter folders: round trip, refusal of another base or a damaged file, merge into a checkpoint, fit() export."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import pytest
import torch
from torch.testing import assert_close

from lora_fixtures import CFG, TinyConfig, perturb, tiny, tokens
from owngpt.checkpoint.adapter import load_adapter, read_adapter, save_adapter, write_adapter
from owngpt.checkpoint.meta import CheckpointMeta
from owngpt.errors import OwnGPTError
from owngpt.model.lora import apply_lora

BASE_META = CheckpointMeta(model_config=asdict(TinyConfig()), sha256="ab" * 32, tokenizer_hash="tok1", step=100)


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
    assert load_adapter(tmp_path / "adapter", dst, base_meta=replace(BASE_META)) == CFG
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
        load_adapter(tmp_path / "a", tiny(), base_meta=replace(BASE_META, sha256="cd" * 32, step=7))
    with pytest.raises(OwnGPTError, match="tokenizer hash"):
        load_adapter(tmp_path / "a", tiny(), base_meta=replace(BASE_META, tokenizer_hash="tok2"))
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
    from owngpt.checkpoint.format import save_checkpoint

    torch.manual_seed(0)
    cfg = ModelConfig(preset="gpt2", vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=32)
    model = gpt.GPT(cfg).eval()
    save_checkpoint(tmp_path / "base", 5, model.state_dict(), CheckpointMeta(model_config=asdict(cfg)),
                    None, best=True)
    return model


def test_merge_adapter_into_checkpoint_with_gpt(tmp_path):
    from owngpt.checkpoint.adapter import merge_adapter_into_checkpoint
    from owngpt.checkpoint.format import load_model, read_meta

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
    assert merged_meta.merged_adapter["base_sha256"] == read_meta(tmp_path / "base" / "best").sha256
    assert list(merged.state_dict()) == list(base.state_dict())
    with torch.no_grad():
        assert_close(merged(x), adapted, rtol=1e-5, atol=1e-5)
    with pytest.raises(OwnGPTError, match="not empty"):
        merge_adapter_into_checkpoint(tmp_path / "base", tmp_path / "adapter", tmp_path / "merged")
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(OwnGPTError, match="it is a file, not a folder"):
        merge_adapter_into_checkpoint(tmp_path / "base", tmp_path / "adapter", tmp_path / "a-file")
    with pytest.raises(OwnGPTError, match="a-file is a file, not a folder"):
        save_adapter(tmp_path / "a-file" / "adapter", model, CFG, meta)


def test_lora_merge_cli(tmp_path):
    from typer.testing import CliRunner

    from owngpt.cli import _register, app
    from owngpt.checkpoint.format import load_model

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
    from owngpt.checkpoint.format import best_or_latest, load_checkpoint
    from owngpt.train.loop import fit

    model = tiny()
    apply_lora(model, CFG)
    cfg = TrainConfig(max_steps=4, lr=1e-2, warmup_steps=1, eval_interval=2, eval_batches=1, batch_size=4,
                      tensorboard=False, device="cpu", compile="off")
    fit(model, RandomBatches(0), RandomBatches(1), cfg, tmp_path / "run", run_config={}, quiet=True,
        weights_filter=lambda name: "lora_" in name)
    state, meta, _ = load_checkpoint(best_or_latest(tmp_path / "run"))
    assert meta.weights_filtered and state and all("lora_" in k for k in state)
    assert any(torch.count_nonzero(v) for k, v in state.items() if k.endswith("lora_B"))  # it trained

    write_adapter(tmp_path / "adapter", state, CFG, BASE_META)
    fresh = tiny()
    load_adapter(tmp_path / "adapter", fresh)
    model.load_state_dict(state, strict=False)  # the best checkpoint's adapters
    model.eval()
    assert torch.equal(fresh(tokens()), model(tokens()))
