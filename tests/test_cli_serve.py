"""`owngpt serve`: its options reach the server, keys come from the flag, a file and the environment, and mistakes
are one line (the server itself is replaced by a stub here; the live server is tested in test_serve_*.py)."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")

import owngpt.serve.app as serve_app  # noqa: E402
from owngpt.cli import main  # noqa: E402
from serve_fixtures import char_tokenizer, tiny_gpt  # noqa: E402
from test_serve_models import save_run  # noqa: E402


@pytest.fixture
def started(monkeypatch):
    calls = []
    monkeypatch.setattr(serve_app, "serve", lambda models, cfg, content_filter=None: calls.append((models, cfg,
                                                                                                   content_filter)))
    return calls


def run(args, capsys) -> tuple[int, str]:
    try:
        main(args)
        code = 0
    except SystemExit as e:
        code = e.code or 0
    return code, capsys.readouterr().err


def test_options_reach_the_server(tmp_path, started, capsys, monkeypatch):
    tok = char_tokenizer()
    run_dir = save_run(tmp_path / "mine", tok, tiny_gpt(tok))
    keys = tmp_path / "keys.txt"
    keys.write_text("# clients\nfile-key-12345\n\n", encoding="utf-8")
    monkeypatch.setenv("OWNGPT_API_KEY", "env-key-12345")
    code, err = run(["serve", str(run_dir), "--port", "8123", "--api-key", "flag-key-12345", "--api-key-file",
                     str(keys), "--max-batch", "4", "--moderation", "default", "--device", "cpu"], capsys)
    assert code == 0, err
    (models, cfg, content_filter), = started
    assert list(models) == ["mine"] and cfg.port == 8123 and cfg.host == "127.0.0.1" and cfg.max_batch == 4
    assert cfg.api_keys == ["flag-key-12345", "file-key-12345", "env-key-12345"]
    assert content_filter is not None and content_filter.source == "default"
    assert "http://localhost:8123/" in err and "API key required" in err and "warning" not in err


def test_listening_beyond_this_machine_without_a_key_warns(tmp_path, started, capsys, monkeypatch):
    monkeypatch.delenv("OWNGPT_API_KEY", raising=False)
    tok = char_tokenizer()
    run_dir = save_run(tmp_path / "mine", tok, tiny_gpt(tok))
    code, err = run(["serve", str(run_dir), "--host", "0.0.0.0", "--device", "cpu"], capsys)
    assert code == 0 and "warning: listening on 0.0.0.0 without an API key" in err


@pytest.mark.parametrize("extra,message", [
    (["--api-key", "short"], "at least 8 characters"),
    (["--port", "70000"], "--port must be"),
    (["--moderation", "nope.yaml"], "moderation list nope.yaml does not exist"),
])
def test_mistakes_are_one_line(tmp_path, started, capsys, extra, message):
    tok = char_tokenizer()
    run_dir = save_run(tmp_path / "mine", tok, tiny_gpt(tok))
    code, err = run(["serve", str(run_dir), "--device", "cpu", *extra], capsys)
    assert code == 1 and message in err and "Traceback" not in err and not started


def test_a_missing_checkpoint_is_one_line(tmp_path, started, capsys):
    code, err = run(["serve", str(tmp_path / "nope")], capsys)
    assert code == 1 and "does not exist" in err and "Traceback" not in err
    empty = tmp_path / "keys"
    empty.write_text("\n# none\n", encoding="utf-8")
    code, err = run(["serve", str(tmp_path / "nope"), "--api-key-file", str(empty)], capsys)
    assert code == 1 and "holds no key" in err
