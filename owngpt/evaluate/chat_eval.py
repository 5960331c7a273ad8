"""Evaluate a chat model: held-out assistant perplexity and bits-per-byte, BLEU and diversity of sampled replies,
persona name recall.

Replies are sampled by the one reply path (`owngpt.chat.reply.replies`): the same system prompt (a
conversation's own, else the one the checkpoint was fine-tuned with, when the caller passes it), history fitting,
reply budget, stop ids and stop strings as `owngpt chat`, so what is measured here is what `owngpt chat` would
produce with these sampling settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

from owngpt.chat.reply import replies
from owngpt.chat.settings import chat_generation_config
from owngpt.errors import OwnGPTError
from owngpt.evaluate.metrics import chat_items, chat_perplexity, corpus_bleu, distinct_n, name_recall, scored_bits
from owngpt.generate.settings import SEEDS, GenerationConfig
from owngpt.tokenizer import Tokenizer

Messages = list[dict[str, str]]


@dataclass
class ChatEvalConfig:
    samples: int = 100  # replies sampled for distinct-n
    # chat's sampling defaults, with shorter replies (enough for distinct-n and a name)
    generation: GenerationConfig = field(default_factory=lambda: chat_generation_config(max_new_tokens=48))
    batch_size: int = 16
    seed: int = 0  # batch k samples with seed + k * batch_size


def reply_pairs(conversations: Sequence[Messages], n: int, system: str | None = None) -> list[tuple[Messages, str]]:
    """Up to n (prompt, reference) pairs: each conversation cut just before its first assistant reply that follows a
    user turn (with `system` in front when it has no system message), and that reply."""
    pairs: list[tuple[Messages, str]] = []
    for messages in conversations:
        for i, m in enumerate(messages):
            if m["role"] == "assistant" and i > 0 and messages[i - 1]["role"] == "user":
                prefix = list(messages[:i])
                if system and prefix[0]["role"] != "system":
                    prefix.insert(0, {"role": "system", "content": system})
                pairs.append((prefix, m["content"]))
                break
        if len(pairs) >= n:
            break
    return pairs


def reply_prompts(conversations: Sequence[Messages], n: int, system: str | None = None) -> list[Messages]:
    """The prompts of `reply_pairs`."""
    return [prompt for prompt, _ in reply_pairs(conversations, n, system)]


def held_out_conversations(specs: Sequence[str], split: str = "test") -> list[Messages]:
    """The `split` conversations of prepared folders (raw dialogue sources whole); an error if there are none."""
    from owngpt.data.conversations import load_conversations

    conversations = load_conversations(specs, split=split).conversations
    if not conversations:
        raise OwnGPTError(f"no {split} conversations in {', '.join(specs)}")
    return conversations


def sample_replies(model, tok: Tokenizer, prompts: Sequence[Messages], cfg: ChatEvalConfig, *,
                   system: str | None = None) -> list[str]:
    """One sampled assistant reply per prompt (a leading system message is its system prompt, else `system`), in
    batches, through the one reply path."""
    out: list[str] = []
    for start in range(0, len(prompts), cfg.batch_size):
        # A seed per batch: repeated prompts in another batch must not replay the same random draws.
        gen = replace(cfg.generation, seed=(cfg.seed + start) % SEEDS)
        out += replies(model, tok, list(prompts[start : start + cfg.batch_size]), gen, system=system)
    return out


def evaluate_chat(model, tok: Tokenizer, conversations: Sequence[Messages], cfg: ChatEvalConfig | None = None,
                  *, system: str | None = None) -> dict:
    """On the assistant tokens of held-out conversations: perplexity (the <|im_end|> ending each reply included, as
    in training) and bits-per-byte (text tokens only); of replies sampled as `owngpt chat` would (with `system` as
    the system prompt of conversations that bring none) at the first reply of each conversation: corpus BLEU
    against the real reply there (sacrebleu) and distinct-1/2."""
    cfg = cfg or ChatEvalConfig()
    ppl = chat_perplexity(model, tok, conversations, batch_size=cfg.batch_size)
    bits = scored_bits(model, tok, chat_items(tok, conversations, model.cfg.block_size), batch_size=cfg.batch_size)
    pairs = reply_pairs(conversations, cfg.samples)
    if pairs and len(pairs) < cfg.samples:  # few held-out conversations: several sampled replies to each
        pairs = (pairs * -(-cfg.samples // len(pairs)))[: cfg.samples]
    sampled = sample_replies(model, tok, [prompt for prompt, _ in pairs], cfg, system=system)
    bleu = corpus_bleu(sampled, [ref for _, ref in pairs]) if sampled else {"bleu": None, "signature": None}
    return {
        "conversations": len(conversations),
        "assistant_tokens": ppl["tokens"],
        "loss": ppl["loss"],
        "perplexity": ppl["perplexity"],
        "assistant_bytes": bits["bytes"],
        "bits_per_byte": bits["bits_per_byte"],
        "replies": len(sampled),
        "bleu": bleu["bleu"],
        "bleu_signature": bleu["signature"],
        "distinct_1": distinct_n(sampled, 1),
        "distinct_2": distinct_n(sampled, 2),
        "examples": [{"prompt": prompt[-1]["content"], "reference": ref, "reply": reply}
                     for (prompt, ref), reply in zip(pairs[:5], sampled[:5])],
    }


def persona_recall(model, tok: Tokenizer, persona, lang: str, *, n: int = 50, system: str | None = None,
                   cfg: ChatEvalConfig | None = None) -> dict:
    """Ask n varied "what is your name?" questions; the fraction of answers that contain the persona's name."""
    from owngpt.persona import name_questions

    cfg = cfg or ChatEvalConfig(generation=chat_generation_config(max_new_tokens=48, temperature=0.7))
    questions = name_questions(lang, n, seed=cfg.seed)
    answers = sample_replies(model, tok, [[{"role": "user", "content": q}] for q in questions], cfg, system=system)
    return {"name": persona.name, "questions": len(questions), "recall": name_recall(answers, persona.name),
            "examples": list(zip(questions[:5], answers[:5]))}
