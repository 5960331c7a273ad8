"""THE chat format (ChatML): which messages are valid, and a conversation rendered as token ids plus its loss mask.

    <|im_start|>{role}\\n{content}<|im_end|>\\n      per message
    <|im_start|>assistant\\n                        the generation prompt

Every stage renders conversations here (fine-tuning, chat, the server, evaluation) and checks messages with
`check_messages`, so the format and its rules are written once.
"""

from __future__ import annotations

from typing import Sequence

from owngpt.errors import OwnGPTError
from owngpt.tokenizer.bpe import Tokenizer

ROLES = ("system", "user", "assistant")
Message = dict[str, str]  # {"role": one of ROLES, "content": text}


def messages_problem(messages: object, roles: Sequence[str] = ROLES) -> str | None:
    """What makes `messages` other than a list of {"role": one of `roles`, "content": str} objects, or None.

    The problem names the first bad message by its index, e.g. "messages[2]: unknown role 'bot' (...)"."""
    if isinstance(messages, (str, bytes, dict)) or not isinstance(messages, Sequence):
        return f"'messages' must be a list, not {type(messages).__name__}"
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            return f"messages[{i}] must be an object with 'role' and 'content', not {type(m).__name__}"
        role, content = m.get("role"), m.get("content")
        if role not in roles:
            return f"messages[{i}]: unknown role {role!r} (role must be one of {', '.join(roles)})"
        if not isinstance(content, str):
            return f"messages[{i}] ({role}): 'content' must be a string, not {type(content).__name__}"
    return None


def check_messages(messages: object, *, roles: Sequence[str] = ROLES, where: str = "") -> list[Message]:
    """`messages` as a new list of plain {"role", "content"} dicts (other keys dropped); OwnGPTError naming the
    first bad message otherwise (see messages_problem), prefixed with "{where}: " when `where` is given."""
    problem = messages_problem(messages, roles)
    if problem is not None:
        raise OwnGPTError(f"{where}: {problem}" if where else problem)
    return [{"role": m["role"], "content": m["content"]} for m in messages]  # type: ignore[union-attr]


def render_conversation(tok: Tokenizer, messages: Sequence[Message],
                        add_generation_prompt: bool = False) -> tuple[list[int], list[int]]:
    """THE chat format (ChatML): `<|im_start|>{role}\\n{content}<|im_end|>\\n` per message.

    Returns (ids, mask): mask[i] == 1 exactly on assistant content tokens and the assistant's closing
    <|im_end|> (the tokens a model learns to produce). Role headers, newlines and contents are encoded as plain
    text, each on its own so that token boundaries do not depend on the neighbours; user text can therefore
    never produce a special id. add_generation_prompt appends `<|im_start|>assistant\\n` (mask 0).
    """
    ids: list[int] = []
    mask: list[int] = []
    newline = tok.header_ids("")  # encode("\n")
    for m in check_messages(messages):
        role = m["role"]
        head = [tok.im_start_id] + tok.header_ids(role)
        body = tok.encode(m["content"]) + [tok.im_end_id]
        learn = 1 if role == "assistant" else 0
        ids += head + body + newline
        mask += [0] * len(head) + [learn] * len(body) + [0] * len(newline)
    if add_generation_prompt:
        head = assistant_header(tok)
        ids += head
        mask += [0] * len(head)
    return ids, mask


def assistant_header(tok: Tokenizer) -> list[int]:
    """Ids of `<|im_start|>assistant\\n`, the header every assistant reply follows (the generation prompt)."""
    return [tok.im_start_id] + tok.header_ids("assistant")


def render_prompt(tok: Tokenizer, messages: Sequence[Message]) -> list[int]:
    """Ids that ask the model for the next assistant reply: the conversation + `<|im_start|>assistant\\n`."""
    return render_conversation(tok, messages, add_generation_prompt=True)[0]
