"""The Kneser-Ney n-gram baseline: probabilities against hand-computed values and an independent dict-based
modified-KN implementation, left-padding invariance, scoring, checkpoint round trip, generation, bad settings,
and counting a prepared folder end to end."""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest
import torch

from helpers import write
from owngpt.checkpoint.format import load_model, save_checkpoint
from owngpt.checkpoint.meta import make_meta
from owngpt.errors import OwnGPTError
from owngpt.model.ngram import FALLBACK_DISCOUNTS, NGram, NGramConfig, estimate
from owngpt.model.registry import build, config_dict

EOT = 0


def stream_of(docs: list[list[int]]) -> np.ndarray:
    return np.array([t for d in docs for t in [*d, EOT]], dtype=np.int64)


def model_of(docs: list[list[int]], order: int, V: int, block: int = 64) -> NGram:
    return estimate(stream_of(docs), NGramConfig(order=order, vocab_size=V, block_size=block, eot_id=EOT))[0]


def probs(model: NGram, seq: list[int]) -> torch.Tensor:
    """(T, V) next-token probabilities after each prefix of `seq`."""
    return model(torch.tensor([seq])).exp()[0].double()


# ----------------------------------------------------------------------------- a reference, written separately


class ReferenceKN:
    """Interpolated modified Kneser-Ney the textbook way: tuples in Counters, one document at a time, each read
    as EOT doc EOT (the leading EOT a start marker, never predicted)."""

    def __init__(self, docs: list[list[int]], order: int, V: int) -> None:
        self.n, self.V = order, V
        raw = {j: Counter() for j in range(1, order + 1)}
        for d in docs:
            seq = [EOT, *d, EOT]
            for j in range(1, order + 1):
                for i in range(len(seq) - j + 1):
                    if j == 1 and i == 0:
                        continue
                    raw[j][tuple(seq[i:i + j])] += 1
        self.a = {}
        for j in range(1, order + 1):
            if j == order:
                self.a[j] = dict(raw[j])
                continue
            left = Counter(g[1:] for g in raw[j + 1])  # distinct tokens in front of each j-gram
            self.a[j] = {g: (c if j > 1 and g[0] == EOT else left[g]) for g, c in raw[j].items()}
        self.D = {}
        for j in range(1, order + 1):
            n = [sum(1 for c in self.a[j].values() if c == k) for k in (1, 2, 3, 4)]
            Y = n[0] / (n[0] + 2 * n[1]) if n[0] + 2 * n[1] else 0
            ds = []
            for k in (1, 2, 3):
                d = k - (k + 1) * Y * n[k] / n[k - 1] if n[k - 1] and Y else -1
                ds.append(d if 0 < d <= k else FALLBACK_DISCOUNTS[k - 1])
            self.D[j] = ds

    def p(self, w: int, ctx: tuple[int, ...]) -> float:
        lower = self.p(w, ctx[1:]) if ctx else 1 / self.V
        j = len(ctx) + 1
        succ = {g[-1]: c for g, c in self.a[j].items() if g[:-1] == ctx}
        total = sum(succ.values())
        if not total:
            return lower
        D = self.D[j]
        d = lambda c: D[min(c, 3) - 1]  # noqa: E731
        gamma = sum(d(c) for c in succ.values())
        c = succ.get(w, 0)
        return ((max(c - d(c), 0) if c else 0) + gamma * lower) / total

    def context(self, seq: list[int], t: int) -> tuple[int, ...]:
        """What predicts seq[t + 1]: back to the last EOT (or a virtual one before the start), n - 1 tokens."""
        full = [EOT, *seq[: t + 1]]
        start = max(i for i, x in enumerate(full) if x == EOT)
        return tuple(full[start:][-(self.n - 1):]) if self.n > 1 else ()


# ----------------------------------------------------------------------------- hand-computed


TINY = [[1, 2], [1, 3], [2]]  # a=1 b=2 c=3, V=5: the stream EOT a b EOT a c EOT b EOT


