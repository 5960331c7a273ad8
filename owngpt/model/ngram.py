"""The interpolated modified Kneser-Ney n-gram language model (Chen & Goodman 1998): counting and the model.

A baseline that shares the GPT's token ids, checkpoint, scoring, generation and chat: `NGram.forward(idx)` returns
(B, T, V) log-probabilities, so softmax of its output is exactly the n-gram distribution and everything that
handles logits handles it unchanged.

Documents. Counting splits the token stream into documents at <|endoftext|> (EOT) and no n-gram crosses one:
every document is read as `EOT t1 ... tk EOT`, the leading EOT standing for "document start" (as KenLM's <s>) and
the trailing one being a token the model predicts. When scoring or generating, the start of a sequence (the first
position that `valid` marks; left padding is never part of a context) and every EOT in it are such a start: a
context never reaches back past one. So the first token of a text is predicted from `EOT`, the second from
`EOT t1`, and so on: the same n-grams counting saw.

The estimate (for an n-gram `h w` of order j, context h, and h' = h without its first token):

    p_j(w | h) = (max(a_j(hw) - D_j(a_j(hw)), 0) + gamma_j(h) * p_{j-1}(w | h')) / sum_v a_j(hv)
    gamma_j(h) = D_j1 * N1(h.) + D_j2 * N2(h.) + D_j3 * N3+(h.)      (N_k(h.): successors v with a_j(hv) = k)
    p_0(w)     = 1 / vocab_size                                      (every token has p > 0)

and p_j(w | h) = p_{j-1}(w | h') when h was never seen with a successor. The adjusted count a_j is the raw count
for the highest order and for n-grams that start at a document start (nothing precedes them), else the
continuation count N1+(. g): how many distinct tokens precede g. The three discounts of each order come from
the count-of-counts n1..n4 of its adjusted counts: Y = n1 / (n1 + 2 n2), D1 = 1 - 2Y n2/n1, D2 = 2 - 3Y n3/n2,
D3+ = 3 - 4Y n4/n3; one that cannot be computed or falls outside (0, k] (tiny corpora) takes KenLM's fallback
(0.5, 1, 1.5).

Tables. The n-grams of order j are a sorted int64 array of keys `row of their first j-1 tokens in the order j-1
table * V + last token` (order 1: the token), with their adjusted counts: the successors of a context are one
contiguous run (CSR-style), found with searchsorted. The tables are buffers (plain safetensors, no pickle); their
sizes are recorded in `NGramConfig.sizes` so `registry.build` makes an empty model of the right shape to load
into. What the forward pass needs per context (run offsets, backoff weights, 1 / totals) is derived from the
counts after every load.

Not handled: pruning and quantisation (every n-gram seen is kept, in memory), ids outside the vocabulary (an
IndexError, as an embedding raises), and `valid` masks other than left padding (the first valid position starts
the sequence). The model has no parameters: `fit()` cannot train it (`owngpt.train.ngram` counts it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import torch
from torch import nn

from owngpt.errors import OwnGPTError

FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)  # KenLM's --discount_fallback default, for D1, D2, D3+
CHUNK_ELEMENTS = 1 << 22  # positions x vocabulary computed at once in forward


@dataclass
class NGramConfig:
    """An n-gram model's shape. `sizes` (n-grams per order, filled in by counting) lets an empty model be built
    to load a checkpoint into; a model built without them predicts the uniform distribution."""

    order: int = 5  # n: contexts of up to n - 1 tokens
    vocab_size: int = 0  # the tokenizer's vocabulary
    block_size: int = 256  # the longest sequence scored or generated at once (the n-gram itself looks back n - 1)
    eot_id: int = 0  # <|endoftext|>: the document boundary
    sizes: list[int] = field(default_factory=list)  # distinct n-grams of order 1..n (empty: none counted yet)

    def check(self) -> "NGramConfig":
        """Itself, or an OwnGPTError naming the first bad field."""
        for name, low in (("order", 1), ("vocab_size", 1), ("block_size", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise OwnGPTError(f"ngram.{name} must be an integer >= {low}, not {value!r}")
        if not 0 <= self.eot_id < self.vocab_size:
            raise OwnGPTError(f"ngram.eot_id must be a token id in 0..{self.vocab_size - 1}, not {self.eot_id!r}")
        if self.sizes and (len(self.sizes) != self.order or any(int(s) < 0 for s in self.sizes)):
            raise OwnGPTError(f"ngram.sizes must list {self.order} counts (one per order), not {self.sizes!r}")
        return self


# ----------------------------------------------------------------------------- counting


def _discounts(adjusted: np.ndarray) -> tuple[list[float], list[bool]]:
    """(D1, D2, D3+) from the count-of-counts of one order's adjusted counts, and which took the fallback."""
    n = [int(np.count_nonzero(adjusted == k)) for k in range(1, 5)]
    y = n[0] / (n[0] + 2 * n[1]) if n[0] + 2 * n[1] else 0.0
    out, fell_back = [], []
    for k in (1, 2, 3):  # D_k = k - (k + 1) Y n_{k+1} / n_k
        d = k - (k + 1) * y * n[k] / n[k - 1] if n[k - 1] and y else float("nan")
        ok = 0.0 < d <= k
        out.append(d if ok else FALLBACK_DISCOUNTS[k - 1])
        fell_back.append(not ok)
    return out, fell_back


