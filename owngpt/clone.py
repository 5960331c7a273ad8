"""`owngpt clone`: my chat exports → a small model that answers in my voice, in one command on a laptop CPU.

    read      the exports (WeChat, QQ, Telegram, WhatsApp: owngpt/data/chats/), each parsed once for the whole run:
              who I am, sessions, what is left out (an export where I wrote nothing is left out and counted)
    prepare   pretraining text: the built-in corpora of my language (or --pretrain-data), and a BPE tokenizer
              trained on it → OUT/pretrain-data. Never my chats: pretraining on them would make every friend's
              message a next-token target, and the base would no longer be a clean "before" for the evaluation
    pretrain  the quickstart's tiny-cpu recipe for --pretrain-time → OUT/pretrain   (skipped with --base RUN)
    prepare   my sessions as conversations, my turns as the assistant's, with that tokenizer → OUT/data
              (train / val / test by a hash of each session; the test sessions are never trained on)
    sft       fine-tune on my turns only (the loss is on what I wrote; other people's words are context) → OUT/chat
    evaluate  on the held-out test sessions (never val: fine-tuning picked its best checkpoint by it), assistant-
              token perplexity and the style of sampled replies against my real replies, base model beside the
              fine-tuned one (owngpt/evaluate/style.py); with no test session, said so and skipped

The stages are the ones the quickstart runs (owngpt/pipeline.py: pretrain_stage, sft_stage, the held-out test
split and the models to compare); this module only picks inputs. Running it again continues: prepare is cached,
training resumes from its checkpoints, and a base that trained further is fine-tuned afresh (the earlier
fine-tuned model moves to OUT/chat.previous).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from owngpt.data.chats.model import ChatOptions
from owngpt.data.split import DEFAULT_RATIOS
from owngpt.errors import OwnGPTError
from owngpt.io import atomic_write_text
from owngpt.pipeline import CORPORA, check_budgets, held_out_and_models, pretrain_stage, sft_stage


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
    split: tuple[float, float, float] = DEFAULT_RATIOS  # `owngpt persona suggest` drafts from this train split
    seed: int = 0
    pretrain_overrides: list[str] = field(default_factory=list)  # --set for pretraining, e.g. model.n_layer=2
    sft_overrides: list[str] = field(default_factory=list)


def _check(cfg: CloneConfig) -> None:
    from owngpt.data.chats.export import export_files

    if not cfg.exports:
        raise OwnGPTError("name your chat exports: owngpt clone EXPORT... --me NAME")
    if cfg.lang not in ("", *CORPORA):
        raise OwnGPTError(f"--lang must be one of {', '.join(CORPORA)}, not {cfg.lang!r}")
    check_budgets([("--sft-time", cfg.sft_time)] + ([] if cfg.base else [("--pretrain-time", cfg.pretrain_time)]))
    export_files(cfg.exports, cfg.chats)  # every spec names a chat export (a look at each file's start)


def _settings(cfg: CloneConfig) -> dict:
    """The config as the report records it: the block list by its file and size, not its words (they may be the
    very things you wanted kept out); --me values (a phone number, an e-mail) and every path scrubbed."""
    from owngpt.data.pii import scrubbed

    settings = asdict(cfg)
    chats = settings["chats"]
    chats["block_words"], chats["block_patterns"] = len(cfg.chats.block_words), len(cfg.chats.block_patterns)
    chats["me"] = [scrubbed(x) for x in cfg.chats.me]
    chats["block_source"] = scrubbed(cfg.chats.block_source)
    for key in ("exports", "pretrain_data"):
        settings[key] = [scrubbed(s) for s in settings[key]]
    for key in ("out", "base", "persona"):
        settings[key] = scrubbed(settings[key])
    return settings


def read_exports(cfg: CloneConfig, examples: int = 3):
    """(the dry run's report of the exports, the ChatExports that parsed them): `--dry-run`, and the run's first
    stage, whose parse the later stages read again."""
    from owngpt.data.chats.dryrun import dry_run
    from owngpt.data.chats.export import ChatExports
    from owngpt.data.sources import ReadOptions

    _check(cfg)
    exports = ChatExports()
    return dry_run(cfg.exports, ReadOptions(chats=cfg.chats), examples=examples, exports=exports), exports


def run_clone(cfg: CloneConfig, *, echo: Callable[[str], None] = print, quiet: bool = False) -> dict:
    """Run every stage (see the module docstring); returns the report also written to OUT/clone_report.json."""
    from owngpt.checkpoint.format import best_or_latest
    from owngpt.data.chats.dryrun import language_of
    from owngpt.data.prepare import PrepareConfig, prepare

    out = Path(cfg.out)
    pre_data, base_dir, data_dir, chat_dir = out / "pretrain-data", out / "pretrain", out / "data", out / "chat"
    report: dict = {"config": _settings(cfg), "seconds": {}}
    t0 = time.perf_counter()
    stages = 5 if cfg.base else 6

    echo(f"[1/{stages}] read {len(cfg.exports)} export(s)")
    summary, exports = read_exports(cfg, examples=0)
    lang = cfg.lang or language_of(summary)
    report["read"] = {k: summary[k] for k in ("messages", "mine", "share_mine", "chat_conversations",
                                              "dropped_total", "sessions_left_out", "languages")}
    report["read"]["exports_left_out"] = [f"{f['path']}: {f['note']}" for f in summary["files"] if f["note"]]
    echo(f"      {summary['messages']:,} text messages, {summary['mine']:,} of them mine "
         f"({summary['share_mine']:.0%}); {summary['chat_conversations']:,} sessions with a reply of mine; "
         f"{summary['dropped_total']:,} media/system/other messages left out")
    for line in report["read"]["exports_left_out"]:
        echo(f"      {line}")
    report["seconds"]["read"] = round(time.perf_counter() - t0, 1)
    step = 1
    if cfg.base:
        base, tokenizer = str(cfg.base), best_or_latest(cfg.base) / "tokenizer"
    else:
        base, tokenizer = str(base_dir), pre_data / "tokenizer"
        corpora = cfg.pretrain_data or CORPORA[lang]["pretrain"]
        step += 1
        echo(f"[{step}/{stages}] prepare pretraining text (never your chats): {' + '.join(corpora)} → {pre_data}")
        t = time.perf_counter()
        prepare(corpora, pre_data, PrepareConfig(vocab_size=cfg.vocab_size, split=cfg.split,
                                                 conversations_as_text=True), progress=not quiet)
        step += 1
        echo(f"[{step}/{stages}] pretrain for {cfg.pretrain_time} → {base_dir}")
        report["pretrain"] = pretrain_stage(pre_data, base_dir, budget=cfg.pretrain_time, seed=cfg.seed,
                                            overrides=cfg.pretrain_overrides, quiet=quiet, echo=echo)
        report["seconds"]["pretrain"] = round(time.perf_counter() - t, 1)

    step += 1
    echo(f"[{step}/{stages}] prepare your conversations → {data_dir}")
    t = time.perf_counter()
    prepared = prepare(cfg.exports, data_dir, PrepareConfig(tokenizer=str(tokenizer), split=cfg.split,
                       chats=cfg.chats), progress=not quiet, exports=exports)
    report["data"] = prepared["splits"]["conversations"]
    step += 1
    echo(f"[{step}/{stages}] sft on your turns for {cfg.sft_time} → {chat_dir}")
    report["sft"] = sft_stage(base, data_dir, chat_dir, persona=cfg.persona, budget=cfg.sft_time, seed=cfg.seed,
                              overrides=cfg.sft_overrides, quiet=quiet, echo=echo)
    report["seconds"]["sft"] = round(time.perf_counter() - t, 1)

    step += 1
    t = time.perf_counter()
    if report["data"]["test"]:
        echo(f"[{step}/{stages}] evaluate on {report['data']['test']:,} held-out test sessions: does it sound like "
             "you?")
        report["eval"] = evaluate_clone(data_dir, chat_dir, base, samples=cfg.eval_samples, seed=cfg.seed)
    else:
        report["eval"] = {"skipped": f"no test sessions in {data_dir} (the hash split put none of the "
                                     f"{sum(report['data'].values()):,} sessions there): nothing held out to evaluate "
                                     "on; the val sessions chose the fine-tuned checkpoint, so they are no measure"}
        echo(f"[{step}/{stages}] evaluate: skipped, {report['eval']['skipped']}")
    report["seconds"]["evaluate"] = round(time.perf_counter() - t, 1)
    report["seconds"]["total"] = round(time.perf_counter() - t0, 1)
    atomic_write_text(out / "clone_report.json", json.dumps(report, indent=2, ensure_ascii=False))
    return report


def evaluate_clone(data: Path, chat: Path, base: str | None, *, samples: int = 100, seed: int = 0) -> dict:
    """The held-out test sessions of `data` (an OwnGPTError when it has none): perplexity and the style of replies
    of the fine-tuned model ("clone") and of its base, against my real replies (owngpt/evaluate/style.py)."""
    from owngpt.evaluate.style import evaluate_style, style_config

    held_out, models = held_out_and_models(data, chat, base)
    models = {"clone" if name == "chat" else name: m for name, m in models.items()}
    result = evaluate_style(models, held_out, style_config(samples, seed))
    result["conversations"], result["split"] = len(held_out), "test"
    return result
