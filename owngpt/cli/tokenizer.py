"""`owngpt tokenizer train|encode|info`: train a tokenizer on your text, look at how it splits text, inspect one."""

from __future__ import annotations

from typing import TYPE_CHECKING, List

import typer

from owngpt.cli import app

if TYPE_CHECKING:
    from owngpt.tokenizer import Tokenizer

tokenizer_app = typer.Typer(help="Train, inspect and try tokenizers (byte-level BPE or character-level).",
                            no_args_is_help=True)
app.add_typer(tokenizer_app, name="tokenizer")


@tokenizer_app.command(help="Train a tokenizer on SOURCES (a folder written by `owngpt prepare`, or files, folders, "
                       "globs, chitchat:FILE, builtin:NAME) and save it to --out.")
def train(
    sources: List[str] = typer.Argument(..., help="A prepared data folder (its train split is used), or raw sources."),
    out: str = typer.Option(..., "--out", help="Folder to write tokenizer.json and tokenizer_meta.json into."),
    vocab_size: int = typer.Option(4096, "--vocab-size", help="BPE: ids in all, specials and the 256 bytes included."),
    kind: str = typer.Option("bpe", "--kind", help="bpe (byte-level BPE) or char (one id per character, byte fallback)."),
    min_frequency: int = typer.Option(0, "--min-frequency", help="BPE: merge only pairs seen this often (0 = 2); "
                                      "char: give an id only to characters seen this often (0 = 1)."),
) -> None:
    from owngpt.data.clean import CleanConfig, Cleaner
    from owngpt.data.corpus import corpus_texts, is_prepared
    from owngpt.data.raw import cleaning_summary, describe
    from owngpt.data.report import Report, skip_lines
    from owngpt.errors import OwnGPTError
    from owngpt.io import output_dir
    from owngpt.tokenizer import train_bpe, train_char

    if kind not in ("bpe", "char"):
        raise OwnGPTError(f"--kind must be bpe or char, not {kind!r}")
    output_dir(out, create=False)  # a file there is a one-line error before training
    # raw sources are cleaned and scrubbed as prepare does (owngpt/data/raw.py), and what was skipped is reported
    report = Report(Cleaner(CleanConfig()))
    texts = corpus_texts(list(sources), report=report, exclude=[out])
    if kind == "bpe":
        tok = train_bpe(texts, vocab_size, min_frequency=min_frequency or 2)
    else:
        tok = train_char(texts, min_frequency=min_frequency or 1)
    tok.save(out)
    if not (len(sources) == 1 and is_prepared(sources[0])):
        typer.echo(describe(cleaning_summary(report.cleaner)))
        for line in skip_lines(report.as_dict()["skips"]):
            typer.echo(line)
    print_info(tok, out)


@tokenizer_app.command(help="Encode TEXT with a tokenizer and show each token's id and text.")
def encode(
    tokenizer: str = typer.Argument(..., help="Tokenizer folder or its tokenizer.json."),
    text: str = typer.Argument(..., help="Text to encode (as plain text: special token names are not special)."),
) -> None:
    from owngpt.tokenizer import Tokenizer

    tok = Tokenizer.load(tokenizer)
    ids = tok.encode(text)
    typer.echo(f"{len(ids)} tokens for {len(text)} characters ({len(text) / max(len(ids), 1):.2f} chars/token)")
    typer.echo(f"ids: {ids}")
    typer.echo("pieces: " + " ".join(show_piece(tok.token_bytes(i)) for i in ids))


def show_piece(data: bytes) -> str:
    """A token's bytes as a quoted Python-style literal: text as repr() shows it ('\\n', a real backslash '\\\\'),
    each byte that is not part of a whole UTF-8 character escaped once, as '\\xe4'."""
    out = []
    for ch in data.decode("utf-8", errors="surrogateescape"):
        if 0xDC80 <= ord(ch) <= 0xDCFF:  # a lone byte, carried by surrogateescape
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        else:
            out.append("\\'" if ch == "'" else repr(ch)[1:-1])
    return "'" + "".join(out) + "'"


@tokenizer_app.command(help="Show a tokenizer's kind, vocabulary size, special ids, hash and training report.")
def info(tokenizer: str = typer.Argument(..., help="Tokenizer folder or its tokenizer.json.")) -> None:
    from owngpt.tokenizer import Tokenizer

    print_info(Tokenizer.load(tokenizer), tokenizer)


def print_info(tok: Tokenizer, where: str) -> None:
    """The tokenizer's kind, size, special ids, hash and training report, as `tokenizer info` prints them."""
    t = tok.info
    typer.echo(f"tokenizer {where}: {tok.kind}, vocab size {tok.vocab_size}, hash {tok.hash[:16]}")
    typer.echo("special ids: " + ", ".join(f"{n}={i}" for n, i in tok.special_ids.items()))
    if "seconds" in t:
        typer.echo(f"trained on {t.get('texts', 0):,} texts, {t.get('chars', 0):,} characters in {t['seconds']:.2f} s")
    for lang, r in (t.get("chars_per_token") or {}).items():
        name = {"zh": "Chinese", "en": "English"}.get(lang, lang)
        typer.echo(f"  {name:8s} {r['chars_per_token']:.3f} chars/token ({r['chars']:,} chars, {r['tokens']:,} tokens)")
