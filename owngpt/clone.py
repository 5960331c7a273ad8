"""`owngpt clone`: my chat exports → a small model that answers in my voice, in one command on a laptop CPU.

    read      the exports (WeChat, QQ, Telegram, WhatsApp: owngpt/data/chats/): who I am, sessions, what is left out
    prepare   pretraining text: the built-in corpora of my language (or --pretrain-data) + my chats as text, and a
              BPE tokenizer trained on it → OUT/pretrain-data
    pretrain  the quickstart's tiny-cpu recipe for --pretrain-time → OUT/pretrain   (skipped with --base RUN)
    prepare   my sessions as conversations, my turns as the assistant's, with that tokenizer → OUT/data
              (train / val / test by a hash of each session; the test sessions are never trained on)
    sft       fine-tune on my turns only (the loss is on what I wrote; other people's words are context) → OUT/chat
    evaluate  on the held-out test sessions: assistant-token perplexity and the style of sampled replies against
              my real replies, base model beside the fine-tuned one (owngpt/evaluate/style.py)

Every stage is the library call its own verb makes (prepare, pretrain, sft, evaluate); this module only picks
inputs and budgets, as owngpt/pipeline.py does for the quickstart, whose recipe (corpora, context, fine-tuning
rate) it reuses. Running it again continues: prepare is cached, training resumes from its checkpoints, and a base
that trained further is fine-tuned afresh (the earlier fine-tuned model moves to OUT/chat.previous).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from owngpt.config import parse_duration
from owngpt.data.chats.model import ChatOptions
from owngpt.errors import OwnGPTError
from owngpt.io import atomic_write_text
from owngpt.pipeline import CONTEXT, CORPORA, SFT_LR


@dataclass
class CloneConfig:
    """What `owngpt clone` reads and how long each stage may run."""

    exports: list[str]
    chats: ChatOptions = field(default_factory=ChatOptions)
    out: str = "runs/clone"
    base: str = ""  # a pretrained run or checkpoint to fine-tune instead of pretraining one
    lang: str = ""  # en | zh: the built-in corpora to pretrain on; "" = the language most of my messages are in
    pretrain_data: list[str] = field(default_factory=list)  # instead of the built-in corpora
    pretrain_time: str = "11m"
    sft_time: str = "5m"
    vocab_size: int = 4096
    persona: str = ""  # a persona file (e.g. from `owngpt persona suggest`): system prompt + identity chats
    eval_samples: int = 100
    split: tuple[float, float, float] = (0.9, 0.05, 0.05)
    seed: int = 0
    pretrain_overrides: list[str] = field(default_factory=list)  # --set for pretraining, e.g. model.n_layer=2
    sft_overrides: list[str] = field(default_factory=list)


def _check(cfg: CloneConfig) -> None:
    if not cfg.exports:
        raise OwnGPTError("name your chat exports: owngpt clone EXPORT... --me NAME")
    if cfg.lang not in ("", *CORPORA):
        raise OwnGPTError(f"--lang must be one of {', '.join(CORPORA)}, not {cfg.lang!r}")
    budgets = [("--sft-time", cfg.sft_time)] + ([] if cfg.base else [("--pretrain-time", cfg.pretrain_time)])
    for name, value in budgets:
        if parse_duration(value) <= 0:
            raise OwnGPTError(f"{name} must be a positive duration such as 10m or 90s, not {value!r}")


def _settings(cfg: CloneConfig) -> dict:
    """The config as the report records it: the block list by its file and size, not its words (they may be the
    very things you wanted kept out)."""
    settings = asdict(cfg)
    chats = settings["chats"]
    chats["block_words"], chats["block_patterns"] = len(cfg.chats.block_words), len(cfg.chats.block_patterns)
    return settings


def run_clone(cfg: CloneConfig, *, echo: Callable[[str], None] = print, quiet: bool = False) -> dict:
    """Run every stage (see the module docstring); returns the report also written to OUT/clone_report.json."""
    from owngpt.checkpoint.format import best_or_latest
    from owngpt.data.chats.dryrun import dry_run, language_of
    from owngpt.data.prepare import PrepareConfig, prepare

    _check(cfg)
    out = Path(cfg.out)
    pre_data, base_dir, data_dir, chat_dir = out / "pretrain-data", out / "pretrain", out / "data", out / "chat"
    report: dict = {"config": _settings(cfg), "seconds": {}}
    t0 = time.perf_counter()
    stages = 5 if cfg.base else 6

    echo(f"[1/{stages}] read {len(cfg.exports)} export(s)")
    summary = dry_run(cfg.exports, cfg.chats, examples=0)
    lang = cfg.lang or language_of(summary)
    report["read"] = {k: summary[k] for k in ("messages", "mine", "share_mine", "conversations", "dropped_total",
                                              "sessions_left_out", "languages")}
    echo(f"      {summary['messages']:,} text messages, {summary['mine']:,} of them mine "
         f"({summary['share_mine']:.0%}); {summary['conversations']:,} sessions with a reply of mine; "
         f"{summary['dropped_total']:,} media/system/other messages left out")
    report["seconds"]["read"] = round(time.perf_counter() - t0, 1)
    step = 1
    if cfg.base:
        base = str(cfg.base)
        tokenizer = best_or_latest(base) / "tokenizer"
    else:
        base, tokenizer = str(base_dir), pre_data / "tokenizer"
        corpora = cfg.pretrain_data or CORPORA[lang]["pretrain"]
        step += 1
        echo(f"[{step}/{stages}] prepare pretraining text: {' + '.join(corpora)} + your chats → {pre_data}")
        prepare([*corpora, *cfg.exports], pre_data, PrepareConfig(vocab_size=cfg.vocab_size, split=cfg.split,
                conversations_as_text=True, chats=cfg.chats), progress=not quiet)
        step += 1
        echo(f"[{step}/{stages}] pretrain for {cfg.pretrain_time} → {base_dir}")
        report["pretrain"] = _pretrain(cfg, pre_data, base_dir, quiet, echo)
        report["seconds"]["pretrain"] = round(time.perf_counter() - t0 - report["seconds"]["read"], 1)

    step += 1
    echo(f"[{step}/{stages}] prepare your conversations → {data_dir}")
    t = time.perf_counter()
    prepared = prepare(cfg.exports, data_dir, PrepareConfig(tokenizer=str(tokenizer), split=cfg.split,
                       chats=cfg.chats), progress=not quiet)
    report["data"] = prepared["splits"]["conversations"]
    step += 1
    echo(f"[{step}/{stages}] sft on your turns for {cfg.sft_time} → {chat_dir}")
    report["sft"] = _sft(cfg, base, data_dir, chat_dir, quiet, echo)
    report["seconds"]["sft"] = round(time.perf_counter() - t, 1)

    step += 1
    echo(f"[{step}/{stages}] evaluate on held-out sessions: does it sound like you?")
    t = time.perf_counter()
    report["eval"] = evaluate_clone(data_dir, chat_dir, base, samples=cfg.eval_samples, seed=cfg.seed)
    report["seconds"]["evaluate"] = round(time.perf_counter() - t, 1)
    report["seconds"]["total"] = round(time.perf_counter() - t0, 1)
    atomic_write_text(out / "clone_report.json", json.dumps(report, indent=2, ensure_ascii=False))
    return report


def _pretrain(cfg: CloneConfig, data: Path, run: Path, quiet: bool, echo: Callable[[str], None]) -> dict:
    from owngpt.config import load_run_config
    from owngpt.train.pretrain import pretrain

    settings = [f"train.data={data}", f"train.out_dir={run}", f"model.block_size={CONTEXT}",
                f"train.max_time={cfg.pretrain_time}", "train.max_steps=0", f"train.seed={cfg.seed}",
                *cfg.pretrain_overrides]
    result = pretrain(load_run_config("tiny-cpu", settings), quiet=quiet, echo=echo if not quiet else (lambda s: None))
    return {"steps": result.steps, "tokens": result.tokens, "best_val_loss": result.best_val_loss}


def _sft(cfg: CloneConfig, base: str, data: Path, run: Path, quiet: bool, echo: Callable[[str], None]) -> dict:
    from owngpt.checkpoint.format import best_or_latest, read_meta
    from owngpt.config import load_run_config
    from owngpt.train.sft import SFTConfig, base_changed, sft

    settings = [f"train.out_dir={run}", f"train.max_time={cfg.sft_time}", "train.max_steps=0",
                f"train.seed={cfg.seed}", f"train.lr={SFT_LR}", *cfg.sft_overrides]
    if base_changed(run, read_meta(best_or_latest(base))):
        earlier = run.with_name(f"{run.name}.previous")
        shutil.rmtree(earlier, ignore_errors=True)
        run.rename(earlier)
        echo(f"      {base} changed since {run} was fine-tuned from it: that model moves to {earlier}")
    result, sft_report = sft(SFTConfig(base=base, data=[str(data)], persona=cfg.persona),
                             load_run_config("sft", settings).train, quiet=quiet)
    return {"steps": result.steps, "best_val_loss": result.best_val_loss,
            "train_conversations": sft_report["train_conversations"]}


def evaluate_clone(data: Path, chat: Path, base: str | None, *, samples: int = 100, seed: int = 0) -> dict:
    """The held-out sessions of `data` (its test split; val when test is empty): perplexity and the style of
    replies of the fine-tuned model and of its base, against my real replies (owngpt/evaluate/style.py)."""
    from owngpt.chat.reply import load_reply_model
    from owngpt.evaluate.chat_eval import held_out_conversations
    from owngpt.evaluate.style import evaluate_style, style_config

    try:
        held_out = held_out_conversations([str(data)], "test")
    except OwnGPTError:  # few sessions: the hash split left test empty
        held_out = held_out_conversations([str(data)], "val")
    models = {"clone": load_reply_model(chat)}
    if base:
        models["base"] = load_reply_model(base, system=models["clone"].system or "")
    result = evaluate_style(models, held_out, style_config(samples, seed))
    result["conversations"] = len(held_out)
    return result
