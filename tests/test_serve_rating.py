"""The rating page's API in process (FastAPI's TestClient): a whole session through it never names a model or a run,
the database records the sides each rater saw, and every bad request is a 4xx that says what is wrong."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from owngpt.errors import OwnGPTError  # noqa: E402
from owngpt.evaluate.rating import RatedModel, RatingDB, read_prompts  # noqa: E402
from owngpt.serve.rating import create_rating_app  # noqa: E402

GEN = {"seed": 0, "temperature": 0.8}
# names, paths and hashes that would stand out anywhere in an answer
MODELS = [RatedModel("secret-alpha", "/runs/hidden-run-alpha", "1234abcd" * 8),
          RatedModel("secret-beta", "/runs/hidden-run-beta", "5678ef90" * 8),
          RatedModel("secret-gamma", "/runs/hidden-run-gamma", "9abc0def" * 8)]
VOICE = {"1234abcd" * 8: "zq", "5678ef90" * 8: "xv", "9abc0def" * 8: "kw"}  # how each model's replies read


def make_db(tmp_path, models=MODELS, fill: bool = True) -> RatingDB:
    prompts_file = tmp_path / "prompts.txt"
    prompts_file.write_text("hello\n你好，你是谁？\n", encoding="utf-8")
    db = RatingDB.create_or_check(tmp_path / "r.sqlite", read_prompts(prompts_file), models, GEN)
    if fill:
        for m in db.models():
            db.add_replies(m.sha256, {i: f"{VOICE[m.sha256]}: reply to {p.messages[-1]['content']}"
                                      for i, p in enumerate(db.prompts())})
    return db


@pytest.fixture
def session(tmp_path):
    db = make_db(tmp_path)
    with TestClient(create_rating_app(db)) as client:
        yield client, db
    db.close()


def forbidden() -> list[str]:
    words = []
    for m in MODELS:
        words += [m.name, m.run, m.sha256, m.sha256[:8], m.run.rsplit("/", 1)[1], m.name.split("-")[1]]
    return words


def test_a_whole_session_names_no_model_and_records_the_sides(session):
    client, db = session
    sent = [client.get("/").text, client.get("/static/rate.js").text, client.get("/static/rate.css").text]
    assert "Which reply is better?" in sent[0] and "/api/judgement" in sent[1]
    seen = []
    for rater in ("ann", "bo"):
        while True:
            r = client.get("/api/next", params={"rater": rater})
            assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
            sent.append(r.text)
            body = r.json()
            if body["item"] is None:
                assert (body["done"], body["total"]) == (6, 6)
                break
            assert set(body) == {"item", "messages", "left", "right", "done", "total"}
            seen.append((rater, body["item"], body["left"].split(":")[0], body["right"].split(":")[0]))
            j = client.post("/api/judgement", json={"rater": rater, "item": body["item"], "verdict": "left",
                                                    "comment": "左边更好"})
            assert j.status_code == 200, j.text
            sent.append(j.text)
    everything = "\n".join(sent).lower()
    leaked = [w for w in forbidden() if w.lower() in everything]
    assert not leaked, f"the page or API named {leaked}"
    # the database knows who was where: each judgement's left model is the one whose reply was on the left
    voice_of = {i: VOICE[m.sha256] for i, m in enumerate(db.models())}
    recorded = [(j["rater"], voice_of[j["left"]], voice_of[j["right"]], j["comment"]) for j in db.judgements()]
    assert recorded == [(rater, left, right, "左边更好") for rater, _, left, right in seen]


@pytest.mark.parametrize("method,path,body,status,message", [
    ("get", "/api/next", None, 400, "a rater name is needed"),
    ("get", "/api/next?rater=%20%20", None, 400, "a rater name is needed"),
    ("post", "/api/judgement", {"item": "ITEM", "verdict": "left"}, 400, "a rater name is needed"),
    ("post", "/api/judgement", {"rater": "ann", "item": "ITEM", "verdict": "better"}, 400, "verdict must be one of"),
    ("post", "/api/judgement", {"rater": "ann", "item": "ITEM"}, 400, "verdict must be one of"),
    ("post", "/api/judgement", {"rater": "ann", "item": 999, "verdict": "left"}, 404, "no item 999"),
    ("post", "/api/judgement", {"rater": "ann", "item": "3", "verdict": "left"}, 400, "item must be an item number"),
    ("post", "/api/judgement", {"rater": "ann", "item": True, "verdict": "left"}, 400, "item must be an item number"),
    ("post", "/api/judgement", {"rater": "ann", "item": "ITEM", "verdict": "left", "comment": 5}, 400,
     "comment must be text"),
    ("post", "/api/judgement", {"rater": "ann", "item": "OTHER", "verdict": "left"}, 409, "was not shown to 'ann'"),
    ("post", "/api/judgement", {"rater": "nobody", "item": "ITEM", "verdict": "left"}, 404, "no rater 'nobody'"),
    ("post", "/api/judgement", [1, 2], 400, "must be a JSON object"),
    ("get", "/api/nothing", None, 404, "no route GET /api/nothing"),
    ("get", "/static/app.py", None, 404, "no file 'app.py'"),
    ("get", "/static/..%2Frating.py", None, 404, "no route"),
])
def test_bad_requests_are_4xx_with_a_message(session, method, path, body, status, message):
    client, db = session
    item = client.get("/api/next", params={"rater": "ann"}).json()["item"]
    if isinstance(body, dict):
        body = {k: {"ITEM": item, "OTHER": next(i for i in range(1, 7) if i != item)}.get(v, v) if k == "item" else v
                for k, v in body.items()}
    r = client.get(path) if method == "get" else client.post(path, json=body)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]["message"]


def test_judging_twice_and_broken_bodies(session):
    client, db = session
    item = client.get("/api/next", params={"rater": "ann"}).json()["item"]
    ok = client.post("/api/judgement", json={"rater": "ann", "item": item, "verdict": "both_bad"})
    assert ok.json() == {"done": 1, "total": 6}
    again = client.post("/api/judgement", json={"rater": "ann", "item": item, "verdict": "left"})
    assert again.status_code == 409 and "already judged" in again.json()["error"]["message"]
    broken = client.post("/api/judgement", content=b"{not json", headers={"content-type": "application/json"})
    assert broken.status_code == 400 and "JSON object" in broken.json()["error"]["message"]
    huge = client.post("/api/judgement", json={"rater": "ann", "item": item, "verdict": "left", "comment": "x" * 70_000})
    assert huge.status_code == 413
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/openapi.json").status_code == 404  # the schema would list nothing secret, but is not needed


def test_a_database_without_its_replies_is_not_served(tmp_path):
    db = make_db(tmp_path, fill=False)
    with pytest.raises(OwnGPTError, match="still lacks 6 replies"):
        create_rating_app(db)
    db.close()
