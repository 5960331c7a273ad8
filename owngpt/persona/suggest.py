"""`owngpt persona suggest`: a persona file drafted from my own messages, for me to edit, so that the system
prompt describes the voice the model is fine-tuned on.

From my messages — the assistant turns of the train split of a folder `owngpt prepare` wrote, or of chat exports
read as prepare reads them and kept only where prepare's hash split (owngpt/data/split.py, default ratios) puts the
session in train: the val and test sessions are held out, and `owngpt clone` evaluates on the test sessions with
this file's system prompt, which must not have seen them — it fills in: the name (from --me; left for me to write
when that is an id or holds personal data), the languages I write in (each with at least 10% of my messages, most used
first), a style and a personality phrase guessed from how I write (message length, emoji, exclamation and question
marks, lower-case starts; owngpt/data/chats/style.py), and instructions that describe it (typical length,
favourite emoji, phrases I use often). Facts stay empty: they are mine to write. The file's text becomes the system
prompt of every fine-tuning example, so it is drafted from my messages as training sees them: each cleaned and
scrubbed of personal data exactly as prepare cleans a message, and those the block list matches left out.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any, Sequence

from owngpt.data.chats.export import CHAT, ChatExports, export_files
from owngpt.data.chats.model import ChatOptions
from owngpt.data.chats.sessions import is_blocked
from owngpt.data.chats.style import EMOJI, frequent_phrases, text_style
from owngpt.data.clean import CleanConfig, Cleaner
from owngpt.data.corpus import is_prepared, read_split
from owngpt.data.pii import scrubbed
from owngpt.data.raw import cleaned
from owngpt.data.records import Conversation
from owngpt.data.split import DEFAULT_RATIOS, conversation_key, hash_split, parse_ratios
from owngpt.errors import OwnGPTError
from owngpt.lang import language

_TRAITS = {  # (english, chinese) words for what the statistics show
    "brief": ("brief", "简洁"), "cheerful": ("cheerful", "开朗"), "laid-back": ("laid-back", "随和"),
    "expressive": ("expressive", "爱用表情"), "curious": ("curious", "好奇"), "warm": ("warm", "热情"),
}


def my_messages(specs: Sequence[str], opts: ChatOptions) -> list[str]:
    """My turns as training sees them (see the module docstring): the assistant turns of the train split of
    prepared folders, and of the sessions of chat exports that prepare's split puts in train (exports with no
    message of mine left out, as prepare leaves them out)."""
    words = opts.block_filter()
    texts = [m["content"] for spec in specs if is_prepared(spec) for line in read_split(spec, "conversations", "train")
             if line.record for m in line.record["messages"] if m["role"] == "assistant"]
    texts = [t for t in texts if words is None or not is_blocked(t, words)]  # prepared before the block list
    exports = [s for s in specs if not is_prepared(s)]
    if exports:
        texts += _train_turns(exports, opts)  # the block list applied already
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise OwnGPTError(f"no messages of yours in {scrubbed(', '.join(specs))}" + (
            " (the block list left none)" if words is not None else "") + (
            "; only the sessions prepare's split puts in train are read (the val and test sessions are held out)"
            if exports else ""))
    return texts


def _train_turns(exports: Sequence[str], opts: ChatOptions) -> list[str]:
    """My turns in the sessions of raw exports that prepare would put in its train split: each conversation cleaned
    as prepare cleans it and split by the same hash (owngpt/data/split.conversation_key), with the default ratios."""
    chats = ChatExports()
    for path, fmt, file_opts, forced in export_files(exports, opts):
        chats.read(path, fmt, file_opts, forced=forced)
    chats.check()
    ratios = parse_ratios(DEFAULT_RATIOS)  # as prepare validates them
    records = (rec for read in chats.reads.values() if read.status == CHAT for rec in read.records(str(read.path)))
    return [m["content"] for rec in cleaned(records, Cleaner(CleanConfig())) if isinstance(rec, Conversation)
            and hash_split(conversation_key(rec.messages), ratios) == "train"
            for m in rec.messages if m["role"] == "assistant"]


_ID = re.compile(r"wxid_\w+|(?:user)?\d+|[\w-]*\d{5,}[\w-]*", re.I)  # WeChat, Telegram, QQ ids; numbers


def persona_name(name: str, me: Sequence[str]) -> str:
    """The persona's name: `name` as given (--name), else the first --me unless that is an account id or holds
    personal data (scrubbing would change it): then "" (left for me to write; the file says so)."""
    if name.strip():
        return name.strip()
    first = me[0].strip() if me else ""
    return "" if _ID.fullmatch(first) or scrubbed(first) != first else first


def suggest_persona(specs: Sequence[str], opts: ChatOptions, name: str = "") -> tuple[str, dict[str, Any]]:
    """(the persona file's text, the figures it was drafted from)."""
    if not (name.strip() or (opts.me and opts.me[0].strip())):
        raise OwnGPTError("the persona needs a name: give --me NAME (or --name NAME)")
    name = persona_name(name, opts.me)
    texts = my_messages(specs, opts)
    style = text_style(texts)
    langs = Counter(lang for t in texts if (lang := language(t)) in ("en", "zh"))
    total = max(1, sum(langs.values()))
    languages = [lang for lang, n in langs.most_common() if n / total >= 0.1] or ["en"]
    emoji = [e for e, _ in Counter(e for t in texts for e in EMOJI.findall(t)).most_common(3)]
    phrases = [p for p, _ in frequent_phrases(texts, most=5)]  # of scrubbed text: no personal data
    facts = {"name": name, "messages": len(texts), "languages": {k: round(v / total, 3) for k, v in langs.items()},
             "emoji": emoji, "phrases": phrases, "style": style}
    return _yaml(name, languages, style, emoji, phrases, facts), facts


def _guess(style: dict) -> tuple[str, list[str]]:
    """(the persona `style`, trait keys) from the statistics."""
    traits = []
    if style["chars_median"] < 25:
        traits.append("brief")
    if style["exclamation"] > 0.25 or style["laugh"] > 0.15:
        traits.append("cheerful")
    if style["lower_start"] > 0.6:
        traits.append("laid-back")
    if style["emoji"] > 0.15:
        traits.append("expressive")
    if style["question"] > 0.3:
        traits.append("curious")
    if style["emoji"] > 0.2 or style["laugh"] > 0.2:
        kind = "playful"
    elif style["chars_median"] < 25:
        kind = "concise"
    elif style["end_punct"] > 0.7 and style["lower_start"] < 0.2 and style["emoji"] < 0.02:
        kind = "formal"
    else:
        kind = "friendly"
    return kind, traits or ["warm"]


def _instructions(name: str, style: dict, emoji: list[str], phrases: list[str], lang: str) -> str:
    median, p90 = int(style["chars_median"]), int(style["chars_p90"])
    if lang == "zh":
        parts = [f"像{name or '你'}平时发消息那样说话：消息通常{median}个字左右，很少超过{p90}个字"]
        if emoji:
            parts.append(f"{style['emoji']:.0%}的消息带表情（{' '.join(emoji)}）")
        if phrases:
            parts.append("常说：" + "、".join(f"“{p}”" for p in phrases))
        return "；".join(parts) + "。"
    who = f"{name} texts" if name else "you text"
    parts = [f"Write the way {who}: messages of about {median} characters, rarely over {p90}"]
    if style["lower_start"] > 0.6:
        parts.append("mostly starting in lower case")
    if emoji:
        parts.append(f"emoji in {style['emoji']:.0%} of messages ({' '.join(emoji)})")
    if phrases:
        parts.append("often saying " + ", ".join(f'"{p}"' for p in phrases))
    return "; ".join(parts) + "."


def _text(values: dict[str, str]) -> str:
    """A YAML value: a JSON string (valid YAML) for one language, a {lang: text} mapping for several."""
    if len(values) == 1:
        return json.dumps(next(iter(values.values())), ensure_ascii=False)
    return "{" + ", ".join(f"{k}: {json.dumps(v, ensure_ascii=False)}" for k, v in values.items()) + "}"


def _commented(line: str, comment: str) -> str:
    return f"{line:<24}  # {comment}"


def _yaml(name: str, languages: list[str], style: dict, emoji: list[str], phrases: list[str], facts: dict) -> str:
    kind, traits = _guess(style)
    personality = {lang: (", " if lang == "en" else "、").join(_TRAITS[t][lang == "zh"] for t in traits)
                   for lang in languages}
    instructions = {lang: _instructions(name, style, emoji, phrases, lang) for lang in languages}
    shares = ", ".join(f"{k} {v:.0%}" for k, v in facts["languages"].items()) or "no Latin or Chinese text"
    return "\n".join([
        f"# A persona drafted by `owngpt persona suggest` from {facts['messages']:,} of your messages.",
        "# Read every line and change what is wrong; the facts are yours to write. Then use it with",
        "#   owngpt sft --persona FILE ...   or   owngpt clone EXPORT... --me NAME --persona FILE",
        f"name: {json.dumps(name, ensure_ascii=False)}" if name else _commented(
            'name: ""', "your name: --me was an id or held personal data, so it is left for you to write"),
        f"personality: {_text(personality)}",
        _commented(f"style: {kind}", f"friendly | formal | playful | concise; your median message: "
                   f"{style['chars_median']:.0f} characters"),
        _commented(f"languages: [{', '.join(languages)}]", f"your messages: {shares}"),
        _commented("facts: []", 'first-person sentences about yourself, e.g. "I live in Berlin."'),
        f"instructions: {_text(instructions)}",
        "",
    ])

