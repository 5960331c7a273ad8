"""`owngpt rate`: the set-up makes the database and its replies once, serves on 127.0.0.1 by default, refuses a
database made for other prompts or runs in one line, and `--results` prints the tables (the page is replaced by a
stub here; it is tested live in test_serve_rate_page.py)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi")

import owngpt.serve.rating as serve_rating  # noqa: E402
from owngpt.cli import main  # noqa: E402
from owngpt.evaluate.rating import RatingDB  # noqa: E402
from serve_fixtures import SYSTEM, char_tokenizer, tiny_gpt  # noqa: E402
from test_serve_models import save_run  # noqa: E402


@pytest.fixture
def served(monkeypatch):
    calls = []

    def fake(db, host, port):
        calls.append((host, port, db.path, db.missing_replies(), db.item_count()))

    monkeypatch.setattr(serve_rating, "serve_rating", fake)
    return calls


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    tok = char_tokenizer()
    return [str(save_run(root / name, tok, tiny_gpt(tok, seed=i), system=SYSTEM))
            for i, name in enumerate(["alpha", "beta", "other/alpha"])]


def run(args, capsys) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as e:
        code = e.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def test_a_session_is_made_once_and_served_on_loopback(tmp_path, runs, served, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("hello\n你好\nhow are you?\n", encoding="utf-8")
    db = tmp_path / "ratings.sqlite"
    args = ["rate", *runs, "--prompts", str(prompts), "--db", str(db), "--max-new-tokens", "8", "--device", "cpu"]
    code, _, err = run(args, capsys)
    assert code == 0, err
    assert "9 replies stored" in err and "9 items (3 prompts x 3 pairs of 3 models)" in err
    assert "http://localhost:8001/" in err and "note: listening" not in err
    assert served == [("127.0.0.1", 8001, db, {}, 9)]
    with RatingDB.open(db) as rating_db:
        names = [m.name for m in rating_db.models()]
        # two runs both called alpha: each named with its weights' hash
        assert names[1] == "beta" and names[0].startswith("alpha-") and names[2].startswith("alpha-")
        assert names[0] != names[2]
        assert rating_db.generation()["max_new_tokens"] == 8
        stored = rating_db.conn.execute("SELECT text FROM replies WHERE prompt_id = 2 AND model_id = 2").fetchone()[0]
    # the stored reply is the one `owngpt chat --seed 0` gives to that prompt
    code, out, _ = run(["chat", runs[1], "--seed", "0", "-m", "你好", "--max-new-tokens", "8", "--json", "--device",
                        "cpu"], capsys)
    assert code == 0 and json.loads(out)["reply"] == stored
    code, _, err = run(args + ["--port", "9009", "--host", "0.0.0.0"], capsys)  # a restart regenerates nothing
    assert code == 0 and "replies stored" not in err and "note: listening on 0.0.0.0" in err
    assert served[-1][:2] == ("0.0.0.0", 9009)
    prompts.write_text("hello\n你好\nhow old are you?\n", encoding="utf-8")
    code, _, err = run(args, capsys)
    assert code == 1 and err.count("\n") == 1 and "was made for other prompts" in err and "prompts.txt:3" in err
    prompts.write_text("hello\n你好\nhow are you?\n", encoding="utf-8")
    code, _, err = run(args[:1] + runs[:2] + args[4:], capsys)
    assert code == 1 and "was made for other models: not given: alpha-" in err
    code, _, err = run(args[:2] + ["--results", str(db)], capsys)
    assert code == 1 and "give it alone" in err


@pytest.mark.parametrize("extra,message", [
    ([], "give two or more runs and a prompts file"),
    (["RUN0", "--prompts", "PROMPTS"], "give two or more runs"),
    (["RUN0", "RUN0", "--prompts", "PROMPTS"], "are the same checkpoint"),
    (["RUN0", "nowhere", "--prompts", "PROMPTS"], "run nowhere does not exist"),
    (["RUN0", "RUN1", "--prompts", "PROMPTS", "--port", "70000"], "--port must be from 0 to 65535"),
    (["--results", "missing.sqlite"], "no rating database at missing.sqlite"),
])
def test_mistakes_are_one_line(tmp_path, runs, served, capsys, extra, message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "prompts.txt").write_text("hello\n", encoding="utf-8")
    args = [{"RUN0": runs[0], "RUN1": runs[1], "PROMPTS": "prompts.txt"}.get(a, a) for a in extra]
    code, _, err = run(["rate", *args], capsys)
    assert code == 1 and message in err and not served


def test_results_of_a_session_without_judgements_and_with_some(tmp_path, runs, served, capsys):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "hello"}\n{"prompt": "你好"}\n', encoding="utf-8")
    db = tmp_path / "r.sqlite"
    assert run(["rate", *runs[:2], "--prompts", str(prompts), "--db", str(db), "--max-new-tokens", "4",
                "--device", "cpu"], capsys)[0] == 0
    code, out, _ = run(["rate", "--results", str(db)], capsys)
    assert code == 0 and "0 judgements by 0 raters" in out and "no judgements yet" in out
    with RatingDB.open(db) as rating_db:
        for verdict in ("left", "tie"):
            rating_db.judge("ann", rating_db.next_item("ann").id, verdict)
    code, out, _ = run(["rate", "--results", str(db)], capsys)
    assert code == 0 and "2 judgements by 1 rater (ann)" in out and "Wilson" in out and "Bradley-Terry" not in out
    code, out, _ = run(["rate", "--results", str(db), "--json"], capsys)
    report = json.loads(out)
    (pair,) = report["pairs"]
    assert pair["judgements"] == 2 and pair["ties"] == 1 and pair["wins"] + pair["losses"] == 1
    assert report["ranking"] is None and [m["name"] for m in report["model_runs"]] == ["alpha", "beta"]
