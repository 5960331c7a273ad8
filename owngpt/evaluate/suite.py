"""`owngpt eval`: how good is a model on held-out data, in measures that compare across models and tokenizers.

For each model, on one split of a prepared folder (or raw dialogue sources, which have conversations only):
  documents      loss and perplexity per token, and bits-per-byte, of the split's documents (owngpt/evaluate/metrics.py:
                 document_scores)
  conversations  the assistant tokens' perplexity and bits-per-byte, corpus BLEU (sacrebleu) and distinct-1/2 of
                 replies sampled as `owngpt chat` replies (owngpt/evaluate/chat_eval.py: evaluate_chat)
  persona        with a persona file: the share of 50 "what is your name?" answers that contain its name

Bits-per-byte is the figure to compare models with different tokenizers by: per-token perplexity depends on what a
token is, so where a model's tokenizer is not the one the data was prepared with, its per-token perplexities are
left out (None, with the reason in `notes`). Every model reads the split's raw text through its own tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Sequence

from owngpt.errors import OwnGPTError


# (row title, section, key, format): the rows of `owngpt eval` and of the compare report's table
EVAL_ROWS = (
    ("documents: tokens", "documents", "tokens", "{:,}"),
    ("documents: perplexity", "documents", "perplexity", "{:.2f}"),
    ("documents: bits/byte", "documents", "bits_per_byte", "{:.4f}"),
    ("assistant: tokens", "chat", "assistant_tokens", "{:,}"),
    ("assistant: perplexity", "chat", "perplexity", "{:.2f}"),
    ("assistant: bits/byte", "chat", "bits_per_byte", "{:.4f}"),
    ("replies: BLEU", "chat", "bleu", "{:.2f}"),
    ("replies: distinct-1", "chat", "distinct_1", "{:.3f}"),
    ("replies: distinct-2", "chat", "distinct_2", "{:.3f}"),
    ("persona: name recall", "persona", "recall", "{:.0%}"),
)


def eval_cell(result: dict, section: str, key: str, fmt: str) -> str:
    value = result.get(section, {}).get(key)
    return "-" if value is None else fmt.format(value)


@dataclass
class EvalConfig:
    split: str = "test"
    samples: int = 100  # replies sampled for BLEU and distinct-n
    seed: int = 0
    batch_size: int = 16
    max_documents: int = 0  # 0 = every document of the split
    persona: str = ""  # a persona file (or example-en / example-zh): also measure name recall
    lang: str = "en"  # language of the name questions

    def __post_init__(self) -> None:
        if self.samples < 0 or self.max_documents < 0 or self.batch_size < 1:
            raise OwnGPTError("eval: --samples and --max-documents must be >= 0, the batch size >= 1")


@dataclass
class HeldOut:
    """What a split holds, read once for every model."""

    documents: list[str]
    conversations: list[list[dict[str, str]]]
    tokenizer_hashes: set[str]  # of the prepared folders' tokenizers (none for raw sources)
    where: str


def held_out(specs: Sequence[str], split: str = "test", *, max_documents: int = 0) -> HeldOut:
    """The `split` documents (prepared folders only) and conversations of `specs`; an OwnGPTError when there are
    neither, or when a prepared folder's split file has a broken line (file:line)."""
    from owngpt.data.conversations import load_conversations
    from owngpt.data.corpus import read_split
    from owngpt.data.prepared import is_prepared
    from owngpt.data.shards import read_manifest

    documents: list[str] = []
    hashes = set()
    for spec in specs:
        if not is_prepared(spec):
            continue
        for line in read_split(spec, "docs", split):
            if line.record is None or not isinstance(line.record.get("text"), str):
                raise OwnGPTError(f"{line.loc}: {line.problem or 'text must be a string'}")
            documents.append(line.record["text"])
        hashes.add(read_manifest(spec).get("tokenizer_hash"))
    if max_documents:
        documents = documents[:max_documents]
    loaded = load_conversations(specs, split=split)
    if loaded.problems:
        loc, problem = loaded.problems[0]
        raise OwnGPTError(f"{loc}: {problem} ({len(loaded.problems)} unusable conversation line(s) in the {split} split)")
    where = ", ".join(specs)
    if not documents and not loaded.conversations:
        raise OwnGPTError(f"no {split} documents or conversations in {where}: the split is empty (prepare with a "
                          f"{split} share, or choose another --split)")
    return HeldOut(documents, loaded.conversations, {h for h in hashes if h}, where)


