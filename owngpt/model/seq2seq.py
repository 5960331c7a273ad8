"""The encoder-decoder Transformer baseline (`arch = "seq2seq"`): an encoder over the dialogue history, a decoder with
causal self-attention and cross-attention to it that writes the reply ("Attention Is All You Need", with the
modern maths of owngpt/model/gpt.py: RoPE, RMSNorm, SwiGLU, no biases, whatever model.preset says).

It follows the one model protocol (`model(ids (B, T), valid=None) -> logits (B, T, V)`, logits[t] depending only
on ids[:t+1]), so the same fit(), scoring, chat, generation and evaluation use it. To get there a sequence is cut
into segments: a new segment starts at the LAST token of every assistant header of the chat format
(`<|im_start|>assistant\\n`, owngpt/tokenizer/template.py; its ids are recorded in the config as `header`, taken
from the tokenizer when the model is made). For segment k starting at column b_k:

    encoder   reads the history ids[:b_k]: its real (non-padding) tokens, the last enc_block of them, with
              bidirectional self-attention;
    decoder   reads ids[b_k : b_{k+1}] with causal self-attention inside the segment (positions restart at 0) and
              cross-attention to segment k's encoder output, and gives the logits of those columns.

Every cross-attention also sees one learned "no history" vector; the columns before the first header (segment 0)
see only that vector. So on plain documents (pretraining: no header) the model is a decoder-only language model
and learns with the same pretrain(), and a chat fine-tuning teaches the encoder to read the history.

The whole batch is computed at once: `segments` finds every row's headers; the decoder runs over the (B, T) columns
with a block-diagonal causal mask; every (row, segment) pair gets its history gathered into one right-padded
encoder batch; the decoder's queries are gathered per pair for cross-attention and scattered back. Left padding
(`valid` False) changes nothing: positions and histories count real tokens only and padding is never attended to.

Sizes: n_layer encoder layers and n_layer decoder layers, n_embd wide, n_head heads; token embeddings shared by the
encoder, the decoder and (tie_embeddings) the output head. Cost: each segment's history is encoded anew (no reuse
across the turns of a conversation: bidirectional attention over a longer history changes every encoder output),
so a chat row of K turns costs up to K encoder passes over up to enc_block tokens.

Not handled: a KV cache (generation reruns the whole sequence each step, as for every model without `new_cache`),
LoRA, Hugging Face export, torch.compile of the forward (data-dependent shapes: it runs eagerly), learned or
sinusoidal positions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from owngpt.config import ModelConfig
from owngpt.errors import OwnGPTError
from owngpt.model.gpt import MLP, Block, CausalSelfAttention, RMSNorm, rope_lookup, rope_table
from owngpt.model.lstm import check_context, left_padding

NORM_EPS = 1e-6  # the modern preset's RMSNorm epsilon


@dataclass
class Seq2SeqConfig:
    """Sizes of the encoder-decoder Transformer and the header that starts a reply (what its checkpoints record)."""

    vocab_size: int = 50304
    block_size: int = 256  # the context it trains on and generates within (history + reply)
    n_layer: int = 2  # encoder layers, and as many decoder layers
    n_head: int = 4
    n_embd: int = 128
    mlp_hidden: int | None = None  # None = ~8/3 * n_embd rounded up to 64 (SwiGLU)
    dropout: float = 0.0
    tie_embeddings: bool = True
    rope_theta: float = 10000.0
    header: list[int] = field(default_factory=list)  # ids of "<|im_start|>assistant\n"; [] = no segments ever
    enc_block: int | None = None  # history tokens the encoder reads (the last ones); None = block_size

    def __post_init__(self) -> None:
        self.header = [int(t) for t in self.header]
        if self.enc_block is None:
            self.enc_block = self.block_size
        if self.enc_block < 1:
            raise OwnGPTError(f"seq2seq enc_block must be >= 1, not {self.enc_block}")
        self.blocks()  # the shared checks: n_embd divisible by n_head, an even head size for RoPE

    @classmethod
    def from_model_config(cls, cfg: ModelConfig, header: list[int] | None) -> "Seq2SeqConfig":
        return cls(vocab_size=cfg.vocab_size, block_size=cfg.block_size, n_layer=cfg.n_layer, n_head=cfg.n_head,
                   n_embd=cfg.n_embd, mlp_hidden=cfg.mlp_hidden, dropout=cfg.dropout,
                   tie_embeddings=bool(cfg.tie_embeddings), rope_theta=cfg.rope_theta, header=list(header or []))

    def blocks(self) -> ModelConfig:
        """The ModelConfig the shared Transformer pieces of gpt.py (attention, MLP, norms) are built from."""
        return ModelConfig(preset="modern", vocab_size=self.vocab_size, block_size=max(self.block_size, self.enc_block),
                           n_layer=self.n_layer, n_head=self.n_head, n_embd=self.n_embd, mlp_hidden=self.mlp_hidden,
                           dropout=self.dropout, rope_theta=self.rope_theta, norm_eps=NORM_EPS)


# ----------------------------------------------------------------------------- cutting a batch into segments


@dataclass
class Segments:
    """Where every column of a (B, T) batch goes. A "pair" is one (row, segment); pairs are numbered row by row."""

    pair: torch.Tensor  # (B, T) the pair each column belongs to, 0..n_pairs-1
    slot: torch.Tensor  # (B, T) the column's index inside its segment
    n_pairs: int
    width: int  # slots per pair: the longest segment
    positions: torch.Tensor  # (B, T) decoder positions: real tokens since the segment's start
    mask: torch.Tensor | None  # (B, 1, T, T) decoder self-attention; None = plain causal
    enc_ids: torch.Tensor  # (E, L) the histories of the pairs that have one, right-padded with 0
    enc_valid: torch.Tensor  # (E, L) True on their real tokens
    enc_pair: torch.Tensor  # (E,) the pair each history belongs to

    @property
    def flat(self) -> torch.Tensor:
        """(B*T,) each column's index in a (n_pairs * width) layout."""
        return (self.pair * self.width + self.slot).reshape(-1)


