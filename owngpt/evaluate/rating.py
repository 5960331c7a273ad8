"""Blind human rating (`owngpt rate`): the prompts file, the SQLite database a rating session lives in, the replies
generated into it once, and which item a rater sees next on which side (no web imports: owngpt/serve/rating.py is
the page and its API; owngpt/evaluate/pairwise.py the statistics).

The database is one SQLite file (rollback journal, so nothing lies beside it once closed) that the user keeps and
shares:
  meta        format version, the generation settings the replies were sampled with, when it was made
  prompts     the conversations to reply to (JSON messages) and where each came from (file:line)
  models      name, run path and the sha256 of the checkpoint's weights (what a model *is*: a moved run still
              matches, a retrained one does not)
  replies     one reply per (prompt, model), generated once through THE reply path, so every rater sees the same
              replies and a restarted server does not regenerate them
  items       every pair of models for every prompt, in a shuffled order (an item's id says nothing of its models)
  raters      names (no accounts)
  shown       which item a rater was given, and which model was on the left and which on the right
  judgements  rater, item, prompt, left model, right model, verdict (left / right / tie / both_bad), comment, time

Sides: a rater's item has model A on the left when that rater has seen that pair of models with A on the left no
more often than with B on the left (a seeded coin on a draw), so each pair is shown left and right equally often
to each rater, within one. Order: items fewest raters have judged come first (raters rating at the same time spread
over the set), then a fixed shuffle per rater. A rater never gets an item twice.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import threading
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from itertools import combinations
from pathlib import Path
from typing import Any, Callable, Sequence

from owngpt.errors import OwnGPTError
from owngpt.tokenizer.template import Message, check_messages

FORMAT = "owngpt-rating 1"
VERDICTS = ("left", "right", "tie", "both_bad")
MAX_RATER_CHARS = 64
MAX_COMMENT_CHARS = 2000

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE prompts (id INTEGER PRIMARY KEY, messages TEXT NOT NULL, source TEXT NOT NULL);
CREATE TABLE models (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, run TEXT NOT NULL,
                     sha256 TEXT NOT NULL UNIQUE);
CREATE TABLE replies (prompt_id INTEGER NOT NULL REFERENCES prompts(id), model_id INTEGER NOT NULL REFERENCES models(id),
                      text TEXT NOT NULL, created TEXT NOT NULL, PRIMARY KEY (prompt_id, model_id));
CREATE TABLE items (id INTEGER PRIMARY KEY, prompt_id INTEGER NOT NULL REFERENCES prompts(id),
                    model_a INTEGER NOT NULL REFERENCES models(id), model_b INTEGER NOT NULL REFERENCES models(id),
                    UNIQUE (prompt_id, model_a, model_b), CHECK (model_a < model_b));
CREATE TABLE raters (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created TEXT NOT NULL);
CREATE TABLE shown (rater_id INTEGER NOT NULL REFERENCES raters(id), item_id INTEGER NOT NULL REFERENCES items(id),
                    left_model INTEGER NOT NULL REFERENCES models(id), right_model INTEGER NOT NULL REFERENCES models(id),
                    time TEXT NOT NULL, PRIMARY KEY (rater_id, item_id));
CREATE TABLE judgements (id INTEGER PRIMARY KEY, rater_id INTEGER NOT NULL REFERENCES raters(id),
                         item_id INTEGER NOT NULL REFERENCES items(id), prompt_id INTEGER NOT NULL REFERENCES prompts(id),
                         left_model INTEGER NOT NULL REFERENCES models(id),
                         right_model INTEGER NOT NULL REFERENCES models(id),
                         verdict TEXT NOT NULL CHECK (verdict IN ('left', 'right', 'tie', 'both_bad')),
                         comment TEXT NOT NULL DEFAULT '', time TEXT NOT NULL, UNIQUE (rater_id, item_id));
"""


