"""THE reply to a conversation: settings (defaults in chat/settings.py), the system prompt, history fitting, stop ids and strings,
and one decoding path for streamed and batched replies (MMI reranking an option of it).

`owngpt chat` (ChatSession), evaluation, the quickstart and the server all reply through these functions, so
what is measured is what a person chatting gets:
  system prompt   a leading system message of the conversation, else the one given, else the one the checkpoint
                  was fine-tuned with (`resolve_system_prompt`)
  budget          max_new_tokens as asked but at most half the context (`reply_config`), so the system prompt and
                  history always have room; the history is fitted to the rest (oldest turns dropped first)
  ends            at <|im_end|>, <|endoftext|> or <|im_start|> (`reply_stop_ids`), or before a stop string, or
                  before the first match of a content filter (`content_filter`, owngpt/generate/moderation.py)
  text            decoded incrementally and cut before a stop string (owngpt/generate/text.py): a batched reply
                  and a streamed one of the same seed are the same text; both are stripped of outer whitespace
                  (`Stripped` does it to a stream as it goes)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from owngpt.chat.history import Message, fit_history
from owngpt.chat.mmi import mmi_rerank
from owngpt.chat.settings import CHAT_DEFAULTS, chat_generation_config  # noqa: F401 - the reply's defaults
from owngpt.checkpoint.meta import CheckpointMeta
from owngpt.errors import OwnGPTError
from owngpt.generate.engine import TextStream, generate_texts, stream_text
from owngpt.generate.moderation import ContentFilter
from owngpt.generate.settings import GenerationConfig
from owngpt.tokenizer import render_conversation

def reply_stop_ids(tokenizer) -> tuple[int, ...]:
    """Ids that end a reply: the tokenizer's reply terminators (<|im_end|>, <|endoftext|>), and <|im_start|>: a
    reply that starts a new turn has ended."""
    return (*tokenizer.assistant_stop_ids, tokenizer.im_start_id)


def reply_config(gen: GenerationConfig, block_size: int) -> GenerationConfig:
    """`gen` for one reply: max_new_tokens as asked but at most half the context, so the system prompt and history
    always have room; the prompt is never truncated by the sampler (`reply_prompt` makes it fit); one text per
    prompt (num_return 1)."""
    return replace(gen, max_new_tokens=max(1, min(gen.max_new_tokens, block_size // 2)), truncate="error",
                   num_return=1)


def reply_prompt(tokenizer, system: str | None, messages: list[Message], block_size: int,
                 max_new_tokens: int) -> tuple[list[Message], list[int]]:
    """(messages, ids) the model answers: `fit_history` of the conversation in the context less the reply's
    max_new_tokens (system prompt kept, oldest turns dropped first), rendered with the generation prompt."""
    context = fit_history(tokenizer, system, messages, block_size - max_new_tokens)
    return context, render_conversation(tokenizer, context, add_generation_prompt=True)[0]


def system_of(messages: Sequence[Message], default: str | None = None) -> str | None:
    """The system prompt a conversation asks for: its leading system message's content, else `default`."""
    return messages[0]["content"] if messages and messages[0]["role"] == "system" else default


def resolve_system_prompt(system: str | None, persona: str | None, meta: CheckpointMeta | None) -> str | None:
    """The system prompt to chat with: explicit text ("" = none), else the persona file's, else the one recorded in
    the checkpoint by `owngpt sft` (run_config.chat.system_prompt, or the persona file it was trained with)."""
    from owngpt.persona import load_persona, system_prompt

    if system is not None:
        return system or None
    if persona:
        return system_prompt(load_persona(persona))
    if meta is None:
        return None
    recorded = meta.recorded("chat").get("system_prompt")
    if recorded:
        return recorded
    trained_with = meta.recorded("sft").get("persona")
    if trained_with:
        try:
            return system_prompt(load_persona(trained_with))
        except OwnGPTError:
            return None  # the persona file moved since training: chat without a system prompt
    return None


@dataclass
class Prepared:
    """One reply about to be sampled: its settings, the messages the model sees and their ids."""

    cfg: GenerationConfig
    context: list[Message]
    ids: list[int]


def prepare_reply(model, tokenizer, messages: list[Message], gen: GenerationConfig,
                  system: str | None = None) -> Prepared:
    """The settings (`reply_config`) and prompt (`reply_prompt`) of the reply to `messages`; a leading system
    message is the system prompt, else `system`."""
    block = model.cfg.block_size
    cfg = reply_config(gen, block)
    context, ids = reply_prompt(tokenizer, system_of(messages, system), list(messages), block, cfg.max_new_tokens)
    return Prepared(cfg, context, ids)


def whole_prompt_length(tokenizer, messages: Sequence[Message], system: str | None = None) -> int:
    """Tokens of the whole conversation as the model would read it (its system prompt, every turn, the generation
    prompt), before `reply_prompt` drops old turns to fit: what an API without truncation compares with the
    context."""
    own = system_of(messages, system)
    turns = [m for m in messages if m["role"] != "system"]
    context = ([{"role": "system", "content": own}] if own else []) + turns
    return len(render_conversation(tokenizer, context, add_generation_prompt=True)[0])


