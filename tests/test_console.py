"""Tests for owngpt/console.py and the verbs that print user and model text: brackets, markup and emoji codes in
text are shown as they are, never interpreted (a `[/]` in a document used to crash `prepare` with MarkupError)."""

from __future__ import annotations

from owngpt.cli import main
from owngpt.console import console, styled
from helpers import write

TRICKY = "tag [/] here [bold]not bold[/bold] :smile: [link=x]y[/link] in/gbk2.txt [gb18030]"


def test_console_prints_text_literally():
    c = console(record=True, width=200)
    c.print(TRICKY)
    c.print(styled(("you › ", "green"), TRICKY))
    assert c.export_text().splitlines() == [TRICKY, "you › " + TRICKY]


def test_prepare_with_brackets_in_text_and_names_prints_them(tmp_path, capsys, monkeypatch):
    """The issue's repro: `printf 'tag [/] here   \\n\\n\\n' > m/a.txt; owngpt prepare m --out d --quiet`."""
    monkeypatch.setenv("COLUMNS", "250")  # one table row per line
    write(tmp_path / "m" / "a.txt", "tag [/] here   \n\n\n")
    write(tmp_path / "m" / "[x] notes.txt", "another [bold] note with brackets [/] :smile:  \n")
    main(["prepare", str(tmp_path / "m"), "--out", str(tmp_path / "d"), "--quiet", "--vocab-size", "300"])
    out = capsys.readouterr().out
    assert "[x] notes.txt: 'another [bold] note with brackets [/] :smile:" in out
    main(["prepare", str(tmp_path / "m"), "--out", str(tmp_path / "d"), "--quiet", "--vocab-size", "300"])  # rerun
    assert "is up to date" in capsys.readouterr().out


def test_quickstart_sample_conversation_prints_replies_literally(capsys):
    from owngpt.cli.quickstart import print_report

    report = {"pretrain": {"steps": 1, "tokens": 2, "best_val_loss": 3.0}, "sft": {"steps": 1, "best_val_loss": 2.0},
              "eval": {"conversations": 1, "perplexity": 9.0, "replies": 1, "distinct_1": 0.5, "distinct_2": 0.5,
                       "persona": {"name": "N[/]", "questions": 1, "recall": 1.0, "recall_before": 0.0}},
              "seconds": {}, "sample": [("hi [/] :smile:", "[bold]yes[/] :smile:")]}
    print_report(report)
    out = capsys.readouterr().out
    assert "hi [/] :smile:" in out and "[bold]yes[/] :smile:" in out
