"""Training throughput of the neural baselines against the GPT at the same sizes: the step fit() takes (forward, fp32
cross-entropy, backward, clip, AdamW) for model.arch = gpt, lstm and seq2seq, interleaved in one process.

Two kinds of batches, because the encoder-decoder's cost depends on them:
  documents  random tokens, no assistant header: the seq2seq model is a decoder-only LM (pretraining)
  chats      packed synthetic chat rows: a user turn and an assistant reply of 5-30 tokens each, so a 256-token row
             holds ~5 assistant headers, each of whose histories the seq2seq encoder reads (fine-tuning)

    python benchmarks/bench_neural.py                  # tiny-cpu sizes at the quickstart's shape (context 256, batch 8)
    python benchmarks/bench_neural.py --steps 5 --block 128
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from bench_serve import cpu_description  # noqa: E402

from owngpt.config import load_run_config  # noqa: E402
from owngpt.model.seq2seq import Seq2Seq, Seq2SeqConfig  # noqa: E402
from owngpt.model.registry import make_model  # noqa: E402
from owngpt.pipeline import BASELINE_TRAINING  # noqa: E402
from owngpt.train.optim import make_optimizer  # noqa: E402

HEADER = [2, 100, 101]  # stands for <|im_start|> "assistant" "\n" (ids 0..7 are the specials)


def chat_rows(B: int, T: int, V: int, g: torch.Generator) -> torch.Tensor:
    """(B, T+1) rows of packed turns: <|im_start|> user... <|im_end|> \\n HEADER reply... <|im_end|> \\n ..."""
    rows = []
    for _ in range(B):
        row: list[int] = []
        while len(row) < T + 1:
            n_user, n_reply = (int(n) for n in torch.randint(5, 31, (2,), generator=g))
            user = torch.randint(8, V, (n_user,), generator=g).tolist()
            reply = torch.randint(8, V, (n_reply,), generator=g).tolist()
            row += [2, 102, 103] + user + [3, 104] + HEADER + reply + [3, 104]
        rows.append(row[: T + 1])
    return torch.tensor(rows)


def step_time(model, batch: torch.Tensor, cfg, steps: int) -> float:
    """Median seconds of one training step on `batch` (B, T+1), after two warm-up steps."""
    optimizer = make_optimizer(model, cfg)
    x, y = batch[:, :-1], batch[:, 1:]
    times = []
    for i in range(steps + 2):
        start = time.perf_counter()
        logits = model(x)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i >= 2:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--block", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=4096)
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    B, T, V = args.batch, args.block, args.vocab
    batches = {"documents": torch.randint(8, V, (B, T + 1), generator=g), "chats": chat_rows(B, T, V, g)}
    print(f"# {cpu_description()}; torch {torch.__version__}, {torch.get_num_threads()} threads, fp32")
    print(f"# tiny-cpu sizes, context {T}, batch {B}, vocab {V}; median of {args.steps} steps")
    print("| arch | params | batches | tokens/s | vs GPT |")
    print("|---|---:|---|---:|---:|")
    for kind, batch in batches.items():
        base = None
        for arch in ("gpt", "lstm", "seq2seq"):
            run = load_run_config("tiny-cpu", [f"model.arch={arch}", f"model.block_size={T}", f"model.vocab_size={V}",
                                               *BASELINE_TRAINING])
            torch.manual_seed(0)
            model = make_model(run.model)
            if isinstance(model, Seq2Seq):  # the header a tokenizer would give
                model = Seq2Seq(Seq2SeqConfig(**{**vars(model.cfg), "header": HEADER}))
            tps = B * T / step_time(model.train(), batch, run.train, args.steps)
            base = base or tps
            print(f"| {arch} | {model.num_params() / 1e6:.2f}M | {kind} | {tps:,.0f} | {tps / base:.2f} |", flush=True)


if __name__ == "__main__":
    main()
