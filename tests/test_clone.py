"""`owngpt clone` end to end (owngpt/clone.py, owngpt/cli/clone.py) on a synthetic WeChat export with budgets of a
few steps: every stage runs, the report holds the style comparison, no output holds personal data; a second run
from the first one's base; the dry run; bad inputs as one line."""

from __future__ import annotations

import json
import random

from chat_exports import PHONE, WHATSAPP_ANDROID, wechat_csv
from helpers import write
from owngpt.errors import OwnGPTError

QUESTIONS = ["在吗？", "晚上吃什么", "周末去哪玩", "你到家了吗", "明天几点见", "看电影吗", "今天累不累", "作业写完了吗"]
MY_REPLIES = ["在的~ 哈哈", "火锅吧~", "随便啦 哈哈哈", "到啦~", "八点吧~", "好呀好呀~", "还行 哈哈", "快了~"]


def synthetic_wechat(days: int = 40, seed: int = 0) -> str:
    """A friend asks, I answer in my style (tildes and 哈哈), one session a day, with a sticker now and then."""
    rng = random.Random(seed)
    rows = []
    for day in range(days):
        when = f"2023-{1 + day // 28:02d}-{1 + day % 28:02d}"
        for k in range(3):
            rows.append(("文本", 0, "wxid_friend", "wxid_friend", rng.choice(QUESTIONS), f"{when} 20:{10 * k:02d}:00"))
            reply = rng.choice(MY_REPLIES) + (f" 电话 {PHONE}" if day == 3 and k == 0 else "")
            rows.append(("文本", 1, "我", "wxid_friend", reply, f"{when} 20:{10 * k + 1:02d}:00"))
            if rng.random() < 0.2:
                rows.append(("动画表情", 1, "我", "wxid_friend", "表情", f"{when} 20:{10 * k + 2:02d}:00"))
    return wechat_csv(rows)


TRAIN = ["train.batch_size=4", "train.eval_batches=1", "train.warmup_steps=1", "train.tensorboard=false",
         "train.device=cpu"]
TINY = [a for s in ["model.n_layer=1", "model.n_embd=32", "model.n_head=2", "model.block_size=64", *TRAIN,
                    "train.eval_interval=4", "train.max_steps=8"] for a in ("--set", s)]
TINY_SFT = [a for s in [*TRAIN, "train.eval_interval=3", "train.max_steps=6"] for a in ("--sft-set", s)]


def invoke(args: list[str]):
    from typer.testing import CliRunner

    from owngpt.cli import _register, app

    _register()
    return CliRunner().invoke(app, args)


def test_clone_runs_every_stage_and_keeps_personal_data_out(tmp_path):
    export = write(tmp_path / f"wxid_friend {PHONE}.csv", synthetic_wechat())  # a number in the name, too
    rng = random.Random(1)
    # the blocked word is in no document: a sample reply that says it could only have learnt it from the chats
    words = "今天 天气 很好 我们 去 公园 散步 晚上 一起 吃 饺子 周末 看 电影 朋友 家人 学校 工作 快乐 安静".split()
    notes = tmp_path / "notes"
    for i in range(30):  # varied documents, so that every split has text
        write(notes / f"{i}.txt", "".join(rng.choice(words) for _ in range(80)) + "。\n")
    out = tmp_path / "clone"
    block = write(tmp_path / "block.yaml", "words: [火锅]\n")
    args = ["clone", str(export), "--pretrain-data", str(notes), "--out", str(out), "--vocab-size", "320",
            "--block", str(block), "--eval-samples", "4", "--no-chat", "--quiet", *TINY, *TINY_SFT]
    result = invoke(args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "clone_report.json").read_text(encoding="utf-8"))
    blocked = synthetic_wechat().count("火锅吧~")  # my replies that the block list drops
    assert report["read"]["mine"] == 120 - blocked and report["read"]["dropped_total"] > blocked > 0
    assert report["pretrain"]["steps"] == 8 and report["sft"]["steps"] == 6
    assert report["config"]["chats"]["block_words"] == 1  # how many, not which
    assert "火锅" not in json.dumps(report, ensure_ascii=False)
    assert all("火锅" not in f.read_text(encoding="utf-8") for f in (out / "data" / "conversations").glob("*.jsonl"))
    assert sum(report["data"].values()) == 40  # one session a day
    # pretraining read the corpora only: no message of the export (mine or my friend's) is pretraining text
    pretraining = "".join(f.read_text(encoding="utf-8") for f in (out / "pretrain-data").rglob("*.jsonl"))
    assert pretraining and not any(t in pretraining for t in QUESTIONS + [r.split()[0] for r in MY_REPLIES])
    assert report["eval"]["split"] == "test" and report["eval"]["conversations"] == report["data"]["test"] > 0
    rows = report["eval"]["rows"]
    assert list(rows) == ["me (held-out)", "clone", "base"]
    assert 0 < report["eval"]["texts"] == report["eval"]["points"] <= 4
    assert set(report["eval"]["perplexity"]) == {"clone", "base"}
    assert "does it sound like you?" in result.output and "style distance" in result.output
    for f in out.rglob("*"):
        if f.is_file():
            assert PHONE.encode() not in f.read_bytes() and b"555-0134" not in f.read_bytes(), f

    # the same comparison from `owngpt evaluate --style`; `owngpt sft --me` on a raw export
    result = invoke(["evaluate", str(out / "chat"), "--data", str(out / "data"), "--split", "val", "--samples", "2",
                     "--style", "--base", str(out / "pretrain"), "--device", "cpu"])
    assert result.exit_code == 0 and "does it sound like you?" in result.output, result.output
    chat = write(tmp_path / "chat.txt", WHATSAPP_ANDROID)
    result = invoke(["sft", "--base", str(out / "pretrain"), "--data", str(chat), "--me", "Alex", "--out",
                     str(tmp_path / "sft"), "--quiet", *[a.replace("--sft-set", "--set") for a in TINY_SFT]])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "sft" / "sft_report.json").read_text())["train_conversations"] >= 1

    # again from that base: no pretraining, the base's tokenizer
    again = tmp_path / "again"
    result = invoke(["clone", str(export), "--base", str(out / "pretrain"), "--out", str(again), "--eval-samples", "2",
                     "--no-chat", "--quiet", *TINY_SFT])
    assert result.exit_code == 0, result.output
    second = json.loads((again / "clone_report.json").read_text(encoding="utf-8"))
    assert "pretrain" not in second and not (again / "pretrain").exists() and second["sft"]["steps"] == 6


