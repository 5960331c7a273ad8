"""AdamW parameter groups and the learning-rate schedule."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from owngpt.config import TrainConfig
from owngpt.errors import OwnGPTError
from owngpt.train.optim import _muon_precision, _orthogonalize_fp32, lr_at, make_optimizer, param_groups


class TinyLM(nn.Module):
    """Embedding + LayerNorm + Linear blocks + tied head: every kind of parameter the grouping must sort."""

    def __init__(self, vocab: int = 11, width: int = 8) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, width)
        self.ln = nn.LayerNorm(width)
        self.fc = nn.Linear(width, width)
        self.rms = nn.RMSNorm(width)
        self.lm_head = nn.Linear(width, vocab, bias=False)
        self.lm_head.weight = self.wte.weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.rms(torch.relu(self.fc(self.ln(self.wte(idx))))))


def test_param_groups_decay_only_matrices():
    model = TinyLM()
    groups = param_groups(model, 0.1)
    decay = {id(p) for p in groups[0]["params"]}
    names = {n for n, p in model.named_parameters() if id(p) in decay}
    assert groups[0]["weight_decay"] == 0.1 and groups[1]["weight_decay"] == 0.0
    assert names == {"fc.weight"}  # not the tied embedding, not norms, not biases
    n_total = sum(len(g["params"]) for g in groups)
    assert n_total == len(list(model.parameters()))


def test_param_groups_skip_frozen():
    model = TinyLM()
    model.fc.weight.requires_grad_(False)
    groups = param_groups(model, 0.1)
    assert all(p.requires_grad for g in groups for p in g["params"])
    assert all(p is not model.fc.weight for g in groups for p in g["params"])


def _assert_same_steps(ours: nn.Module, opt, ref: nn.Module, ref_opt: torch.optim.Optimizer, steps: int) -> None:
    """`steps` identical training steps of both models with their optimizers; then every parameter agrees."""
    idx = torch.randint(0, 11, (4, 5))
    for _ in range(steps):
        for model, o in ((ours, opt), (ref, ref_opt)):
            o.zero_grad()
            model(idx).logsumexp(-1).mean().backward()
            o.step()
    for (n, a), b in zip(ours.named_parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=n)


@pytest.mark.parametrize("fused", [True, False])
def test_optimizer_matches_torch_reference(fused):
    torch.manual_seed(0)
    cfg = TrainConfig(lr=3e-3, weight_decay=0.1, beta1=0.8, beta2=0.95, eps=1e-7)
    ours = TinyLM()
    ref = TinyLM()
    ref.load_state_dict(ours.state_dict())
    opt = make_optimizer(ours, cfg, fused=fused)
    ref_params = dict(ref.named_parameters())
    decay = [ref_params["fc.weight"]]
    rest = [p for n, p in ref_params.items() if n != "fc.weight"]
    ref_opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
        lr=3e-3, betas=(0.8, 0.95), eps=1e-7, foreach=False,
    )
    _assert_same_steps(ours, opt, ref, ref_opt, steps=5)


@pytest.mark.parametrize("tied", [True, False])
def test_embedding_rate_is_its_own_group_matching_torch_adamw(tied):
    """train.embed_lr_scale: the embedding table (and a head tied to it) steps at that multiple of the rate, the
    rest at the rate: the same updates as torch's AdamW given those groups. At the default of 1 the groups are
    the two of earlier runs, whose optimizer states must still load."""
    torch.manual_seed(0)
    ours, ref = TinyLM(), TinyLM()
    if not tied:
        for m in (ours, ref):
            m.lm_head.weight = nn.Parameter(m.wte.weight.detach().clone())
    ref.load_state_dict(ours.state_dict())
    assert len(param_groups(ours, 0.1)) == 2 and len(param_groups(ours, 0.1, embed_lr_scale=1.0)) == 2
    cfg = TrainConfig(lr=3e-3, weight_decay=0.1, embed_lr_scale=10.0)
    opt = make_optimizer(ours, cfg, fused=False)
    params = dict(ref.named_parameters())
    decay = [params["fc.weight"]] + ([] if tied else [params["lm_head.weight"]])
    rest = [p for n, p in params.items() if n not in ("fc.weight", "lm_head.weight", "wte.weight")]
    ref_opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0},
                                 {"params": [params["wte.weight"]], "weight_decay": 0.0, "lr": 3e-2}],
                                lr=3e-3, betas=(0.9, 0.99), eps=1e-8, foreach=False)
    for g in opt.param_groups:  # the loop's rule: the schedule's value times the group's lr_scale
        g["lr"] = 3e-3 * g["lr_scale"]
    _assert_same_steps(ours, opt, ref, ref_opt, steps=3)
    muon = make_optimizer(ours, TrainConfig(optimizer="muon", embed_lr_scale=10.0))  # AdamW's part has the group
    assert [g["params"] for g in muon.adamw.param_groups if g["lr_scale"] == 10.0] == [[ours.wte.weight]]
    with pytest.raises(OwnGPTError, match="embed_lr_scale"):
        TrainConfig(embed_lr_scale=0)


def test_schedule_cosine():
    cfg = TrainConfig(lr=1e-3, min_lr=1e-4, warmup_steps=100, decay="cosine")
    assert lr_at(0, cfg, 2000) == pytest.approx(1e-3 / 101)  # starts near 0 (nanoGPT's warmup)
    assert lr_at(99, cfg, 2000) == pytest.approx(1e-3 * 100 / 101)
    assert lr_at(100, cfg, 2000) == pytest.approx(1e-3)  # peak right after warmup
    mid = 100 + (2000 - 100) // 2
    assert lr_at(mid, cfg, 2000) == pytest.approx((1e-3 + 1e-4) / 2, rel=1e-3)
    assert lr_at(2000, cfg, 2000) == pytest.approx(1e-4)
    assert lr_at(5000, cfg, 2000) == pytest.approx(1e-4)  # held at min_lr past the horizon
    values = [lr_at(s, cfg, 2000) for s in range(100, 2001)]
    assert all(a >= b for a, b in zip(values, values[1:]))  # monotone decay


def test_schedule_linear_and_constant():
    lin = TrainConfig(lr=1.0, min_lr=0.0, warmup_steps=0, decay="linear")
    assert lr_at(0, lin, 10) == pytest.approx(1.0)
    assert lr_at(5, lin, 10) == pytest.approx(0.5)
    assert lr_at(10, lin, 10) == pytest.approx(0.0)
    const = TrainConfig(lr=0.3, warmup_steps=4, decay="constant")
    assert lr_at(1, const, 100) == pytest.approx(0.3 * 2 / 5)
    assert all(lr_at(s, const, 100) == 0.3 for s in range(4, 200))
    assert math.isclose(lr_at(50, TrainConfig(lr=0.3, warmup_steps=0, decay="cosine"), 0), 0.3)


def test_muon_takes_hidden_matrices_and_matches_torch_muon_by_hand():
    """train.optimizer=muon: torch.optim.Muon on the hidden matrices (here fc.weight) with AdamW on the embedding,
    norms and biases; the same updates as the two torch optimizers applied by hand to the same groups."""
    from owngpt.train.optim import muon_names

    torch.manual_seed(0)
    cfg = TrainConfig(lr=3e-3, weight_decay=0.1, beta1=0.8, beta2=0.95, eps=1e-7, optimizer="muon", muon_lr=0.02)
    ours, ref = TinyLM(), TinyLM()
    ref.load_state_dict(ours.state_dict())
    assert muon_names(ours) == {"fc.weight"}  # not the tied embedding / head, not norms, not biases
    opt = make_optimizer(ours, cfg)
    params = dict(ref.named_parameters())
    ref_muon = torch.optim.Muon([params["fc.weight"]], lr=0.02, weight_decay=0.1, momentum=0.95, nesterov=True,
                                adjust_lr_fn="match_rms_adamw")
    ref_adamw = torch.optim.AdamW([{"params": [], "weight_decay": 0.1},
                                   {"params": [p for n, p in params.items() if n != "fc.weight"], "weight_decay": 0.0}],
                                  lr=3e-3, betas=(0.8, 0.95), eps=1e-7, foreach=False)
    ref_adamw.param_groups = [g for g in ref_adamw.param_groups if g["params"]]
    idx = torch.randint(0, 11, (4, 5))
    for step in range(4):
        lr = 3e-3 * (1 - step / 8)  # the loop's schedule, scaled per group by lr_scale
        for g in opt.param_groups:
            g["lr"] = lr * g["lr_scale"]
        for g in ref_muon.param_groups:
            g["lr"] = lr * 0.02 / 3e-3
        for g in ref_adamw.param_groups:
            g["lr"] = lr
        for model, steppers in ((ours, [opt]), (ref, [ref_muon, ref_adamw])):
            for o in steppers:
                o.zero_grad()
            model(idx).logsumexp(-1).mean().backward()
            for o in steppers:
                with _muon_precision(torch.device("cpu")):  # the iteration's precision ours uses on this CPU
                    o.step()
    for (n, a), b in zip(ours.named_parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=n)
    state = opt.state_dict()
    assert set(state) == {"muon", "adamw"}
    fresh = make_optimizer(TinyLM(), cfg)
    fresh.load_state_dict(state)
    adamw_only = make_optimizer(TinyLM(), TrainConfig())
    with pytest.raises(OwnGPTError, match="AdamW's"):
        fresh.load_state_dict(adamw_only.state_dict())


@pytest.mark.parametrize("native_bf16", [False, True])
def test_muon_orthogonalises_in_fp32_on_cpus_without_native_bf16(monkeypatch, native_bf16):
    """torch.optim.Muon's Newton-Schulz runs in bf16; on a CPU without native bf16 ours runs the same iteration in
    fp32 (bf16 is emulated there, ~10x slower): the same result up to bf16 rounding, and torch's own elsewhere."""
    import torch.optim._muon as impl

    import owngpt.runtime as runtime

    monkeypatch.setattr(runtime, "cpu_has_bf16_matmul", lambda: native_bf16)
    g = torch.randn(24, 16, generator=torch.Generator().manual_seed(0))
    coeffs = (3.4445, -4.775, 2.0315)
    torch_own = impl._zeropower_via_newtonschulz(g, coeffs, 5, 1e-7)
    with _muon_precision(torch.device("cpu")):
        used = impl._zeropower_via_newtonschulz(g, coeffs, 5, 1e-7)
    assert impl._zeropower_via_newtonschulz is not _orthogonalize_fp32  # restored
    if native_bf16:
        assert used.dtype == torch.bfloat16 and torch.equal(used, torch_own)
    else:
        assert used.dtype == torch.float32
        torch.testing.assert_close(used, torch_own.float(), rtol=0.05, atol=0.02)