def segments(idx: torch.Tensor, valid: torch.Tensor | None, header: list[int], enc_block: int) -> Segments:
    """Cut every row of `idx` (B, T) at the last token of each assistant `header` whose tokens are all real (see the
    module docstring); `valid` (B, T) marks left padding (False) or is None."""
    B, T = idx.shape
    dev = idx.device
    cols = torch.arange(T, device=dev)
    n_pad = left_padding(valid, (B, T))
    pad = n_pad if n_pad is not None else torch.zeros(B, dtype=torch.long, device=dev)  # (B,)
    starts = torch.zeros(B, T, dtype=torch.bool, device=dev)  # a segment starts here: a header's last token
    m = len(header)
    if m and T >= m:
        windows = idx.unfold(1, m, 1)  # (B, T-m+1, m): window i holds columns i .. i+m-1
        hit = (windows == torch.tensor(header, dtype=idx.dtype, device=dev)).all(dim=2)
        starts[:, m - 1:] = hit & (cols[None, : T - m + 1] >= pad[:, None])  # the whole header is real tokens
    seg = starts.long().cumsum(dim=1)  # (B, T): segment index; 0 before the first header
    per_row = seg[:, -1] + 1  # (B,)
    pair = (per_row.cumsum(0) - per_row)[:, None] + seg  # (B, T)
    n_pairs = int(per_row.sum())
    rows, at = starts.nonzero(as_tuple=True)  # (E,) where the segments after the first begin
    begin = torch.zeros(n_pairs, dtype=torch.long, device=dev).index_put((pair[rows, at],), at)  # segment 0: column 0
    slot = cols[None, :] - begin[pair]  # (B, T)
    width = int(slot.max()) + 1
    positions = torch.where(seg == 0, slot - pad[:, None], slot).clamp(min=0)  # segment 0 counts real tokens only
    mask = None
    if n_pad is not None or rows.numel():
        same = seg[:, :, None] == seg[:, None, :]  # (B, T, T)
        causal = (cols[None, :] <= cols[:, None])[None]  # (1, T, T)
        real_key = (cols[None, :] >= pad[:, None])[:, None, :]  # (B, 1, T)
        # a padding query sees itself only, so its (ignored) output stays finite
        mask = ((same & causal & real_key) | torch.eye(T, dtype=torch.bool, device=dev)[None])[:, None]
    length = (at - pad[rows]).clamp(max=enc_block)  # real history tokens the encoder reads
    keep = length > 0
    rows, at, length = rows[keep], at[keep], length[keep]
    L = int(length.max()) if length.numel() else 0
    j = torch.arange(L, device=dev)[None, :]  # (1, L)
    enc_valid = j < length[:, None]  # (E, L)
    src = (at[:, None] - length[:, None] + j).clamp(max=T - 1)  # (E, L): the last `length` columns before `at`
    enc_ids = torch.where(enc_valid, idx[rows[:, None], src], 0)
    return Segments(pair=pair, slot=slot, n_pairs=n_pairs, width=width, positions=positions, mask=mask,
                    enc_ids=enc_ids, enc_valid=enc_valid, enc_pair=pair[rows, at])


