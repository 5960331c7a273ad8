"""distinct-n, name recall and assistant-token perplexity on hand-made examples."""

import pytest

from owngpt.evaluate.metrics import distinct_n, name_recall


def test_distinct_n_counts_unique_ngrams_over_all_replies():
    replies = ["I like cats", "i like dogs"]
    # unigrams: i, like, cats, i, like, dogs -> 4 distinct of 6
    assert distinct_n(replies, 1) == pytest.approx(4 / 6)
    # bigrams: (i like), (like cats), (i like), (like dogs) -> 3 of 4
    assert distinct_n(replies, 2) == pytest.approx(3 / 4)


def test_distinct_n_uses_characters_for_chinese():
    assert distinct_n(["你好你好"], 1) == pytest.approx(2 / 4)
    assert distinct_n(["你好你好"], 2) == pytest.approx(2 / 3)  # 你好, 好你, 你好


def test_distinct_n_empty_is_zero():
    assert distinct_n([], 1) == 0.0
    assert distinct_n(["one"], 2) == 0.0


def test_name_recall_is_case_insensitive_fraction():
    assert name_recall(["I am Nova.", "my name is nova", "I'm a bot"], "Nova") == pytest.approx(2 / 3)
    assert name_recall(["我是小欧。", "你好"], "小欧") == 0.5
    assert name_recall([], "Nova") == 0.0


def _tiny_chat_model():
    import torch

    from owngpt.config import ModelConfig
    from owngpt.model.gpt import GPT
    from owngpt.tokenizer import train_char

    tok = train_char(["abcdefghijklmnopqrstuvwxyz ,.?!"])
    torch.manual_seed(0)
    model = GPT(ModelConfig(preset="modern", vocab_size=tok.vocab_size, block_size=96, n_layer=1, n_head=2, n_embd=16)).eval()
    return model, tok


def test_chat_perplexity_is_the_masked_cross_entropy():
    import math

    import torch
    import torch.nn.functional as F

    from owngpt.evaluate.metrics import chat_perplexity
    from owngpt.tokenizer import render_conversation

    model, tok = _tiny_chat_model()
    conv = [{"role": "user", "content": "hi there"}, {"role": "assistant", "content": "hello you"}]
    ids, mask = render_conversation(tok, conv)
    with torch.no_grad():
        logits = model(torch.tensor(ids[:-1])[None])[0]
    losses = F.cross_entropy(logits, torch.tensor(ids[1:]), reduction="none")
    keep = torch.tensor(mask[1:], dtype=torch.bool)
    expected = float(losses[keep].mean())
    got = chat_perplexity(model, tok, [conv])
    assert got["tokens"] == int(keep.sum()) == len(tok.encode("hello you")) + 1  # the reply and its <|im_end|>
    assert got["loss"] == pytest.approx(expected, rel=1e-5) and got["perplexity"] == pytest.approx(math.exp(expected), rel=1e-5)


class _Uniform(__import__("torch").nn.Module):
    """Every token equally likely: perplexity must equal the vocabulary size."""

    def __init__(self, vocab: int, block: int = 64) -> None:
        import torch
        from types import SimpleNamespace

        super().__init__()
        self.cfg = SimpleNamespace(vocab_size=vocab, block_size=block)
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def forward(self, idx, valid=None):
        import torch

        return torch.zeros(*idx.shape, self.cfg.vocab_size)


def test_uniform_model_perplexity_is_the_vocabulary_size_and_bits_per_byte_follows():
    import math

    from owngpt.evaluate.metrics import document_scores
    from owngpt.tokenizer import train_char

    tok = train_char(["abcdefgh é"])
    texts = ["abc deff", "é" * 30 + "ab", "h"]
    model = _Uniform(tok.vocab_size, block=8)  # windows of 9 tokens: long documents are cut and still scored once each
    got = document_scores(model, tok, texts)
    n_tokens = sum(len(tok.encode(t)) for t in texts)
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    assert got["tokens"] == n_tokens and got["bytes"] == n_bytes
    assert got["perplexity"] == pytest.approx(tok.vocab_size, rel=1e-6)
    # every token costs log2(V) bits: bits/byte = tokens * log2(V) / bytes
    assert got["bits_per_byte"] == pytest.approx(n_tokens * math.log2(tok.vocab_size) / n_bytes, rel=1e-6)


def test_bits_per_byte_of_assistant_tokens_leaves_special_tokens_out():
    import math

    from owngpt.evaluate.metrics import chat_items, scored_bits
    from owngpt.tokenizer import train_char

    tok = train_char(["hi there, hello you"])
    model = _Uniform(tok.vocab_size)
    conv = [{"role": "user", "content": "hi there"}, {"role": "assistant", "content": "hello you"}]
    got = scored_bits(model, tok, chat_items(tok, [conv], 64))
    # only "hello you" is scored (its <|im_end|> carries no bytes): 9 tokens of 1 byte each
    assert got["bytes"] == 9 and got["text_tokens"] == 9
    assert got["bits_per_byte"] == pytest.approx(math.log2(tok.vocab_size), rel=1e-6)


def test_bleu_is_sacrebleus_corpus_bleu_with_zh_tokenisation_for_chinese():
    import sacrebleu

    from owngpt.evaluate.metrics import corpus_bleu

    hyps = ["the cat sat on the mat", "hello there my friend", "a b c d"]
    refs = ["the cat is on the mat", "hello my friend", "a b c d"]
    got = corpus_bleu(hyps, refs)
    assert got["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert "tok:13a" in got["signature"] and got["tokenize"] == "13a"
    zh_h, zh_r = ["我们今天去公园散步", "你好世界"], ["今天我们去公园散步吧", "你好，世界"]
    got = corpus_bleu(zh_h, zh_r)
    assert got["bleu"] == pytest.approx(sacrebleu.corpus_bleu(zh_h, [zh_r], tokenize="zh").score)
    assert "tok:zh" in got["signature"]
