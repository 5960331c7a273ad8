"""Tiny models and helpers shared by the generation tests."""

from __future__ import annotations

from dataclasses import asdict

import pytest
import torch
import torch.nn.functional as F

from owngpt.config import ModelConfig
from owngpt.generate import GenerationConfig
from owngpt.model.gpt import GPT
from owngpt.tokenizer import train_char


TEXT = "the quick brown fox jumps over the lazy dog. hello world! END of story, 0123456789\n"


@pytest.fixture(scope="module")
def tok():
    return train_char([TEXT])


def random_gpt(vocab: int, preset: str = "gpt2", block: int = 64, seed: int = 0, n_kv_head: int | None = None,
               n_embd: int = 32) -> GPT:
    """A tiny GPT with large random weights: peaked, varied next-token distributions (a freshly initialised
    model is nearly uniform and greedy decoding would repeat one token forever)."""
    torch.manual_seed(seed)
    cfg = ModelConfig(preset=preset, vocab_size=vocab, block_size=block, n_layer=2, n_head=2, n_embd=n_embd,
                      n_kv_head=n_kv_head)
    model = GPT(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.35)
    return model.eval()


@pytest.fixture(scope="module")
def model(tok):
    return random_gpt(tok.vocab_size)


def greedy(n: int = 30, **kw) -> GenerationConfig:
    return GenerationConfig(max_new_tokens=n, temperature=0.0, **kw)


class ScriptedLM(torch.nn.Module):
    """Emits `script` after a prompt of length `prompt_len`, whatever the prompt: the logits at absolute position
    q favour script[q - prompt_len + 1]. Lets the text-level tests choose exactly which tokens come out."""

    class Cache:
        def __init__(self) -> None:
            self.pos = 0

        def reorder(self, index) -> None:
            pass

        def reset(self) -> None:
            self.pos = 0

    def __init__(self, script: list[int], prompt_len: int, vocab: int, block: int = 256) -> None:
        super().__init__()
        self.script, self.prompt_len = script, prompt_len
        self.cfg = ModelConfig(preset="gpt2", vocab_size=vocab, block_size=block, n_layer=1, n_head=1, n_embd=8)
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def new_cache(self, batch_size: int, max_len: int | None = None) -> "ScriptedLM.Cache":
        return ScriptedLM.Cache()

    def forward(self, idx, cache=None, valid=None):
        B, T = idx.shape
        past = cache.pos if cache is not None else 0
        logits = torch.zeros(B, T, self.cfg.vocab_size)
        for t in range(T):
            k = past + t - self.prompt_len + 1
            nxt = self.script[k] if 0 <= k < len(self.script) else 0  # 0 = <|endoftext|>
            logits[:, t, nxt] = 10.0
        if cache is not None:
            cache.pos += T
        return logits


def ngrams(seq: list[int], n: int) -> list[tuple[int, ...]]:
    return [tuple(seq[i:i + n]) for i in range(len(seq) - n + 1)]


class TableLM(torch.nn.Module):
    """A Markov chain as a language model: the next-token log-probabilities depend on the last token only
    (log_probs[last]), so beam search can be worked out by hand. It keeps no state, so its cache is a stub."""

    class Cache:
        def reorder(self, index) -> None:
            pass

    def __init__(self, log_probs: torch.Tensor) -> None:
        super().__init__()
        self.log_probs = log_probs  # (V, V)
        V = log_probs.size(0)
        self.cfg = ModelConfig(preset="gpt2", vocab_size=V, block_size=32, n_layer=1, n_head=1, n_embd=8)
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def new_cache(self, batch_size: int, max_len: int | None = None) -> "TableLM.Cache":
        return TableLM.Cache()

    def forward(self, idx, cache=None, valid=None):
        return self.log_probs[idx]  # (B, T, V)


def stop_heavy_table() -> torch.Tensor:
    """After token 3 the stops 0, 1, 2 rank 2nd-4th and token 4 5th; after 4 comes stop 0 almost surely. With 2
    beams, [4, stop] (mean log p -1.263) beats [stop] (-1.386), but only if 4 is kept as a beam although three
    stops outrank it: Hugging Face looks at (1 + stop ids) * num_beams candidates, not 2 * num_beams."""
    T = torch.full((6, 6), 1 / 6)
    T[3] = torch.tensor([0.25, 0.2, 0.15, 0.3, 0.08, 0.02])
    T[4] = torch.tensor([0.999, 0.0002, 0.0002, 0.0002, 0.0002, 0.0002])
    return T.log()


def random_table(seed: int, V: int = 8) -> torch.Tensor:
    return F.log_softmax(torch.randn(V, V, generator=torch.Generator().manual_seed(seed)) * 2, dim=-1)


def scripted(tok, text: str, prompt: str = "the"):
    p = tok.encode(prompt)
    return ScriptedLM(tok.encode(text), len(p), tok.vocab_size), p


def save_run(tmp_path, tok, model, name: str = "run"):
    from owngpt.checkpoint.format import save_checkpoint
    from owngpt.checkpoint.meta import CheckpointMeta

    meta = CheckpointMeta(model_config=asdict(model.cfg), tokenizer_hash=tok.hash)
    save_checkpoint(tmp_path / name, 1, model.state_dict(), meta, None, tokenizer=tok, best=True)
    return tmp_path / name


def invoke(args: list[str]):
    from typer.testing import CliRunner

    import owngpt.cli.generate  # noqa: F401 - registers `generate`
    from owngpt.cli import app

    return CliRunner().invoke(app, args)