def _sample(model, tokenizer, prompts: list[list[int]], cfg: GenerationConfig,
            content_filter: ContentFilter | None = None) -> list[str]:
    """One reply text per prompt, sampled as one batch: THE batched decoding path."""
    texts = generate_texts(model, tokenizer, prompts, cfg, stop_ids=reply_stop_ids(tokenizer),
                           content_filter=content_filter)
    return [t.strip() for t in texts]


def stream_reply(model, tokenizer, messages: list[Message], gen: GenerationConfig, *,
                 system: str | None = None, content_filter: ContentFilter | None = None) -> TextStream:
    """The reply to `messages`, piece by piece as it decodes (THE streamed path: the same text as `replies` gives
    for this conversation alone with the same seed, before stripping; its `end` says how it ended). A bad
    conversation or setting raises here, before anything is yielded."""
    p = prepare_reply(model, tokenizer, messages, gen, system)
    return stream_text(model, tokenizer, p.ids, p.cfg, stop_ids=reply_stop_ids(tokenizer),
                       content_filter=content_filter)


class Stripped:
    """A reply's pieces as they come, stripped as `replies` strips the whole text: leading whitespace dropped, and
    whitespace held back until more text follows it (at the end it is dropped), so the pieces join to the stripped
    reply."""

    def __init__(self) -> None:
        self.started, self.pending = False, ""

    def feed(self, piece: str) -> str:
        if not self.started:
            piece = piece.lstrip()
            self.started = bool(piece)
        piece = self.pending + piece
        kept = piece.rstrip()
        self.pending = piece[len(kept):]
        return kept


@dataclass
class MMI:
    """Maximum mutual information reranking: sample `candidates` replies to a conversation and keep the one the
    backward model (trained with `owngpt sft --reverse`) scores best."""

    model: Any
    tokenizer: Any
    candidates: int


def mmi_reply(model, tokenizer, messages: list[Message], gen: GenerationConfig, mmi: MMI, *,
              system: str | None = None, content_filter: ContentFilter | None = None) -> tuple[str, list[tuple[str, float]]]:
    """(best reply, [(candidate, score), ...]): mmi.candidates replies sampled as one batch, reranked."""
    p = prepare_reply(model, tokenizer, messages, gen, system)
    if p.cfg.temperature <= 0:
        raise OwnGPTError("MMI reranking samples several different candidates: set a temperature above 0 "
                          "(/temperature 0.8 or --temperature 0.8)")
    candidates = _sample(model, tokenizer, [list(p.ids) for _ in range(mmi.candidates)], p.cfg, content_filter)
    best, scores = mmi_rerank(mmi.model, mmi.tokenizer, p.context, candidates)
    return best, list(zip(candidates, scores))


def replies(model, tokenizer, conversations: Sequence[list[Message]], gen: GenerationConfig, *,
            system: str | None = None, mmi: MMI | None = None,
            content_filter: ContentFilter | None = None) -> list[str]:
    """One reply to each conversation, sampled as one batch (with `mmi`, the best of mmi.candidates samples for
    each, conversation by conversation). A leading system message is that conversation's system prompt, else
    `system` (e.g. the checkpoint's, from `resolve_system_prompt`)."""
    if mmi is not None:
        return [mmi_reply(model, tokenizer, list(m), gen, mmi, system=system, content_filter=content_filter)[0]
                for m in conversations]
    prepared = [prepare_reply(model, tokenizer, list(m), gen, system) for m in conversations]
    if not prepared:
        return []
    return _sample(model, tokenizer, [p.ids for p in prepared], prepared[0].cfg, content_filter)


@dataclass
class ReplyModel:
    """A chat model loaded to reply: the model, its tokenizer, its checkpoint's meta and the system prompt it
    answers with when a conversation brings none."""

    model: Any
    tokenizer: Any
    meta: CheckpointMeta | None
    system: str | None


def load_reply_model(path: str | Path, *, adapter: str | Path | None = None, device: str = "auto",
                     system: str | None = None, persona: str | None = None, dtype: str = "auto",
                     ensemble: Sequence[str | Path] = (), compile: bool = False) -> ReplyModel:
    """Load a chat model (optionally with its LoRA adapter, or as an ensemble with more checkpoints of the same
    tokenizer). System prompt: `system`, else the persona file's, else the one the checkpoint (for an adapter: its
    sft run) was fine-tuned with. compile: owngpt.load's (compiled one-row decoding on the CPU)."""
    from owngpt.checkpoint.adapter import adapter_run_meta
    from owngpt.generate.api import load

    loaded = load(path, adapter=adapter, device=device, dtype=dtype, ensemble=ensemble, compile=compile)
    if loaded.tokenizer is None:
        raise OwnGPTError(f"checkpoint {path} carries no tokenizer; chat needs the tokenizer it was trained with")
    # An adapter's chat defaults live in the sft run it was exported from (RUN/adapter), not in the base.
    meta = (adapter_run_meta(adapter) if adapter else None) or loaded.meta
    return ReplyModel(loaded.model, loaded.tokenizer, meta, resolve_system_prompt(system, persona, meta))
