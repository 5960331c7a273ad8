"""Atomic checkpoints: incomplete folders ignored, keep-last-K + best, corruption detected, weights_only loads, the
typed meta (with `arch`) and checkpoints written before it."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from owngpt.checkpoint.format import (
    best_or_latest,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_model,
    read_meta,
    save_checkpoint,
)
from owngpt.checkpoint.meta import CheckpointMeta
from owngpt.errors import OwnGPTError
from owngpt.runtime import capture_rng_state


def _state(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    wte = torch.randn(16, 4, generator=g)
    return {"transformer.wte.weight": wte, "lm_head.weight": wte, "ln_f.weight": torch.ones(4)}  # tied, as GPT-2


def _save(run: Path, step: int, **kw) -> Path:
    meta = CheckpointMeta(model_config={"n_layer": 1}, tokenizer_hash="h")
    train_state = {"step": step, "rng": capture_rng_state(), "list": [1, 2], "optimizer": {"state": {}, "param_groups": []}}
    return save_checkpoint(run, step, _state(step), meta, train_state, **kw)


def test_round_trip_with_tied_weights(tmp_path):
    path = _save(tmp_path, 7)
    state, meta, ts = load_checkpoint(path)
    assert meta.step == 7 and meta.tokenizer_hash == "h" and len(meta.sha256) == 64
    torch.testing.assert_close(state["lm_head.weight"], _state(7)["transformer.wte.weight"])
    assert state["lm_head.weight"].data_ptr() == state["transformer.wte.weight"].data_ptr()  # tie restored
    assert ts["step"] == 7 and ts["list"] == [1, 2]
    # train_state.pt holds only plain data: the safe loader reads it
    assert torch.load(path / "train_state.pt", weights_only=True)["step"] == 7


def test_incomplete_folders_are_ignored(tmp_path):
    first = _save(tmp_path, 5)
    ckpts = tmp_path / "checkpoints"
    (ckpts / "step_0000010").mkdir()  # killed before meta.json was written
    (ckpts / "step_0000010" / "model.safetensors").write_bytes(b"partial")
    (ckpts / ".tmp-step_0000012-999").mkdir()  # killed mid-write
    assert latest_checkpoint(tmp_path) == first
    assert best_or_latest(tmp_path) == first
    _save(tmp_path, 6)
    assert not (ckpts / ".tmp-step_0000012-999").exists()  # stale temp folders are cleaned up


def test_keep_last_and_best(tmp_path):
    for step in range(1, 6):
        _save(tmp_path, step, best=(step == 2), keep_last=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_0000004", "step_0000005"]
    state, meta, _ = load_checkpoint(tmp_path / "best")
    assert meta.step == 2  # best survives its step folder being pruned
    torch.testing.assert_close(state["ln_f.weight"], torch.ones(4))
    assert best_or_latest(tmp_path) == tmp_path / "best"


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corrupt_checkpoint_detected(tmp_path, damage):
    prev = _save(tmp_path, 1, keep_last=3)
    bad = _save(tmp_path, 2, keep_last=3)
    weights = bad / "model.safetensors"
    data = bytearray(weights.read_bytes())
    if damage == "flip":
        data[-3] ^= 0xFF
    else:
        data = data[: len(data) // 2]
    weights.write_bytes(bytes(data))
    with pytest.raises(OwnGPTError, match="corrupt.*sha256") as err:
        load_checkpoint(bad)
    assert str(prev) in str(err.value)
    load_checkpoint(prev)


def test_corrupt_only_checkpoint_says_there_is_no_earlier_one(tmp_path):
    """A resume from a run's only checkpoint, damaged: the advice reads as a sentence, not 'the previous one none'."""
    only = _save(tmp_path, 1)
    weights = only / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8])
    with pytest.raises(OwnGPTError) as err:
        load_checkpoint(only)
    assert str(err.value) == (f"checkpoint {only} is corrupt (sha256 mismatch in model.safetensors); there is no "
                              "earlier checkpoint to fall back to: train again into a new --out")
    (only / "meta.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(OwnGPTError, match=r"unreadable meta.json\); there is no earlier checkpoint to fall back to"):
        load_checkpoint(only)


def test_nonfinite_model_never_saved(tmp_path):
    state = _state()
    state["ln_f.weight"] = torch.tensor([1.0, float("nan"), 1.0, 1.0])
    with pytest.raises(OwnGPTError, match="NaN"):
        save_checkpoint(tmp_path, 1, state, CheckpointMeta(), None)
    assert latest_checkpoint(tmp_path) is None


def test_load_model_with_real_gpt(tmp_path):
    gpt = pytest.importorskip("owngpt.model.gpt")
    from owngpt.config import ModelConfig

    torch.manual_seed(0)
    cfg = ModelConfig(preset="gpt2", vocab_size=64, block_size=16, n_layer=1, n_head=2, n_embd=16)
    model = gpt.GPT(cfg)
    save_checkpoint(tmp_path, 3, model.state_dict(), CheckpointMeta(model_config=asdict(cfg), tokenizer_hash="t"), None, best=True)
    loaded, meta, tok = load_model(tmp_path)
    assert meta.step == 3 and meta.arch == "gpt" and tok is None
    idx = torch.randint(0, 64, (2, 8))
    model.eval()
    torch.testing.assert_close(loaded(idx), model(idx))

    class OtherTok:
        hash = "different"

    with pytest.raises(OwnGPTError, match="different.*t"):
        load_model(tmp_path, tokenizer=OtherTok())