def test_unigram_by_hand():
    """Raw counts (order 1 is the highest): eot 3, a 2, b 2, c 1 of 8. n1=1 n2=2 n3=1 n4=0: Y = 1/5, D1 = 0.2,
    D2 = 2 - 3(0.2)(1/2) = 1.7, D3+ = 3; gamma = 0.2 + 2(1.7) + 3 = 6.6, spread uniformly over V = 5."""
    p = probs(model_of(TINY, 1, 5), [1])[0]
    expected = torch.tensor([(3 - 3 + 1.32) / 8, (2 - 1.7 + 1.32) / 8, (2 - 1.7 + 1.32) / 8, (1 - 0.2 + 1.32) / 8, 1.32 / 8])
    torch.testing.assert_close(p, expected.double(), rtol=1e-6, atol=0)


def test_bigram_by_hand():
    """Order 2. Unigrams by continuation count: a 1 (after EOT), b 2 (after a, EOT), eot 2 (after b, c), c 1: total 6,
    n1=2 n2=2: Y = 1/3, D1 = 1/3, D2 = 2, D3+ fallback; gamma = 2/3 + 4 = 14/3, so p1 = [7/45, 4/15, 7/45, 4/15, 7/45].
    Bigrams (raw): (EOT,a) 2, (a,b) 1, (b,EOT) 2, (a,c) 1, (c,EOT) 1, (EOT,b) 1: n1=4 n2=2, Y = 1/2, D1 = 1/2, D2 = 2."""
    m = model_of(TINY, 2, 5)
    p1 = torch.tensor([7 / 45, 4 / 15, 7 / 45, 4 / 15, 7 / 45], dtype=torch.float64)
    after_start, after_a, after_x = probs(m, [EOT, 1, 4])  # after the start (EOT), after a, after x (never seen)
    # context a: successors b 1, c 1 (total 2); gamma = 2 D1 = 1
    torch.testing.assert_close(after_a, torch.tensor([p1[0] / 2, p1[1] / 2, (0.5 + p1[2]) / 2, (0.5 + p1[3]) / 2,
                                                      p1[4] / 2], dtype=torch.float64), rtol=1e-6, atol=0)
    assert after_a[2].item() == pytest.approx(59 / 180) and after_a[3].item() == pytest.approx(23 / 60)
    # the start: successors a 2, b 1 (total 3); gamma = D2 + D1 = 2.5
    assert after_start[1].item() == pytest.approx((2 - 2 + 2.5 * 4 / 15) / 3) == pytest.approx(2 / 9)
    assert after_start[2].item() == pytest.approx(8 / 27)
    torch.testing.assert_close(after_x, p1, rtol=1e-6, atol=0)  # an unseen context backs off to the unigrams


# ----------------------------------------------------------------------------- against the reference


def random_docs(seed: int, n_docs: int = 60, V: int = 9) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.ones(V - 2) * 0.6)  # skewed: some n-grams repeat, some do not
    return [list(map(int, rng.choice(np.arange(1, V - 1), size=int(rng.integers(0, 12)), p=weights)))
            for _ in range(n_docs)]


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_matches_the_reference_everywhere(order):
    V = 9  # token 8 never occurs: p > 0 only through the uniform floor
    docs = random_docs(order)
    model, ref = model_of(docs, order, V), ReferenceKN(docs, order, V)
    seqs = [docs[0] + [EOT] + docs[1][:5],  # seen contexts, crossing a document boundary
            [8, 8, 1, 2, 3, 8, 1],  # unseen and partially seen contexts
            [EOT, 3, 3, 3, 3, 3, 3, 2, 1]]  # a leading EOT is the start itself (no second start marker)
    for seq in seqs:
        got = probs(model, seq)
        for t in range(len(seq)):
            ctx = ref.context(seq, t)
            want = torch.tensor([ref.p(w, ctx) for w in range(V)], dtype=torch.float64)
            torch.testing.assert_close(got[t], want, rtol=2e-6, atol=1e-9, msg=f"order {order}, context {ctx}")


