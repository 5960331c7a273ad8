"""`owngpt import-hf`: GPT-2-family folders (both key layouts, safetensors or a weights-only .bin) with a byte-level BPE
or a BERT vocab.txt tokenizer become owngpt runs whose logits and greedy tokens are transformers' own; GPT2-chitchat's
format renders the ids its preprocessing gives; the imported run chats, fine-tunes and reranks with MMI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

from owngpt.checkpoint.format import load_model
from owngpt.errors import OwnGPTError
from owngpt.export.hf import import_hf
from owngpt.export.hf_tokenizer import import_tokenizer
from owngpt.generate import GenerationConfig
from owngpt.generate.engine import generate_ids
from owngpt.tokenizer import SPECIAL_TOKENS, render_conversation

transformers = pytest.importorskip("transformers")

ENGLISH = ["the cat sat on the mat.", "hello there, how are you?", "I am fine, thanks!", "what is your name?",
           "my name is Ada.", "tell me about the weather", "it is sunny today"] * 5
CHINESE = "你好吗我很好谢谢今天天气怎么样不错是谁小明的了在有人这个们中来上大为和国地到以说时要就出会可也对生能"


# ----------------------------------------------------------------------------- tiny sources made here


def byte_bpe(folder: Path, layout: str) -> int:
    """A tiny GPT-2-style byte-level BPE (its own <|endoftext|> last, as GPT-2's id 50256) saved as tokenizer.json or
    as vocab.json + merges.txt; returns its vocabulary size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    hf.train_from_iterator(ENGLISH, trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                        show_progress=False))
    hf.add_special_tokens(["<|endoftext|>"])
    folder.mkdir(parents=True, exist_ok=True)
    if layout == "tokenizer.json":
        hf.save(str(folder / "tokenizer.json"))
    else:
        hf.model.save(str(folder))  # vocab.json + merges.txt
        vocab = json.loads((folder / "vocab.json").read_text())
        vocab["<|endoftext|>"] = hf.token_to_id("<|endoftext|>")
        (folder / "vocab.json").write_text(json.dumps(vocab))
    return hf.get_vocab_size()


