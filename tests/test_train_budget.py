"""Planning a budget in minutes (owngpt/train/budget.py): fine-tuning's steps kept on any machine, pretraining
the rest, the model sized by the depth rule to the tokens it will see, a warning on a slow machine."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from owngpt.config import load_run_config
from owngpt.train.budget import (MIN_PRETRAIN_TOKENS, MUON_STEP_RATE, PRETRAIN_OVERHEAD, REFERENCE_TPS, SFT_OVERHEAD, TOKENS_PER_PARAM, depth_overrides, model_size,
                                 plan_budget, training_tokens_per_second)

PRETRAIN_BATCH = load_run_config("tiny-cpu").train.batch_size  # the quickstart pretrains with tiny-cpu's batch (8)
FLOOR_STEPS = math.ceil(MIN_PRETRAIN_TOKENS / (PRETRAIN_BATCH * 256))  # the persona's floor at the quickstart's batch


def _configs(batch: int = PRETRAIN_BATCH):
    pre = load_run_config("tiny-cpu", ["model.block_size=256", f"train.batch_size={batch}", "model.vocab_size=4096"])
    sft = replace(pre, train=replace(pre.train, batch_size=16, optimizer="adamw"))  # as quickstart_plan builds it
    return pre, sft


def _probe(tps: float):
    """A machine that trains the tiny-cpu recipe (Muon) at `tps` tokens/s at any batch size, and AdamW (fine-tuning)
    that much faster as Muon's steps are slower (bigger models: by FLOPs)."""
    return lambda cfg: tps if cfg.train.optimizer == "muon" else tps / MUON_STEP_RATE


def test_fine_tuning_keeps_its_steps_and_pretraining_gets_the_rest():
    pre, sft = _configs()
    plan = plan_budget(20, 30.0, pre, sft, sft_steps=1400, size_model=False, probe=_probe(REFERENCE_TPS))
    assert plan.model == "tiny-cpu" and plan.model_overrides == [] and plan.lr_scale == 1.0
    assert plan.sft_seconds == pytest.approx(SFT_OVERHEAD * 1400 * 16 * 256 * MUON_STEP_RATE / REFERENCE_TPS, rel=1e-3)
    assert plan.pretrain_seconds == pytest.approx(20 * 60 - 30 - plan.evaluate_seconds - plan.sft_seconds, abs=0.2)
    assert plan.pretrain_steps == 0  # bounded by its time
    assert plan.tokens == pytest.approx(plan.pretrain_seconds * REFERENCE_TPS, rel=1e-3)
    assert plan.warnings == []


def test_the_floor_is_tokens_whatever_the_batch():
    """The persona's floor was measured as 2,500 steps of 8 rows: at another batch (--set train.batch_size) it is as
    many tokens in other steps, and pretraining's time for it does not depend on the batch (same tokens/s)."""
    plans = {b: plan_budget(4, 30.0, *_configs(b), sft_steps=1400, probe=_probe(REFERENCE_TPS)) for b in (8, 12)}
    assert plans[8].pretrain_steps == 2500 == FLOOR_STEPS and plans[12].pretrain_steps == 1667
    assert plans[8].tokens == MIN_PRETRAIN_TOKENS <= plans[12].tokens < MIN_PRETRAIN_TOKENS + 12 * 256
    assert plans[12].pretrain_seconds == pytest.approx(plans[8].pretrain_seconds, rel=1e-3)


def test_a_slower_machine_fine_tunes_longer_pretrains_less_and_is_warned():
    pre, sft = _configs()
    fast = plan_budget(45, 30.0, pre, sft, sft_steps=1400, probe=_probe(REFERENCE_TPS))
    slow = plan_budget(45, 30.0, pre, sft, sft_steps=1400, probe=_probe(REFERENCE_TPS / 2))
    assert slow.sft_steps == fast.sft_steps == 1400
    assert slow.sft_seconds == pytest.approx(2 * fast.sft_seconds, rel=1e-3)
    assert slow.pretrain_seconds < fast.pretrain_seconds
    assert any("2.0x slower" in w and "1,400 steps" in w and "persona holds" in w for w in slow.warnings)


