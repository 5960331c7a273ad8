"""`owngpt import-hf`: start from a pretrained GPT-2 (GPT-2, DialoGPT, a GPT2-chitchat Chinese model) instead of
pretraining one."""

from __future__ import annotations

from typing import Optional

import typer

from owngpt.cli import app


@app.command("import-hf", help="Make an owngpt run folder from a GPT-2-family model saved by transformers "
             "(config.json + model.safetensors, or pytorch_model.bin read with weights_only=True) and its tokenizer "
             "(tokenizer.json, vocab.json + merges.txt, or a BERT-style vocab.txt as GPT2-chitchat uses). The run "
             "keeps the model's chat format (GPT2-chitchat's [CLS] u1 [SEP] a1 [SEP] for a vocab.txt, else ChatML) "
             "and works with sft, chat, generate, eval and serve.")
def import_hf(
    folder: str = typer.Argument(..., help="The Hugging Face model folder (local; nothing is downloaded)."),
    out: str = typer.Option(..., "--out", help="The owngpt run folder to write."),
    tokenizer: Optional[str] = typer.Option(None, "--tokenizer", help="Tokenizer folder or file (tokenizer.json, "
                                            "vocab.json, vocab.txt) when it is not in FOLDER."),
    chat_format: str = typer.Option("auto", "--chat-format", help="auto: chitchat for a vocab.txt with [CLS]/[SEP], "
                                    "else chatml; or force chatml / chitchat."),
    backward: Optional[str] = typer.Option(None, "--backward", help="A GPT2-chitchat MMI (backward) model folder with "
                                           "the same vocabulary: imported into OUT/backward for `chat --mmi`."),
    lowercase: Optional[bool] = typer.Option(None, "--lowercase/--keep-case", help="vocab.txt only: lower-case text "
                                             "first (default: tokenizer_config.json's do_lower_case, else yes)."),
) -> None:
    from owngpt.export.hf import import_hf as run_import

    record = run_import(folder, out, tokenizer=tokenizer, chat_format=chat_format, backward=backward,
                        lowercase=lowercase)
    typer.echo(f"imported {folder}: {record['parameters']:,} parameters, vocabulary {record['vocab_size']} "
               f"({record['tokenizer_files']}), chat format {record['chat_format']}"
               + (f", {len(record['new_token_ids'])} new special tokens" if record["new_token_ids"] else "")
               + f" → {out}")
    if backward is not None:
        typer.echo(f"backward model → {out}/backward  (use: owngpt chat {out} --mmi 5)")
    typer.echo(f"next: owngpt chat {out}   or fine-tune it: owngpt sft --base {out} --out RUN")