def _finish_order(j: int, adjusted: np.ndarray, state: dict[str, torch.Tensor], discounts: list, fell_back: list) -> None:
    """Record order j's adjusted counts (int32) and its discounts."""
    state[f"counts_{j}"] = torch.from_numpy(adjusted.astype(np.int32))
    d, fb = _discounts(adjusted)
    discounts.append(d)
    fell_back.append(fb)


def count_stream(stream: np.ndarray, cfg: NGramConfig,
                 echo: Callable[[str], None] | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """The model's tables (a state dict for `NGram`) from a token stream of documents separated by EOT, and a
    report (n-grams per order, discounts). Vectorised: one sort (np.unique) per order, no loop over tokens.
    echo(line), when given, hears each order as it is done."""
    cfg.check()
    V, n, eot = cfg.vocab_size, cfg.order, cfg.eot_id
    s = np.asarray(stream).astype(np.int64, copy=False)
    if s.size and (int(s.min()) < 0 or int(s.max()) >= V):
        raise OwnGPTError(f"the token stream holds ids outside the vocabulary 0..{V - 1}: was it made with "
                          "another tokenizer?")
    if not (s != eot).any():
        raise OwnGPTError("nothing to count: the training data holds no tokens besides <|endoftext|>")
    s = np.concatenate([[eot], s] if not s.size or s[0] != eot else [s])
    s = np.concatenate([s, [eot]]) if s[-1] != eot else s  # every document closed: EOT is a counted token
    if len(s) >= 2**31:
        raise OwnGPTError(f"{len(s):,} tokens is more than an n-gram model counts at once (2^31); count a part")
    is_eot = s == eot
    state: dict[str, torch.Tensor] = {}
    discounts, fell_back, sizes = [], [], []
    t0 = time.perf_counter()
    prev = raw_prev = None  # per position: row of the (j-1)-gram starting there (-1: none); its raw counts
    for j in range(1, n + 1):
        N = len(s) - j + 1
        if j == 1:
            valid, key = None, s
        else:  # a j-gram: a (j-1)-gram then a token, with no EOT inside (the last token of the (j-1)-gram)
            ok = prev[:N] >= 0
            if j >= 3:
                ok &= ~is_eot[j - 2:j - 2 + N]
            valid = np.flatnonzero(ok)
            del ok
            key = prev[valid] * V + s[valid + (j - 1)]
        uniq, inv = np.unique(key, return_inverse=True)
        del key
        raw = np.bincount(inv[1:] if j == 1 else inv, minlength=len(uniq))  # the leading EOT is not predicted
        if j >= 2:  # continuation counts of order j-1: distinct tokens in front of each (j-1)-gram
            suffix = np.empty(len(uniq), dtype=np.int64)
            suffix[inv] = prev[valid + 1]  # a j-gram's last j-1 tokens: the (j-1)-gram one position on
            cont = np.bincount(suffix, minlength=len(raw_prev))
            del suffix
            _finish_order(j - 1, np.where(cont > 0, cont, raw_prev), state, discounts, fell_back)  # else a start
        if j < n:
            prev = np.full(len(s), -1, dtype=np.int64)
            prev[valid if valid is not None else slice(None)] = inv
        del inv, valid
        state[f"keys_{j}"] = torch.from_numpy(uniq)
        sizes.append(len(uniq))
        raw_prev = raw
        if echo is not None:
            echo(f"order {j}: {len(uniq):,} distinct n-grams ({time.perf_counter() - t0:.1f}s)")
    _finish_order(n, raw_prev, state, discounts, fell_back)  # the highest order: raw counts
    state["discounts"] = torch.tensor(discounts, dtype=torch.float64)
    report = {"ngrams": {str(j): sizes[j - 1] for j in range(1, n + 1)},
              "discounts": {str(j): [round(x, 4) for x in discounts[j - 1]] for j in range(1, n + 1)},
              "discount_fallback": {str(j): fell_back[j - 1] for j in range(1, n + 1) if any(fell_back[j - 1])}}
    return state, report


def estimate(stream: np.ndarray, cfg: NGramConfig,
             echo: Callable[[str], None] | None = None) -> tuple["NGram", dict]:
    """A counted model (cfg with the table sizes filled in) and the counting report (see count_stream)."""
    state, report = count_stream(stream, cfg, echo)
    return NGram(replace(cfg, sizes=list(report["ngrams"].values())), tables=state), report


# ----------------------------------------------------------------------------- the model


def _lookup(keys: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """Row of each query in the sorted `keys`, -1 where absent (or where the query is negative)."""
    if not keys.numel():
        return torch.full_like(query, -1)
    i = torch.searchsorted(keys, query).clamp(max=keys.numel() - 1)
    return torch.where((keys[i] == query) & (query >= 0), i, -1)


class NGram(nn.Module):
    """Interpolated modified Kneser-Ney over token ids; forward gives (B, T, V) log-probabilities."""

    arch = "ngram"
    trainable = False  # counted by owngpt.train.ngram, never by fit() (registry.require_trainable)

    def __init__(self, cfg: NGramConfig, tables: dict[str, torch.Tensor] | None = None) -> None:
        """An empty model of cfg's sizes to load a checkpoint into, or (`tables`, from count_stream) a counted one:
        its tensors become the buffers as they are, not copied."""
        super().__init__()
        self.cfg = cfg.check()
        sizes = [int(x) for x in cfg.sizes] or [0] * cfg.order
        tables = tables or {}
        for j, size in enumerate(sizes, start=1):
            self.register_buffer(f"keys_{j}", tables.get(f"keys_{j}", torch.zeros(size, dtype=torch.int64)))
            self.register_buffer(f"counts_{j}", tables.get(f"counts_{j}", torch.zeros(size, dtype=torch.int32)))
        self.register_buffer("discounts", tables.get("discounts", torch.tensor([FALLBACK_DISCOUNTS] * cfg.order,
                                                                                dtype=torch.float64)))
        self.register_load_state_dict_post_hook(lambda module, _incompatible: module._derive())
        self._derive()

    def _apply(self, fn, recurse: bool = True):
        """Moves between devices as any module does, but a dtype change (`.to(torch.bfloat16)`, which generation
        applies to every model on hardware that computes bf16) never rounds the tables: counts stay integers and
        the discounts and backoff weights float64, so the distribution stays exact."""
        return super()._apply(lambda t: t.to(fn(t.new_empty(0)).device), recurse)

    def _table(self, j: int) -> tuple[torch.Tensor, torch.Tensor]:
        return getattr(self, f"keys_{j}"), getattr(self, f"counts_{j}")

    @torch.no_grad()
    def _derive(self) -> None:
        """From the counts, per order j: the run of successors of each context (`start_j`, CSR offsets over the
        order j-1 rows), and each context's 1 / total (`inv_total_j`) and backoff weight gamma / total (`gamma_j`);
        `unigram` is the whole order-1 distribution, interpolated with the uniform one. Per context only: an
        n-gram's discounted count is computed from its count when it is used."""
        V = self.cfg.vocab_size
        for j in range(1, self.cfg.order + 1):
            keys, counts = self._table(j)
            rows = 1 if j == 1 else self._table(j - 1)[0].numel()
            start = torch.searchsorted(keys, torch.arange(rows + 1, dtype=torch.int64, device=keys.device) * V)
            # per-context sums of the counts and of their discounts: cumulative sums read at the run offsets
            total = _run_sums(counts.long(), start).double()
            mass = _run_sums(self._discount(j, counts), start)
            self.register_buffer(f"start_{j}", start, persistent=False)
            self.register_buffer(f"inv_total_{j}", 1.0 / total.clamp(min=1.0), persistent=False)
            self.register_buffer(f"gamma_{j}", torch.where(total > 0, mass / total.clamp(min=1.0), 1.0),
                                 persistent=False)
        counts1 = self.counts_1.double()
        unigram = torch.full((V,), float(self.gamma_1[0]) / V, dtype=torch.float64, device=counts1.device)
        kept = (counts1 - self._discount(1, self.counts_1)) * self.inv_total_1[0]
        self.register_buffer("unigram", unigram.index_add_(0, self.keys_1, kept), persistent=False)

    def _discount(self, j: int, counts: torch.Tensor) -> torch.Tensor:
        """D_j1, D_j2 or D_j3+ for each count (float64); never more than the count (D_k <= k)."""
        return self.discounts[j - 1][counts.clamp(min=1, max=3).long() - 1]

    def _contexts(self, idx: torch.Tensor, valid: torch.Tensor | None) -> list[torch.Tensor]:
        """ctx[L] (B, T): the row in the order-L table of the last L tokens up to each position, -1 where they
        were never seen or reach back past the sequence's start or an EOT (ctx[0] is the root, row 0)."""
        B, T = idx.shape
        eot = self.cfg.eot_id
        ext = torch.cat([idx.new_full((B, 1), eot), idx], dim=1)  # (B, T+1): a document start in front
        if valid is not None:  # the sequence starts at the first valid position: a start marker just before it
            first = torch.where(valid.any(dim=1), valid.long().argmax(dim=1), T)  # (B,)
            ext[torch.arange(B, device=idx.device), first.clamp(max=T)] = eot
        pos = torch.arange(T + 1, device=idx.device).expand(B, T + 1)
        last_start = torch.where(ext == eot, pos, 0).cummax(dim=1).values  # (B, T+1)
        if valid is not None:
            last_start = torch.maximum(last_start, first[:, None])
        avail = pos - last_start + 1  # tokens from the last start marker to here, the marker included
        ctx = [torch.zeros(B, T, dtype=torch.int64, device=idx.device)]
        rows = _lookup(self.keys_1, ext)  # (B, T+1) order-1 rows
        V = self.cfg.vocab_size
        for L in range(1, self.cfg.order):
            if L > 1:  # the L-gram ending at t: the (L-1)-gram ending at t-1, then ext[t]
                prefix = torch.cat([rows.new_full((B, 1), -1), rows[:, :-1]], dim=1)
                rows = _lookup(getattr(self, f"keys_{L}"), torch.where(prefix >= 0, prefix * V + ext, -1))
            rows = torch.where(avail >= L, rows, -1)
            ctx.append(rows[:, 1:])
        return ctx

    def forward(self, idx: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) ids -> (B, T, V) log-probabilities: position t predicts idx[:, t + 1] from the last order - 1
        tokens up to and including t (never past the sequence start, left padding or an EOT).

        Unrolled, the recursion is p_n(w) = sum_j (prod_{k > j} gamma_k) kept_j(w) + (prod_{k > 1} gamma_k) p_1(w)
        (kept_j: an order-j n-gram's discounted count / its context's total, gamma_k = 1 where order k has no seen
        context): one dense pass for the scaled unigram distribution, then each order's seen successors added."""
        B, T = idx.shape
        V, n = self.cfg.vocab_size, self.cfg.order
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= V):
            raise IndexError(f"token ids must be in 0..{V - 1}")
        ctx = [c.reshape(-1) for c in self._contexts(idx, valid)]  # order x (B*T,)
        out = torch.empty(B * T, V, dtype=torch.float32, device=idx.device)
        step = max(1, CHUNK_ELEMENTS // V)
        for lo in range(0, B * T, step):
            hi = min(B * T, lo + step)
            runs = {j: self._runs(j, ctx[j - 1][lo:hi]) for j in range(2, n + 1)}
            scale = torch.ones(hi - lo, dtype=torch.float64, device=idx.device)  # prod_{k > j} gamma_k, from j = n down
            scales = {}
            for j in range(n, 1, -1):
                scales[j] = scale
                which, ctx_rows, _, _ = runs[j]
                scale = scale.clone()
                scale[which] *= getattr(self, f"gamma_{j}")[ctx_rows]
            p = out[lo:hi]  # (N, V): float32 is exact enough for a sum of order + 1 positive terms
            torch.mul(scale.float()[:, None], self.unigram.float()[None, :], out=p)
            for j in range(2, n + 1):
                which, ctx_rows, first, count = runs[j]
                if not which.numel():
                    continue
                pos = torch.repeat_interleave(which, count)  # every successor of every seen context, flat
                at = torch.repeat_interleave(first - (count.cumsum(0) - count), count) + torch.arange(
                    int(count.sum()), device=p.device)  # its row in the order j table
                words = getattr(self, f"keys_{j}")[at] % V
                counts = getattr(self, f"counts_{j}")[at]
                weight = getattr(self, f"inv_total_{j}")[ctx_rows] * scales[j][which]  # (K,)
                kept = (counts.double() - self._discount(j, counts)) * torch.repeat_interleave(weight, count)
                p.index_put_((pos, words), kept.float(), accumulate=True)
            p.log_()
        return out.view(B, T, V)

    def _runs(self, j: int, rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """For context rows (order j-1, -1 = none) of N positions: (which positions have a context with successors
        at order j, those context rows, where their runs of successors start in the order j table, how long)."""
        start = getattr(self, f"start_{j}")
        if not getattr(self, f"keys_{j}").numel():  # nothing counted at this order
            none = rows.new_zeros(0)
            return none, none, none, none
        safe = rows.clamp(min=0)
        first, end = start[safe], start[safe + 1]
        which = ((rows >= 0) & (end > first)).nonzero().squeeze(1)  # (K,)
        return which, rows[which], first[which], (end - first)[which]


def _run_sums(values: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """The sum of values[start[r]:start[r + 1]] for each run r."""
    cs = torch.cat([values.new_zeros(1), values.cumsum(0)])
    return cs[start[1:]] - cs[start[:-1]]