def test_too_small_a_budget_keeps_the_floor_and_says_how_long_the_run_will_take():
    pre, sft = _configs()
    plan = plan_budget(4, 30.0, pre, sft, sft_steps=1400, probe=_probe(REFERENCE_TPS))
    assert plan.pretrain_steps == FLOOR_STEPS  # pretraining bounded by steps, not by the budget
    assert plan.pretrain_seconds == pytest.approx(PRETRAIN_OVERHEAD * FLOOR_STEPS * PRETRAIN_BATCH * 256 / REFERENCE_TPS,
                                                  rel=1e-3)
    total = (30 + plan.evaluate_seconds + plan.sft_seconds + plan.pretrain_seconds) / 60
    assert any("too few" in w and f"takes ~{total:.0f} minutes" in w for w in plan.warnings)
    roomy = plan_budget(20, 30.0, pre, sft, sft_steps=1400, probe=_probe(REFERENCE_TPS))
    assert roomy.pretrain_steps == 0 and roomy.pretrain_seconds > plan.pretrain_seconds


def test_more_minutes_buy_a_bigger_model_by_the_depth_rule_and_never_more_than_the_tokens_pay_for():
    pre, sft = _configs()
    small = plan_budget(18, 30.0, pre, sft, sft_steps=1400, probe=_probe(REFERENCE_TPS))
    big = plan_budget(600, 30.0, pre, sft, sft_steps=1400, probe=_probe(REFERENCE_TPS))
    assert small.model == "tiny-cpu"
    depth = int(big.model.split()[1])
    assert depth >= 3
    assert big.model_overrides[:3] == [f"model.n_layer={depth}", f"model.n_embd={64 * depth}",
                                       f"model.n_head={depth}"]
    assert big.tokens >= TOKENS_PER_PARAM * big.params  # the tokens pay for this size ...
    bigger = load_run_config("tiny-cpu", ["model.block_size=256", "model.vocab_size=4096",
                                          *depth_overrides(depth + 1, 3e-3, 128)[:3]])
    params, flops = model_size(bigger)
    _, flops0 = model_size(pre)
    sft_seconds = SFT_OVERHEAD * 1400 * 16 * 256 * MUON_STEP_RATE / (REFERENCE_TPS * flops0 / flops)
    tokens = (600 * 60 - 30 - big.evaluate_seconds - sft_seconds) * REFERENCE_TPS * flops0 / flops
    assert tokens < TOKENS_PER_PARAM * params  # ... and not the next one
    assert big.lr_scale == pytest.approx((128 / (64 * depth)) ** 0.5, rel=1e-3)


def test_the_depth_rule_scales_the_learning_rate_by_width():
    got = depth_overrides(4, 3e-3, 128)
    assert got == ["model.n_layer=4", "model.n_embd=256", "model.n_head=4", "train.lr=0.00212",
                   "train.min_lr=0.000212"]


def test_muons_rate_follows_the_learning_rate_by_its_scale():
    """tiny-cpu's Muon runs at muon_lr_scale x train.lr, so a depth (lr derived from the width), a --set train.lr or
    a sweep's lr moves it too; an absolute muon_lr replaces it, and model.depth drops a preset's absolute one."""
    from owngpt.model.gpt import GPT
    from owngpt.train.optim import make_optimizer

    def muon_rate(overrides):
        cfg = load_run_config("tiny-cpu", ["model.vocab_size=64", "model.block_size=16", *overrides])
        return make_optimizer(GPT(cfg.model), cfg.train).muon.param_groups[0]["lr"]

    assert muon_rate([]) == pytest.approx(5e-3, rel=1e-3)
    assert muon_rate(["train.lr=3e-4"]) == pytest.approx(5e-4, rel=1e-3)
    assert muon_rate(["model.depth=2"]) == pytest.approx(1.6667 * load_run_config("tiny-cpu", ["model.depth=2"]).train.lr)
    assert muon_rate(["train.muon_lr=0.004"]) == 0.004
    assert load_run_config("tiny-cpu", ["model.depth=6", "train.muon_lr=0.004"]).train.muon_lr == 0.004


def test_the_probe_times_real_training_steps():
    cfg = load_run_config("tiny-cpu", ["model.block_size=32", "model.vocab_size=256", "model.n_layer=1",
                                       "train.batch_size=2", "train.device=cpu"])
    assert training_tokens_per_second(cfg, steps=2, warmup=1) > 0