def test_probabilities_sum_to_one_for_many_contexts():
    V = 40
    rng = np.random.default_rng(3)
    docs = [list(map(int, rng.integers(1, 25, size=int(rng.integers(1, 30))))) for _ in range(200)]
    model = model_of(docs, 5, V)
    seqs = torch.cat([torch.tensor(stream_of(docs)[:256]).view(4, 64),  # seen
                      torch.randint(0, V, (4, 64), generator=torch.Generator().manual_seed(0))])  # mostly unseen
    p = model(seqs).double().exp()
    torch.testing.assert_close(p.sum(-1), torch.ones(8, 64, dtype=torch.float64), rtol=0, atol=2e-6)
    assert bool((p > 0).all())


# ----------------------------------------------------------------------------- the model protocol


def test_left_padding_changes_nothing():
    V = 12
    model = model_of(random_docs(5, V=V), 3, V)
    alone = [[3, 4, 1, 2, 5], [7, 1], [EOT, 2, 2]]
    T = 8
    idx = torch.full((3, T), 5, dtype=torch.long)  # padding ids that would change a context if read
    valid = torch.zeros(3, T, dtype=torch.bool)
    for r, seq in enumerate(alone):
        idx[r, T - len(seq):] = torch.tensor(seq)
        valid[r, T - len(seq):] = True
    padded = model(idx, valid=valid)
    for r, seq in enumerate(alone):
        torch.testing.assert_close(padded[r, T - len(seq):], model(torch.tensor([seq]))[0], rtol=0, atol=0)


def test_token_nll_is_the_sum_of_its_log_probs():
    from owngpt.generate.scoring import token_nll

    V = 12
    model = model_of(random_docs(6, V=V), 4, V)
    items = [([1, 2, 3, 4, 5, 6], [0, 0, 1, 1, 0, 1]), ([7, 7, 2], [0, 1, 1]), ([EOT, 1, 1, 1, 1], [0, 1, 1, 1, 1])]
    for (ids, mask), (nll, count) in zip(items, token_nll(model, items, batch_size=2)):
        logp = model(torch.tensor([ids]))[0].double()
        direct = -sum(logp[i - 1, ids[i]].item() for i in range(1, len(ids)) if mask[i])
        assert count == sum(mask[1:]) and nll == pytest.approx(direct, rel=1e-6)


def test_checkpoint_round_trip_gives_identical_logits(tmp_path):
    V = 12
    model = model_of(random_docs(7, V=V), 5, V, block=32)
    meta = make_meta(arch=model.arch, model_config=config_dict(model))
    save_checkpoint(tmp_path / "run", 0, model.state_dict(), meta, None, best=True)
    loaded, read, _ = load_model(tmp_path / "run", device="cpu")
    assert isinstance(loaded, NGram) and read.arch == "ngram" and loaded.cfg == model.cfg
    idx = torch.tensor([[1, 2, 3, 4, 5, 6, 7, EOT, 1, 2], [3, 3, 3, 3, 3, 3, 3, 3, 3, 3]])
    torch.testing.assert_close(loaded(idx), model(idx), rtol=0, atol=0)
    as_bf16 = load_model(tmp_path / "run", device="cpu")[0].to(torch.bfloat16)  # what generation does on bf16 hardware
    assert as_bf16.discounts.dtype == torch.float64 and as_bf16.counts_3.dtype == torch.int32
    torch.testing.assert_close(as_bf16(idx), model(idx), rtol=0, atol=0)
    empty = build("ngram", {**config_dict(model), "sizes": []})  # nothing counted: the uniform distribution
    torch.testing.assert_close(empty(idx).exp(), torch.full((2, 10, V), 1 / V), rtol=1e-6, atol=0)


def test_greedy_generation_batched_equals_alone():
    from owngpt.generate import GenerationConfig, generate_ids

    V = 12
    model = model_of(random_docs(8, V=V), 3, V, block=24)
    prompts = [[1, 2], [3, 4, 5, 6, 7], [EOT]]
    cfg = GenerationConfig(max_new_tokens=10, temperature=0.0)
    together = generate_ids(model, prompts, cfg)
    assert together == [generate_ids(model, [p], cfg)[0] for p in prompts]
    for prompt, new in zip(prompts, together):  # greedy: each token the most likely after what came before
        seq = prompt + new
        if new:
            want = probs(model, seq[:-1]).argmax(-1)[len(prompt) - 1:].tolist()
            assert new == want


