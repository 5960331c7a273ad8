"""`owngpt compare`: the report of several runs — scores of the one evaluation, plots, settings, overfitting, samples."""

from __future__ import annotations

import json

from test_evaluate_suite import prepared  # noqa: F401 - a fixture


def _run_with_curve(tmp_path, tok, name, seed, val):
    """A saved tiny GPT whose metrics.jsonl holds a training history (val losses `val`, train loss always falling)."""
    from gen_fixtures import random_gpt, save_run

    run = save_run(tmp_path, tok, random_gpt(tok.vocab_size, block=512, seed=seed), name)
    records = []
    for i in range(1, 10 * len(val) + 1):
        records.append({"step": i, "kind": "train", "loss": 3.0 - 0.01 * i, "tokens": 100 * i, "elapsed": 0.5 * i})
        if i % 10 == 0:
            records.append({"step": i, "kind": "val", "loss": val[i // 10 - 1], "tokens": 100 * i, "elapsed": 0.5 * i})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return run


def test_compare_writes_report_plots_and_flags_overfitting(prepared, tmp_path):  # noqa: F811
    from test_pipeline import ok
    from owngpt.tokenizer import Tokenizer

    tok = Tokenizer.load(prepared / "tokenizer")
    good = _run_with_curve(tmp_path, tok, "good", 0, [2.9, 2.8, 2.7, 2.6])
    overfit = _run_with_curve(tmp_path, tok, "overfit", 1, [2.9, 2.7, 2.8, 2.9])
    out = tmp_path / "report"
    ok(["compare", str(good), str(overfit), "--data", str(prepared), "--out", str(out), "--samples", "3",
        "--prompt", "what is up?", "--title", "Tiny"])
    report = (out / "report.md").read_text()
    result = json.loads((out / "results.json").read_text())
    assert report.startswith("# Tiny") and "| documents: bits/byte |" in report and "| replies: BLEU |" in report
    assert (out / "scores.png").stat().st_size > 1000 and (out / "curves.png").stat().st_size > 1000
    assert "**overfit** (pretrain): val loss rose from 2.7000 (step 20)" in report
    assert "**good**" not in report.split("## Overfitting")[1].split("##")[0]
    # the same prompts for every model, held-out ones with the real reply beside them
    assert result["samples"][-1]["prompt"] == "what is up?" and set(result["samples"][0]["replies"]) == {"good", "overfit"}
    assert result["samples"][0]["reference"] is not None
    # the scores are those of `owngpt eval` on the same data
    alone = json.loads(ok(["eval", str(good), "--data", str(prepared), "--samples", "3", "--json"]))
    assert result["scores"]["good"]["documents"] == alone["models"][str(good)]["documents"]
    assert result["scores"]["good"]["chat"]["bleu"] == alone["models"][str(good)]["chat"]["bleu"]
