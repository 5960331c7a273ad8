"""The encoder-decoder Transformer baseline (owngpt/model/seq2seq.py): segments, the batched forward against a
segment-by-segment reference, causality, the history reaching the reply only through the encoder, segment 0 (no
history), left padding, checkpoints, pretrain + sft through the real recipes, exact resume, generation, the chat CLI."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from neural_fixtures import (
    causal,
    conv,
    falls,
    greedy_batched_equals_alone,
    padded_rows_equal_alone,
    pretrain_and_sft,
    resume_equals_uninterrupted_run,
    sigkill_then_resume,
)
from owngpt.checkpoint.format import load_model, read_meta, save_checkpoint
from owngpt.checkpoint.meta import make_meta
from owngpt.errors import OwnGPTError
from owngpt.model.gpt import rope_lookup
from owngpt.model.registry import arch_of, config_dict
from owngpt.model.seq2seq import Seq2Seq, Seq2SeqConfig, segments
from test_train_loop import write_corpus

V = 40
HEADER = [2, 7, 8]  # stands for <|im_start|> "assistant" "\n"


def s2s(seed: int = 0, **kw) -> Seq2Seq:
    """A tiny model with large random weights, so that every input visibly moves the logits."""
    torch.manual_seed(seed)
    cfg = Seq2SeqConfig(**{"vocab_size": V, "block_size": 48, "n_layer": 2, "n_head": 2, "n_embd": 16,
                           "header": HEADER, **kw})
    model = Seq2Seq(cfg)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.3)
        model.no_history.normal_(0.0, 1.0)
    return model.eval()


def chat_row(*parts: list[int]) -> list[int]:
    """history, then for each later part: the header and that part."""
    row = list(parts[0])
    for part in parts[1:]:
        row += HEADER + list(part)
    return row


def reference(model: Seq2Seq, row: list[int]) -> torch.Tensor:
    """The logits (T, V) of one row computed segment by segment, straight from the module docstring: the encoder
    alone over each history, the decoder alone over each segment."""
    m, C = len(HEADER), model.cfg.n_embd
    starts = [p for p in range(m - 1, len(row)) if row[p - m + 1: p + 1] == HEADER]
    bounds = [0, *starts, len(row)]
    out = []
    for k in range(len(bounds) - 1):
        b, e = bounds[k], bounds[k + 1]
        memory = model.no_history.view(1, 1, C)
        if k > 0:
            history = row[max(0, b - model.cfg.enc_block): b]
            h = model.wte(torch.tensor([history]))
            rope = rope_lookup(model.rope, torch.arange(len(history)), h.dtype)
            for block in model.encoder:  # an all-True mask: bidirectional
                h = block(h, rope, torch.ones(1, 1, 1, len(history), dtype=torch.bool), None, 0)
            memory = torch.cat([memory, model.ln_enc(h)], dim=1)
        x = model.wte(torch.tensor([row[b:e]]))
        rope = rope_lookup(model.rope, torch.arange(e - b), x.dtype)
        for block in model.decoder:  # mask None: plain causal
            keys = torch.ones(1, memory.size(1), dtype=torch.bool)
            x = block(x, rope, None, memory, keys, torch.arange(e - b), e - b)
        out.append(model.lm_head(model.ln_f(x))[0])
    return torch.cat(out)


def test_segments_cut_at_each_header_end():
    pad = [2, 7]  # padding that happens to hold the header's first tokens: not a header
    row = [5, *HEADER, 9, 9, *HEADER, 4]
    idx = torch.tensor([pad + row, [0, 0, 8, 5, 6, 1, 1, 1, 1, 1, 1, 1]])
    valid = torch.tensor([[False, False] + [True] * 10, [False, False] + [True] * 10])
    seg = segments(idx, valid, HEADER, enc_block=48)
    assert seg.n_pairs == 4  # row 0: 3 segments, row 1: 1
    assert seg.pair.tolist() == [[0] * 5 + [1] * 5 + [2] * 2, [3] * 12]
    assert seg.slot[0].tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1]
    assert seg.positions[0].tolist() == [0, 0, 0, 1, 2, 0, 1, 2, 3, 4, 0, 1]  # segment 0 counts real tokens only
    assert seg.width == 12
    assert seg.enc_pair.tolist() == [1, 2]
    assert seg.enc_ids.tolist() == [[5, 2, 7, 0, 0, 0, 0, 0], [5, 2, 7, 8, 9, 9, 2, 7]]  # real history before b_k
    short = segments(idx, valid, HEADER, enc_block=3)
    assert short.enc_ids.tolist() == [[5, 2, 7], [9, 2, 7]]  # the last enc_block tokens
    plain = segments(idx[:, :4], None, HEADER, enc_block=48)  # no complete header, no padding
    assert plain.mask is None and plain.n_pairs == 2 and plain.enc_ids.numel() == 0


@pytest.mark.parametrize("enc_block", [48, 5])
def test_batched_forward_equals_segment_by_segment_reference(enc_block):
    model = s2s(enc_block=enc_block)
    g = torch.Generator().manual_seed(0)

    def rand(n: int) -> list[int]:
        return torch.randint(9, V, (n,), generator=g).tolist()

    rows = [chat_row(rand(7), rand(4), rand(6)), rand(9), chat_row(rand(3), rand(2)),
            chat_row(rand(12), rand(5), rand(1), rand(3))]
    padded_rows_equal_alone(model, rows, reference)


def test_causal():
    causal(s2s(), V, T=30)
    model = s2s()
    x = torch.tensor([chat_row([9, 10, 11], [12, 13], [14, 15, 16])])
    with torch.no_grad():
        ref = model(x)
        for t in range(x.size(1) - 1):  # every cut, headers included
            y = x.clone()
            y[0, t + 1:] = (y[0, t + 1:] + 5) % V
            # the cut may change the batch's shapes (segments, histories): float noise only
            assert_close(model(y)[:, : t + 1], ref[:, : t + 1], rtol=1e-5, atol=1e-5)


def test_the_history_reaches_the_reply_only_through_the_encoder():
    model = s2s()
    a = torch.tensor([chat_row([9, 10, 11, 12], [20, 21, 22])])
    b = a.clone()
    b[0, 1] = 30  # only the history differs
    reply = slice(4 + len(HEADER) - 1, a.size(1))  # from the header's last token on
    with torch.no_grad():
        assert not torch.allclose(model(a)[:, reply], model(b)[:, reply], atol=1e-3)
        for block in model.decoder:  # cut the cross-attention: the decoder alone never sees the history
            block.cross.c_proj.weight.zero_()
        assert_close(model(a)[:, reply], model(b)[:, reply], rtol=0, atol=0)


def test_segment_zero_sees_only_the_no_history_vector():
    model = s2s()
    x = torch.tensor([chat_row([9, 10, 11, 12], [20, 21, 22])])
    first = 4 + len(HEADER) - 1  # the columns before the reply's segment
    with torch.no_grad():
        before = model(x)
        document = model(torch.randint(9, V, (2, 20), generator=torch.Generator().manual_seed(1)))
        for p in model.encoder.parameters():  # the encoder serves histories only
            p.add_(0.5)
        after = model(x)
        assert_close(after[:, :first], before[:, :first], rtol=0, atol=0)
        assert not torch.allclose(after[:, first:], before[:, first:], atol=1e-3)
        assert_close(model(torch.randint(9, V, (2, 20), generator=torch.Generator().manual_seed(1))), document,
                     rtol=0, atol=0)  # a document (no header) is decoder-only
        model.no_history.add_(1.0)
        assert not torch.allclose(model(x)[:, :first], before[:, :first], atol=1e-3)


def test_left_padding_changes_nothing():
    g = torch.Generator().manual_seed(2)

    def rand(n: int) -> list[int]:
        return torch.randint(9, V, (n,), generator=g).tolist()

    padded_rows_equal_alone(s2s(), [chat_row(rand(5), rand(3)), rand(1), chat_row(rand(2), rand(4), rand(2)), rand(7)])
    # a header whose first tokens are padding does not count
    model = s2s()
    row = [8, 20, 21]
    idx = torch.tensor([[2, 7] + row])
    valid = torch.tensor([[False, False, True, True, True]])
    with torch.no_grad():
        assert_close(model(idx, valid=valid)[:, 2:], model(torch.tensor([row])), rtol=1e-5, atol=1e-5)


def test_config_sizes_and_checks():
    model = s2s()
    assert model.cfg.enc_block == 48  # None = block_size
    assert model.num_params() - model.num_params(non_embedding=True) == V * 16
    assert model.flops_per_token() > 6 * V * 16
    assert model(torch.randint(0, V, (2, 9))).shape == (2, 9, V)
    with pytest.raises(OwnGPTError, match="longer than the model's context of 48"):
        model(torch.zeros(1, 49, dtype=torch.long))
    with pytest.raises(OwnGPTError, match="divisible"):
        Seq2SeqConfig(n_embd=30, n_head=4)


def test_checkpoint_round_trip_gives_identical_logits(tmp_path):
    model = s2s(enc_block=7, tie_embeddings=False)
    meta = make_meta(arch=arch_of(model), model_config=config_dict(model))
    save_checkpoint(tmp_path / "run", 1, model.state_dict(), meta, None, best=True)
    assert read_meta(tmp_path / "run" / "best").model_config["header"] == HEADER
    loaded, _, _ = load_model(tmp_path / "run", device="cpu")
    assert isinstance(loaded, Seq2Seq) and loaded.cfg == model.cfg
    x = torch.tensor([chat_row([9, 10, 11, 12, 13, 14, 15, 16, 17], [20, 21], [22])])
    assert torch.equal(loaded(x), model(x))


def test_cpu_bf16_autocast_and_bf16_weights_run():
    x = torch.tensor([chat_row([9, 10, 11], [20, 21], [22, 23])])
    model = s2s(n_layer=1).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # train.dtype=bfloat16 (auto on CPUs with native bf16)
        out = model(x)
    out.float().sum().backward()
    assert bool(torch.isfinite(out).all()) and model.no_history.grad is not None
    assert all(p.grad is not None for p in model.encoder.parameters())
    model = s2s().to(torch.bfloat16)
    assert model.rope.dtype == torch.float32  # rebuilt in fp32 after the cast, as GPT's tables
    out = model(torch.tensor([chat_row([9, 10, 11], [20, 21])]))
    assert out.dtype == torch.bfloat16 and bool(torch.isfinite(out).all())


# ----------------------------------------------------------------------------- trained through the real recipes


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return pretrain_and_sft(tmp_path_factory.mktemp("seq2seq"), "seq2seq")


def test_pretrain_as_decoder_only_then_sft_learn(trained):
    from owngpt.tokenizer.template import assistant_header

    assert falls(trained["pretrain_losses"], 0.6) and falls(trained["sft_losses"], 0.7)
    meta = read_meta(trained["base"] / "best")
    assert meta.arch == "seq2seq" and meta.model_config["header"] == assistant_header(trained["tok"])
    assert read_meta(trained["chat"] / "best").arch == "seq2seq"


def test_generation_batched_equals_alone(trained):
    model, _, tok = load_model(trained["chat"], device="cpu")
    greedy_batched_equals_alone(model, tok, [conv(3)[:3], [{"role": "user", "content": "hi"}], conv(7)[:1]])


def test_cli_chat_on_a_seq2seq_run(trained):
    from chat_fixtures import invoke, json_lines

    result = invoke(["chat", str(trained["chat"]), "-m", "tell me about 4", "-m", "and 5?", "--json", "--seed", "0",
                     "--max-new-tokens", "8", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    turns = json_lines(result.output)
    assert [t["error"] for t in turns] == [False, False] and all(isinstance(t["reply"], str) for t in turns)


def test_lora_is_refused():
    from owngpt.model.lora import LoRAConfig, apply_lora

    with pytest.raises(OwnGPTError, match="this is a seq2seq model: fine-tune it fully"):
        apply_lora(s2s(), LoRAConfig())


# ----------------------------------------------------------------------------- exact resume


@pytest.fixture
def data(tmp_path):
    return write_corpus(tmp_path / "data")


def test_resume_equals_uninterrupted_run(tmp_path, data):
    resume_equals_uninterrupted_run(tmp_path, data, "seq2seq")


def test_sigkill_mid_run_then_resume(tmp_path, data):
    sigkill_then_resume(tmp_path, data, "seq2seq")
