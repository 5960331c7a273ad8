"""THE chat format: which messages are valid, and a conversation rendered as token ids plus its loss mask.

The tokenizer names its format (`Tokenizer.chat_format`). Every model trained here uses ChatML:

    <|im_start|>{role}\\n{content}<|im_end|>\\n      per message
    <|im_start|>assistant\\n                        the generation prompt

A model imported from GPT2-chitchat (`owngpt import-hf`) keeps the format it was trained in, which has no roles:

    [CLS]                                          once, at the start
    {content}[SEP]                                 per message (user and assistant alternate)
                                                   no generation prompt: the reply follows the last [SEP]

Every stage renders conversations here (fine-tuning, chat, the server, evaluation) and checks messages with
`check_messages`, so the format and its rules are written once; `chat_template_jinja` writes the same format
for Hugging Face's `apply_chat_template` and llama.cpp (exports).
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


NO_SYSTEM_TURN = ("this model's chat format (GPT2-chitchat: [CLS] u1 [SEP] a1 [SEP] ...) has no system turn, so it "
                  "cannot take a system prompt or persona; chat without one, or move the model to ChatML first with "
                  "`owngpt sft --chat-format chatml`")


def has_system_turn(tok: Tokenizer) -> bool:
    """Whether the tokenizer's chat format can render a system message (ChatML can; GPT2-chitchat's cannot)."""
    return tok.chat_format["name"] != "chitchat"


def render_message(tok: Tokenizer, message: Message) -> tuple[list[int], list[int]]:
    """One message as (ids, mask): mask 1 exactly on an assistant's content tokens and the token that closes
    them (<|im_end|>, or [SEP] in the chitchat format). Header, newline and content are encoded each on its own,
    so token boundaries do not depend on the neighbours and user text never produces a special id."""
    role = message["role"]
    learn = 1 if role == "assistant" else 0
    if tok.chat_format["name"] == "chitchat":
        if role == "system":
            raise OwnGPTError(NO_SYSTEM_TURN)
        body = tok.encode(message["content"]) + [tok.chat_format["sep_id"]]
        return body, [learn] * len(body)
    head = [tok.im_start_id] + tok.header_ids(role)
    body = tok.encode(message["content"]) + [tok.im_end_id]
    newline = tok.header_ids("")  # encode("\n")
    return head + body + newline, [0] * len(head) + [learn] * len(body) + [0] * len(newline)


def conversation_start(tok: Tokenizer) -> list[int]:
    """Ids before the first message: [CLS] in the chitchat format, none in ChatML."""
    return [tok.chat_format["start_id"]] if tok.chat_format["name"] == "chitchat" else []


def render_conversation(tok: Tokenizer, messages: Sequence[Message],
                        add_generation_prompt: bool = False) -> tuple[list[int], list[int]]:
    """A conversation as (ids, mask) in the tokenizer's chat format: `conversation_start`, then every message
    (`render_message`; the mask covers exactly the assistant tokens a model learns to produce), then with
    add_generation_prompt the assistant header (`assistant_header`, mask 0)."""
    ids = conversation_start(tok)
    mask = [0] * len(ids)
    for m in check_messages(messages):
        m_ids, m_mask = render_message(tok, m)
        ids += m_ids
        mask += m_mask
    if add_generation_prompt:
        head = assistant_header(tok)
        ids += head
        mask += [0] * len(head)
    return ids, mask


def assistant_header(tok: Tokenizer) -> list[int]:
    """Ids every assistant reply follows (the generation prompt): `<|im_start|>assistant\\n` in ChatML, none in the
    chitchat format (the reply follows the last [SEP])."""
    if tok.chat_format["name"] == "chitchat":
        return []
    return [tok.im_start_id] + tok.header_ids("assistant")


def render_prompt(tok: Tokenizer, messages: Sequence[Message]) -> list[int]:
    """Ids that ask the model for the next assistant reply: the conversation + the generation prompt."""
    return render_conversation(tok, messages, add_generation_prompt=True)[0]


def chat_template_jinja(tok: Tokenizer) -> str:
    """The tokenizer's chat format as a Jinja template for Hugging Face's `apply_chat_template` (and llama.cpp,
    which reads the same template from a GGUF file). Rendered to text and tokenized by the exported tokenizer it
    gives the ids `render_conversation` gives (tests/test_tokenizer_template.py checks it through transformers)."""
    bad_role = ("{%- if message['role'] not in " + repr(list(ROLES)) + " -%}"
                "{{ raise_exception('unknown role ' + message['role'] + ': roles are system, user, assistant') }}"
                "{%- endif -%}")
    if tok.chat_format["name"] == "chitchat":
        start, sep = tok.chat_format["start"], tok.chat_format["sep"]
        return ("{{- " + repr(start) + " -}}"
                "{%- for message in messages -%}" + bad_role +
                "{%- if message['role'] == 'system' -%}"
                "{{ raise_exception('this chat format ([CLS] u1 [SEP] a1 [SEP] ...) has no system turn') }}"
                "{%- endif -%}"
                "{{- message['content'] + " + repr(sep) + " -}}"
                "{%- endfor -%}")
    return ("{%- for message in messages -%}" + bad_role +
            "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
            "{%- endfor -%}"
            "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}")
