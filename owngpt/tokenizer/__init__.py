"""Tokenizer stage: byte-level BPE / character tokenizers (bpe.py) and THE chat template (template.py)."""

from owngpt.lang import language
from owngpt.tokenizer.bpe import (
    ASSISTANT_STOP,
    BYTE_BASE,
    CHAT_FORMATS,
    EOT,
    IM_END,
    IM_START,
    KINDS,
    META_FORMAT,
    MIN_BPE_VOCAB,
    PAD,
    PRETOKENIZE_REGEX,
    SAMPLE_CHARS,
    SPECIAL_TOKENS,
    Tokenizer,
    byte_decoder,
    chars_per_token,
    content_hash,
    train_bpe,
    train_char,
)
from owngpt.tokenizer.template import (
    NO_SYSTEM_TURN,
    ROLES,
    Message,
    assistant_header,
    chat_template_jinja,
    check_messages,
    conversation_start,
    has_system_turn,
    messages_problem,
    render_conversation,
    render_message,
    render_prompt,
)

__all__ = [
    "ASSISTANT_STOP", "BYTE_BASE", "CHAT_FORMATS", "assistant_header", "chat_template_jinja", "conversation_start",
    "has_system_turn", "NO_SYSTEM_TURN", "render_message", "EOT", "IM_END", "IM_START", "KINDS", "META_FORMAT",
    "MIN_BPE_VOCAB", "Message",
    "PAD", "PRETOKENIZE_REGEX", "ROLES", "SAMPLE_CHARS", "SPECIAL_TOKENS", "Tokenizer", "byte_decoder",
    "chars_per_token", "check_messages", "content_hash", "language", "messages_problem", "render_conversation",
    "render_prompt", "train_bpe", "train_char",
]