def test_bad_settings_name_the_field():
    for bad in (0, -2):
        with pytest.raises(OwnGPTError, match="ngram.order"):
            NGram(NGramConfig(order=bad, vocab_size=10))
    with pytest.raises(OwnGPTError, match="ngram.eot_id"):
        NGramConfig(order=3, vocab_size=10, eot_id=10).check()
    with pytest.raises(OwnGPTError, match="outside the vocabulary"):
        estimate(np.array([1, 2, 30, 0]), NGramConfig(order=2, vocab_size=10))
    with pytest.raises(OwnGPTError, match="nothing to count"):
        estimate(np.array([0, 0]), NGramConfig(order=2, vocab_size=10))


def test_fit_refuses_an_ngram():
    from owngpt.config import TrainConfig
    from owngpt.train.loop import fit

    with pytest.raises(OwnGPTError, match="counted from data, not trained"):
        fit(model_of(TINY, 2, 5), None, None, TrainConfig(), "/nonexistent/never-written", run_config={})


# ----------------------------------------------------------------------------- counting a prepared folder


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from owngpt.data.prepare import PrepareConfig, prepare

    root = tmp_path_factory.mktemp("ngram-data")
    docs = [f"The {w} sat on the mat number {i}. It was a good {w}." for i, w in
            zip(range(60), ["cat", "dog", "fox", "owl", "hen", "cow"] * 10)]
    write(root / "src" / "docs.jsonl", "\n".join(json.dumps({"text": t}) for t in docs) + "\n")
    chats = [{"messages": [{"role": "user", "content": f"hello {i}, how are you?"},
                           {"role": "assistant", "content": f"I am fine, thank you {i}."}]} for i in range(80)]
    write(root / "src" / "chats.jsonl", "\n".join(json.dumps(c) for c in chats) + "\n")
    out = root / "prepared"
    prepare([str(root / "src" / "docs.jsonl"), str(root / "src" / "chats.jsonl")], out,
            PrepareConfig(tokenizer_kind="char", workers=1, near_dup_threshold=0), progress=False)
    return out


def test_train_ngram_end_to_end(prepared, tmp_path):
    from owngpt.chat.reply import reply_stop_ids
    from owngpt.config import TrainConfig
    from owngpt.data.shards import read_manifest
    from owngpt.generate import GenerationConfig, generate_ids
    from owngpt.train.ngram import train_ngram
    from owngpt.train.sft import SFTConfig, sft

    lines: list[str] = []
    report = train_ngram(prepared, tmp_path / "ng", NGramConfig(order=4, block_size=96), echo=lines.append)
    m = read_manifest(prepared)
    assert report["tokens"] > m["splits"]["train"]["tokens"] and report["conversation_windows"] > 0
    assert set(report["ngrams"]) == {"1", "2", "3", "4"} and report["seconds"] > 0 and report["peak_rss_mb"] > 0
    assert report["val_loss"] is not None and 0 < report["val_loss"] < math.log(m["vocab_size"])
    for name in ("config.yaml", "summary.md", "metrics.jsonl", "best/meta.json", "best/tokenizer"):
        assert (tmp_path / "ng" / name).exists(), name
    assert "order 4" in (tmp_path / "ng" / "summary.md").read_text(encoding="utf-8")

    model, meta, tok = load_model(tmp_path / "ng", device="cpu")
    assert meta.arch == "ngram" and meta.val_loss == report["val_loss"] and model.cfg.eot_id == tok.eot_id
    # it has seen the chat template: after the assistant header it answers as the training replies did
    from owngpt.tokenizer import render_conversation

    prompt, _ = render_conversation(tok, [{"role": "user", "content": "hello 3, how are you?"}], add_generation_prompt=True)
    reply = generate_ids(model, [prompt], GenerationConfig(max_new_tokens=40, temperature=0.0),
                         stop_ids=reply_stop_ids(tok), tokenizer=tok)[0]
    assert tok.decode(reply).startswith("I am fine, thank you")

    with pytest.raises(OwnGPTError, match="counted from data, not trained"):
        sft(SFTConfig(base=str(tmp_path / "ng"), data=[str(prepared)]), TrainConfig(out_dir=str(tmp_path / "sft")))
