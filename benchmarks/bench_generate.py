"""Generation speed: tokens/s with the KV cache vs without (the whole sequence recomputed every step).

Random-weight models (speed does not depend on what the weights learned): the `gpt2` and `modern` presets,
4 layers, 256 wide, context 512, vocabulary 8192; a 32-token prompt; greedy; 256 new tokens per row (no stop
ids, so every row generates all of them); batch 1 and 8. Each cell is the best of --repeats runs; the
baseline (no cache) and the contender (cache) are measured in the same run.

    python benchmarks/bench_generate.py [--threads 2] [--device cpu] [--repeats 2]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from owngpt.config import ModelConfig
from owngpt.generate import GenerationConfig, generate_ids
from owngpt.model.gpt import GPT


def tokens_per_second(model: GPT, batch: int, prompt_len: int, new_tokens: int, use_cache: bool, repeats: int) -> float:
    g = torch.Generator().manual_seed(0)
    prompts = torch.randint(8, model.cfg.vocab_size, (batch, prompt_len), generator=g).tolist()
    cfg = GenerationConfig(max_new_tokens=new_tokens, temperature=0.0)
    best = float("inf")
    for _ in range(repeats):
        if model.transformer.wte.weight.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        outs = generate_ids(model, prompts, cfg, use_cache=use_cache)
        if model.transformer.wte.weight.is_cuda:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
        assert all(len(o) == new_tokens for o in outs)
    return batch * new_tokens / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--device", default="cpu", help="cpu | cuda")
    ap.add_argument("--repeats", type=int, default=2, help="runs per cell; the fastest counts")
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--prompt-len", type=int, default=32)
    ap.add_argument("--batches", default="1,8", help="comma-separated batch sizes")
    ap.add_argument("--presets", default="gpt2,modern")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"{platform.processor() or 'cpu'}, {args.threads} threads"
    print(f"torch {torch.__version__}, {where}; prompt {args.prompt_len} tokens, {args.new_tokens} new tokens, greedy")
    print("| preset | batch | no cache tok/s | KV cache tok/s | speed-up |")
    print("|---|---|---|---|---|")
    for preset in args.presets.split(","):
        torch.manual_seed(0)
        cfg = ModelConfig(preset=preset, vocab_size=8192, block_size=512, n_layer=4, n_head=4, n_embd=256)
        model = GPT(cfg).to(args.device).eval()
        for batch in (int(b) for b in args.batches.split(",")):
            tokens_per_second(model, batch, args.prompt_len, 8, True, 1)  # warm-up
            slow = tokens_per_second(model, batch, args.prompt_len, args.new_tokens, False, args.repeats)
            fast = tokens_per_second(model, batch, args.prompt_len, args.new_tokens, True, args.repeats)
            print(f"| {preset} ({model.num_params() / 1e6:.1f}M) | {batch} | {slow:,.0f} | {fast:,.0f} | {fast / slow:.1f}x |",
                  flush=True)


if __name__ == "__main__":
    main()
