"""A conversation with one model: the message history, the system prompt, sampling settings, MMI, save and load.

Every turn replies through owngpt/chat/reply.py (the one reply path: history fitting, reply budget, stop ids and
strings), streaming. Each generation draws a new seed (seed + number of generations so far), so /regenerate gives
another reply and a saved chat replays the same way. Saved chats are JSON, never pickle.

Not handled: tool calls, several assistants, images; a system prompt longer than the context is an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from owngpt.chat.settings import CHAT_DEFAULTS
from owngpt.chat.reply import (
    MMI,
    Stripped,
    load_reply_model,
    mmi_reply,
    prepare_reply,
    reply_config,
    reply_stop_ids,
    stream_reply,
)
from owngpt.config import coerce_fields
from owngpt.errors import OwnGPTError
from owngpt.generate.moderation import ContentFilter
from owngpt.generate.settings import SEEDS, GenerationConfig
from owngpt.io import atomic_write_text
from owngpt.tokenizer import Message, check_messages

SAVE_FORMAT = "owngpt-chat"
SAVE_VERSION = 1
# Sampling settings stored by /save and restored by /load (the model itself is never part of a saved chat).
SETTINGS = ("max_new_tokens", "temperature", "top_k", "top_p", "repetition_penalty", "no_repeat_ngram", "seed")


@dataclass
class ChatSession:
    """A conversation with one model. `mmi` > 1 samples that many candidates per reply and keeps the one the
    `backward` (model, tokenizer) pair scores best; `last_candidates` then holds (text, score) of each. With a
    `content_filter` a reply ends before the filter's first match; `filtered` says whether the last one did."""

    model: Any
    tokenizer: Any
    gen: GenerationConfig = field(default_factory=lambda: replace(CHAT_DEFAULTS))
    system: str | None = None
    messages: list[Message] = field(default_factory=list)
    mmi: int = 0
    backward: tuple[Any, Any] | None = None
    last_candidates: list[tuple[str, float]] = field(default_factory=list, repr=False)
    draws: int = field(default=0, repr=False)  # generations so far: varies the seed between replies
    content_filter: ContentFilter | None = None
    filtered: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        if self.mmi > 1 and self.backward is None:
            raise OwnGPTError("--mmi N needs a backward model: --backward CKPT (trained with `owngpt sft --reverse`)")
        if self.mmi < 0:
            raise OwnGPTError(f"--mmi must be 0 (off) or the number of candidates to sample, not {self.mmi}")

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_checkpoint(cls, path: str, *, adapter: str | None = None, device: str = "auto", system: str | None = None,
                        persona: str | None = None, gen: GenerationConfig | None = None, seed: int | None = None,
                        mmi: int = 0, backward: str | None = None,
                        content_filter: ContentFilter | None = None, dtype: str = "auto",
                        ensemble: Sequence[str] = (), compile: bool = False) -> "ChatSession":
        """Load a chat model (and optionally its LoRA adapter, the checkpoints it is an ensemble with, and an MMI
        backward model) and start a session.

        System prompt: `system`, else the persona file's, else the one the checkpoint was fine-tuned with. compile:
        the chat model's one-row decoding through torch.compile (owngpt/generate/compiled.py)."""
        loaded = load_reply_model(path, adapter=adapter, device=device, system=system, persona=persona, dtype=dtype,
                                  ensemble=ensemble, compile=compile)
        gen = gen or replace(CHAT_DEFAULTS)
        if seed is not None:
            gen = replace(gen, seed=seed)
        back = None
        if not backward and mmi > 1 and (Path(path) / "backward" / "best").is_dir():
            backward = str(Path(path) / "backward")  # imported with `owngpt import-hf --backward`
        if backward:
            b = load_reply_model(backward, device=device, system="", dtype=dtype)
            back = (b.model, b.tokenizer)
        elif mmi > 1:
            raise OwnGPTError("--mmi N needs a backward model: --backward CKPT (trained with `owngpt sft --reverse`)")
        return cls(loaded.model, loaded.tokenizer, gen, loaded.system, mmi=mmi, backward=back,
                   content_filter=content_filter)

    # ------------------------------------------------------------------ limits

    @property
    def stop_ids(self) -> tuple[int, ...]:
        return reply_stop_ids(self.tokenizer)

    @property
    def max_new_tokens(self) -> int:
        """The reply budget: as asked, but at most half the context so the system prompt and history always have room."""
        return reply_config(self.gen, self.model.cfg.block_size).max_new_tokens

    @property
    def max_prompt_tokens(self) -> int:
        return self.model.cfg.block_size - self.max_new_tokens

    def prompt_messages(self) -> list[Message]:
        """What the model sees for the next reply: system prompt + as much recent history as fits."""
        return prepare_reply(self.model, self.tokenizer, self.messages, self.gen, self.system).context

    # ------------------------------------------------------------------ turns

    def stream_reply(self, user_text: str) -> Iterator[str]:
        """Send a user message; yields the reply's text as it is generated and then appends it to the history.
        If generation fails, the history is left as it was."""
        return self._turn({"role": "user", "content": user_text})

    def reply(self, user_text: str) -> str:
        for _ in self.stream_reply(user_text):
            pass
        return self.messages[-1]["content"]

    def stream_regenerate(self) -> Iterator[str]:
        """Replace the last reply by a new sample (a different one: each generation draws a new seed)."""
        if not self.messages or self.messages[-1]["role"] != "assistant":
            raise OwnGPTError("nothing to regenerate yet: send a message first")
        return self._turn(None)

    def regenerate(self) -> str:
        for _ in self.stream_regenerate():
            pass
        return self.messages[-1]["content"]

    def reset(self) -> None:
        """Forget the conversation (the system prompt and settings stay)."""
        self.messages.clear()
        self.last_candidates = []

    def _turn(self, user: Message | None) -> Iterator[str]:
        before = list(self.messages)
        if user is not None:
            self.messages.append(user)
        else:
            self.messages.pop()  # /regenerate: the old reply goes, its user message stays
        try:
            yield from self._respond()
        except Exception:
            self.messages[:] = before
            raise

    def _respond(self) -> Iterator[str]:
        gen = self.gen
        if gen.seed is not None:
            gen = replace(gen, seed=(gen.seed + self.draws) % SEEDS)
        self.filtered = False
        stream = None
        if self.mmi > 1:
            best, self.last_candidates = mmi_reply(self.model, self.tokenizer, self.messages, gen,
                                                   MMI(*self.backward, self.mmi), system=self.system,
                                                   content_filter=self.content_filter)
            pieces: Iterable[str] = [best]
        else:
            pieces = stream = stream_reply(self.model, self.tokenizer, self.messages, gen, system=self.system,
                                           content_filter=self.content_filter)
        self.draws += 1
        parts: list[str] = []
        strip = Stripped()  # what is shown is what is kept: the reply without outer whitespace
        try:
            for piece in pieces:
                if shown := strip.feed(piece):
                    parts.append(shown)
                    yield shown
        except (GeneratorExit, KeyboardInterrupt):  # the reader stopped the reply: keep what was said
            self.messages.append({"role": "assistant", "content": "".join(parts)})
            raise
        self.filtered = stream is not None and stream.end is not None and stream.end.reason == "content_filter"
        self.messages.append({"role": "assistant", "content": "".join(parts)})

    # ------------------------------------------------------------------ save / load

    def settings(self) -> dict[str, Any]:
        return {**{k: getattr(self.gen, k) for k in SETTINGS}, "mmi": self.mmi}

    def save(self, path: str | Path) -> Path:
        """Write the conversation, system prompt and sampling settings as JSON (never pickle), atomically. The
        folder must exist: a mistyped path is refused rather than created."""
        path = Path(path)
        if not path.parent.is_dir():
            problem = "is not a folder" if path.parent.exists() else "does not exist"
            raise OwnGPTError(f"cannot save the chat to {path}: folder {path.parent} {problem}; create it first or "
                              "save elsewhere")
        data = {"format": SAVE_FORMAT, "version": SAVE_VERSION, "system": self.system,
                "messages": self.messages, "settings": self.settings()}
        try:
            atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False))
        except OSError as e:
            raise OwnGPTError(f"cannot save the chat to {path}: {e.strerror or e}") from None
        return path

    def load(self, path: str | Path) -> None:
        """Restore a conversation written by `save`: messages, system prompt and sampling settings."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise OwnGPTError(f"no saved chat at {path}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise OwnGPTError(f"{path}: not a readable chat file ({e})") from None
        if not isinstance(data, dict) or data.get("format") != SAVE_FORMAT:
            raise OwnGPTError(f"{path}: not a chat saved by owngpt (expected \"format\": \"{SAVE_FORMAT}\")")
        messages = check_messages(data.get("messages"), roles=("user", "assistant"), where=str(path))
        system = data.get("system")
        if system is not None and not isinstance(system, str):
            raise OwnGPTError(f"{path}: 'system' must be a string or null")
        settings = data.get("settings") or {}
        if not isinstance(settings, dict):
            raise OwnGPTError(f"{path}: 'settings' must be a mapping")
        saved = {k: v for k, v in settings.items() if k != "mmi"}  # MMI needs a backward model: chosen at the start
        updates = coerce_fields(GenerationConfig, saved, f"{path}: settings", parse_text=False, allowed=SETTINGS)
        self.gen = replace(self.gen, **updates)
        self.system = system
        self.messages = messages
        self.last_candidates = []


def sample_conversation(session: ChatSession, user_turns: list[str]) -> list[tuple[str, str]]:
    """Send each user turn in order (one multi-turn conversation); returns (user, reply) pairs."""
    return [(text, session.reply(text)) for text in user_turns]


def settings_summary(session: ChatSession) -> str:
    """One line for the chat banner: the model, its context, the system prompt in use."""
    describe = getattr(session.model, "describe", None)
    model = describe() if callable(describe) else type(session.model).__name__
    system = f"system prompt: {session.system!r}" if session.system else "no system prompt"
    mmi = f"; MMI reranking of {session.mmi} candidates" if session.mmi > 1 else ""
    return f"{model}; {system}{mmi}"