def test_clone_dry_run_and_bad_inputs(tmp_path):
    export = write(tmp_path / "w.csv", synthetic_wechat(days=5))
    result = invoke(["clone", str(export), "--dry-run", "--out", str(tmp_path / "c")])
    assert result.exit_code == 0 and "15 of 30 text messages are yours (50%)" in result.output
    assert not (tmp_path / "c").exists()

    notes = write(tmp_path / "notes.txt", "not a chat\n")
    result = invoke(["clone", str(notes), "--me", "A", "--out", str(tmp_path / "c")])
    assert result.exit_code == 1 and isinstance(result.exception, OwnGPTError)
    assert "not a chat export owngpt recognises" in str(result.exception)
    assert "force a format with a prefix: wechat:FILE" in str(result.exception)

    chat = write(tmp_path / "chat.txt", "1/1/24, 10:00 - Bo: hi\n1/1/24, 10:01 - Al: hey\n")
    result = invoke(["clone", str(chat), "--me", "Cy", "--out", str(tmp_path / "c")])
    assert "--me 'Cy' names nobody here; speakers found: Bo (1), Al (1)" in str(result.exception)
    result = invoke(["clone", str(chat), "--me", "Al", "--groups", "some", "--out", str(tmp_path / "c")])
    assert "--groups must be one of names, merge, skip" in str(result.exception)


def test_clone_evaluates_on_the_test_split_never_the_val_split_fine_tuning_chose_by(tmp_path):
    from owngpt.clone import evaluate_clone
    from owngpt.data.chats.model import ChatOptions
    from owngpt.data.prepare import PrepareConfig, prepare

    export = write(tmp_path / "w.csv", synthetic_wechat(days=20))
    prepare([str(export)], tmp_path / "data", PrepareConfig(chats=ChatOptions(), tokenizer_kind="char",
                                                            split=(0.8, 0.2, 0.0)), progress=False)
    try:
        evaluate_clone(tmp_path / "data", tmp_path / "no-model", None)
    except OwnGPTError as e:
        assert "no test conversations" in str(e), e
    else:
        raise AssertionError("evaluated without a test split")


def test_clone_dry_run_leaves_out_a_chat_where_i_wrote_nothing(tmp_path):
    multi = tmp_path / "multi"
    write(multi / "a.txt", "1/1/24, 10:00 - Bo: hi\n1/1/24, 10:01 - Alice: hey\n")
    write(multi / "lurk.txt", "1/1/24, 10:00 - Carol: hi\n1/1/24, 10:01 - Dave: hey\n")
    result = invoke(["clone", str(multi), "--me", "Alice", "--dry-run"])
    assert result.exit_code == 0, result.output + str(result.exception)
    assert "1 of 2 text messages are yours" in result.output
    assert "lurk.txt: left out: --me 'Alice' names nobody here" in result.output
    result = invoke(["clone", str(multi), "--me", "Zed", "--dry-run"])
    assert result.exit_code == 1 and "names nobody here" in str(result.exception)


def test_the_report_settings_hold_no_personal_data(tmp_path):
    from owngpt.clone import CloneConfig, _settings
    from owngpt.data.chats.model import ChatOptions

    number = "+1 415 555 2671"
    cfg = CloneConfig(exports=[f"chat {number}.txt"], chats=ChatOptions(me=("Alex", number, "jo@example.com")),
                      out=f"runs/{number}", base=f"runs/base {number}", persona=f"me {number}.yaml",
                      pretrain_data=[f"notes {number}/"])
    shown = json.dumps(_settings(cfg), ensure_ascii=False)
    assert "555 2671" not in shown and "jo@example.com" not in shown
    assert _settings(cfg)["chats"]["me"][0] == "Alex" and "<PHONE>" in _settings(cfg)["persona"]