def evaluate_model(chat_model, data: HeldOut, cfg: EvalConfig) -> dict[str, Any]:
    """Every measure of one model (a ReplyModel of owngpt/chat/reply.py) on `data`."""
    from owngpt.evaluate.chat_eval import ChatEvalConfig, evaluate_chat
    from owngpt.evaluate.metrics import document_scores

    model, tok = chat_model.model, chat_model.tokenizer
    result: dict[str, Any] = {"arch": getattr(model, "arch", type(model).__name__),
                              "parameters": sum(p.numel() for p in model.parameters()), "notes": []}
    ngrams = sum(getattr(model.cfg, "sizes", None) or [])  # an n-gram model's size is its table, not parameters
    result["size"] = f"{ngrams / 1e6:.2f}M n-grams" if ngrams else f"{result['parameters'] / 1e6:.2f}M parameters"
    same_tokens = data.tokenizer_hashes <= {tok.hash}
    if not same_tokens:
        others = ", ".join(sorted(h[:12] for h in data.tokenizer_hashes))
        result["notes"].append(f"per-token perplexity left out: the model's tokenizer ({tok.hash[:12]}) is not the one "
                               f"{data.where} was prepared with ({others}), so its tokens are other units; compare "
                               "bits-per-byte")
    if data.documents:
        result["documents"] = document_scores(model, tok, data.documents, batch_size=cfg.batch_size)
    if data.conversations:
        ecfg = ChatEvalConfig(samples=cfg.samples, seed=cfg.seed, batch_size=cfg.batch_size)
        result["chat"] = evaluate_chat(model, tok, data.conversations, ecfg, system=chat_model.system)
    if not same_tokens:
        for section in ("documents", "chat"):
            if section in result:
                result[section].update(perplexity=None, loss=None)
    if cfg.persona:
        from owngpt.evaluate.chat_eval import persona_recall
        from owngpt.persona import load_persona, system_prompt

        persona = load_persona(cfg.persona)
        lang = cfg.lang if cfg.lang in persona.languages else persona.languages[0]
        if lang != cfg.lang:
            result["notes"].append(f"name questions asked in {lang}: the persona {persona.name!r} speaks "
                                   f"{', '.join(persona.languages)}, not {cfg.lang}")
        pcfg = ChatEvalConfig(samples=cfg.samples, seed=cfg.seed, batch_size=cfg.batch_size)
        result["persona"] = persona_recall(model, tok, persona, lang, system=system_prompt(persona, lang), cfg=pcfg)
    return result


def evaluate_runs(models: dict[str, Any], specs: Sequence[str], cfg: EvalConfig | None = None) -> dict[str, Any]:
    """{"split", "data", "models": {name: evaluate_model(...)}} for several loaded ReplyModels on the same data."""
    cfg = cfg or EvalConfig()
    data = held_out(specs, cfg.split, max_documents=cfg.max_documents)
    return {"split": cfg.split, "data": data.where,
            "models": {name: evaluate_model(m, data, replace(cfg)) for name, m in models.items()}}


def with_ensemble_members(checkpoint: str, ensemble: Sequence[str]) -> list[tuple[str, str, tuple[str, ...]]]:
    """(name, checkpoint, ensemble) of each model `owngpt eval CHECKPOINT --ensemble ...` measures: every member
    alone, then the ensemble, so the table shows whether averaging helps."""
    if not ensemble:
        return [(checkpoint, checkpoint, ())]
    members = [(path, path, ()) for path in (checkpoint, *ensemble)]
    return [*members, (f"ensemble of {1 + len(ensemble)}", checkpoint, tuple(ensemble))]
