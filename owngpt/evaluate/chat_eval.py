"""Evaluate a chat model: held-out assistant perplexity, diversity of sampled replies, persona name recall.

Replies are sampled by the functions `owngpt chat` uses for one reply (`owngpt.chat.reply_config`,
`reply_prompt`, `generate_replies`): the same history fitting (the system prompt kept, the oldest turns dropped
first), the same reply budget (at most half the context) and the same stop ids, so what is measured here is what
`owngpt chat` would produce with these sampling settings.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

from owngpt.errors import OwnGPTError
from owngpt.evaluate.metrics import chat_perplexity, distinct_n, name_recall
from owngpt.tokenizer import Tokenizer

Messages = list[dict[str, str]]


@dataclass
class ChatEvalConfig:
    samples: int = 100  # replies sampled for distinct-n
    max_new_tokens: int = 48
    temperature: float = 0.8
    top_k: int = 50
    top_p: float = 0.95
    repetition_penalty: float = 1.1
    batch_size: int = 16
    seed: int = 0


def reply_prompts(conversations: Sequence[Messages], n: int, system: str | None = None) -> list[Messages]:
    """Up to n prompts: each conversation cut just before its first assistant reply that follows a user turn."""
    prompts: list[Messages] = []
    for messages in conversations:
        for i, m in enumerate(messages):
            if m["role"] == "assistant" and i > 0 and messages[i - 1]["role"] == "user":
                prefix = list(messages[:i])
                if system and prefix[0]["role"] != "system":
                    prefix.insert(0, {"role": "system", "content": system})
                prompts.append(prefix)
                break
        if len(prompts) >= n:
            break
    return prompts


def held_out_conversations(specs: Sequence[str], split: str = "test") -> list[Messages]:
    """The `split` conversations of prepared folders (raw dialogue sources whole); an error if there are none."""
    from owngpt.data.conversations import load_conversations

    conversations = load_conversations(specs, split=split).conversations
    if not conversations:
        raise OwnGPTError(f"no {split} conversations in {', '.join(specs)}")
    return conversations


def sample_replies(model, tok: Tokenizer, prompts: Sequence[Messages], cfg: ChatEvalConfig) -> list[str]:
    """One sampled assistant reply per prompt (a leading system message is its system prompt), in batches,
    each prompt fitted to the context as `owngpt chat` fits its history."""
    from owngpt.chat import generate_replies, reply_config, reply_prompt
    from owngpt.generate import SEEDS, GenerationConfig

    block = model.cfg.block_size
    gen = reply_config(GenerationConfig(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                                        top_k=cfg.top_k, top_p=cfg.top_p, repetition_penalty=cfg.repetition_penalty,
                                        seed=cfg.seed), block)
    replies: list[str] = []
    for start in range(0, len(prompts), cfg.batch_size):
        batch = [reply_prompt(tok, _system_of(p), p, block, gen.max_new_tokens)[1]
                 for p in prompts[start : start + cfg.batch_size]]
        # A seed per batch: repeated prompts in another batch must not replay the same random draws.
        replies += generate_replies(model, tok, batch, replace(gen, seed=(cfg.seed + start) % SEEDS))
    return replies


def _system_of(messages: Messages) -> str | None:
    """The content of a leading system message (fit_history keeps it as the system prompt), else None."""
    return messages[0]["content"] if messages and messages[0]["role"] == "system" else None


def evaluate_chat(model, tok: Tokenizer, conversations: Sequence[Messages], cfg: ChatEvalConfig | None = None,
                  *, system: str | None = None) -> dict:
    """Perplexity on the assistant tokens of held-out conversations, and distinct-1/2 of sampled replies."""
    cfg = cfg or ChatEvalConfig()
    device = next(model.parameters()).device
    ppl = chat_perplexity(model, tok, conversations, device=device)
    prompts = reply_prompts(conversations, cfg.samples, system)
    if prompts and len(prompts) < cfg.samples:  # few held-out conversations: several sampled replies to each
        prompts = (prompts * -(-cfg.samples // len(prompts)))[: cfg.samples]
    replies = sample_replies(model, tok, prompts, cfg)
    return {
        "conversations": len(conversations),
        "assistant_tokens": ppl["tokens"],
        "loss": ppl["loss"],
        "perplexity": ppl["perplexity"],
        "replies": len(replies),
        "distinct_1": distinct_n(replies, 1),
        "distinct_2": distinct_n(replies, 2),
        "examples": replies[:5],
    }


def persona_recall(model, tok: Tokenizer, persona, lang: str, *, n: int = 50, system: str | None = None,
                   cfg: ChatEvalConfig | None = None) -> dict:
    """Ask n varied "what is your name?" questions; the fraction of answers that contain the persona's name."""
    from owngpt.persona import name_questions

    cfg = cfg or ChatEvalConfig(temperature=0.7)
    questions = name_questions(lang, n, seed=cfg.seed)
    prompts: list[Messages] = [
        ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": q}]
        for q in questions
    ]
    answers = sample_replies(model, tok, prompts, cfg)
    return {"name": persona.name, "questions": len(questions), "recall": name_recall(answers, persona.name),
            "examples": list(zip(questions[:5], answers[:5]))}