class RatingError(OwnGPTError):
    """A request the rating session cannot take; `kind` is bad_request, not_found or conflict (the page's 4xx)."""

    def __init__(self, message: str, kind: str = "bad_request") -> None:
        super().__init__(message)
        self.kind = kind


# ----------------------------------------------------------------------------- the prompts file


@dataclass(frozen=True)
class Prompt:
    """A conversation the models reply to (ends with a user message), and where it came from (file:line)."""

    messages: list[Message]
    source: str


def read_prompts(path: str | Path) -> list[Prompt]:
    """The prompts of a file: plain text, one prompt per line (blank lines skipped), or JSONL when the file ends in
    .jsonl: one {"prompt": "..."} or {"messages": [...]} per line. Every mistake names file:line."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise OwnGPTError(f"prompts file {path}: {e.strerror or e}") from None
    jsonl = path.suffix.lower() == ".jsonl"
    prompts = []
    for number, line_bytes in enumerate(raw.splitlines(), 1):
        where = f"{path}:{number}"
        try:
            line = line_bytes.decode("utf-8")
        except UnicodeDecodeError:
            raise OwnGPTError(f"{where}: not UTF-8 text (save the file as UTF-8)") from None
        line = line.lstrip("\ufeff") if number == 1 else line
        if not line.strip():
            continue
        if jsonl:
            prompts.append(Prompt(_jsonl_prompt(line, where), where))
            continue
        if not prompts and line.lstrip().startswith("{") and _looks_like_jsonl(line):
            raise OwnGPTError(f"{where}: this line is a JSON object, but {path.name} is read as plain text (one prompt "
                              "per line): name the file *.jsonl to read it as JSONL")
        prompts.append(Prompt([{"role": "user", "content": line.strip()}], where))
    if not prompts:
        raise OwnGPTError(f"prompts file {path} holds no prompt (one per line, or JSONL named *.jsonl)")
    return prompts


def _looks_like_jsonl(line: str) -> bool:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError:
        return False
    return isinstance(obj, dict) and ("prompt" in obj or "messages" in obj)


def _jsonl_prompt(line: str, where: str) -> list[Message]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise OwnGPTError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(obj, dict) or ("prompt" in obj) == ("messages" in obj):
        raise OwnGPTError(f'{where}: each line must be an object with either "prompt" (text) or "messages" '
                          '(a list of {"role", "content"}), e.g. {"prompt": "Hello!"}')
    if "prompt" in obj:
        if not isinstance(obj["prompt"], str) or not obj["prompt"].strip():
            raise OwnGPTError(f'{where}: "prompt" must be non-empty text')
        return [{"role": "user", "content": obj["prompt"].strip()}]
    messages = check_messages(obj["messages"], where=where)
    if not messages or messages[-1]["role"] != "user":
        raise OwnGPTError(f'{where}: "messages" must end with a user message (the models reply to it)')
    return messages


# ----------------------------------------------------------------------------- the models


@dataclass(frozen=True)
class RatedModel:
    """A model in a rating session: its name in the results, its run folder and its weights' sha256."""

    name: str
    run: str
    sha256: str


def checkpoint_sha256(run: str | Path) -> str:
    """The sha256 of the weights of a run's best (else latest) checkpoint, or of a checkpoint folder."""
    from owngpt.checkpoint.format import best_or_latest, read_meta
    from owngpt.io import file_sha256

    ckpt = best_or_latest(run)
    return read_meta(ckpt).sha256 or file_sha256(ckpt / "model.safetensors")


# ----------------------------------------------------------------------------- the database


@dataclass
class Item:
    """What a rater is shown: an item (prompt + two replies) with its sides chosen, and the rater's progress."""

    id: int
    messages: list[Message]
    left: str
    right: str
    done: int  # items this rater has judged
    total: int  # items in the set


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _coin(*parts: object) -> int:
    """A stable pseudo-random number from `parts` (the same rater and item give the same draw). Callers put the
    database's secret salt first, so nobody can recompute from what the page shows which model sits where."""
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "big")


