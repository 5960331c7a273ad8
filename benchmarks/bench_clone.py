"""Talk like me (issue 18): a real person's voice from data owngpt already ships, through `owngpt clone`.

The built-in chitchat-dataset records each message's sender and time. Its most active sender (ME below) wrote
25,272 messages in 777 chats. This script renders that person's chats as real exports — one WhatsApp .txt
(Android form) per chat partner for half the partners, one Telegram Desktop full export (result.json, with the
person as its owner) for the other half — holds out 10% of the chats (by a seeded draw), and runs the one command,
`owngpt clone EXPORTS --me NAME`, on the other 90%, timed. Pretraining text is every chitchat chat this person is
not in (so no held-out chat leaks into pretraining) plus builtin:chatterbot-en.

On the held-out chats (rendered as WhatsApp exports, read by the same reader) it reports: the style statistics of
the cloned model's replies, of that person's real replies at the same points, of the base model's replies, and of
another frequent sender's real replies (the second most active sender, from chats without ME; merged turns, like
ME's); style distances to ME's real replies (owngpt/evaluate/style.py); assistant-token perplexity on the held-out
turns; the wall time.

    flock /tmp/owngpt-heavy.lock python benchmarks/bench_clone.py [--out runs/bench-clone] [--samples 200]
        [--pretrain-time 11m] [--sft-time 5m]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
import zlib
from collections import defaultdict
from datetime import datetime
from pathlib import Path

ME = "31267496-e50f-4f91-a197-c5b1bfde803b"
MY_NAME = "Jordan"


def load_chats() -> dict:
    from owngpt.data.builtin import package_dir

    with open(package_dir("chitchat_dataset", "chitchat-dataset") / "dataset.json", encoding="utf-8") as f:
        return json.load(f)


def messages_of(chat: dict) -> list[dict]:
    return [m for group in chat.get("messages", []) for m in group if str(m.get("text", "")).strip()]


def name_of(sender: str) -> str:
    return MY_NAME if sender == ME else f"Pal {sender[:4]}"


def user_id(sender: str) -> int:
    return 111 if sender == ME else 1000 + zlib.crc32(sender.encode()) % 10**7


def when(ts: str) -> datetime:
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ")


def render_whatsapp(chats: list[dict], path: Path) -> None:
    """An Android export (US dates, 12-hour clock), the chats in time order."""
    lines = []
    for chat in sorted(chats, key=lambda c: messages_of(c)[0]["timestamp"]):
        for m in messages_of(chat):
            t = when(m["timestamp"])
            noon = "AM" if t.hour < 12 else "PM"
            stamp = f"{t.month}/{t.day}/{t.year % 100:02d}, {t.hour % 12 or 12}:{t.minute:02d} {noon}"
            lines.append(f"{stamp} - {name_of(m['sender'])}: {m['text'].strip()}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def render_telegram(partners: dict[str, list[dict]], path: Path) -> None:
    """A Telegram Desktop full export: ME as its owner, one personal chat per partner."""
    chat_list = []
    for partner, chats in sorted(partners.items()):
        messages = []
        for chat in sorted(chats, key=lambda c: messages_of(c)[0]["timestamp"]):
            for m in messages_of(chat):
                t = when(m["timestamp"])
                messages.append({"id": len(messages) + 1, "type": "message", "date": t.isoformat(),
                                 "date_unixtime": str(int(t.timestamp())), "from": name_of(m["sender"]),
                                 "from_id": f"user{user_id(m['sender'])}", "text": m["text"].strip()})
        chat_list.append({"name": name_of(partner), "type": "personal_chat", "id": user_id(partner),
                          "messages": messages})
    data = {"personal_information": {"user_id": user_id(ME), "first_name": MY_NAME},
            "chats": {"about": "", "list": chat_list}}
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")


def partner_of(chat: dict) -> str:
    return next(m["sender"] for m in messages_of(chat) if m["sender"] != ME)


def turns_of(chat: dict, sender: str) -> list[str]:
    """`sender`'s merged turns that answer someone (consecutive messages joined by newlines, as clone merges)."""
    turns, speakers = [], []
    for m in messages_of(chat):
        if speakers and speakers[-1] == m["sender"]:
            turns[-1] += "\n" + m["text"].strip()
        else:
            speakers.append(m["sender"])
            turns.append(m["text"].strip())
    return [t for i, (s, t) in enumerate(zip(speakers, turns)) if s == sender and i > 0]


