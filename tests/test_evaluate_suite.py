"""`owngpt eval`'s library: held-out splits read once, every measure per model, tokenizers that differ, ensembles."""

from __future__ import annotations

import json

import pytest

from owngpt.errors import OwnGPTError


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A tiny prepared folder (char tokenizer) with documents and conversations in every split."""
    from owngpt.data.prepare import PrepareConfig, prepare

    root = tmp_path_factory.mktemp("suite")
    notes = root / "notes"
    notes.mkdir()
    import random

    rng = random.Random(0)
    words = "fox dog cat bird river hill garden market window letter music summer winter quick lazy".split()
    for i in range(30):
        (notes / f"n{i}.txt").write_text(f"note {i}: " + " ".join(rng.choice(words) for _ in range(40)) + ".\n")
    with open(root / "chats.jsonl", "w", encoding="utf-8") as f:
        for i in range(40):
            topic = " ".join(rng.choice(words) for _ in range(5))
            f.write(json.dumps({"messages": [{"role": "user", "content": f"hi, what about the {topic}?"},
                                             {"role": "assistant", "content": f"the {topic} is {i}"}]}) + "\n")
    prepare([str(notes), str(root / "chats.jsonl")], root / "data", PrepareConfig(tokenizer_kind="char",
            split=(0.6, 0.2, 0.2)), progress=False)
    return root / "data"


def _reply_model(tok, seed=0):
    from gen_fixtures import random_gpt
    from owngpt.chat.reply import ReplyModel

    return ReplyModel(random_gpt(tok.vocab_size, block=512, seed=seed), tok, None, None)


def test_eval_reports_documents_chat_and_persona(prepared):
    from owngpt.evaluate.suite import EvalConfig, evaluate_runs
    from owngpt.tokenizer import Tokenizer

    tok = Tokenizer.load(prepared / "tokenizer")
    report = evaluate_runs({"m": _reply_model(tok)}, [str(prepared)], EvalConfig(samples=3, persona="example-en"))
    r = report["models"]["m"]
    assert r["documents"]["documents"] > 0 and r["documents"]["bits_per_byte"] > 0 and r["documents"]["perplexity"] > 1
    assert r["chat"]["replies"] == 3 and r["chat"]["bleu"] is not None and r["chat"]["bits_per_byte"] > 0
    assert r["persona"]["questions"] == 50 and r["notes"] == []


def test_other_tokenizer_keeps_bits_per_byte_and_refuses_per_token_perplexity(prepared):
    from owngpt.evaluate.suite import EvalConfig, evaluate_runs
    from owngpt.tokenizer import train_char

    other = train_char(["the fox and the dog walk by river number 0123456789:.,?hiwatbuongd"])
    r = evaluate_runs({"m": _reply_model(other)}, [str(prepared)], EvalConfig(samples=2))["models"]["m"]
    assert r["documents"]["perplexity"] is None and r["chat"]["perplexity"] is None
    assert r["documents"]["bits_per_byte"] > 0 and r["chat"]["bits_per_byte"] > 0
    assert "compare bits-per-byte" in r["notes"][0]


def test_empty_split_is_an_error(prepared):
    from owngpt.evaluate.suite import held_out

    with pytest.raises(OwnGPTError, match="no nosuch documents or conversations"):
        held_out([str(prepared)], "nosuch")


def test_ensemble_is_evaluated_beside_its_members():
    from owngpt.evaluate.suite import with_ensemble_members

    assert with_ensemble_members("a", []) == [("a", "a", ())]
    assert with_ensemble_members("a", ["b"]) == [("a", "a", ()), ("b", "b", ()), ("ensemble of 2", "a", ("b",))]


def test_cli_eval_with_an_ensemble_prints_members_and_the_ensemble(prepared, tmp_path):
    from gen_fixtures import random_gpt, save_run
    from test_pipeline import ok
    from owngpt.tokenizer import Tokenizer

    tok = Tokenizer.load(prepared / "tokenizer")
    a = save_run(tmp_path, tok, random_gpt(tok.vocab_size, seed=0), "a")
    b = save_run(tmp_path, tok, random_gpt(tok.vocab_size, seed=1), "b")
    out = ok(["eval", str(a), "--ensemble", str(b), "--data", str(prepared), "--samples", "2", "--json"])
    models = json.loads(out)["models"]
    assert list(models) == [str(a), str(b), "ensemble of 2"]
    assert models["ensemble of 2"]["arch"] == "ensemble"
    # averaging probabilities can only help the mean log-likelihood beyond the worse member (Jensen)
    worst = max(models[str(a)]["documents"]["loss"], models[str(b)]["documents"]["loss"])
    assert models["ensemble of 2"]["documents"]["loss"] <= worst + 1e-6
