"""`owngpt evaluate`: held-out assistant perplexity, distinct-n of sampled replies, persona name recall."""

from __future__ import annotations

import json
from typing import List, Optional

import typer

from owngpt.cli import app, options


@app.command(help="Evaluate a chat model on held-out conversations (assistant-token perplexity, distinct-1/2, "
             "and with --persona the share of 'what is your name?' answers that contain the persona's name).")
def evaluate(
    checkpoint: str = typer.Argument(..., help="Run folder (its best checkpoint) or checkpoint folder."),
    data: List[str] = typer.Option(..., "--data", help="Prepared folder (its SPLIT conversations) or dialogue source; repeatable."),
    split: str = typer.Option("test", "--split", help="Split of prepared folders to evaluate on."),
    adapter: Optional[str] = options.adapter(),
    persona: Optional[str] = typer.Option(None, "--persona", help="Persona file: also measure name recall (50 questions)."),
    lang: str = typer.Option("en", "--lang", help="Language of the name questions: en or zh."),
    samples: int = typer.Option(100, "--samples", help="Replies to sample for distinct-n."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed."),
    out: Optional[str] = typer.Option(None, "--out", help="Write the results as JSON to this file."),
    device: str = options.device(),
    dtype: str = options.dtype("float32", " Default float32 here, so figures compare across machines."),
    style: bool = typer.Option(False, "--style", help="Does it sound like the data? Style of replies sampled at "
                               "held-out points against the real replies there (length, emoji, punctuation, "
                               "distinct-n, character 3-grams), with --base beside it."),
    base: Optional[str] = typer.Option(None, "--base", help="With --style: another model (e.g. the pretrained base) "
                                       "sampled and scored the same way, for comparison."),
    me: List[str] = options.me(),
) -> None:
    from owngpt.chat.reply import load_reply_model
    from owngpt.evaluate.chat_eval import ChatEvalConfig, evaluate_chat, held_out_conversations, persona_recall

    chat_model = load_reply_model(checkpoint, adapter=adapter, device=device, dtype=dtype)
    model, tok = chat_model.model, chat_model.tokenizer
    conversations = held_out_conversations(options.owned(list(data), me), split)
    cfg = ChatEvalConfig(samples=samples, seed=seed)
    # replies get the system prompt the checkpoint was fine-tuned with, as in `owngpt chat`
    result = evaluate_chat(model, tok, conversations, cfg, system=chat_model.system)
    typer.echo(f"{result['conversations']} conversations, {result['assistant_tokens']:,} assistant tokens: "
               f"perplexity {result['perplexity']:.2f} (loss {result['loss']:.4f})")
    typer.echo(f"{result['replies']} sampled replies: distinct-1 {result['distinct_1']:.3f}, distinct-2 {result['distinct_2']:.3f}")
    if persona:
        from owngpt.persona import load_persona, system_prompt

        p = load_persona(persona)
        result["persona"] = persona_recall(model, tok, p, lang, system=system_prompt(p, lang), cfg=cfg)
        typer.echo(f"name recall: {result['persona']['recall']:.0%} of {result['persona']['questions']} answers contain {p.name!r}")
    if style:
        from owngpt.cli.reports import print_style
        from owngpt.evaluate.style import evaluate_style, style_config

        models = {"model": chat_model}
        if base:
            models["base"] = load_reply_model(base, device=device, system=chat_model.system or "", dtype=dtype)
        result["style"] = evaluate_style(models, conversations, style_config(samples, seed))
        print_style(result["style"])
    if out:
        from owngpt.io import atomic_write_text

        atomic_write_text(out, json.dumps(result, indent=2, ensure_ascii=False))