def bert_vocab(folder: Path) -> list[str]:
    """A GPT2-chitchat-style vocab.txt: BERT's control tokens, Chinese characters, a few English pieces."""
    tokens = ["[PAD]"] + [f"[unused{i}]" for i in range(1, 4)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens += sorted(set(CHINESE)) + ["hello", "##lo", "he", "!", "，", "？", "。", "1", "##2"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return tokens


def gpt2_model(vocab: int, seed: int = 0, tie: bool = True):
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(vocab_size=vocab, n_positions=64, n_embd=32, n_layer=2, n_head=4,
                                  tie_word_embeddings=tie, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():  # HF starts biases at 0 and norms at 1: randomise so every tensor's mapping shows
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def save_model(model, folder: Path, how: str) -> None:
    """how: 'safetensors' (HF's own names, no transformer. prefix), or 'bin' (a torch.save'd state dict with the
    transformer. prefix, as GPT2-chitchat and DialoGPT ship)."""
    folder.mkdir(parents=True, exist_ok=True)
    if how == "safetensors":
        model.save_pretrained(folder, safe_serialization=True)
        from safetensors.torch import load_file, save_file

        state = {k.removeprefix("transformer."): v for k, v in load_file(str(folder / "model.safetensors")).items()}
        save_file(state, str(folder / "model.safetensors"))
    else:
        (folder / "config.json").write_text(json.dumps(model.config.to_dict()))
        torch.save({k: v.clone() for k, v in model.state_dict().items()}, folder / "pytorch_model.bin")


def source_logits_in_owngpt_order(hf_logits: torch.Tensor, source_ids: list[int]) -> torch.Tensor:
    return hf_logits[..., torch.tensor(source_ids).clamp(min=0)]


# ----------------------------------------------------------------------------- byte-level BPE


@pytest.mark.parametrize("tok_layout,weights", [("tokenizer.json", "safetensors"), ("vocab.json", "bin")])
def test_gpt2_import_gives_transformers_logits_and_greedy_tokens(tmp_path, tok_layout, weights):
    src = tmp_path / "src"
    vocab = byte_bpe(src, tok_layout)
    hf = gpt2_model(vocab)
    save_model(hf, src, weights)
    record = import_hf(src, tmp_path / "run")
    assert record["chat_format"] == "chatml" and record["vocab_size"] == vocab + len(SPECIAL_TOKENS) - 1
    model, meta, tok = load_model(tmp_path / "run", device="cpu")
    source_ids = json.loads((tmp_path / "run" / "import.json").read_text())["source_ids"]
    assert source_ids[tok.eot_id] == vocab - 1  # GPT-2's own <|endoftext|> is owngpt's
    assert record["new_token_ids"] == [i for i in range(len(SPECIAL_TOKENS)) if i != tok.eot_id]

    from tokenizers import Tokenizer as HFTokenizer

    reference = HFTokenizer.from_file(str(src / "tokenizer.json")) if tok_layout == "tokenizer.json" else None
    for text in ENGLISH[:7] + ["  Spaces, digits 12345 and ünïcödé 你好"]:
        ours = tok.encode(text)
        if reference is not None:
            assert [source_ids[i] for i in ours] == reference.encode(text).ids
        assert tok.decode(ours) == text
    x_src = torch.tensor([tok_ids for tok_ids in [[source_ids[i] for i in tok.encode(ENGLISH[1])]]])
    x_ours = torch.tensor([tok.encode(ENGLISH[1])])
    with torch.no_grad():
        theirs = source_logits_in_owngpt_order(hf(x_src).logits, source_ids)
        mine = model(x_ours)
    real = torch.tensor([s >= 0 for s in source_ids])
    assert_close(mine[..., real], theirs[..., real], rtol=1e-5, atol=1e-5)
    # greedy: transformers' generate and owngpt's generator give the same tokens
    hf_out = hf.generate(x_src, max_new_tokens=12, do_sample=False, eos_token_id=None, pad_token_id=0)[0, x_src.shape[1]:]
    ours_out = generate_ids(model, [x_ours[0].tolist()], GenerationConfig(max_new_tokens=12, temperature=0))[0]
    assert [source_ids[i] for i in ours_out] == hf_out.tolist()


def test_new_chatml_rows_start_at_the_mean_and_user_text_stays_text(tmp_path):
    src = tmp_path / "src"
    hf = gpt2_model(byte_bpe(src, "tokenizer.json"))
    save_model(hf, src, "safetensors")
    import_hf(src, tmp_path / "run")
    model, _, tok = load_model(tmp_path / "run", device="cpu")
    wte, source = model.transformer.wte.weight, hf.transformer.wte.weight
    new = [i for i in range(8) if i != tok.eot_id]
    spread = source.std(0)
    for i in new:  # near the mean (a tenth of each dimension's spread), and apart from one another
        assert ((wte[i] - source.mean(0)).abs() <= 0.5 * spread + 1e-6).all()
    assert len({tuple(wte[i].tolist()) for i in new}) == len(new)
    assert_close(wte[tok.eot_id], source[-1])  # GPT-2's own <|endoftext|> keeps its row
    assert tok.encode("<|im_end|><|endoftext|>") and not set(tok.encode("<|im_end|><|endoftext|>")) & set(range(8))
    ids, mask = render_conversation(tok, [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}])
    assert ids[0] == tok.im_start_id and sum(mask) == len(tok.encode("hi")) + 1


# ----------------------------------------------------------------------------- GPT2-chitchat (BERT vocab.txt)


def chitchat_source(tmp_path: Path, seed: int = 0, name: str = "src") -> Path:
    src = tmp_path / name
    tokens = bert_vocab(src)
    save_model(gpt2_model(len(tokens), seed=seed), src, "bin")
    return src


def gpt2_chitchat_preprocess(vocab_file: Path, utterances: list[str]) -> list[int]:
    """GPT2-chitchat's preprocess.py: [CLS] + each utterance's ids + [SEP] after each (BertTokenizerFast)."""
    # GPT2-chitchat builds BertTokenizerFast(vocab_file=...); from_pretrained on the folder reads the same vocab.txt
    # in transformers 4 and 5 (whose constructor renamed the argument)
    bert = transformers.BertTokenizerFast.from_pretrained(str(vocab_file.parent), sep_token="[SEP]", pad_token="[PAD]",
                                                          cls_token="[CLS]")
    ids = [bert.cls_token_id]
    for u in utterances:
        ids += bert.encode(u, add_special_tokens=False) + [bert.sep_token_id]
    return ids


def test_chitchat_dialogue_renders_gpt2_chitchats_ids(tmp_path):
    src = chitchat_source(tmp_path)
    imported = import_tokenizer(src)
    tok = imported.tokenizer
    assert tok.kind == "wordpiece" and tok.chat_format["name"] == "chitchat"
    dialogue = ["你好，今天天气怎么样？", "很好！Hello 12", "你是谁", "我是小明。"]
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": u} for i, u in enumerate(dialogue)]
    ids, mask = render_conversation(tok, messages)
    assert [imported.source_ids[i] for i in ids] == gpt2_chitchat_preprocess(src / "vocab.txt", dialogue)
    # the loss covers exactly the assistant utterances and the [SEP] that ends each
    sep = tok.chat_format["sep_id"]
    learned = [i for i, m in zip(ids, mask) if m]
    assert learned == tok.encode(dialogue[1]) + [sep] + tok.encode(dialogue[3]) + [sep]
    assert tok.decode(tok.encode("你好，今天")) == "你好，今天"
    assert sep not in tok.encode("[SEP] [CLS] <|im_end|>")  # typed text never becomes a control token
    with pytest.raises(OwnGPTError, match="no system turn"):
        render_conversation(tok, [{"role": "system", "content": "you are Ada"}])


def test_chitchat_import_chats_and_logits_match(tmp_path):
    src = chitchat_source(tmp_path)
    hf = transformers.GPT2LMHeadModel.from_pretrained(src).eval()  # the .bin as transformers reads it
    record = import_hf(src, tmp_path / "run", backward=chitchat_source(tmp_path, seed=1, name="mmi"))
    assert record["chat_format"] == "chitchat"
    model, meta, tok = load_model(tmp_path / "run", device="cpu")
    source_ids = json.loads((tmp_path / "run" / "import.json").read_text())["source_ids"]
    ids = render_conversation(tok, [{"role": "user", "content": "你好吗"}], add_generation_prompt=True)[0]
    with torch.no_grad():
        theirs = source_logits_in_owngpt_order(hf(torch.tensor([[source_ids[i] for i in ids]])).logits, source_ids)
        mine = model(torch.tensor([ids]))
    real = torch.tensor([s >= 0 for s in source_ids])
    assert_close(mine[..., real], theirs[..., real], rtol=1e-5, atol=1e-5)
    # a chat session replies in the chitchat format, MMI reranks with the imported backward model by default
    from owngpt.chat.session import ChatSession

    session = ChatSession.from_checkpoint(str(tmp_path / "run"), device="cpu", mmi=3, dtype="float32",
                                          gen=GenerationConfig(max_new_tokens=8, temperature=1.0, seed=0))
    assert session.backward is not None and session.system is None
    assert isinstance(session.reply("你好"), str) and len(session.last_candidates) == 3


def test_sft_continues_chitchat_or_moves_it_to_chatml(tmp_path):
    from owngpt.config import load_run_config
    from owngpt.train.sft import SFTConfig, sft

    src = chitchat_source(tmp_path)
    import_hf(src, tmp_path / "run")
    chats = tmp_path / "chats.jsonl"
    with open(chats, "w", encoding="utf-8") as f:
        for i in range(40):
            f.write(json.dumps({"messages": [{"role": "system", "content": "你好"},
                                             {"role": "user", "content": "你好吗" * (1 + i % 3)},
                                             {"role": "assistant", "content": "我很好"}]}, ensure_ascii=False) + "\n")
    train = ["train.batch_size=4", "train.max_steps=3", "train.eval_interval=3", "train.eval_batches=1",
             "train.warmup_steps=1", "train.device=cpu", "train.dtype=float32", "train.compile=off",
             "train.tensorboard=false"]
    for fmt in ("keep", "chatml"):
        out = tmp_path / f"sft-{fmt}"
        cfg = load_run_config("sft", [f"train.out_dir={out}", *train]).train
        _, report = sft(SFTConfig(base=str(tmp_path / "run"), data=[str(chats)], chat_format=fmt), cfg, quiet=True)
        _, _, tok = load_model(out, device="cpu")
        assert tok.chat_format["name"] == ("chitchat" if fmt == "keep" else "chatml")
        assert report.get("system_messages_dropped", 0) == (40 if fmt == "keep" else 0)
    # resuming the ChatML run without --chat-format chatml would teach the other layout: refused, with the flag
    more = load_run_config("sft", [f"train.out_dir={tmp_path / 'sft-chatml'}", *train[:1], "train.max_steps=6",
                                   *train[2:]]).train
    with pytest.raises(OwnGPTError, match="chatml chat format .* --chat-format chatml"):
        sft(SFTConfig(base=str(tmp_path / "run"), data=[str(chats)]), more, quiet=True)
    result, _ = sft(SFTConfig(base=str(tmp_path / "run"), data=[str(chats)], chat_format="chatml"), more, quiet=True)
    assert result.steps == 6
    with pytest.raises(OwnGPTError, match="no system turn"):
        sft(SFTConfig(base=str(tmp_path / "run"), data=[str(chats)], persona="example-zh"),
            load_run_config("sft", [f"train.out_dir={tmp_path / 'x'}", *train]).train, quiet=True)


# ----------------------------------------------------------------------------- bad input


def test_refusals(tmp_path):
    src = chitchat_source(tmp_path)
    # not GPT-2: the error names the architecture found
    llama = tmp_path / "llama"
    llama.mkdir()
    (llama / "config.json").write_text(json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}))
    with pytest.raises(OwnGPTError, match="'llama' model .LlamaForCausalLM"):
        import_hf(llama, tmp_path / "out")
    # missing tokenizer files
    bare = tmp_path / "bare"
    save_model(gpt2_model(40), bare, "safetensors")
    with pytest.raises(OwnGPTError, match="no tokenizer"):
        import_hf(bare, tmp_path / "out")
    # a tokenizer with more tokens than the model has rows
    with pytest.raises(OwnGPTError, match="belongs to another model"):
        import_hf(bare, tmp_path / "out", tokenizer=src / "vocab.txt")
    # config and weights disagree
    cfg = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**cfg, "n_embd": 64}))
    with pytest.raises(OwnGPTError, match="do not fit config.json|embedding has"):
        import_hf(src, tmp_path / "out")
    (src / "config.json").write_text(json.dumps(cfg))
    # a pickle that needs more than tensors: refused, never loaded unsafely
    state = torch.load(src / "pytorch_model.bin", weights_only=True)
    torch.save({**state, "extra": Path("x")}, src / "pytorch_model.bin")
    with pytest.raises(OwnGPTError, match="holds more than tensors.*never loads a pickle unsafely"):
        import_hf(src, tmp_path / "out")
    # a vocab.txt with a duplicate line, named by line
    (src / "vocab.txt").write_text("[UNK]\na\nb\na\n")
    with pytest.raises(OwnGPTError, match="vocab.txt:4: token 'a' appears twice"):
        import_tokenizer(src)
    with pytest.raises(OwnGPTError, match="chat format"):
        import_hf(bare, tmp_path / "out", tokenizer=src, chat_format="alpaca")
    assert not (tmp_path / "out").exists()