class RatingDB:
    """One rating database. Thread-safe: one connection behind a lock (the server's handlers run on a thread pool)."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path, self.conn, self.lock = path, conn, threading.Lock()

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, path: str | Path) -> "RatingDB":
        """An existing database (for the results and the server)."""
        path = Path(path)
        if not path.is_file():
            raise OwnGPTError(f"no rating database at {path} (make one with: owngpt rate RUN_A RUN_B --prompts FILE "
                              f"--db {path})")
        conn = sqlite3.connect(path, check_same_thread=False)
        try:
            version = conn.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
        except sqlite3.DatabaseError:
            version = None
        if version is None or version[0] != FORMAT:
            conn.close()
            raise OwnGPTError(f"{path} is not an owngpt rating database ({FORMAT})")
        conn.execute("PRAGMA foreign_keys = ON")
        return cls(path, conn)

    @classmethod
    def create_or_check(cls, path: str | Path, prompts: Sequence[Prompt], models: Sequence[RatedModel],
                        generation: dict[str, Any]) -> "RatingDB":
        """The database at `path`: made for these prompts, models and generation settings if new; if it exists, it
        must have been made for the same ones (an OwnGPTError says what differs)."""
        path = Path(path)
        shas = [m.sha256 for m in models]
        if len(set(shas)) != len(shas):
            same = [m.run for m in models if shas.count(m.sha256) > 1]
            raise OwnGPTError(f"{' and '.join(same)} are the same checkpoint: rate different models")
        if len(models) < 2:
            raise OwnGPTError("rating compares models: give at least two runs (owngpt rate RUN_A RUN_B ...)")
        if path.exists():
            db = cls.open(path)
            try:
                db._check_same(prompts, models, generation)
            except OwnGPTError:
                db.close()
                raise
            return db
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.unlink(missing_ok=True)
        conn = sqlite3.connect(tmp)
        with conn:
            conn.executescript(SCHEMA)
            salt = secrets.token_hex(16)  # the draws' secret: item ids, orders and sides cannot be recomputed
            conn.executemany("INSERT INTO meta VALUES (?, ?)", [
                ("format", FORMAT), ("created", _now()), ("generation", json.dumps(generation, sort_keys=True)),
                ("salt", salt)])
            conn.executemany("INSERT INTO prompts VALUES (?, ?, ?)", [
                (i, json.dumps(p.messages, ensure_ascii=False), p.source) for i, p in enumerate(prompts, 1)])
            conn.executemany("INSERT INTO models VALUES (?, ?, ?, ?)", [
                (i, m.name, m.run, m.sha256) for i, m in enumerate(models, 1)])
            pairs = [(p, a, b) for p in range(1, len(prompts) + 1) for a, b in combinations(range(1, len(models) + 1), 2)]
            pairs.sort(key=lambda t: _coin(salt, "item", *t))  # ids in a shuffled order: an id says nothing of its models
            conn.executemany("INSERT INTO items VALUES (?, ?, ?, ?)", [(i, *t) for i, t in enumerate(pairs, 1)])
        conn.close()
        tmp.replace(path)  # a half-made database never sits at `path`
        return cls.open(path)

    def _check_same(self, prompts: Sequence[Prompt], models: Sequence[RatedModel],
                    generation: dict[str, Any]) -> None:
        start_new = "keep the prompts file and runs this database was made for, or start a new one with --db OTHER.sqlite"
        stored = self.prompts()
        if len(stored) != len(prompts):
            raise OwnGPTError(f"{self.path} was made for {len(stored)} prompts (from {stored[0].source.rsplit(':', 1)[0]}); "
                              f"this prompts file has {len(prompts)}: {start_new}")
        for old, new in zip(stored, prompts):
            if old.messages != new.messages:
                raise OwnGPTError(f"{self.path} was made for other prompts: {new.source} is "
                                  f"{_short(new.messages)}, where the database has {_short(old.messages)} "
                                  f"({old.source}): {start_new}")
        have = {m.sha256: m for m in self.models()}
        given = {m.sha256: m for m in models}
        if have.keys() != given.keys():
            missing = [f"{m.name} ({m.run}, sha256 {m.sha256[:12]})" for s, m in have.items() if s not in given]
            extra = [f"{m.run} (sha256 {m.sha256[:12]})" for s, m in given.items() if s not in have]
            raise OwnGPTError(f"{self.path} was made for other models: "
                              + "; ".join(([f"not given: {', '.join(missing)}"] if missing else [])
                                          + ([f"not in the database: {', '.join(extra)}"] if extra else []))
                              + f" (a retrained run has new weights): {start_new}")
        recorded = json.loads(self._meta("generation"))
        if recorded != json.loads(json.dumps(generation, sort_keys=True)):
            diff = ", ".join(f"{k} {recorded.get(k)!r} (now {generation.get(k)!r})"
                             for k in sorted(set(recorded) | set(generation)) if recorded.get(k) != generation.get(k))
            raise OwnGPTError(f"{self.path}'s replies were generated with other settings: {diff}: give the same "
                              f"options, or start a new database with --db OTHER.sqlite")

    def close(self) -> None:
        with self.lock:
            self.conn.close()

    def __enter__(self) -> "RatingDB":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ reading

    def _meta(self, key: str) -> str:
        return self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0]

    @property
    def salt(self) -> str:
        """The secret mixed into every draw (made with the database, kept in it)."""
        if not hasattr(self, "_salt"):
            row = self.conn.execute("SELECT value FROM meta WHERE key = 'salt'").fetchone()
            self._salt = row[0] if row else ""
        return self._salt

    def generation(self) -> dict[str, Any]:
        """The generation settings the replies were sampled with."""
        return json.loads(self._meta("generation"))

    def prompts(self) -> list[Prompt]:
        rows = self.conn.execute("SELECT messages, source FROM prompts ORDER BY id").fetchall()
        return [Prompt(json.loads(m), s) for m, s in rows]

    def models(self) -> list[RatedModel]:
        rows = self.conn.execute("SELECT name, run, sha256 FROM models ORDER BY id").fetchall()
        return [RatedModel(*r) for r in rows]

    def missing_replies(self) -> dict[str, list[int]]:
        """{model sha256: [prompt index (0-based) without a reply]} for models that lack some."""
        rows = self.conn.execute("""SELECT m.sha256, p.id - 1 FROM models m CROSS JOIN prompts p
                                    WHERE NOT EXISTS (SELECT 1 FROM replies r WHERE r.prompt_id = p.id
                                                      AND r.model_id = m.id) ORDER BY m.id, p.id""").fetchall()
        out: dict[str, list[int]] = {}
        for sha, index in rows:
            out.setdefault(sha, []).append(index)
        return out

    def add_replies(self, sha256: str, replies: dict[int, str]) -> None:
        """Store a model's replies ({prompt index: text}); each (prompt, model) has one reply, written once."""
        with self.lock, self.conn:
            (model_id,) = self.conn.execute("SELECT id FROM models WHERE sha256 = ?", (sha256,)).fetchone()
            self.conn.executemany("INSERT INTO replies VALUES (?, ?, ?, ?)",
                                  [(i + 1, model_id, text, _now()) for i, text in replies.items()])

    def item_count(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM items").fetchone()[0]

    def judgements(self) -> list[dict[str, Any]]:
        """Every judgement: rater, prompt (0-based), left and right model (0-based), verdict, comment, time."""
        rows = self.conn.execute("""SELECT r.name, j.prompt_id - 1, j.left_model - 1, j.right_model - 1, j.verdict,
                                           j.comment, j.time FROM judgements j JOIN raters r ON r.id = j.rater_id
                                    ORDER BY j.id""").fetchall()
        keys = ("rater", "prompt", "left", "right", "verdict", "comment", "time")
        return [dict(zip(keys, row)) for row in rows]

    # ------------------------------------------------------------------ rating

    def next_item(self, rater: str) -> Item | None:
        """The item `rater` is to judge now (the one already shown and not yet judged, else a new one with its sides
        chosen), or None when the rater has judged them all. A new name is a new rater."""
        name = rater_name(rater)
        with self.lock, self.conn:
            rater_id = self._rater_id(name, create=True)
            pending = self.conn.execute("""SELECT item_id FROM shown s WHERE rater_id = ? AND NOT EXISTS
                                           (SELECT 1 FROM judgements j WHERE j.rater_id = s.rater_id
                                            AND j.item_id = s.item_id) ORDER BY time, item_id LIMIT 1""",
                                        (rater_id,)).fetchone()
            if pending is not None:
                return self._item(rater_id, pending[0])
            fresh = self.conn.execute("""SELECT i.id, i.model_a, i.model_b,
                                                (SELECT COUNT(*) FROM judgements j WHERE j.item_id = i.id)
                                         FROM items i WHERE NOT EXISTS (SELECT 1 FROM shown s WHERE s.rater_id = ?
                                                                        AND s.item_id = i.id)""",
                                      (rater_id,)).fetchall()
            if not fresh:
                return None
            item_id, a, b, _ = min(fresh, key=lambda r: (r[3], _coin(self.salt, "order", name, r[0])))
            a_left, b_left = (self.conn.execute("""SELECT COUNT(*) FROM shown s JOIN items i ON i.id = s.item_id
                                                   WHERE s.rater_id = ? AND i.model_a = ? AND i.model_b = ?
                                                   AND s.left_model = ?""", (rater_id, a, b, m)).fetchone()[0]
                              for m in (a, b))
            left_is_a = a_left < b_left or (a_left == b_left and _coin(self.salt, "side", name, item_id) % 2 == 0)
            left, right = (a, b) if left_is_a else (b, a)
            self.conn.execute("INSERT INTO shown VALUES (?, ?, ?, ?, ?)", (rater_id, item_id, left, right, _now()))
            return self._item(rater_id, item_id)

    def judge(self, rater: str, item_id: int, verdict: str, comment: str = "") -> tuple[int, int]:
        """Record `rater`'s verdict on an item shown to them; (items judged, items in all)."""
        name = rater_name(rater)
        if verdict not in VERDICTS:
            raise RatingError(f"verdict must be one of {', '.join(VERDICTS)}, not {verdict!r}")
        comment = (comment or "").strip()
        if len(comment) > MAX_COMMENT_CHARS:
            raise RatingError(f"the comment is {len(comment):,} characters: at most {MAX_COMMENT_CHARS:,}")
        with self.lock, self.conn:
            if self.conn.execute("SELECT 1 FROM items WHERE id = ?", (item_id,)).fetchone() is None:
                raise RatingError(f"no item {item_id} in this rating set", "not_found")
            rater_id = self._rater_id(name, create=False)
            shown = self.conn.execute("""SELECT s.left_model, s.right_model, i.prompt_id FROM shown s
                                         JOIN items i ON i.id = s.item_id WHERE s.rater_id = ? AND s.item_id = ?""",
                                      (rater_id, item_id)).fetchone()
            if shown is None:
                raise RatingError(f"item {item_id} was not shown to {name!r}: ask for the next item first", "conflict")
            if self.conn.execute("SELECT 1 FROM judgements WHERE rater_id = ? AND item_id = ?",
                                 (rater_id, item_id)).fetchone():
                raise RatingError(f"{name!r} has already judged item {item_id}", "conflict")
            left, right, prompt_id = shown
            self.conn.execute("""INSERT INTO judgements (rater_id, item_id, prompt_id, left_model, right_model, verdict,
                                 comment, time) VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
                              (rater_id, item_id, prompt_id, left, right, verdict, comment, _now()))
            return self._done(rater_id), self.item_count()

    def progress(self, rater: str) -> tuple[int, int]:
        """(items `rater` has judged, items in all); 0 judged for a name not seen yet."""
        with self.lock:
            row = self.conn.execute("SELECT id FROM raters WHERE name = ?", (rater_name(rater),)).fetchone()
            return (self._done(row[0]) if row else 0), self.item_count()

    def _rater_id(self, name: str, create: bool) -> int:
        row = self.conn.execute("SELECT id FROM raters WHERE name = ?", (name,)).fetchone()
        if row is not None:
            return row[0]
        if not create:
            raise RatingError(f"no rater {name!r} has been shown an item yet", "not_found")
        return self.conn.execute("INSERT INTO raters (name, created) VALUES (?, ?)", (name, _now())).lastrowid

    def _done(self, rater_id: int) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM judgements WHERE rater_id = ?", (rater_id,)).fetchone()[0]

    def _item(self, rater_id: int, item_id: int) -> Item:
        messages, left, right = self.conn.execute(
            """SELECT p.messages, rl.text, rr.text FROM shown s JOIN items i ON i.id = s.item_id
               JOIN prompts p ON p.id = i.prompt_id
               JOIN replies rl ON rl.prompt_id = i.prompt_id AND rl.model_id = s.left_model
               JOIN replies rr ON rr.prompt_id = i.prompt_id AND rr.model_id = s.right_model
               WHERE s.rater_id = ? AND s.item_id = ?""", (rater_id, item_id)).fetchone()
        return Item(item_id, json.loads(messages), left, right, self._done(rater_id), self.item_count())


def rater_name(name: object) -> str:
    """A rater's name as stored: stripped, 1 to MAX_RATER_CHARS characters, no control characters."""
    if not isinstance(name, str) or not name.strip():
        raise RatingError("a rater name is needed (type your name on the page)")
    name = name.strip()
    if len(name) > MAX_RATER_CHARS or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise RatingError(f"a rater name has at most {MAX_RATER_CHARS} characters and no control characters")
    return name


def _short(messages: list[Message]) -> str:
    text = messages[-1]["content"]
    return repr(text if len(text) <= 40 else text[:40] + "...")


# ----------------------------------------------------------------------------- replies and results


def generate_replies(db: RatingDB, load: Callable[[RatedModel], Any], gen, progress: Callable[[str], None] = print) -> int:
    """Generate and store every missing reply: each model is loaded (`load` returns a ReplyModel) and replies to
    each prompt alone with `gen`'s seed, through THE reply path with its own system prompt, exactly as `owngpt chat
    --seed S` answers that conversation. Stored prompt by prompt, so a stopped run resumes. Returns replies made."""
    from owngpt.chat.reply import replies

    prompts = db.prompts()
    made = 0
    for model in db.models():
        todo = db.missing_replies().get(model.sha256, [])
        if not todo:
            continue
        progress(f"{model.name}: generating {len(todo)} replies")
        loaded = load(model)
        for n, index in enumerate(todo, 1):
            text = replies(loaded.model, loaded.tokenizer, [prompts[index].messages], gen, system=loaded.system)[0]
            db.add_replies(model.sha256, {index: text})
            made += 1
            if n % 10 == 0 or n == len(todo):
                progress(f"{model.name}: {n}/{len(todo)}")
    return made


def outcomes(db: RatingDB) -> list:
    """The judgements as pairwise.Outcome (left and right model index, verdict)."""
    from owngpt.evaluate.pairwise import Outcome

    return [Outcome(j["left"], j["right"], j["verdict"]) for j in db.judgements()]


def results(db: RatingDB, samples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Win rates per pair and (three or more models) the Bradley-Terry ranking, plus counts, as plain data."""
    from owngpt.evaluate.pairwise import summary

    models = db.models()
    judged = db.judgements()
    out = summary(outcomes(db), [m.name for m in models], samples, seed)
    out.update(database=str(db.path), prompts=len(db.prompts()), items=db.item_count(),
               raters=sorted({j["rater"] for j in judged}), model_runs=[asdict(m) for m in models],
               generation=db.generation())
    return out
