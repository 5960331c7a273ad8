"""Chat fine-tuning recipe: conversations (+ persona identity chats) → rendered ids/masks → fit(), full or LoRA.

setup → fit → report, like pretraining, reusing the same fit(), checkpoints, resume, plots and summaries.
With `reverse=True` it trains the backward model used for MMI reranking (reply → reversed context).
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from owngpt.checkpoint.format import latest_checkpoint, load_model, read_meta
from owngpt.checkpoint.meta import CheckpointMeta
from owngpt.config import TrainConfig
from owngpt.data.conversations import ConversationSet, load_conversations, reverse_conversation
from owngpt.data.corpus import is_prepared
from owngpt.data.loader import PackedBatches
from owngpt.data.raw import describe
from owngpt.errors import OwnGPTError
from owngpt.io import atomic_write_text, output_dir
from owngpt.model.lora import LoRAConfig
from owngpt.runtime import launched_rank, resolve_device
from owngpt.tokenizer import NO_SYSTEM_TURN, has_system_turn


@dataclass
class SFTConfig:
    """What to fine-tune on and how; training settings (lr, steps, ...) live in TrainConfig."""

    base: str = ""  # checkpoint to start from: a run folder (its best, else latest) or a checkpoint folder
    data: list[str] = field(default_factory=lambda: ["builtin:chitchat"])  # prepared folders or dialogue sources
    persona: str = ""  # persona YAML/Markdown: identity conversations + the default system prompt
    identity_conversations: int = 0  # 0 = auto: enough to make `identity_share` of the training text, ≥ 500
    identity_share: float = 0.15  # share of training characters from identity conversations when auto
    system_prompt_prob: float = 0.5  # share of data conversations that get the persona's system prompt
    val_fraction: float = 0.05  # held out by hash when the sources have no val split
    max_conversations: int = 0  # 0 = all
    lora: LoRAConfig | None = None  # None = full fine-tuning; else train only these adapters
    reverse: bool = False  # train the backward model for MMI reranking
    chat_format: str = "keep"  # keep the base's chat format, or "chatml": move an imported GPT2-chitchat model to ChatML


def _held_out(messages: list[dict[str, str]], fraction: float) -> bool:
    """Deterministic across runs and machines: a stable hash of the conversation, not Python's hash()."""
    h = hashlib.blake2b(json.dumps(messages, ensure_ascii=False).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64 < fraction


def split_conversations(cfg: SFTConfig) -> tuple[ConversationSet, list[list[dict[str, str]]]]:
    """Training set (with its report) and validation conversations: prepared folders bring their own train
    and val splits; raw dialogue sources are split here, `val_fraction` held out by a hash of each conversation."""
    prepared = [spec for spec in cfg.data if is_prepared(spec)]
    raw = [spec for spec in cfg.data if not is_prepared(spec)]
    train = load_conversations(prepared, split="train")
    val = load_conversations(prepared, split="val").conversations
    if raw:
        whole = load_conversations(raw)
        for messages, loc in zip(whole.conversations, whole.locs):
            if _held_out(messages, cfg.val_fraction):
                val.append(messages)
            else:
                train.conversations.append(messages)
                train.locs.append(loc)
        train.problems += whole.problems
        train.documents_ignored += whole.documents_ignored
        train.cleaning = whole.cleaning
    if not train.conversations:
        detail = f"; rejected: {train.summary()['rejected_examples'][:3]}" if train.problems else ""
        raise OwnGPTError(f"no usable conversations in {', '.join(cfg.data)}{detail}")
    if cfg.max_conversations:
        train.conversations = train.conversations[: cfg.max_conversations]
        val = val[: max(1, cfg.max_conversations // 20)]
    if not val:  # nothing held out (e.g. all max_conversations taken): hold out the last one, if there are two
        val = train.conversations[-1:]
        if len(train.conversations) > 1:
            train.conversations, train.locs = train.conversations[:-1], train.locs[:-1]
    return train, val


def build_conversations(
    cfg: SFTConfig, seed: int = 0
) -> tuple[list[list[dict[str, str]]], list[list[dict[str, str]]], dict[str, Any]]:
    """All training and validation conversations, persona mixed in, reversed for MMI if asked."""
    train_set, val = split_conversations(cfg)
    train = list(train_set.conversations)
    report: dict[str, Any] = {"data": train_set.summary()}
    if cfg.persona:
        from owngpt.persona import identity_conversations, load_persona, system_prompt

        persona = load_persona(cfg.persona)
        rng = random.Random(seed)
        prompt = system_prompt(persona, persona.languages[0])
        train = [
            [{"role": "system", "content": prompt}, *m] if m[0]["role"] != "system" and rng.random() < cfg.system_prompt_prob else m
            for m in train
        ]
        identity = identity_conversations(persona, n=cfg.identity_conversations or MIN_IDENTITY, seed=seed)
        if not cfg.identity_conversations:
            n = identity_count(train, identity, cfg.identity_share)
            identity = identity_conversations(persona, n=n, seed=seed) if n > len(identity) else identity
        held_out, kept = split_identity(identity, min(MAX_IDENTITY_VAL, max(1, len(identity) // 20)))
        train += kept
        val += held_out
        report["persona"] = {"name": persona.name, "identity_conversations": len(identity)}
        report["system_prompt"] = prompt
    if cfg.reverse:
        train = [r for m in train if (r := reverse_conversation(m))]
        val = [r for m in val if (r := reverse_conversation(m))]
    random.Random(seed).shuffle(train)
    report["train_conversations"], report["val_conversations"] = len(train), len(val)
    return train, val, report


MIN_IDENTITY, MAX_IDENTITY, MAX_IDENTITY_VAL = 500, 50_000, 200


def split_identity(identity: list[list[dict[str, str]]], n_val: int) -> tuple[list, list]:
    """(validation, training) identity conversations: n_val distinct ones held out, and every copy of them kept
    out of training (the templates repeat, so a plain cut would validate on conversations the model trains on)."""
    held: dict[tuple, list[dict[str, str]]] = {}
    for conv in identity:
        if len(held) >= n_val:
            break
        held.setdefault(_conversation_key(conv), conv)
    return list(held.values()), [conv for conv in identity if _conversation_key(conv) not in held]


def _conversation_key(conv: list[dict[str, str]]) -> tuple:
    return tuple((m["role"], m["content"]) for m in conv)


def _chars(conversations: list[list[dict[str, str]]]) -> int:
    return sum(len(m["content"]) for c in conversations for m in c)


def identity_count(data: list[list[dict[str, str]]], sample: list[list[dict[str, str]]], share: float) -> int:
    """How many identity conversations make `share` of all training characters, given the data conversations
    and a sample of identity ones (at least MIN_IDENTITY, at most MAX_IDENTITY). A fixed count is drowned out by
    a large dialogue corpus: 1000 identity chats are ~1% of chitchat's text, too little for a small model to
    learn its name within a few minutes of fine-tuning, whereas ~10% teaches it (docs/benchmarks.md). The floor
    keeps some variety of phrasings when the user's own dialogues are few; then identity chats dominate anyway."""
    if not 0 <= share < 1:
        raise OwnGPTError(f"identity_share must be in [0, 1), not {share}")
    per = _chars(sample) / max(1, len(sample))
    needed = share / (1 - share) * _chars(data) / max(per, 1.0)
    return int(min(MAX_IDENTITY, max(MIN_IDENTITY, round(needed))))


def render_all(tok, conversations: list[list[dict[str, str]]], limit: int) -> list[tuple[list[int], list[int]]]:
    """Every conversation as (ids, mask) windows of at most `limit` tokens (long ones split at turn boundaries)."""
    from owngpt.data.conversations import render_windows

    return [w for m in conversations for w in render_windows(tok, m, limit)]


def chat_tokenizer(tok, cfg: SFTConfig):
    """The base's tokenizer in the chat format fine-tuning renders with: the base's own ("keep"), or ChatML. A model
    in GPT2-chitchat's format has no system turn, so it cannot learn a persona until it is moved to ChatML."""
    if cfg.chat_format == "chatml" and tok.chat_format["name"] != "chatml" and cfg.lora is not None:
        raise OwnGPTError("--chat-format chatml with --lora: the adapters cannot learn the ChatML tokens' embeddings "
                          "(LoRA leaves embeddings frozen) and an adapter is applied with its base's chat format; "
                          "move the model to ChatML with full fine-tuning first (without --lora), then add adapters")
    if cfg.chat_format == "chatml":
        return tok.with_chat_format({"name": "chatml"})
    if cfg.chat_format != "keep":
        raise OwnGPTError(f"chat format must be keep or chatml, not {cfg.chat_format!r}")
    if not has_system_turn(tok) and cfg.persona:
        raise OwnGPTError(f"--persona: {NO_SYSTEM_TURN}")
    return tok


def sft(cfg: SFTConfig, train_cfg: TrainConfig, *, quiet: bool = False, echo: Callable[[str], None] | None = None):
    """Fine-tune `cfg.base` on conversations; returns fit()'s result. Writes everything under train_cfg.out_dir.
    echo(line), when given, hears which checkpoint a resumed run continues from and what cleaning changed in raw
    dialogue sources."""
    from owngpt.train.loop import fit

    if not cfg.base:
        raise OwnGPTError("sft needs a base checkpoint: --base RUN_OR_CHECKPOINT (from `owngpt pretrain`)")
    run_dir = output_dir(train_cfg.out_dir, create=False)  # a file there is a one-line error before any work
    device = resolve_device(train_cfg.device)
    from owngpt.checkpoint.format import best_or_latest
    from owngpt.model.registry import require_trainable

    require_trainable(read_meta(best_or_latest(cfg.base)).arch, cfg.base)  # before loading it: one line, no work
    model, meta, tok = load_model(cfg.base, device="cpu")
    if tok is None:
        raise OwnGPTError(f"checkpoint {cfg.base} carries no tokenizer; re-save it with `owngpt pretrain`")
    tok = chat_tokenizer(tok, cfg)
    if train_cfg.resume == "auto":  # what is resumed must be the same base, taught in the same chat format
        if base_changed(run_dir, meta):
            raise OwnGPTError(f"{run_dir} was fine-tuned from another version of {cfg.base} (its weights changed "
                              "since, e.g. more pretraining); resuming would mix the two: fine-tune into another --out "
                              f"(or delete {run_dir} first)")
        check_resumed_chat_format(run_dir, tok)
    train, val, report = build_conversations(cfg, seed=train_cfg.seed)
    if not has_system_turn(tok):  # e.g. GPT2-chitchat's format (the persona was refused above)
        report["system_messages_dropped"] = sum(m["role"] == "system" for c in train + val for m in c)
        train, val = ([[m for m in c if m["role"] != "system"] for c in cs] for cs in (train, val))
    if echo is not None and "cleaning" in report["data"]:
        echo(f"raw dialogue sources {describe(report['data']['cleaning'])}")
    block = model.cfg.block_size
    train_batches = PackedBatches(render_all(tok, train, block + 1), block, train_cfg.batch_size, tok.pad_id,
                                  seed=train_cfg.seed, device=device)
    # validation: a fixed, shuffled sample of the held-out rows (the same batches at every evaluation, and not
    # just the first rows in packing order)
    val_batches = PackedBatches(render_all(tok, val, block + 1), block, train_cfg.batch_size, tok.pad_id,
                                seed=train_cfg.seed + 1, device=device)
    report.update(
        packed_rows=len(train_batches),
        truncated_conversations=train_batches.truncated,
        assistant_tokens_per_epoch=train_batches.tokens_per_epoch,
    )
    weights_filter = None
    if cfg.lora is not None:
        import torch

        from owngpt.model.lora import apply_lora

        torch.manual_seed(train_cfg.seed)  # the same adapters' start on every run and every rank (FSDP shards them)
        apply_lora(model, cfg.lora)
        weights_filter = lambda name: "lora_" in name  # noqa: E731 - only the adapters are saved
        report["lora"] = asdict(cfg.lora)
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    report["trainable_parameters"] = n_train
    output_dir(run_dir)
    main = launched_rank() == 0  # under torchrun rank 0 writes the run folder (other machines may not see it)
    if main:
        atomic_write_text(run_dir / "sft_report.json", json.dumps(report, indent=2, ensure_ascii=False))
    model.to(device)
    # `chat` is what `owngpt chat` reads to use the same system prompt the model was fine-tuned with.
    chat_defaults = {"system_prompt": report.get("system_prompt"), "reverse": cfg.reverse}
    run_config = {"sft": asdict(cfg), "train": asdict(train_cfg), "model": asdict(model.cfg),
                  "base_meta": meta.to_dict(), "chat": chat_defaults}
    result = fit(model, train_batches, val_batches, train_cfg, run_dir, run_config=run_config, tokenizer=tok,
                 weights_filter=weights_filter, quiet=quiet, echo=echo)
    if cfg.lora is not None and main:
        from owngpt.checkpoint.adapter import export_adapter

        export_adapter(run_dir, cfg.lora, meta)
    return result, report


def check_resumed_chat_format(run_dir: Path, tok) -> None:
    """OwnGPTError when the run in `run_dir` was fine-tuned in another chat format than `tok` renders (e.g. started
    with --chat-format chatml and resumed without it): the format is not part of the tokenizer's hash, so nothing
    else would notice that the resumed steps teach another layout of the same tokens."""
    latest = latest_checkpoint(run_dir)
    if latest is None or not (latest / "tokenizer").is_dir():
        return
    from owngpt.tokenizer import Tokenizer

    saved = Tokenizer.load(latest / "tokenizer").chat_format["name"]
    if saved != tok.chat_format["name"]:
        flag = "--chat-format chatml" if saved == "chatml" else "--chat-format keep"
        raise OwnGPTError(f"{run_dir} was fine-tuned in the {saved} chat format and this run would render "
                          f"{tok.chat_format['name']}: resume it with {flag}, or fine-tune into another --out")


def base_changed(run_dir: Path, base_meta: CheckpointMeta) -> bool:
    """Whether the fine-tuning run in `run_dir` started from base weights other than these (sha256 differs), as its
    latest checkpoint records."""
    latest = latest_checkpoint(run_dir)
    if latest is None:
        return False
    recorded = read_meta(latest).base_sha256
    return bool(recorded) and recorded != base_meta.sha256