@pytest.mark.parametrize("shape,low_rank", [((16, 96), False), ((96, 16), False), ((12, 40), False),
                                             ((24, 30), False), ((32, 192), True)])
def test_gram_newton_schulz_is_the_iteration_on_the_matrix(shape, low_rank, monkeypatch):
    """The Gram-matrix form of Newton-Schulz (used for matrices with one side over 1.5x the other, at torch's 5
    steps) gives the iteration on the matrix itself up to fp32 rounding, also for a low-rank-plus-noise matrix (the
    usual shape of a momentum, where its rounding grows fastest); near-square matrices keep the direct form."""
    from owngpt.train import optim

    gen = torch.Generator().manual_seed(0)
    g = torch.randn(*shape, generator=gen)
    if low_rank:  # rank 2 plus a little noise
        g = torch.randn(shape[0], 2, generator=gen) @ torch.randn(2, shape[1], generator=gen) + 1e-3 * g
    coeffs = (3.4445, -4.775, 2.0315)
    wide = g.T if shape[0] > shape[1] else g
    x = wide / wide.norm()
    direct = optim._newton_schulz(x, coeffs, 5)
    tol = 5e-5 if low_rank else 1e-5  # the Gram form's rounding: ~2e-5 against fp64 there (the direct form's ~3e-6)
    torch.testing.assert_close(optim._gram_newton_schulz(x, coeffs, 5), direct, rtol=tol, atol=tol)
    ours = _orthogonalize_fp32(g, coeffs, 5, 1e-7)
    torch.testing.assert_close(ours, direct.T if shape[0] > shape[1] else direct, rtol=tol, atol=tol)
    singular = torch.linalg.svdvals(ours)
    assert singular.max() < 1.2  # Muon's quintic leaves the singular values in ~[0.7, 1.13]; a noise direction of
    assert low_rank or singular.min() > 0.6  # the low-rank matrix starts too small to get there in 5 steps
    calls = []
    for name in ("_newton_schulz", "_gram_newton_schulz"):
        monkeypatch.setattr(optim, name, lambda *a, _n=name, _r=getattr(optim, name): calls.append(_n) or _r(*a))
    _orthogonalize_fp32(g, coeffs, 5, 1e-7)
    assert calls == ["_gram_newton_schulz" if max(shape) > 1.5 * min(shape) else "_newton_schulz"]
    calls.clear()
    _orthogonalize_fp32(g, coeffs, optim.GRAM_MAX_STEPS + 3, 1e-7)  # more steps: the direct form, whose error stays
    assert calls == ["_newton_schulz"]


def test_muon_trains_lora_matrices_alone():
    from owngpt.model.lora import LoRAConfig, apply_lora

    model = TinyLM()
    for p in model.parameters():
        p.requires_grad_(False)
    apply_lora(model, LoRAConfig(rank=2, targets=["fc"]))
    opt = make_optimizer(model, TrainConfig(optimizer="muon"))
    assert opt.adamw is None and sum(len(g["params"]) for g in opt.param_groups) == 2  # lora_A and lora_B
    model(torch.randint(0, 11, (2, 3))).sum().backward()
    opt.step()
