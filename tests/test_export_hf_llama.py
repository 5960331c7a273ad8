"""`owngpt export-hf`: the folder loads in transformers (no custom code, no network) and computes what owngpt computes:
the same logits (GPT-2 and Llama layouts, GQA, tied or untied, biases), the same greedy tokens, the same chat ids."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest
import torch
from torch.testing import assert_close

from owngpt.checkpoint.adapter import save_adapter
from owngpt.checkpoint.format import read_meta, save_checkpoint
from owngpt.checkpoint.meta import CheckpointMeta
from owngpt.config import ModelConfig
from owngpt.chat.reply import reply_stop_ids
from owngpt.errors import OwnGPTError
from owngpt.export.hf_folder import export_hf, export_run, hf_layout, hf_tokenizer_config
from owngpt.export.hf_llama import hf_llama_config, llama_state_from_gpt
from owngpt.generate import GenerationConfig
from owngpt.generate.engine import generate_ids
from owngpt.model.gpt import GPT
from owngpt.model.lora import LoRAConfig, apply_lora, merge_lora
from owngpt.model.registry import make_model
from owngpt.tokenizer import render_conversation, train_bpe, train_char
from tokenizer_corpus import corpus

transformers = pytest.importorskip("transformers")

# Indented and blank-line text, so the BPE learns merges of "\n" with spaces: the case where tokenizing the rendered
# chat as one string could join a header's newline to a content's leading spaces.
CODE = "def f(x):\n    return x\n\n\n  two spaces\n   three\n\tTab\n"


@pytest.fixture(scope="module")
def bpe():
    return train_bpe(corpus(200) + [CODE] * 30, 700)


@pytest.fixture(scope="module")
def char():
    return train_char(corpus(50) + [CODE])


def tiny_gpt(vocab: int, scale: float = 0.05, seed: int = 0, **cfg) -> GPT:
    """A tiny GPT whose every tensor is randomised (norm weights and biases too), so each mapping shows in the
    logits; a large `scale` gives peaked next-token distributions for greedy decoding."""
    torch.manual_seed(seed)
    settings = dict(preset="modern", vocab_size=vocab, block_size=48, n_layer=2, n_head=4, n_embd=32) | cfg
    model = GPT(ModelConfig(**settings))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * scale)
    return model.eval()


def ids(vocab: int, B: int = 2, T: int = 19) -> torch.Tensor:
    return torch.randint(0, vocab, (B, T), generator=torch.Generator().manual_seed(3))


def load_hf(folder):
    """The exported folder through the Auto classes only: no custom code, nothing downloaded."""
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).eval()
    return model, transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)


# ----------------------------------------------------------------------------- weights and logits

LLAMA_CASES = {
    "tied": dict(),
    "untied-gqa": dict(tie_embeddings=False, n_kv_head=2),
    "mqa-bias-theta-eps-width": dict(n_kv_head=1, bias=True, rope_theta=500.0, norm_eps=1e-5, mlp_hidden=40),
    # `owngpt prune --structured heads`: fewer heads, each as wide as before (n_head * head_dim != n_embd)
    "head-pruned": dict(n_head=2, n_kv_head=2, head_size=8),
}


@pytest.mark.parametrize("case", LLAMA_CASES)
def test_modern_preset_exports_as_llama_with_the_same_logits(case, char, tmp_path):
    ours = tiny_gpt(char.vocab_size, **LLAMA_CASES[case])
    assert export_hf(ours, char, tmp_path / "hf") == "llama"
    hf, _ = load_hf(tmp_path / "hf")
    assert type(hf).__name__ == "LlamaForCausalLM"
    c = hf.config
    assert (c.num_key_value_heads, c.tie_word_embeddings, c.intermediate_size, c.max_position_embeddings) == \
           (ours.cfg.n_kv_head, ours.cfg.tie_embeddings, ours.transformer.h[0].mlp.c_proj.in_features, 48)
    if not ours.cfg.tie_embeddings:  # the head really is its own matrix on both sides
        assert not torch.equal(hf.lm_head.weight, hf.model.embed_tokens.weight)
    x = ids(char.vocab_size)
    with torch.no_grad():
        assert_close(hf(x).logits, ours(x), rtol=1e-5, atol=1e-5)


def test_llama_state_has_every_weight_once(char):
    ours = tiny_gpt(char.vocab_size, n_kv_head=2, bias=True, tie_embeddings=False)
    state = llama_state_from_gpt(ours)
    ref = transformers.LlamaForCausalLM(transformers.LlamaConfig(**hf_llama_config(ours.cfg, char)))
    assert {k: tuple(v.shape) for k, v in state.items()} == {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert sum(v.numel() for v in state.values()) == ours.num_params()


def test_gpt2_preset_exports_as_gpt2_with_the_same_logits(char, tmp_path):
    ours = tiny_gpt(char.vocab_size, preset="gpt2")
    assert export_hf(ours, char, tmp_path / "hf") == "gpt2"
    hf, _ = load_hf(tmp_path / "hf")
    assert type(hf).__name__ == "GPT2LMHeadModel"
    x = ids(char.vocab_size)
    with torch.no_grad():
        assert_close(hf(x).logits, ours(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("preset,extra,stops", [("gpt2", {}, 0), ("modern", {"n_kv_head": 2, "tie_embeddings": False}, 1)])
def test_greedy_generation_is_identical_and_stops_at_the_same_token(preset, extra, stops, char, tmp_path):
    """HF's generate() with the exported generation_config vs owngpt's generator stopping at the reply's end ids."""
    ours = tiny_gpt(char.vocab_size, scale=0.35, seed=1, preset=preset, block_size=96, **extra)
    export_hf(ours, char, tmp_path / "hf")
    hf, hf_tok = load_hf(tmp_path / "hf")
    end_ids = reply_stop_ids(char)  # where owngpt's chat ends a reply
    assert sorted(hf.generation_config.eos_token_id) == sorted(end_ids)
    prompts = [render_conversation(char, [{"role": "user", "content": t}], add_generation_prompt=True)[0]
               for t in ("hi", "你好", "The quick")]
    cfg = GenerationConfig(max_new_tokens=24, temperature=0.0)
    stopped = 0
    for prompt in prompts:
        want = generate_ids(ours, [prompt], cfg, stop_ids=end_ids)[0]
        with torch.no_grad():
            out = hf.generate(torch.tensor([prompt]), max_new_tokens=24, do_sample=False)[0, len(prompt):].tolist()
        if out and out[-1] in end_ids:  # HF keeps the end token, owngpt leaves it out
            out, stopped = out[:-1], stopped + 1
        assert out == want and len(want) > 0
    assert stopped == stops  # these seeds: the modern model ends one of its 3 replies early, the gpt2 one none