# ----------------------------------------------------------------------------- modules


class CrossAttention(nn.Module):
    """Multi-head attention from the decoder's columns to their own segment's memory (no positions: the encoder's
    outputs carry them). Queries are gathered per (row, segment) pair, so each pair attends to its own memory."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_head, self.head_dim, self.dropout = cfg.n_head, cfg.head_dim, cfg.dropout
        C = cfg.n_embd
        self.c_q = nn.Linear(C, C, bias=False)
        self.c_kv = nn.Linear(C, 2 * C, bias=False)
        self.c_proj = nn.Linear(C, C, bias=False)
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, memory_valid: torch.Tensor, flat: torch.Tensor,
                width: int) -> torch.Tensor:
        B, T, C = x.shape
        N, S, _ = memory.shape
        nh, hd = self.n_head, self.head_dim
        q = self.c_q(x).reshape(B * T, C)
        q = q.new_zeros(N * width, C).index_put((flat,), q)  # (N*W, C): each pair's queries side by side
        q = q.view(N, width, nh, hd).transpose(1, 2)  # (N, nh, W, hd)
        k, v = self.c_kv(memory).split(C, dim=2)
        k = k.view(N, S, nh, hd).transpose(1, 2)  # (N, nh, S, hd)
        v = v.view(N, S, nh, hd).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype), attn_mask=memory_valid[:, None, None, :],
                                           dropout_p=self.dropout if self.training else 0.0)  # (N, nh, W, hd)
        y = y.transpose(1, 2).reshape(N * width, C)[flat].view(B, T, C)  # back to the columns
        return self.resid_dropout(self.c_proj(y))


class DecoderBlock(nn.Module):
    """Pre-norm decoder block: causal self-attention, cross-attention to the segment's memory, MLP."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.ln_1 = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.attn = CausalSelfAttention(cfg)
        self.ln_x = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.cross = CrossAttention(cfg)
        self.ln_2 = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, rope, mask: torch.Tensor | None, memory: torch.Tensor,
                memory_valid: torch.Tensor, flat: torch.Tensor, width: int) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), rope, mask, None, 0)
        x = x + self.cross(self.ln_x(x), memory, memory_valid, flat, width)
        return x + self.mlp(self.ln_2(x))