def test_cli_import_then_generate(tmp_path):
    from typer.testing import CliRunner

    from owngpt.cli import _register, app

    _register()
    src = chitchat_source(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["import-hf", str(src), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "chat format chitchat" in result.output and "8 new special tokens" in result.output
    result = runner.invoke(app, ["generate", str(tmp_path / "run"), "你好", "--max-new-tokens", "5",
                                 "--temperature", "0", "--device", "cpu"])
    assert result.exit_code == 0, result.output


def test_served_chitchat_import_replies_and_refuses_a_system_message(tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from owngpt.serve.app import create_app
    from owngpt.serve.config import ServeConfig
    from owngpt.serve.models import load_served

    import_hf(chitchat_source(tmp_path), tmp_path / "run")
    app = create_app(load_served([str(tmp_path / "run")], device="cpu", dtype="float32"), ServeConfig())
    with TestClient(app) as client:
        model = client.get("/v1/models").json()["data"][0]["id"]
        body = {"model": model, "max_tokens": 5, "temperature": 0,
                "messages": [{"role": "user", "content": "你好吗"}]}
        ok = client.post("/v1/chat/completions", json=body)
        assert ok.status_code == 200, ok.text
        bad = client.post("/v1/chat/completions", json={**body, "messages": [{"role": "system", "content": "hi"},
                                                                              *body["messages"]]})
        assert bad.status_code == 400 and "no system turn" in bad.json()["error"]["message"]


def test_vocab_txt_follows_tokenizer_configs_do_lower_case(tmp_path):
    src = tmp_path / "src"
    bert_vocab(src)
    assert import_tokenizer(src).tokenizer.decode(import_tokenizer(src).tokenizer.encode("Hello")) == "hello"
    (src / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}))
    cased = import_tokenizer(src).tokenizer
    assert cased.decode(cased.encode("Hello")) == "[UNK]"  # the vocabulary has only "hello"
    assert import_tokenizer(src, lowercase=True).tokenizer.decode(cased.encode("hello")) == "hello"


def test_broken_sources_are_one_line_errors(tmp_path):
    src = chitchat_source(tmp_path)
    cfg = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({k: v for k, v in cfg.items() if k != "n_layer"}))
    with pytest.raises(OwnGPTError, match="config.json: n_layer must be a positive integer, not None"):
        import_hf(src, tmp_path / "out")
    (src / "config.json").write_text(json.dumps(cfg))
    (src / "pytorch_model.bin").unlink()
    (src / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{trunc")
    with pytest.raises(OwnGPTError, match="not a readable safetensors file"):
        import_hf(src, tmp_path / "out")
    (src / "vocab.txt").write_bytes(b"[UNK]\n\xff\xfe\n")
    with pytest.raises(OwnGPTError, match="not UTF-8"):
        import_tokenizer(src)


def test_sft_refuses_lora_while_moving_to_chatml(tmp_path):
    from owngpt.config import load_run_config
    from owngpt.model.lora import LoRAConfig
    from owngpt.train.sft import SFTConfig, sft

    import_hf(chitchat_source(tmp_path), tmp_path / "run")
    cfg = load_run_config("sft", [f"train.out_dir={tmp_path / 'x'}", "train.max_steps=1", "train.device=cpu"]).train
    with pytest.raises(OwnGPTError, match="--chat-format chatml with --lora"):
        sft(SFTConfig(base=str(tmp_path / "run"), data=["builtin:chitchat"], chat_format="chatml",
                      lora=LoRAConfig(rank=2)), cfg, quiet=True)
