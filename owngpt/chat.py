"""Conversation state for chatting with a model: history trimmed to the context, system prompt, commands, MMI.

A `ChatSession` holds the model, its tokenizer, the sampling settings, the system prompt and the message
history. Every turn renders the history with the one chat template (`owngpt.tokenizer.render_conversation`)
after `fit_history` has trimmed it to the context window, and samples through `owngpt.generate`. The steps of one
reply are functions (`reply_config`, `reply_prompt`, `generate_replies`, `reply_stop_ids`) that evaluation
(`owngpt.evaluate.chat_eval`) calls too, so the terminal chat, the quickstart sample, scripts and evaluation all
sample a reply the same way.

`handle_line` is the whole command language (`/reset`, `/system`, `/temperature`, ...): the interactive
terminal loop and the non-interactive `--message`/stdin mode both call it, so a script exercises exactly
what a person typing would.

MMI reranking (DialoGPT, GPT2-chitchat): a backward model trained with `owngpt sft --reverse` on
`reverse_conversation(...)` scores log p(context | reply); the session samples N candidate replies and
keeps the one from which the backward model best predicts what the user said. Generic replies ("I don't
know") predict any context poorly, so MMI favours replies that are about the conversation.

Not handled: tool calls, several assistants, images; a system prompt longer than the context is an error.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from owngpt.errors import OwnGPTError
from owngpt.generate import SEEDS, GenerationConfig, generate_ids, sequence_logprobs, stream_text
from owngpt.tokenizer import render_conversation

Message = dict[str, str]

SAVE_FORMAT = "owngpt-chat"
SAVE_VERSION = 1
# Sampling settings stored by /save and restored by /load (the model itself is never part of a saved chat).
SETTINGS = ("max_new_tokens", "temperature", "top_k", "top_p", "repetition_penalty", "no_repeat_ngram", "seed")
_INT_SETTINGS = ("max_new_tokens", "top_k", "no_repeat_ngram", "seed")


def chat_generation_config(**overrides: Any) -> GenerationConfig:
    """Sampling defaults for chat: mildly creative, nucleus + top-k, a light repetition penalty (small
    models loop without it). Overrides that are None keep the default."""
    cfg = GenerationConfig(max_new_tokens=128, temperature=0.8, top_k=50, top_p=0.95, repetition_penalty=1.1)
    return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})


# ----------------------------------------------------------------------------- history trimming


def _prompt_length(tokenizer, messages: list[Message]) -> int:
    return len(render_conversation(tokenizer, messages, add_generation_prompt=True)[0])


def fit_history(tokenizer, system: str | None, messages: list[Message], max_prompt_tokens: int) -> list[Message]:
    """The messages to render for the next reply (system message first when `system`), at most
    `max_prompt_tokens` tokens long with the generation prompt included.

    Drops the oldest turns first, a whole user/assistant pair at a time (a kept turn always starts with the
    user's message); always keeps the system prompt and the newest message. If even those do not fit, the
    newest message is cut on the left (its end, the part just typed, is what the reply answers). Raises
    OwnGPTError only when the system prompt alone leaves no room."""
    head = [{"role": "system", "content": system}] if system else []
    turns = [m for m in messages if m["role"] != "system"]
    if not turns:
        raise ValueError("fit_history needs at least one message to answer")

    def fits(start: int) -> bool:
        return _prompt_length(tokenizer, head + turns[start:]) <= max_prompt_tokens

    # Valid starting points: the beginning, and every user message. Dropping a prefix never makes the
    # rendered prompt longer, so the earliest start that fits is found by binary search.
    starts = sorted({0, *(i for i, m in enumerate(turns) if m["role"] == "user"), len(turns) - 1})
    lo, hi = 0, len(starts) - 1
    if fits(starts[lo]):
        return head + turns
    while hi - lo > 1:  # invariant: starts[lo] does not fit
        mid = (lo + hi) // 2
        if fits(starts[mid]):
            hi = mid
        else:
            lo = mid
    if fits(starts[hi]):
        return head + turns[starts[hi]:]
    return head + [_cut_left(tokenizer, head, turns[-1], max_prompt_tokens)]


def _cut_left(tokenizer, head: list[Message], last: Message, max_prompt_tokens: int) -> Message:
    """`last` with as many characters of its end as fit after `head`."""
    role = last["role"]
    kept = _keep_end(last["content"], lambda text: _prompt_length(
        tokenizer, head + [{"role": role, "content": text}]) <= max_prompt_tokens)
    if kept is None:
        empty = _prompt_length(tokenizer, head + [{"role": role, "content": ""}])
        raise OwnGPTError(f"the system prompt leaves no room for a message: with it the prompt is {empty} tokens, "
                          f"but only {max_prompt_tokens} fit (context minus max_new_tokens); use a shorter "
                          "system prompt (/system TEXT or --system) or fewer --max-new-tokens")
    return {"role": role, "content": kept}


def _keep_end(text: str, fits: Callable[[str], bool]) -> str | None:
    """The longest end of `text` that `fits` (binary search on the characters kept: a shorter end must never fit
    worse); None when not even "" fits."""
    if fits(text):
        return text
    if not fits(""):
        return None
    lo, hi = 0, len(text)  # invariant: the last lo characters fit; the answer is in [lo, hi]
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(text[len(text) - mid:]):
            lo = mid
        else:
            hi = mid - 1
    return text[len(text) - lo:] if lo else ""


# ----------------------------------------------------------------------------- one reply: chat, MMI and evaluation


def reply_stop_ids(tokenizer) -> tuple[int, ...]:
    """Ids that end a reply: the tokenizer's reply terminators (<|im_end|>, <|endoftext|>), and <|im_start|>: a
    reply that starts a new turn has ended."""
    return (*tokenizer.assistant_stop_ids, tokenizer.im_start_id)


def reply_config(gen: GenerationConfig, block_size: int) -> GenerationConfig:
    """`gen` for one reply: max_new_tokens as asked but at most half the context, so the system prompt and history
    always have room; the prompt is never truncated by the sampler (`reply_prompt` makes it fit)."""
    return replace(gen, max_new_tokens=max(1, min(gen.max_new_tokens, block_size // 2)), truncate="error")


def reply_prompt(tokenizer, system: str | None, messages: list[Message], block_size: int,
                 max_new_tokens: int) -> tuple[list[Message], list[int]]:
    """(messages, ids) the model answers: `fit_history` of the conversation in the context less the reply's
    max_new_tokens (system prompt kept, oldest turns dropped first), rendered with the generation prompt."""
    context = fit_history(tokenizer, system, messages, block_size - max_new_tokens)
    return context, render_conversation(tokenizer, context, add_generation_prompt=True)[0]


def generate_replies(model, tokenizer, prompts: list[list[int]], cfg: GenerationConfig) -> list[str]:
    """One reply per prompt (ids of `reply_prompt`, settings of `reply_config`), sampled as one batch; each ends
    at a `reply_stop_ids` id and is stripped of surrounding whitespace, as a streamed chat reply is."""
    outs = generate_ids(model, prompts, cfg, stop_ids=reply_stop_ids(tokenizer), tokenizer=tokenizer)
    return [tokenizer.decode(out).strip() for out in outs]


# ----------------------------------------------------------------------------- MMI


_SWAP = {"user": "assistant", "assistant": "user"}


def reverse_conversation(messages: list[Message]) -> list[Message] | None:
    """The training conversation of the backward (MMI) model: the dialogue played backwards, roles swapped.

    For [system?, u1, a1, u2, a2] it returns
        [user: a2, assistant: u2, user: a1, assistant: u1]
    i.e. the last assistant reply becomes the first "user" message and every earlier message follows in
    reverse order, with user and assistant swapped. The loss mask of `render_conversation` then covers
    exactly the original user turns, so the model learns log p(u2 | a2) + log p(u1 | a2, u2, a1): the
    context predicted from the reply. System messages are dropped (they do not depend on the reply),
    messages after the last assistant reply are ignored, consecutive messages of one role are joined with
    a newline, and a trailing (swapped) user message, which has nothing after it to predict, is dropped.
    Returns None when no assistant reply has a user message before it."""
    turns = [m for m in messages if m.get("role") in _SWAP]
    last = next((i for i in range(len(turns) - 1, -1, -1)
                 if turns[i]["role"] == "assistant" and any(t["role"] == "user" for t in turns[:i])), None)
    if last is None:
        return None
    out: list[Message] = []
    for m in reversed(turns[: last + 1]):
        role = _SWAP[m["role"]]
        if out and out[-1]["role"] == role:
            out[-1] = {"role": role, "content": out[-1]["content"] + "\n" + m["content"]}
        else:
            out.append({"role": role, "content": m["content"]})
    while out and out[-1]["role"] == "user":
        out.pop()
    return out


def mmi_rerank(backward_model, backward_tok, history_messages: list[Message],
               candidates: list[str]) -> tuple[str, list[float]]:
    """(best candidate, scores): score = log p(reversed context | candidate) under the backward model, the
    sum over the context tokens that `render_conversation` masks in (the original user turns).

    Every candidate is scored on the same context tokens, so sums compare fairly. The reversed context is fitted
    once, to the backward model's context less room for the longest candidate (at most half of it): the oldest
    pairs of the dialogue go first, then the user's newest message keeps its end. A candidate longer than what
    the context leaves keeps its end. An empty candidate scores -inf."""
    if not candidates:
        raise ValueError("mmi_rerank needs at least one candidate")
    convs = [reverse_conversation([*history_messages, {"role": "assistant", "content": c}]) for c in candidates]
    if convs[0] is None:
        raise OwnGPTError("MMI reranking needs a user message before the reply")
    block = backward_model.cfg.block_size

    def length(messages: list[Message]) -> int:
        return len(render_conversation(backward_tok, messages)[0])

    # convs[i] = [candidate i (as "user"), *context]: only the first message differs between candidates
    room = min(max(length(conv[:1]) for conv in convs), block // 2)
    context_ids, context_mask = render_conversation(backward_tok, _fit_context(length, convs[0][1:], block - room))
    items, scored = [], []
    for i, (cand, conv) in enumerate(zip(candidates, convs)):
        if not cand.strip():
            continue
        reply = conv[0]
        text = _keep_end(reply["content"], lambda t: length([{**reply, "content": t}]) + len(context_ids) <= block)
        if text is None:
            raise OwnGPTError(f"the backward model's context ({block} tokens) is too small to score a reply")
        reply_ids = render_conversation(backward_tok, [{**reply, "content": text}])[0]
        items.append((reply_ids + context_ids, [0] * len(reply_ids) + context_mask))
        scored.append(i)
    scores = [-math.inf] * len(candidates)
    for i, score in zip(scored, sequence_logprobs(backward_model, items)):
        scores[i] = float(score)
    best = max(range(len(candidates)), key=lambda i: scores[i])  # first of equals
    return candidates[best], scores


def _fit_context(length: Callable[[list[Message]], int], context: list[Message], max_tokens: int) -> list[Message]:
    """The newest part of a reversed context within max_tokens tokens: its last (oldest) pairs go first, then
    its first message (the user's newest) keeps its end."""
    keep = len(context)
    while keep > 1 and length(context[:keep]) > max_tokens:
        keep = max(1, keep - 2)  # drop the oldest (user, assistant) pair of the original dialogue
    first = context[0]
    if keep > 1 or length(context[:1]) <= max_tokens:
        return context[:keep]
    text = _keep_end(first["content"], lambda t: length([{**first, "content": t}]) <= max_tokens)
    if text is None:
        raise OwnGPTError("the backward model's context is too small: no room for the user's message")
    return [{**first, "content": text}]


# ----------------------------------------------------------------------------- the session


@dataclass
class ChatSession:
    """A conversation with one model. `mmi` > 1 samples that many candidates per reply and keeps the one the
    `backward` (model, tokenizer) pair scores best; `last_candidates` then holds (text, score) of each."""

    model: Any
    tokenizer: Any
    gen: GenerationConfig = field(default_factory=chat_generation_config)
    system: str | None = None
    messages: list[Message] = field(default_factory=list)
    mmi: int = 0
    backward: tuple[Any, Any] | None = None
    last_candidates: list[tuple[str, float]] = field(default_factory=list, repr=False)
    draws: int = field(default=0, repr=False)  # generations so far: varies the seed between replies

    def __post_init__(self) -> None:
        if self.mmi > 1 and self.backward is None:
            raise OwnGPTError("--mmi N needs a backward model: --backward CKPT (trained with `owngpt sft --reverse`)")
        if self.mmi < 0:
            raise OwnGPTError(f"--mmi must be 0 (off) or the number of candidates to sample, not {self.mmi}")

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_checkpoint(cls, path: str, *, adapter: str | None = None, device: str = "auto", system: str | None = None,
                        persona: str | None = None, gen: GenerationConfig | None = None, seed: int | None = None,
                        mmi: int = 0, backward: str | None = None) -> "ChatSession":
        """Load a chat model (and optionally its LoRA adapter and an MMI backward model) and start a session.

        System prompt: `system`, else the persona file's, else the one the checkpoint was fine-tuned with."""
        import owngpt

        loaded = owngpt.load(path, adapter=adapter, device=device)
        if loaded.tokenizer is None:
            raise OwnGPTError(f"checkpoint {path} carries no tokenizer; chat needs the tokenizer it was trained with")
        gen = gen or chat_generation_config()
        if seed is not None:
            gen = replace(gen, seed=seed)
        back = None
        if backward:
            b = owngpt.load(backward, device=device)
            if b.tokenizer is None:
                raise OwnGPTError(f"backward checkpoint {backward} carries no tokenizer")
            back = (b.model, b.tokenizer)
        elif mmi > 1:
            raise OwnGPTError("--mmi N needs a backward model: --backward CKPT (trained with `owngpt sft --reverse`)")
        # An adapter's chat defaults live in the sft run it was exported from (RUN/adapter), not in the base.
        meta = (_adapter_run_meta(adapter) if adapter else None) or loaded.meta
        return cls(loaded.model, loaded.tokenizer, gen, resolve_system_prompt(system, persona, meta),
                   mmi=mmi, backward=back)

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
        return reply_prompt(self.tokenizer, self.system, self.messages, self.model.cfg.block_size,
                            self.max_new_tokens)[0]

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
        block = self.model.cfg.block_size
        cfg = reply_config(self.gen, block)
        context, ids = reply_prompt(self.tokenizer, self.system, self.messages, block, cfg.max_new_tokens)
        if self.gen.seed is not None:
            cfg = replace(cfg, seed=(self.gen.seed + self.draws) % SEEDS)
        self.draws += 1
        if self.mmi > 1:
            pieces: Iterable[str] = [self._mmi_reply(ids, context, cfg)]
        else:
            pieces = stream_text(self.model, self.tokenizer, ids, cfg, stop_ids=self.stop_ids)
        parts: list[str] = []
        try:
            for piece in pieces:
                parts.append(piece)
                yield piece
        except (GeneratorExit, KeyboardInterrupt):  # the reader stopped the reply: keep what was said
            self.messages.append({"role": "assistant", "content": "".join(parts).strip()})
            raise
        self.messages.append({"role": "assistant", "content": "".join(parts).strip()})

    def _mmi_reply(self, ids: list[int], context: list[Message], cfg: GenerationConfig) -> str:
        if cfg.temperature <= 0:
            raise OwnGPTError("MMI reranking samples several different candidates: set a temperature above 0 "
                              "(/temperature 0.8 or --temperature 0.8)")
        candidates = generate_replies(self.model, self.tokenizer, [list(ids) for _ in range(self.mmi)], cfg)
        back_model, back_tok = self.backward
        best, scores = mmi_rerank(back_model, back_tok, context, candidates)
        self.last_candidates = list(zip(candidates, scores))
        return best

    # ------------------------------------------------------------------ save / load

    def settings(self) -> dict[str, Any]:
        return {**{k: getattr(self.gen, k) for k in SETTINGS}, "mmi": self.mmi}

    def save(self, path: str | Path) -> Path:
        """Write the conversation, system prompt and sampling settings as JSON (never pickle)."""
        path = Path(path)
        data = {"format": SAVE_FORMAT, "version": SAVE_VERSION, "system": self.system,
                "messages": self.messages, "settings": self.settings()}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
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
        messages = data.get("messages")
        if not isinstance(messages, list):
            raise OwnGPTError(f"{path}: 'messages' must be a list")
        for i, m in enumerate(messages):
            if not (isinstance(m, dict) and m.get("role") in ("user", "assistant")
                    and isinstance(m.get("content"), str)):
                raise OwnGPTError(f"{path}: messages[{i}] must be {{\"role\": \"user\"|\"assistant\", \"content\": str}}")
        system = data.get("system")
        if system is not None and not isinstance(system, str):
            raise OwnGPTError(f"{path}: 'system' must be a string or null")
        settings = data.get("settings") or {}
        if not isinstance(settings, dict):
            raise OwnGPTError(f"{path}: 'settings' must be a mapping")
        updates = {}
        for key, value in settings.items():
            if key == "mmi":
                continue  # needs a backward model: chosen when the session starts, not by a saved file
            if key not in SETTINGS:
                raise OwnGPTError(f"{path}: unknown setting {key!r} (known: {', '.join(SETTINGS)})")
            if key == "seed" and value is None:
                updates[key] = None
                continue
            kind = int if key in _INT_SETTINGS else (int, float)
            if not isinstance(value, kind) or isinstance(value, bool):
                what = "an integer" if key in _INT_SETTINGS else "a number"
                raise OwnGPTError(f"{path}: settings.{key} must be {what}, not {value!r}")
            updates[key] = value
        self.gen = replace(self.gen, **updates)
        self.system = system
        self.messages = [{"role": m["role"], "content": m["content"]} for m in messages]
        self.last_candidates = []


def resolve_system_prompt(system: str | None, persona: str | None, meta: dict | None) -> str | None:
    """The system prompt to chat with: explicit text, else the persona file's, else the one recorded in the
    checkpoint by `owngpt sft` (run_config.chat.system_prompt, or the persona file it was trained with)."""
    from owngpt.persona import load_persona, system_prompt

    if system is not None:
        return system or None
    if persona:
        return system_prompt(load_persona(persona))
    run_config = (meta or {}).get("run_config") or {}
    recorded = (run_config.get("chat") or {}).get("system_prompt")
    if recorded:
        return recorded
    trained_with = (run_config.get("sft") or {}).get("persona")
    if trained_with:
        try:
            return system_prompt(load_persona(trained_with))
        except OwnGPTError:
            return None  # the persona file moved since training: chat without a system prompt
    return None


def _adapter_run_meta(adapter: str) -> dict | None:
    """The meta of the `owngpt sft --lora` run whose RUN/adapter folder this is, or None."""
    from owngpt.train.checkpoint import best_or_latest, read_meta

    try:
        return read_meta(best_or_latest(Path(adapter).parent))
    except OwnGPTError:
        return None


def sample_conversation(session: ChatSession, user_turns: list[str]) -> list[tuple[str, str]]:
    """Send each user turn in order (one multi-turn conversation); returns (user, reply) pairs."""
    return [(text, session.reply(text)) for text in user_turns]


# ----------------------------------------------------------------------------- commands


@dataclass
class CommandResult:
    """What to show after one input line: feedback text, and/or a reply to stream; quit ends the chat."""

    message: str = ""
    stream: Iterator[str] | None = None
    quit: bool = False
    error: bool = False


def _number(arg: str, kind: type, name: str, lo: float, hi: float | None = None, lo_open: bool = False) -> Any:
    try:
        value = kind(arg)
    except ValueError:
        raise OwnGPTError(f"/{name} needs a{'n integer' if kind is int else ' number'}, e.g. /{name} "
                          f"{'50' if kind is int else '0.8'}") from None
    if value < lo or (lo_open and value == lo) or (hi is not None and value > hi):
        upper = f" and at most {hi}" if hi is not None else ""
        raise OwnGPTError(f"/{name} must be {'above' if lo_open else 'at least'} {lo}{upper}, not {arg}")
    return value


def _set(session: ChatSession, key: str, value: Any) -> str:
    session.gen = replace(session.gen, **{key: value})
    return f"{key} = {value}"


def _cmd_help(session: ChatSession, arg: str) -> CommandResult:
    width = max(len(f"/{n} {a}") for n, (a, _, _) in COMMANDS.items())
    lines = [f"  {f'/{n} {a}'.ljust(width)}  {d}" for n, (a, d, _) in COMMANDS.items()]
    lines.append("  A line starting with // sends the rest as a message beginning with /.")
    return CommandResult("commands:\n" + "\n".join(lines))


def _cmd_reset(session: ChatSession, arg: str) -> CommandResult:
    session.reset()
    return CommandResult("conversation cleared")


def _cmd_system(session: ChatSession, arg: str) -> CommandResult:
    if not arg:
        return CommandResult(f"system prompt: {session.system}" if session.system else "no system prompt "
                             "(set one with /system TEXT)")
    session.system = None if arg == "-" else arg
    return CommandResult("system prompt cleared" if arg == "-" else "system prompt set")


def _cmd_temperature(session: ChatSession, arg: str) -> CommandResult:
    if not arg:
        return CommandResult(f"temperature = {session.gen.temperature}")
    return CommandResult(_set(session, "temperature", _number(arg, float, "temperature", 0.0)))


def _cmd_topk(session: ChatSession, arg: str) -> CommandResult:
    if not arg:
        return CommandResult(f"top_k = {session.gen.top_k}")
    return CommandResult(_set(session, "top_k", _number(arg, int, "topk", 0)))


def _cmd_topp(session: ChatSession, arg: str) -> CommandResult:
    if not arg:
        return CommandResult(f"top_p = {session.gen.top_p}")
    return CommandResult(_set(session, "top_p", _number(arg, float, "topp", 0.0, 1.0, lo_open=True)))


def _cmd_regenerate(session: ChatSession, arg: str) -> CommandResult:
    return CommandResult(stream=session.stream_regenerate())


def _cmd_save(session: ChatSession, arg: str) -> CommandResult:
    if not arg:
        raise OwnGPTError("/save needs a file name, e.g. /save chat.json")
    return CommandResult(f"saved {len(session.messages)} messages to {session.save(arg)}")


def _cmd_load(session: ChatSession, arg: str) -> CommandResult:
    if not arg:
        raise OwnGPTError("/load needs a file name, e.g. /load chat.json")
    session.load(arg)
    return CommandResult(f"loaded {len(session.messages)} messages from {arg}")


def _cmd_settings(session: ChatSession, arg: str) -> CommandResult:
    return CommandResult(", ".join(f"{k} = {v}" for k, v in session.settings().items()))


def _cmd_quit(session: ChatSession, arg: str) -> CommandResult:
    return CommandResult(quit=True)


# name -> (argument, description, handler); also the order /help lists them in
COMMANDS: dict[str, tuple[str, str, Callable[[ChatSession, str], CommandResult]]] = {
    "help": ("", "show this list", _cmd_help),
    "reset": ("", "forget the conversation (system prompt and settings stay)", _cmd_reset),
    "system": ("[TEXT|-]", "show, set, or (with -) clear the system prompt", _cmd_system),
    "temperature": ("[X]", "sampling temperature; 0 = always the most likely token", _cmd_temperature),
    "topk": ("[N]", "sample from the N most likely tokens; 0 = off", _cmd_topk),
    "topp": ("[X]", "sample from the smallest set of tokens with probability X; 1 = off", _cmd_topp),
    "regenerate": ("", "replace the last reply by a new one", _cmd_regenerate),
    "save": ("FILE", "save the conversation and settings as JSON", _cmd_save),
    "load": ("FILE", "continue a conversation saved with /save", _cmd_load),
    "settings": ("", "show the sampling settings", _cmd_settings),
    "quit": ("", "leave the chat (also /exit, Ctrl-D)", _cmd_quit),
}
_ALIASES = {"exit": "quit", "q": "quit", "clear": "reset", "regen": "regenerate", "top_k": "topk", "top_p": "topp",
            "temp": "temperature", "?": "help"}


def handle_command(session: ChatSession, line: str) -> CommandResult:
    """Run one `/command [argument]` line. User mistakes come back as an error message, never an exception."""
    name, _, arg = line.strip()[1:].partition(" ")
    name, arg = name.lower(), arg.strip()
    name = _ALIASES.get(name, name)
    if name not in COMMANDS:
        import difflib

        close = difflib.get_close_matches(name, list(COMMANDS) + list(_ALIASES), n=1, cutoff=0.6)
        hint = f"did you mean /{_ALIASES.get(close[0], close[0])}? " if close else ""
        return CommandResult(f"unknown command /{name}; {hint}type /help for the list (start a message with // to "
                             "send a line that begins with /)", error=True)
    try:
        return COMMANDS[name][2](session, arg)
    except OwnGPTError as e:
        return CommandResult(str(e), error=True)


def handle_line(session: ChatSession, line: str) -> CommandResult:
    """One line of input: a /command, or a message whose reply comes back as `stream` (blank lines do nothing)."""
    line = line.rstrip("\r\n")
    if line.startswith("//"):
        return CommandResult(stream=session.stream_reply(line[1:]))
    if line.startswith("/"):
        return handle_command(session, line)
    if not line.strip():
        return CommandResult()
    return CommandResult(stream=session.stream_reply(line))


def settings_summary(session: ChatSession) -> str:
    """One line for the chat banner: the model, its context, the system prompt in use."""
    describe = getattr(session.model, "describe", None)
    model = describe() if callable(describe) else type(session.model).__name__
    system = f"system prompt: {session.system!r}" if session.system else "no system prompt"
    mmi = f"; MMI reranking of {session.mmi} candidates" if session.mmi > 1 else ""
    return f"{model}; {system}{mmi}"


__all__ = [
    "ChatSession", "CommandResult", "COMMANDS", "chat_generation_config", "fit_history", "generate_replies",
    "handle_command", "handle_line", "mmi_rerank", "reply_config", "reply_prompt", "reply_stop_ids",
    "resolve_system_prompt", "reverse_conversation", "sample_conversation", "settings_summary",
]