class Seq2Seq(nn.Module):
    """Encoder-decoder Transformer language model over chat segments; forward returns logits."""

    arch = "seq2seq"  # its name in checkpoints (owngpt/model/registry.py)

    def __init__(self, cfg: Seq2SeqConfig) -> None:
        super().__init__()
        self.cfg = cfg
        bc = cfg.blocks()
        C = cfg.n_embd
        self.wte = nn.Embedding(cfg.vocab_size, C)
        self.drop = nn.Dropout(cfg.dropout)
        self.encoder = nn.ModuleList(Block(bc) for _ in range(cfg.n_layer))  # given a non-causal mask: bidirectional
        self.ln_enc = RMSNorm(C, NORM_EPS)
        self.no_history = nn.Parameter(torch.zeros(C))  # the memory every segment sees, the only one of segment 0
        self.decoder = nn.ModuleList(DecoderBlock(bc) for _ in range(cfg.n_layer))
        self.ln_f = RMSNorm(C, NORM_EPS)
        self.lm_head = nn.Linear(C, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        self.register_buffer("rope", self._rope_table(), persistent=False)
        for module in self.modules():  # GPT-2's init: normal(0, 0.02) ...
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
        nn.init.normal_(self.no_history, mean=0.0, std=0.02)
        # ... with each residual branch's output projection shrunk by the number of branches it adds to
        for stack, branches in ((self.encoder, 2), (self.decoder, 3)):
            for name, p in stack.named_parameters():
                if name.endswith("c_proj.weight"):
                    nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(branches * cfg.n_layer))

    def _rope_table(self) -> torch.Tensor:
        c = self.cfg
        return rope_table(max(c.block_size, c.enc_block), c.n_embd // c.n_head, c.rope_theta)

    def _apply(self, fn, recurse: bool = True):
        """The rotary table stays fp32 through casts and gets real values after to_empty(), as in GPT."""
        super()._apply(fn, recurse)
        if self.rope.device.type != "meta":
            self.rope = self._rope_table().to(self.rope.device)
        return self

    @torch.compiler.disable  # data-dependent shapes (segments, histories): eager, not compiled
    def forward(self, idx: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T, vocab_size) for ids (B, T); valid (B, T) is False on left padding, which changes nothing."""
        B, T = idx.shape
        check_context(T, self.cfg.block_size)
        seg = segments(idx, valid, self.cfg.header, self.cfg.enc_block)
        memory, memory_valid = self.encode(seg)  # (N, 1+L, C), (N, 1+L)
        x = self.drop(self.wte(idx))  # (B, T, C)
        rope = rope_lookup(self.rope, seg.positions, x.dtype)
        flat = seg.flat
        for block in self.decoder:
            x = block(x, rope, seg.mask, memory, memory_valid, flat, seg.width)
        return self.lm_head(self.ln_f(x))  # (B, T, V)

    def encode(self, seg: Segments) -> tuple[torch.Tensor, torch.Tensor]:
        """Every pair's memory (N, 1 + L, C): the "no history" vector, then its encoded history (right-padded), and
        which of those entries are real (N, 1 + L)."""
        N, C = seg.n_pairs, self.cfg.n_embd
        dev = seg.pair.device
        first = self.no_history.view(1, 1, C).expand(N, 1, C)
        first_valid = torch.ones(N, 1, dtype=torch.bool, device=dev)
        if not seg.enc_pair.numel():
            return first, first_valid
        # histories of similar length together: each bucket padded to the next power of two of its longest one
        # (the waste of padding every history to the longest is ~2x the encoder's work on chat rows)
        L = seg.enc_ids.size(1)
        lengths = seg.enc_valid.sum(dim=1)  # (E,)
        widths = (2 ** torch.ceil(torch.log2(lengths.double()))).long().clamp(max=L)
        parts, order = [], []
        for w in widths.unique().tolist():
            sel = (widths == w).nonzero().squeeze(1)
            h = self._encode(seg.enc_ids[sel, :w], seg.enc_valid[sel, :w])  # (e, w, C)
            parts.append(F.pad(h, (0, 0, 0, L - w)))
            order.append(sel)
        h = torch.cat(parts)[torch.argsort(torch.cat(order))]  # (E, L, C), back in seg.enc_pair's order
        history = h.new_zeros(N, L, C).index_put((seg.enc_pair,), h)  # (N, L, C); pairs without history stay empty
        history_valid = torch.zeros(N, L, dtype=torch.bool, device=dev).index_put((seg.enc_pair,), seg.enc_valid)
        return torch.cat([first.to(h.dtype), history], dim=1), torch.cat([first_valid, history_valid], dim=1)

    def _encode(self, ids: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Encoder outputs (E, L, C) of right-padded histories ids (E, L); valid (E, L) marks their real tokens."""
        h = self.drop(self.wte(ids))  # (E, L, C)
        rope = rope_lookup(self.rope, torch.arange(ids.size(1), device=ids.device), h.dtype)
        keys = valid[:, None, None, :]  # (E, 1, 1, L): every query sees every real token of its history
        for block in self.encoder:
            h = block(h, rope, keys, None, 0)
        return self.ln_enc(h)

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameters, a tied matrix counted once; non_embedding leaves out the embedding table."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.wte.weight.numel() if non_embedding else n

    def flops_per_token(self) -> int:
        """Training FLOPs per token on documents (no history to encode): 6 per decoder weight and output-head weight,
        plus causal self-attention at full context (PaLM's count, as GPT). On conversations each turn's history
        is encoded too, which this leaves out."""
        c = self.cfg
        decoder = sum(p.numel() for p in self.decoder.parameters() if p.dim() >= 2)
        return 6 * (decoder + c.vocab_size * c.n_embd) + 12 * c.n_layer * c.n_embd * c.block_size

    def describe(self) -> str:
        """One line, e.g. 'seq2seq: 1.9M params, 3+3 layers, 128 wide, 4 heads, ctx 128'."""
        c = self.cfg
        return (f"seq2seq: {self.num_params() / 1e6:.2f}M params, {c.n_layer}+{c.n_layer} layers (encoder+decoder), "
                f"{c.n_embd} wide, {c.n_head} heads, ctx {c.block_size}, history {c.enc_block}")