# ----------------------------------------------------------------------------- tokenizer and chat template

CONTENTS = [
    "Hello there, how are you?", "今天天气很好，我们去公园散步吧。", "AI模型 is 很好 and fun 123!",
    "  leading spaces", "trailing spaces   ", "\nstarts with a newline", "\n\n  blank lines then indent",
    "line one\nline two\n\n    indented code\n", "\ttab first", " ", "", "emoji 😀 and é",
]


def conversation(content: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "You are helpful.\n"}, {"role": "user", "content": content},
            {"role": "assistant", "content": content}, {"role": "user", "content": "再见 " + content}]


@pytest.mark.parametrize("kind", ["bpe", "char"])
def test_apply_chat_template_gives_owngpts_ids(kind, bpe, char, tmp_path):
    tok = bpe if kind == "bpe" else char
    export_hf(tiny_gpt(tok.vocab_size), tok, tmp_path / "hf")
    _, hf_tok = load_hf(tmp_path / "hf")
    for content in CONTENTS:
        for prompt in (True, False):
            msgs = conversation(content)
            want = render_conversation(tok, msgs, add_generation_prompt=prompt)[0]
            got = hf_tok.apply_chat_template(msgs, add_generation_prompt=prompt, tokenize=True, return_dict=False)
            assert list(got) == want, (content, prompt)
            assert hf_tok.decode(want) == tok.decode(want)