def test_kill_between_best_and_step_folder_keeps_best_consistent(tmp_path, monkeypatch):
    """best/ is published before the step folder that names it, so a kill in between leaves an older step folder
    (the one a resume uses) and a best/ at least as new: never a step folder pointing at a best/ it lacks."""
    import owngpt.checkpoint.format as ck

    _save(tmp_path, 10, best=True)
    real = ck.publish_dir

    def killed(tmp, final):
        if final.parent.name == "checkpoints":
            raise KeyboardInterrupt  # the process dies before the step folder appears
        real(tmp, final)

    monkeypatch.setattr(ck, "publish_dir", killed)
    with pytest.raises(KeyboardInterrupt):
        _save(tmp_path, 20, best=True)
    monkeypatch.setattr(ck, "publish_dir", real)
    assert latest_checkpoint(tmp_path).name == "step_0000010"
    assert load_checkpoint(tmp_path / "best")[1].step == 20


def test_folder_moved_aside_by_a_killed_publish_is_restored(tmp_path):
    """publish_dir renames the old folder aside, then the new one into place; killed in between, the next save puts
    the old one back instead of deleting it."""
    _save(tmp_path, 10, best=True)
    (tmp_path / "best").rename(tmp_path / ".old-best-12345")
    _save(tmp_path, 20)  # not a best: best/ must come back as it was
    assert load_checkpoint(tmp_path / "best")[1].step == 10
    assert not list(tmp_path.glob(".old-*"))


def test_load_model_checks_the_tokenizer_copy(tmp_path):
    from owngpt.config import ModelConfig
    from owngpt.model.gpt import GPT
    from owngpt.tokenizer import Tokenizer, train_char

    cfg = ModelConfig(preset="gpt2", vocab_size=64, block_size=16, n_layer=1, n_head=2, n_embd=16)
    tok = train_char(["hello world"])
    save_checkpoint(tmp_path, 3, GPT(cfg).state_dict(), CheckpointMeta(model_config=asdict(cfg), tokenizer_hash=tok.hash),
                    None, tokenizer=tok, best=True)
    assert load_model(tmp_path)[2].hash == tok.hash
    other = train_char(["something else entirely"])
    for folder in (tmp_path / "best", latest_checkpoint(tmp_path)):
        import shutil

        shutil.rmtree(folder / "tokenizer")
        other.save(folder / "tokenizer")
    with pytest.raises(OwnGPTError, match="not the tokenizer the model was trained with"):
        load_model(tmp_path)
    assert isinstance(tok, Tokenizer)


def test_corrupt_best_points_at_a_checkpoint_with_other_files(tmp_path):
    """best/ shares its files with its step folder (hard links): damaged, the advice skips that step folder."""
    prev = _save(tmp_path, 1, keep_last=3)
    _save(tmp_path, 2, keep_last=3, best=True)
    weights = tmp_path / "best" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0xFF
    with open(weights, "r+b") as f:  # in place, as disk damage would be
        f.write(bytes(data))
    with pytest.raises(OwnGPTError, match="corrupt.*sha256") as err:
        load_checkpoint(tmp_path / "best")
    assert str(err.value).endswith(str(prev))


def _gpt_run(tmp_path: Path) -> tuple[torch.nn.Module, Path]:
    from owngpt.config import ModelConfig
    from owngpt.model.gpt import GPT

    torch.manual_seed(0)
    cfg = ModelConfig(preset="gpt2", vocab_size=64, block_size=16, n_layer=1, n_head=2, n_embd=16)
    model = GPT(cfg).eval()
    save_checkpoint(tmp_path, 3, model.state_dict(), CheckpointMeta(model_config=asdict(cfg), tokenizer_hash="t",
                                                                    run_config={"chat": {"system_prompt": "Be Nova."}}),
                    None, best=True)
    return model, tmp_path / "best"


def test_meta_records_arch_and_checkpoints_from_before_it_still_load(tmp_path):
    """meta.json names its `arch`; one written before the field existed (no arch, no extra keys) loads as a GPT,
    and keys this version does not know survive a read and write."""
    model, best = _gpt_run(tmp_path)
    data = json.loads((best / "meta.json").read_text(encoding="utf-8"))
    assert data["arch"] == "gpt" and data["step"] == 3
    for key in ("arch", "merged_adapter"):  # the meta.json of an older owngpt
        data.pop(key)
    data["written_by_a_newer_owngpt"] = {"x": 1}
    (best / "meta.json").write_text(json.dumps(data), encoding="utf-8")
    meta = read_meta(best)
    assert meta.arch == "gpt" and meta.recorded("chat")["system_prompt"] == "Be Nova."
    assert meta.to_dict()["written_by_a_newer_owngpt"] == {"x": 1}
    loaded, meta, _ = load_model(best)
    idx = torch.randint(0, 64, (2, 8))
    torch.testing.assert_close(loaded(idx), model(idx))


def test_unknown_arch_is_a_clear_error(tmp_path):
    _model, best = _gpt_run(tmp_path)
    data = json.loads((best / "meta.json").read_text(encoding="utf-8"))
    (best / "meta.json").write_text(json.dumps(dict(data, arch="mamba")), encoding="utf-8")
    with pytest.raises(OwnGPTError, match="unknown model architecture 'mamba'"):
        load_model(best)


def test_load_model_picks_the_device_by_default(tmp_path):
    """load_model(device="auto") where no device is named: CUDA, else MPS, else CPU (as the runtime resolves it)."""
    from owngpt.runtime import resolve_device

    _model, best = _gpt_run(tmp_path)
    loaded, _meta, _tok = load_model(best)
    assert next(loaded.parameters()).device.type == resolve_device("auto").type
