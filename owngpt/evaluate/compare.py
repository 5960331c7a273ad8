"""`owngpt compare`: several runs side by side in one Markdown report with plots.

For any set of runs (GPT vs encoder-decoder vs LSTM vs n-gram, sizes, full vs LoRA, with and without persona):
  curves.png    validation loss against training tokens and against wall time, pretraining and fine-tuning apart
                (a fine-tuned run's curve continues its base's; an n-gram has no curve: it is counted, not trained)
  scores.png    bars of bits-per-byte (documents, assistant tokens), assistant perplexity, BLEU, distinct-1/2
  report.md     the scores table (owngpt/evaluate/suite.py: the same measures as `owngpt eval`), the runs' settings,
                overfitting flags (owngpt/train/metrics.py), sample replies side by side for the same prompts
  results.json  everything above as data

Every model is measured by the same code on the same held-out split, replies sampled with the same seed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from owngpt.errors import OwnGPTError
from owngpt.evaluate.suite import EvalConfig


@dataclass
class CompareConfig:
    eval: EvalConfig = field(default_factory=EvalConfig)
    prompts: list[str] = field(default_factory=list)  # extra user turns every model answers in the report
    sample_prompts: int = 4  # held-out conversations whose first reply every model gives in the report
    title: str = "Comparison"


def run_names(runs: Sequence[str]) -> list[str]:
    """Short, unique names: each run folder's name, with its parent's where two share one."""
    names = [Path(r).name or str(r) for r in runs]
    return [f"{Path(r).parent.name}/{n}" if names.count(n) > 1 else n for r, n in zip(runs, names)]


def _base_of(run: Path, meta) -> Path | None:
    """The run a fine-tuned run started from (as its sft settings recorded it), if it can still be found."""
    base = meta.recorded("sft").get("base")
    if not base:
        return None
    for candidate in (Path(base), run.parent / Path(base).name):
        if (candidate / "metrics.jsonl").is_file():
            return candidate
    return None


def _curve(run: Path) -> list[dict]:
    from owngpt.train.metrics import read_metrics

    path = run / "metrics.jsonl"
    return read_metrics(path) if path.is_file() else []


def describe_run(run: str) -> dict[str, Any]:
    """Settings and training history of a run: arch, sizes, steps, tokens, seconds (its base's included), lr,
    LoRA, persona, and the metrics records of each stage."""
    from owngpt.checkpoint.format import best_or_latest, read_meta
    from owngpt.train.metrics import overfitting

    path = Path(run)
    meta = read_meta(best_or_latest(path))
    info: dict[str, Any] = {"arch": meta.arch, "model": {k: v for k, v in meta.model_config.items() if v is not None},
                            "stages": {}, "lora": bool(meta.recorded("sft").get("lora")),
                            "persona": Path(meta.recorded("sft").get("persona") or "").stem or None}
    if meta.recorded("ngram"):  # counted, not trained: no curve, the counting time from its report
        report_file = path / "ngram_report.json"
        report = json.loads(report_file.read_text(encoding="utf-8")) if report_file.is_file() else {}
        info["stages"]["count"] = {"run": str(path), "seconds": report.get("seconds", 0.0), "tokens": meta.tokens,
                                   "steps": 0, "val": [], "overfitting": None, "lr": None}
        return info
    stages = []
    base = _base_of(path, meta)
    if base is not None:
        stages.append(("pretrain", base))
    stages.append(("fine-tune" if meta.recorded("sft") else "pretrain", path))
    for stage, folder in stages:
        records = _curve(folder)
        train = [r for r in records if r.get("kind") == "train"]
        summary = {"run": str(folder), "steps": train[-1]["step"] if train else 0,
                   "tokens": train[-1].get("tokens", 0) if train else 0,
                   "seconds": train[-1].get("elapsed", 0.0) if train else 0.0,
                   "val": [(r["step"], r.get("tokens", 0), r.get("elapsed", 0.0), r["loss"])
                           for r in records if r.get("kind") == "val"],
                   "overfitting": overfitting(records)}
        cfg = read_meta(best_or_latest(folder)).recorded("train")
        summary.update(lr=cfg.get("lr"), optimizer=cfg.get("optimizer"), batch_size=cfg.get("batch_size"))
        info["stages"][stage] = summary
    return info


def _plot_curves(runs: dict[str, dict], out: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = [s for s in ("pretrain", "fine-tune") if any(s in r["stages"] and r["stages"][s]["val"] for r in runs.values())]
    if not stages:
        return None
    fig, axes = plt.subplots(len(stages), 2, figsize=(11, 3.6 * len(stages)), dpi=100, squeeze=False)
    for row, stage in enumerate(stages):
        for name, info in runs.items():
            points = info["stages"].get(stage, {}).get("val", [])
            if not points:
                continue
            start = 0.0
            if stage == "fine-tune" and "pretrain" in info["stages"]:  # wall time: the whole run, base included
                start = info["stages"]["pretrain"]["seconds"]
            axes[row][0].plot([p[1] / 1e6 for p in points], [p[3] for p in points], marker="o", markersize=2, label=name)
            axes[row][1].plot([(start + p[2]) / 60 for p in points], [p[3] for p in points], marker="o", markersize=2,
                              label=name)
        axes[row][0].set_xlabel(f"{stage}: training tokens (millions)")
        axes[row][1].set_xlabel("wall time (minutes, pretraining included)" if stage == "fine-tune"
                                else "pretraining wall time (minutes)")
        for ax in axes[row]:
            ax.set_ylabel(f"{stage} val loss (nats/token)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "curves.png"
    fig.savefig(path)
    plt.close(fig)
    return path


SCORE_BARS = (("documents", "bits_per_byte", "documents: bits/byte (lower is better)"),
              ("chat", "bits_per_byte", "assistant: bits/byte (lower is better)"),
              ("chat", "perplexity", "assistant: perplexity (lower is better)"),
              ("chat", "bleu", "replies: BLEU (higher is better)"),
              ("chat", "distinct_1", "replies: distinct-1"),
              ("chat", "distinct_2", "replies: distinct-2"))


def _plot_scores(scores: dict[str, dict], out: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = [b for b in SCORE_BARS if any(s.get(b[0], {}).get(b[1]) is not None for s in scores.values())]
    if not bars:
        return None
    cols = 3
    rows = -(-len(bars) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), dpi=100, squeeze=False)
    names = list(scores)
    for ax, (section, key, title) in zip(axes.flat, bars):
        values = [scores[n].get(section, {}).get(key) for n in names]
        ax.bar(range(len(names)), [v if v is not None else 0 for v in values],
               color=[f"C{i}" for i in range(len(names))])
        for i, v in enumerate(values):
            ax.text(i, v or 0, "-" if v is None else f"{v:.3g}", ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=8)
        ax.set_title(title, fontsize=9)
    for ax in list(axes.flat)[len(bars):]:
        ax.axis("off")
    fig.tight_layout()
    path = out / "scores.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def _sample_replies(models: dict[str, Any], prompts: list[list[dict[str, str]]], cfg: EvalConfig) -> list[list[str]]:
    """Each model's reply (through the one reply path, seeded) to each prompt: rows per prompt, columns per model."""
    from owngpt.evaluate.chat_eval import ChatEvalConfig, sample_replies

    ecfg = ChatEvalConfig(seed=cfg.seed, batch_size=cfg.batch_size)
    per_model = [sample_replies(m.model, m.tokenizer, prompts, ecfg, system=m.system) for m in models.values()]
    return [list(row) for row in zip(*per_model)]


def compare(runs: Sequence[str], data: Sequence[str], out_dir: str | Path, cfg: CompareConfig | None = None, *,
            device: str = "auto", dtype: str = "float32") -> dict[str, Any]:
    """Measure every run on `data`'s held-out split, write the report folder, return its content."""
    from owngpt.chat.reply import load_reply_model
    from owngpt.evaluate.chat_eval import reply_pairs
    from owngpt.evaluate.suite import evaluate_model, held_out
    from owngpt.io import atomic_write_text, output_dir

    cfg = cfg or CompareConfig()
    if not runs:
        raise OwnGPTError("compare needs at least one run")
    out = output_dir(out_dir)
    names = run_names(runs)
    held = held_out(data, cfg.eval.split, max_documents=cfg.eval.max_documents)
    infos = {name: describe_run(run) for name, run in zip(names, runs)}
    scores, models = {}, {}
    for name, run in zip(names, runs):
        models[name] = load_reply_model(run, device=device, dtype=dtype)
        scores[name] = evaluate_model(models[name], held, cfg.eval)
    prompts = [p for p, _ in reply_pairs(held.conversations, cfg.sample_prompts)]
    references = [r for _, r in reply_pairs(held.conversations, cfg.sample_prompts)]
    prompts += [[{"role": "user", "content": text}] for text in cfg.prompts]
    samples = _sample_replies(models, prompts, cfg.eval) if prompts else []
    result = {"title": cfg.title, "split": cfg.eval.split, "data": held.where, "runs": dict(zip(names, runs)),
              "settings": infos, "scores": scores, "config": asdict(cfg),
              "samples": [{"prompt": p[-1]["content"], "reference": references[i] if i < len(references) else None,
                           "replies": dict(zip(names, row))} for i, (p, row) in enumerate(zip(prompts, samples))]}
    curves, bars = _plot_curves(infos, out), _plot_scores(scores, out)
    atomic_write_text(out / "results.json", json.dumps(result, indent=2, ensure_ascii=False))
    atomic_write_text(out / "report.md", render_markdown(result, curves=curves is not None, bars=bars is not None))
    return result


def _md(text: Any) -> str:
    """A table cell: one line, pipes escaped."""
    return str(text).replace("|", "\\|").replace("\n", " / ")


def _minutes(info: dict) -> str:
    """e.g. "pretrain 5.0 min + fine-tune 3.0 min", "count 12 s"."""
    return " + ".join(f"{stage} {s['seconds'] / 60:.1f} min" if s["seconds"] >= 60 else f"{stage} {s['seconds']:.0f} s"
                      for stage, s in info["stages"].items())


def render_markdown(result: dict, *, curves: bool = True, bars: bool = True) -> str:
    from owngpt.evaluate.suite import EVAL_ROWS, eval_cell
    from owngpt.train.metrics import describe_overfitting

    names = list(result["runs"])
    scores, settings = result["scores"], result["settings"]
    lines = [f"# {result['title']}", "",
             f"Held-out `{result['split']}` split of `{result['data']}`; written by `owngpt compare`.", ""]
    lines += ["## Scores", "", "| measure | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for title, section, key, fmt in EVAL_ROWS:
        if any(section in scores[n] for n in names):
            lines.append(f"| {title} | " + " | ".join(eval_cell(scores[n], section, key, fmt) for n in names) + " |")
    notes = sorted({note for n in names for note in scores[n]["notes"]})
    lines += [""] + [f"- {note}" for note in notes]
    signature = next((scores[n]["chat"]["bleu_signature"] for n in names if scores[n].get("chat", {}).get("bleu_signature")), None)
    if signature:
        lines.append(f"- BLEU: sacrebleu `{signature}`, sampled replies against the real reply at each held-out "
                     "conversation's first answer.")
    lines.append("- Bits-per-byte compares models whatever their tokenizer; perplexity is per token of each model's own "
                 "tokenizer.")
    if bars:
        lines += ["", "![scores](scores.png)"]
    if curves:
        lines += ["", "## Training curves", "", "![validation loss](curves.png)"]
    lines += ["", "## Runs", "", "| run | arch | size | settings | training | steps | tokens | lr | notes |",
              "|---|---|---|---|---|---|---|---|---|"]
    for n in names:
        info, model = settings[n], settings[n]["model"]
        size = ", ".join(f"{k}={model[k]}" for k in ("order", "n_layer", "n_embd", "n_head", "block_size") if k in model)
        steps = " + ".join(f"{s['steps']:,}" for s in info["stages"].values())
        tokens = " + ".join(f"{s['tokens'] / 1e6:.2f}M" for s in info["stages"].values())
        lrs = " + ".join(f"{s['lr']:g}" for s in info["stages"].values() if s.get("lr"))
        flags = ["LoRA" if info["lora"] else "", f"persona {info['persona']}" if info["persona"] else ""]
        lines.append(f"| {_md(result['runs'][n])} | {info['arch']} | {scores[n]['size']} | {size} | "
                     f"{_minutes(info)} | {steps} | {tokens} | {lrs} | {_md(', '.join(f for f in flags if f))} |")
    flagged = [(n, stage, s["overfitting"]) for n in names for stage, s in settings[n]["stages"].items()
               if s.get("overfitting")]
    lines += ["", "## Overfitting", ""]
    lines += ([f"- **{n}** ({stage}): {describe_overfitting(found)}" for n, stage, found in flagged]
              or ["No run's validation loss rose while its training loss fell."])
    if result["samples"]:
        lines += ["", "## Sample replies", "", "The same prompts, every model replying as `owngpt chat` would (same seed).", ""]
        for i, sample in enumerate(result["samples"], 1):
            lines += [f"**{i}.** user › {_md(sample['prompt'])}", ""]
            if sample["reference"] is not None:
                lines.append(f"- *real reply* › {_md(sample['reference'])}")
            lines += [f"- **{n}** › {_md(reply) or '(empty)'}" for n, reply in sample["replies"].items()] + [""]
    return "\n".join(lines) + "\n"