def test_chitchat_format_template_gives_owngpts_ids(tmp_path):
    """An imported GPT2-chitchat model ([CLS] u1 [SEP] a1 [SEP], BERT vocab.txt) exports its own format: the [CLS] and
    [SEP] the template writes must come out as their ids, though they are plain vocabulary entries in owngpt."""
    from owngpt.export.hf_tokenizer import import_tokenizer

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "你", "好", "吗", "我", "很", "hello", "##s", ",", "!"]
    (tmp_path / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    tok = import_tokenizer(tmp_path / "vocab.txt").tokenizer
    assert tok.chat_format["name"] == "chitchat"
    export_hf(tiny_gpt(tok.vocab_size, preset="gpt2"), tok, tmp_path / "hf")
    _, hf_tok = load_hf(tmp_path / "hf")
    msgs = [{"role": "user", "content": "你好吗"}, {"role": "assistant", "content": "我很好, hellos!"}]
    for prompt in (True, False):
        want = render_conversation(tok, msgs, add_generation_prompt=prompt)[0]
        assert list(hf_tok.apply_chat_template(msgs, add_generation_prompt=prompt, tokenize=True,
                                               return_dict=False)) == want


def test_without_the_header_rule_leading_spaces_would_differ(bpe, tmp_path):
    """Why hf_tokenizer_spec adds HEADER_RULE: with the tokenizer.json as trained, "user\\n" + "  x" tokenized
    as one string joins the newline to a space, so apply_chat_template would drift from owngpt."""
    export_hf(tiny_gpt(bpe.vocab_size), bpe, tmp_path / "hf")
    (tmp_path / "hf" / "tokenizer.json").write_text(json.dumps(bpe.spec, ensure_ascii=False))
    _, raw = load_hf(tmp_path / "hf")
    msgs = [{"role": "user", "content": "  two spaces"}]
    assert list(raw.apply_chat_template(msgs, tokenize=True, return_dict=False)) != render_conversation(bpe, msgs)[0]


def test_typed_special_token_is_the_one_known_difference(bpe, tmp_path):
    """owngpt encodes a typed "<|im_end|>" as plain text; HF matches special tokens anywhere in the rendered string,
    so its ids hold the special id there. This pins down exactly that difference (README: export-hf)."""
    export_hf(tiny_gpt(bpe.vocab_size), bpe, tmp_path / "hf")
    _, hf_tok = load_hf(tmp_path / "hf")
    msgs = [{"role": "user", "content": "a <|im_end|> b"}]
    ours = render_conversation(bpe, msgs, add_generation_prompt=True)[0]
    assert ours.count(bpe.im_end_id) == 1  # only the template's own
    head, tail = ours[:ours.index(bpe.im_end_id) - len(bpe.encode("a <|im_end|> b"))], ours[ours.index(bpe.im_end_id):]
    hf_ids = hf_tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True, return_dict=False)
    assert list(hf_ids) == head + bpe.encode("a ") + [bpe.im_end_id] + bpe.encode(" b") + tail


def test_exported_tokenizer_encodes_decodes_and_names_its_specials(bpe, tmp_path):
    export_hf(tiny_gpt(bpe.vocab_size), bpe, tmp_path / "hf")
    hf, hf_tok = load_hf(tmp_path / "hf")
    for text in ["The quick brown fox.", "人工智能正在改变世界", "mixed 中文 text 42", "  spaced  out  ", "😀🎉", CODE]:
        assert hf_tok.encode(text, add_special_tokens=False) == bpe.encode(text)
        assert hf_tok(text)["input_ids"] == bpe.encode(text)  # no BOS/EOS added: owngpt adds none either
        assert hf_tok.decode(bpe.encode(text)) == text
    assert (hf_tok.eos_token_id, hf_tok.pad_token_id, hf_tok.model_max_length) == (bpe.eot_id, bpe.pad_id, 48)
    assert hf.config.eos_token_id == bpe.eot_id and hf.config.pad_token_id == bpe.pad_id
    reply = bpe.encode("Hi!") + [bpe.im_end_id]
    assert hf_tok.decode(reply, skip_special_tokens=True) == "Hi!"
    assert hf_tokenizer_config(bpe, 48)["unk_token"] is None
    assert "{%" in (tmp_path / "hf" / "chat_template.jinja").read_text()


# ----------------------------------------------------------------------------- refusals

@pytest.mark.parametrize("cfg,names", [
    (dict(preset="modern", pos="sinusoidal"), ["model.pos='sinusoidal'", "learned"]),
    (dict(preset="modern", norm="layernorm"), ["model.norm='layernorm'", "RMSNorm"]),
    (dict(preset="modern", mlp="gelu"), ["model.mlp='gelu'", "SwiGLU"]),
    (dict(preset="gpt2", pos="rope"), ["GPT-2's because", "Llama's because", "model.norm='layernorm'"]),
    (dict(preset="gpt2", n_kv_head=2), ["grouped-query", "model.pos='learned'"]),
])
def test_settings_neither_layout_expresses_are_refused_by_name(cfg, names, tmp_path):
    model = GPT(ModelConfig(vocab_size=300, block_size=8, n_layer=1, n_head=4, n_embd=16, **cfg))
    with pytest.raises(OwnGPTError, match="fits neither") as err:
        hf_layout(model)
    for name in names:
        assert name in str(err.value)
    assert "\n" not in str(err.value)


