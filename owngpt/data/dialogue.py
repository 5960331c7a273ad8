"""Dialogue records: speaker names mapped to the three roles, message lists normalised, utterances made turns.

Shared by the file readers (owngpt/data/sources.py) and the built-in corpora (owngpt/data/builtin.py). Checking
that a conversation can be trained on is a later step (owngpt/data/conversations.check_conversation).
"""

from __future__ import annotations

from typing import Any, Iterable

# Dialogue speaker names seen in the wild (OpenAI messages, ShareGPT, OpenAssistant, Gemini) -> our three roles.
ROLE_ALIASES = {
    "system": "system",
    "user": "user", "human": "user", "prompter": "user", "question": "user",
    "assistant": "assistant", "gpt": "assistant", "bot": "assistant", "model": "assistant", "ai": "assistant",
    "chatgpt": "assistant", "bing": "assistant", "bard": "assistant", "answer": "assistant",
}


def alternating_messages(turns: Iterable[str], first: str = "user") -> list[dict[str, str]]:
    """Utterances of a two-party dialogue -> messages whose roles alternate, starting with `first`."""
    roles = ("user", "assistant") if first == "user" else ("assistant", "user")
    return [{"role": roles[i % 2], "content": t} for i, t in enumerate(turns)]


def message_text(value: Any) -> str | None:
    """A message's text: a string, or OpenAI-style content parts [{'type': 'text', 'text': ...}] joined."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(p, dict) and isinstance(p.get("text"), str) for p in value):
        return "".join(p["text"] for p in value)
    return None


def normalise_messages(items: Any, role_key: str, content_key: str) -> tuple[list[dict[str, str]] | None, str]:
    """A list of {role_key, content_key} objects -> ([{'role', 'content'}], '') or (None, reason)."""
    if not isinstance(items, list) or not items:
        return None, "must be a non-empty list"
    out = []
    for i, m in enumerate(items):
        if not isinstance(m, dict):
            return None, f"message {i} is not an object"
        speaker = m.get(role_key)
        role = ROLE_ALIASES.get(speaker.strip().lower()) if isinstance(speaker, str) else None
        if role is None:
            return None, f"message {i}: unknown {role_key} {speaker!r} (expected one of {', '.join(ROLE_ALIASES)})"
        content = message_text(m.get(content_key))
        if content is None:
            return None, f"message {i}: '{content_key}' must be a string"
        out.append({"role": role, "content": content})
    return out, ""


def instruction_pair(obj: dict) -> tuple[str, str] | None:
    """Alpaca {instruction, input, output} and {prompt, response|completion} lines -> (user, assistant)."""
    if isinstance(obj.get("instruction"), str) and isinstance(obj.get("output"), str):
        extra = obj.get("input")
        user = obj["instruction"] + (f"\n\n{extra}" if isinstance(extra, str) and extra.strip() else "")
        return user, obj["output"]
    reply = obj.get("response", obj.get("completion"))
    if isinstance(obj.get("prompt"), str) and isinstance(reply, str):
        return obj["prompt"], reply
    return None