def build(out: Path, seed: int) -> dict:
    """The exports, the held-out exports, the pretraining text and the other sender's turns under `out`."""
    data = load_chats()
    mine = {k: c for k, c in data.items() if any(m["sender"] == ME for m in messages_of(c))
            and len({m["sender"] for m in messages_of(c)}) == 2}
    keys = sorted(mine)
    random.Random(seed).shuffle(keys)
    held = set(keys[: len(keys) // 10])
    by_partner: dict[str, list[dict]] = defaultdict(list)
    for k in keys:
        if k not in held:
            by_partner[partner_of(mine[k])].append(mine[k])
    partners = sorted(by_partner)
    whatsapp, telegram = out / "exports" / "whatsapp", out / "exports" / "telegram"
    for folder in (whatsapp, telegram, out / "heldout"):
        folder.mkdir(parents=True, exist_ok=True)
    for p in partners[::2]:
        render_whatsapp(by_partner[p], whatsapp / f"WhatsApp Chat with {name_of(p)}.txt")
    render_telegram({p: by_partner[p] for p in partners[1::2]}, telegram / "result.json")
    held_by_partner: dict[str, list[dict]] = defaultdict(list)
    for k in sorted(held):
        held_by_partner[partner_of(mine[k])].append(mine[k])
    for p, chats in held_by_partner.items():
        render_whatsapp(chats, out / "heldout" / f"WhatsApp Chat with {name_of(p)}.txt")
    counts: dict[str, int] = defaultdict(int)
    for c in data.values():
        for m in messages_of(c):
            counts[m["sender"]] += 1
    other = sorted((s for s in counts if s != ME), key=lambda s: -counts[s])[0]
    others = [t for c in data.values() if ME not in {m["sender"] for m in messages_of(c)} for t in turns_of(c, other)]
    random.Random(seed).shuffle(others)
    with open(out / "pretrain.jsonl", "w", encoding="utf-8") as f:
        for c in data.values():
            if ME not in {m["sender"] for m in messages_of(c)}:
                f.write(json.dumps({"text": "\n".join(m["text"].strip() for m in messages_of(c))}) + "\n")
    return {"chats": len(mine), "held_out_chats": len(held), "my_messages": counts[ME], "other": other,
            "other_messages": counts[other], "other_turns": others, "whatsapp_files": len(partners[::2]),
            "telegram_chats": len(partners[1::2])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench-clone")
    ap.add_argument("--pretrain-time", default="11m")
    ap.add_argument("--sft-time", default="5m")
    ap.add_argument("--samples", type=int, default=200, help="held-out points at which replies are sampled")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = Path(args.out)
    made = build(out, args.seed)
    print(f"{made['chats']} two-person chats of {ME[:8]}… ({made['my_messages']:,} messages in all chats); "
          f"{made['held_out_chats']} held out; exports: {made['whatsapp_files']} WhatsApp files, a Telegram export "
          f"of {made['telegram_chats']} chats", flush=True)
    command = [sys.executable, "-m", "owngpt", "clone", str(out / "exports"), "--me", MY_NAME, "--out",
               str(out / "run"), "--pretrain-data", str(out / "pretrain.jsonl"), "--pretrain-data",
               "builtin:chatterbot-en", "--pretrain-time", args.pretrain_time, "--sft-time", args.sft_time,
               "--eval-samples", "50", "--seed", str(args.seed), "--no-chat", "--quiet"]
    print("$ " + " ".join(command[2:]), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, env={**os.environ, "COLUMNS": "160"})
    wall = time.perf_counter() - start
    result = evaluate(out, made["other_turns"], args.samples, args.seed)
    report = json.loads((out / "run" / "clone_report.json").read_text(encoding="utf-8"))
    summary = {"wall_s": wall, "stages_s": report["seconds"], "read": report["read"], "data": report["data"],
               "pretrain": report.get("pretrain"), "sft": report["sft"], "other_sender": made["other"],
               "held_out": {k: result[k] for k in ("conversations", "points", "texts")},
               "rows": result["rows"], "perplexity": result["perplexity"], "examples": result["examples"]}
    (out / "bench_clone.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8")
    print_table(summary)


def evaluate(out: Path, other_turns: list[str], samples: int, seed: int) -> dict:
    """The style comparison on the held-out chats (read by the WhatsApp reader, cleaned as prepare cleans)."""
    from owngpt.chat.reply import load_reply_model
    from owngpt.data.chats.model import with_owner
    from owngpt.evaluate.chat_eval import held_out_conversations
    from owngpt.evaluate.style import evaluate_style, style_config

    held_out = held_out_conversations([with_owner(str(out / "heldout"), [MY_NAME])])
    clone = load_reply_model(out / "run" / "chat", device="cpu")
    base = load_reply_model(out / "run" / "pretrain", device="cpu", system=clone.system or "")
    result = evaluate_style({"clone": clone, "base": base}, held_out, style_config(samples, seed),
                            others={"another sender (real)": other_turns})
    result["conversations"] = len(held_out)
    return result


def print_table(s: dict) -> None:
    rows = s["rows"]
    stages = ", ".join(f"{k} {v / 60:.1f}" for k, v in s["stages_s"].items())
    print(f"\nwall time of `owngpt clone`: {s['wall_s'] / 60:.1f} min ({stages})")
    print(f"held out: {s['held_out']['conversations']} sessions, {s['held_out']['texts']} replies per row\n")
    cols = [("chars_median", "median chars", "{:.0f}"), ("chars_mean", "mean chars", "{:.1f}"),
            ("emoji", "emoji", "{:.1%}"), ("question", "?", "{:.1%}"), ("exclamation", "!", "{:.1%}"),
            ("end_punct", "ends in punct.", "{:.1%}"), ("lower_start", "lower-case start", "{:.1%}"),
            ("distinct_1", "distinct-1", "{:.3f}"), ("distinct_2", "distinct-2", "{:.3f}"),
            ("length_js", "length JS", "{:.3f}"), ("char3_cosine", "char 3-gram cos.", "{:.3f}"),
            ("distance", "style distance", "{:.3f}")]
    print("| replies | " + " | ".join(c[1] for c in cols) + " | perplexity |")
    print("|---" * (len(cols) + 2) + "|")
    for name, row in rows.items():
        ppl = s["perplexity"].get(name)
        cells = [fmt.format(row[k]) for k, _, fmt in cols] + [f"{ppl['perplexity']:.1f}" if ppl else "-"]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