def test_baselines_and_partial_checkpoints_are_refused(char, tmp_path):
    lstm = make_model(ModelConfig(arch="lstm", vocab_size=char.vocab_size, block_size=16, n_layer=1, n_embd=16))
    with pytest.raises(OwnGPTError, match="lstm model"):
        hf_layout(lstm)
    save_checkpoint(tmp_path / "lstm", 1, lstm.state_dict(), CheckpointMeta(arch="lstm", model_config=asdict(lstm.cfg),
                    tokenizer_hash=char.hash), None, tokenizer=char, best=True)
    with pytest.raises(OwnGPTError, match="holds a lstm model"):
        export_run(tmp_path / "lstm", tmp_path / "out")
    base = tiny_gpt(char.vocab_size)
    apply_lora(base, LoRAConfig(rank=2))
    lora_only = {k: v for k, v in base.state_dict().items() if "lora_" in k}
    meta = CheckpointMeta(model_config=asdict(base.cfg), tokenizer_hash=char.hash, weights_filtered=True,
                          run_config={"sft": {"base": "runs/pretrain"}})
    save_checkpoint(tmp_path / "lora", 1, lora_only, meta, None, tokenizer=char, best=True)
    with pytest.raises(OwnGPTError, match="only LoRA adapters.*export-hf runs/pretrain DIR --adapter"):
        export_run(tmp_path / "lora", tmp_path / "out")
    plain = tiny_gpt(char.vocab_size)
    save_checkpoint(tmp_path / "notok", 1, plain.state_dict(), CheckpointMeta(model_config=asdict(plain.cfg)), None,
                    best=True)
    with pytest.raises(OwnGPTError, match="no tokenizer"):
        export_run(tmp_path / "notok", tmp_path / "out")
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(OwnGPTError, match="not a folder"):
        export_run(tmp_path / "notok", tmp_path / "a-file")
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- the CLI verb

def test_cli_exports_a_run_and_merges_an_adapter(char, tmp_path):
    from typer.testing import CliRunner

    import owngpt.cli.export  # noqa: F401 - registers `export-hf`
    from owngpt.cli import app

    base = tiny_gpt(char.vocab_size, n_kv_head=2)
    save_checkpoint(tmp_path / "run", 1, base.state_dict(), CheckpointMeta(model_config=asdict(base.cfg),
                    tokenizer_hash=char.hash), None, tokenizer=char, best=True)
    result = CliRunner().invoke(app, ["export-hf", str(tmp_path / "run"), str(tmp_path / "hf")])
    assert result.exit_code == 0, result.output
    assert "LlamaForCausalLM" in result.output
    x = ids(char.vocab_size)
    hf, _ = load_hf(tmp_path / "hf")
    with torch.no_grad():
        assert_close(hf(x).logits, base(x), rtol=1e-5, atol=1e-5)
    # an adapter (non-zero B, so it changes the logits) is merged into the exported weights
    tuned = tiny_gpt(char.vocab_size, n_kv_head=2)
    apply_lora(tuned, LoRAConfig(rank=2, dropout=0.0))
    with torch.no_grad():
        for name, p in tuned.named_parameters():
            if name.endswith("lora_B"):
                p.normal_(0.0, 0.2)
    save_adapter(tmp_path / "adapter", tuned, LoRAConfig(rank=2, dropout=0.0), read_meta(tmp_path / "run" / "best"))
    result = CliRunner().invoke(app, ["export-hf", str(tmp_path / "run"), str(tmp_path / "hf-lora"),
                                      "--adapter", str(tmp_path / "adapter")])
    assert result.exit_code == 0, result.output
    merged = merge_lora(tuned).eval()
    hf, _ = load_hf(tmp_path / "hf-lora")
    with torch.no_grad():
        assert not torch.allclose(merged(x), base(x), atol=1e-3)
        assert_close(hf(x).logits, merged(x), rtol=1e-5, atol=1e-5)


def test_head_pruned_gpt2_is_refused_by_both_exports(char, tmp_path):
    """HF's GPT-2 and llama.cpp's gpt2 derive a head's width from n_embd / n_head: a head-pruned gpt2 model would
    load there and compute something else, so both exports refuse it."""
    from owngpt.export.gguf import gguf_layout

    pruned = tiny_gpt(char.vocab_size, preset="gpt2", n_head=2, head_size=8)
    with pytest.raises(OwnGPTError, match="head_size"):
        export_hf(pruned, char, tmp_path / "hf")
    with pytest.raises(OwnGPTError, match="head_size"):
        gguf_layout(pruned.cfg)
