"""LoRA modules: exact no-op at init, merge == base + adapter, frozen base, strict adapter matching."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.testing import assert_close

from owngpt.errors import OwnGPTError
from owngpt.model.lora import LoRAConfig, LoRALinear, apply_lora, has_lora, load_lora, lora_state_dict, merge_lora


from lora_fixtures import CFG, perturb, tiny, tokens  # noqa: E402


# ----------------------------------------------------------------------------- apply


def test_fresh_adapter_gives_exactly_the_base_outputs():
    base = tiny()
    model = copy.deepcopy(base)
    names = apply_lora(model, LoRAConfig(rank=4, alpha=8.0, dropout=0.1))
    model.eval()
    x = tokens()
    assert torch.equal(model(x), base(x))
    assert names == [f"transformer.h.{i}.{n}" for i in range(2) for n in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")]


def test_adapters_take_the_mode_of_the_layers_they_wrap():
    """A model loaded for chat is in eval mode, and generation leaves such a model alone: adapters put on it must
    not bring dropout in (same input, same output), while adapters put on a training model train."""
    model = tiny().eval()
    apply_lora(model, LoRAConfig(rank=4, alpha=8.0, dropout=0.5))
    perturb(model)
    assert not any(m.training for m in model.modules())
    x = tokens()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
    training = tiny().train()
    apply_lora(training, LoRAConfig(rank=4, alpha=8.0, dropout=0.5))
    assert all(m.training for m in training.modules() if isinstance(m, LoRALinear))


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