def test_the_quickstart_plan_is_kept_and_a_rerun_continues_it(tmp_path, monkeypatch):
    from owngpt.data.prepare import PrepareConfig, prepare
    from owngpt.pipeline import QuickstartConfig, quickstart_plan
    from owngpt.train import budget

    src = tmp_path / "corpus.txt"
    src.write_text("hello there, how are you today? " * 200, encoding="utf-8")
    data = tmp_path / "qs" / "data"
    prepare([str(src)], data, PrepareConfig(vocab_size=300), progress=False)
    calls = []
    monkeypatch.setattr(budget, "training_tokens_per_second", lambda cfg: calls.append(cfg) or 10_000.0)
    cfg = QuickstartConfig(out=str(tmp_path / "qs"), minutes=18)
    plan = quickstart_plan(cfg, data, spent=20.0, echo=lambda s: None)
    assert len(calls) == 2 and plan.probe_tps == 10_000
    assert [c.train.batch_size for c in calls] == [8, 16]  # pretraining's batch, then fine-tuning's
    saved = json.loads((tmp_path / "qs" / "quickstart_plan.json").read_text())
    assert saved["plan"]["pretrain_seconds"] == plan.pretrain_seconds
    again = quickstart_plan(cfg, data, spent=99.0, echo=lambda s: None)  # no probe: the same plan
    assert len(calls) == 2 and again == plan
    other = quickstart_plan(replace(cfg, minutes=30), data, spent=20.0, echo=lambda s: None)
    assert len(calls) == 4 and other.minutes == 30 and other.data_tokens == plan.data_tokens > 0
    assert quickstart_plan(replace(cfg, pretrain_time="5m"), data, spent=0.0, echo=lambda s: None) is None


def test_a_fast_device_with_little_text_sizes_the_model_to_the_data_and_stops_early():
    """A GPU-fast probe (400x the reference) over a 3M-token split: without the data bound the depth rule would
    grow the model to what the tokens pay for; with it the model sees at most SIZE_EPOCHS passes' worth per 20
    tokens per parameter, and pretraining stops after MAX_EPOCHS passes, well inside the budget."""
    from owngpt.train.budget import MAX_EPOCHS, SIZE_EPOCHS

    pre, sft = _configs()
    fast = _probe(400 * REFERENCE_TPS)
    unbounded = plan_budget(19, 30.0, pre, sft, sft_steps=1400, probe=fast)
    data = 3_000_000
    plan = plan_budget(19, 30.0, pre, sft, sft_steps=1400, probe=fast, data_tokens=data)
    assert plan.data_tokens == data and unbounded.data_tokens == 0 and not unbounded.notes
    assert plan.params < unbounded.params
    assert plan.model == "tiny-cpu" or TOKENS_PER_PARAM * plan.params <= SIZE_EPOCHS * data
    step = PRETRAIN_BATCH * 256
    assert plan.pretrain_steps == math.ceil(MAX_EPOCHS * data / step) and plan.tokens == plan.pretrain_steps * step
    assert plan.pretrain_seconds == pytest.approx(PRETRAIN_OVERHEAD * plan.tokens / plan.pretrain_tps, rel=1e-2)
    assert plan.pretrain_seconds < unbounded.pretrain_seconds / 10 and not plan.warnings
    assert any("(16 passes)" in n and "ends before its budget" in n for n in plan.notes)
    # on the reference CPU the same split bounds nothing at the quickstart's 19 minutes
    cpu = plan_budget(19, 30.0, pre, sft, sft_steps=1400, probe=_probe(REFERENCE_TPS), data_tokens=data)
    assert cpu == replace(plan_budget(19, 30.0, pre, sft, sft_steps=1400, probe=_probe(REFERENCE_TPS)),
                          data_tokens=data)


def test_little_text_keeps_the_floor_and_says_why_without_calling_the_budget_too_small():
    """200k tokens: 16 passes are fewer steps than the persona's floor, so the floor's 2,500 steps run (~26 passes),
    the note says so, and no warning claims the minutes are too few (they are not)."""
    pre, sft = _configs()
    plan = plan_budget(30, 30.0, pre, sft, sft_steps=1400, probe=_probe(REFERENCE_TPS), data_tokens=200_000)
    assert plan.pretrain_steps == FLOOR_STEPS and plan.tokens == FLOOR_STEPS * PRETRAIN_BATCH * 256
    assert plan.pretrain_seconds == pytest.approx(PRETRAIN_OVERHEAD * plan.tokens / REFERENCE_TPS, rel=1e-3)
    assert not plan.warnings
    assert any("floor of 2,500 steps (26 passes" in n and "ends before its budget" in n for n in plan.notes)
    # a budget too small for the floor: the warning, and no note about ending early
    short = plan_budget(4, 30.0, pre, sft, sft_steps=1400, probe=_probe(REFERENCE_TPS), data_tokens=200_000)
    assert short.pretrain_steps == FLOOR_STEPS and not short.notes
    assert any("too few" in w for w in short.warnings)
