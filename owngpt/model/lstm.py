"""The LSTM language model baseline (`arch = "lstm"`): token embedding, a stack of LSTM layers, output head.

The recurrent baseline that the GPT is compared with: it follows the one model protocol of
owngpt/model/registry.py (`model(ids (B, T), valid=None) -> logits (B, T, V)`), so the same fit(), scoring, chat,
generation and evaluation use it. Its sizes come from ModelConfig's generic fields: n_layer LSTM layers, each
n_embd wide, a LayerNorm, then the output head (its own matrix: from a run's settings the head is never tied to
the embedding, as in Zaremba et al. 2014; LSTMConfig(tie_embeddings=True) ties it), dropout on the embeddings,
between the layers and before the head. The norm before the head and PyTorch's N(0, 1) embedding matter: with
GPT's small init and no norm, the top layer's output starts ~1e-3 (the signal shrinks ~4x per layer) and a
tiny-cpu LSTM sat at the unigram loss for its first ~1,100 steps of a 5-minute run.

Left padding: batched prompts are left-padded and described by `valid` (True on real tokens). Each row's real
tokens are rolled to the front before the LSTM runs and its outputs rolled back after, so a real token's state
starts from zero at the row's first real token, exactly as when the row runs alone (an LSTM is causal: the padding
rolled to the back cannot change the positions before it).

Not handled: a KV cache or a carried recurrent state between generation steps (the generation runner reruns the
whole sequence each step, as for every model without `new_cache`), LoRA, Hugging Face export, inputs longer than
block_size (the context it was trained on; an LSTM could run longer, but generation and scoring stop there as they
do for the GPT).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from owngpt.config import ModelConfig
from owngpt.errors import OwnGPTError


@dataclass
class LSTMConfig:
    """Sizes of the LSTM language model (what its checkpoints record)."""

    vocab_size: int = 50304
    block_size: int = 256  # the context it trains on and generates within
    n_layer: int = 2
    n_embd: int = 256  # embedding width = hidden size of every LSTM layer
    dropout: float = 0.0
    tie_embeddings: bool = False

    @classmethod
    def from_model_config(cls, cfg: ModelConfig) -> "LSTMConfig":
        """The LSTM of a run's ModelConfig: its sizes and dropout; the head untied whatever the GPT preset ties."""
        return cls(vocab_size=cfg.vocab_size, block_size=cfg.block_size, n_layer=cfg.n_layer, n_embd=cfg.n_embd,
                   dropout=cfg.dropout)


def left_padding(valid: torch.Tensor | None, shape: tuple[int, int]) -> torch.Tensor | None:
    """How many padding columns lead each row, (B,) long; None when every token is real. `valid` (B, T) must be
    False on a prefix of each row and True after it (left padding), else ValueError."""
    if valid is None:
        return None
    if tuple(valid.shape) != tuple(shape):
        raise ValueError(f"valid has shape {tuple(valid.shape)}, expected {tuple(shape)} (one flag per token)")
    valid = valid.to(torch.bool)
    if bool(valid.all()):
        return None
    n_pad = (~valid).sum(dim=1)  # (B,)
    expected = torch.arange(shape[1], device=valid.device)[None, :] >= n_pad[:, None]  # (B, T)
    if not torch.equal(valid, expected):
        raise ValueError("valid must mark left padding: False on the first columns of a row, True after them")
    return n_pad


def check_context(T: int, block_size: int) -> None:
    if T > block_size:
        raise OwnGPTError(f"the input of {T} tokens is longer than the model's context of {block_size} tokens; "
                          "shorten the prompt (or truncate it on the left)")


class LSTMLM(nn.Module):
    """Embedding -> n_layer LSTM layers -> output head; forward returns logits."""

    arch = "lstm"  # its name in checkpoints (owngpt/model/registry.py)

    def __init__(self, cfg: LSTMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        C = cfg.n_embd
        self.wte = nn.Embedding(cfg.vocab_size, C)
        self.drop = nn.Dropout(cfg.dropout)
        # nn.LSTM's own dropout acts between layers (not after the last: self.drop does that)
        self.lstm = nn.LSTM(C, C, num_layers=cfg.n_layer, batch_first=True,
                            dropout=cfg.dropout if cfg.n_layer > 1 else 0.0)
        self.ln_f = nn.LayerNorm(C)  # the head sees unit-scale features whatever the depth (see the module docstring)
        self.lm_head = nn.Linear(C, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.wte.weight
            nn.init.uniform_(self.wte.weight, -0.1, 0.1)  # one table for both ends: the usual LSTM LM range
        else:  # PyTorch's N(0, 1) embedding drives the gates from the first step; the head starts small
            nn.init.normal_(self.wte.weight, mean=0.0, std=1.0)
            nn.init.uniform_(self.lm_head.weight, -0.1, 0.1)
        # The LSTM keeps PyTorch's uniform(+-1/sqrt(C)) matrices, with the forget gates' bias at 1 so that early in
        # training the cells remember (Jozefowicz et al. 2015)
        with torch.no_grad():
            for name, p in self.lstm.named_parameters():
                if name.startswith("bias_"):
                    p.zero_()
                    if name.startswith("bias_ih"):
                        p[C:2 * C] = 1.0  # gate order i, f, g, o

    def forward(self, idx: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T, vocab_size) for ids (B, T); valid (B, T) is False on left padding, which changes nothing."""
        B, T = idx.shape
        check_context(T, self.cfg.block_size)
        n_pad = left_padding(valid, (B, T))
        cols = torch.arange(T, device=idx.device)[None, :]  # (1, T)
        if n_pad is not None:
            idx = idx.gather(1, (cols + n_pad[:, None]) % T)  # each row's real tokens first, its padding after
        x = self.drop(self.wte(idx))  # (B, T, C)
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            # oneDNN has no bf16 LSTM on CPUs without native bf16 (it fails to build the kernel): the recurrence runs
            # in fp32 under CPU autocast, the embedding and the head keep autocast's dtype
            with torch.autocast("cpu", enabled=False):
                h, _ = self.lstm(x.float())  # (B, T, C), from a zero state
        else:
            h, _ = self.lstm(x)  # (B, T, C), from a zero state
        if n_pad is not None:  # back to the input's columns: column t came from rolled column t - n_pad
            back = (cols - n_pad[:, None]) % T  # (B, T)
            h = h.gather(1, back[:, :, None].expand(B, T, h.size(2)))
        return self.lm_head(self.drop(self.ln_f(h)))  # (B, T, V)

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameters, a tied matrix counted once; non_embedding leaves out the embedding table."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.wte.weight.numel() if non_embedding else n

    def flops_per_token(self) -> int:
        """Training FLOPs per token (forward + backward): 6 per weight that multiplies an activation, i.e. the
        LSTM's matrices (4 gates x (input + hidden) x hidden per layer) and the output head."""
        lstm = sum(p.numel() for name, p in self.lstm.named_parameters() if name.startswith("weight_"))
        return 6 * (lstm + self.cfg.vocab_size * self.cfg.n_embd)

    def describe(self) -> str:
        """One line, e.g. 'LSTM: 0.54M params, 2 layers, 128 wide, ctx 128, 3.2 MFLOPs/token'."""
        c = self.cfg
        return (f"LSTM: {self.num_params() / 1e6:.2f}M params, {c.n_layer} layers, {c.n_embd} wide, "
                f"ctx {c.block_size}, {self.flops_per_token() / 1e6:.1f} MFLOPs/token")
