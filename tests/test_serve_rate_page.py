"""The rating page end to end in a real headless browser (Debian's chromium driven by Playwright; no browser
download): three tiny models saved as runs reply through `owngpt rate`'s own set-up, two raters rate five items
each through the page (mouse and keyboard, a Chinese comment), the name is remembered, nothing on the page names a
model, and the judgements add up in the database and in `owngpt rate --results` with left and right balanced."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

sync_api = pytest.importorskip("playwright.sync_api")
pytest.importorskip("uvicorn")
CHROMIUM = os.environ.get("OWNGPT_CHROMIUM", "/usr/bin/chromium")
if not os.path.exists(CHROMIUM):
    pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

from owngpt.cli import main  # noqa: E402
from owngpt.cli.rate import open_session  # noqa: E402
from owngpt.serve.rating import create_rating_app  # noqa: E402
from serve_fixtures import SYSTEM, char_tokenizer, live_server, tiny_gpt  # noqa: E402
from test_serve_models import save_run  # noqa: E402
from test_serve_page import browser  # noqa: E402,F401 - the chat page's headless chromium fixture

PROMPTS = ["hello there", "你好，你叫什么名字？", "how are you today?", "我是小欧"]
GEN = {"seed": 0, "temperature": 0.8, "top_k": 50, "top_p": 0.95, "repetition_penalty": 1.1, "max_new_tokens": 20}
CLICKS = ["left", "right", "tie", "both_bad", "left"]  # rater ann's verdicts by mouse; bo's by keyboard
KEYS = {"1": "left", "2": "tie", "3": "both_bad", "4": "right"}


@pytest.fixture(scope="module")
def rated(tmp_path_factory):
    """A rating session of three runs ('runs/model-N') on four prompts, its replies made by `owngpt rate`'s set-up."""
    root = tmp_path_factory.mktemp("rate")
    tok = char_tokenizer()
    runs = [str(save_run(root / f"model-{i}", tok, tiny_gpt(tok, seed=i), system=SYSTEM)) for i in range(3)]
    prompts = root / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n", encoding="utf-8")
    db = open_session(runs, prompts, root / "ratings.sqlite", GEN, device="cpu", dtype="float32")
    with live_server(create_rating_app(db)) as url:
        yield url, db, runs
    db.close()


def shown(page) -> tuple[str, str, str, str]:
    """(progress, prompt, left reply, right reply) as the page shows them."""
    return (page.inner_text("#progress"), page.locator("#prompt .turn").last.evaluate("e => e.lastChild.textContent"),
            page.inner_text("#left"), page.inner_text("#right"))


def rate_five(page, rater: str, keyboard: bool) -> list[tuple[str, str, str, str]]:
    page.wait_for_selector("#name-form:not([hidden])")
    page.fill("#name", rater)
    page.press("#name", "Enter")
    seen = []
    for n in range(5):
        page.wait_for_function(f"document.querySelector('#progress').textContent === '{n + 1} of 12'")
        page.wait_for_selector("#rating:not([hidden])")
        now = shown(page)
        assert now[2] and now[3]
        seen.append(now)
        assert page.is_disabled("#next")  # no verdict yet
        if keyboard:
            key = list(KEYS)[n % 4]
            page.keyboard.press(key)
            assert page.get_attribute(f"#verdicts [data-verdict={KEYS[key]}]", "aria-pressed") == "true"
            page.keyboard.press("Enter")
        else:
            page.click(f"#verdicts [data-verdict={CLICKS[n]}]")
            if n == 1:
                page.fill("#comment", "右边的回答更通顺")
            page.click("#next")
    page.wait_for_function("document.querySelector('#progress').textContent === '6 of 12'")
    return seen


def test_two_raters_rate_five_items_each_and_it_adds_up(rated, browser, tmp_path, capsys):
    url, db, runs = rated
    pages = {}
    for rater, keyboard in (("ann", False), ("李雷", True)):
        context = browser.new_context(viewport={"width": 1100, "height": 760})
        page = context.new_page()
        page.goto(url + "/")
        seen = rate_five(page, rater, keyboard)
        pages[rater] = (context, page, seen)
        text = page.content().lower()
        assert not [r for r in runs if Path(r).name in text or r.lower() in text]  # blind: no model named
        sixth = shown(page)
        page.reload()  # the name is remembered, and the item shown but not rated comes back as it was
        page.wait_for_function("document.querySelector('#progress').textContent === '6 of 12'")
        assert page.locator("#who").is_visible() and page.inner_text("#rater-name") == rater
        assert shown(page) == sixth
    assert any(p[1] == "你好，你叫什么名字？" for _, _, seen in pages.values() for p in seen)  # Chinese displayed

    # the database: five judgements per rater, the sides recorded as shown, verdicts as clicked
    judged = db.judgements()
    assert [j["rater"] for j in judged] == ["ann"] * 5 + ["李雷"] * 5
    assert [j["verdict"] for j in judged] == CLICKS + [KEYS[k] for k in list(KEYS)[:4]] + ["left"]
    assert judged[1]["comment"] == "右边的回答更通顺"
    reply = dict((((p, m), t) for p, m, t in db.conn.execute("SELECT prompt_id - 1, model_id - 1, text FROM replies")))
    for j, (_, prompt, left, right) in zip(judged, pages["ann"][2] + pages["李雷"][2]):
        assert PROMPTS[j["prompt"]] == prompt
        assert (reply[(j["prompt"], j["left"])], reply[(j["prompt"], j["right"])]) == (left, right)
    # balanced: for each rater, each pair of models was on the left as often as on the right, within one
    for rater in ("ann", "李雷"):
        sides: dict[tuple[int, int], list[int]] = {}
        for j in judged:
            if j["rater"] == rater:
                pair = tuple(sorted((j["left"], j["right"])))
                sides.setdefault(pair, [0, 0])[j["left"] != pair[0]] += 1
        assert all(abs(a - b) <= 1 for a, b in sides.values()), (rater, sides)

    # `owngpt rate --results`: the same judgements, added up
    expected_points = [0.0, 0.0, 0.0]
    for j in judged:
        s = {"left": 1.0, "right": 0.0, "tie": 0.5, "both_bad": 0.5}[j["verdict"]]
        expected_points[j["left"]] += s
        expected_points[j["right"]] += 1 - s
    main(["rate", "--results", str(db.path), "--json", "--bootstrap", "100"])
    report = json.loads(capsys.readouterr().out)
    assert report["judgements"] == 10 and report["raters"] == ["ann", "李雷"]
    pairs = report["pairs"]
    assert sum(p["judgements"] for p in pairs) == 10
    assert sum(p["wins"] + p["losses"] + p["ties"] + p["both_bad"] for p in pairs) == 10
    assert sum(p["ties"] for p in pairs) == 2 and sum(p["both_bad"] for p in pairs) == 2
    names = report["models"]
    for r in report["ranking"]:
        i = names.index(r["model"])
        games = sum(1 for j in judged if i in (j["left"], j["right"]))
        assert r["judgements"] == games and r["win_rate"] == pytest.approx(expected_points[i] / games)
    main(["rate", "--results", str(db.path), "--bootstrap", "100"])
    table = capsys.readouterr().out
    assert "10 judgements by 2 raters (ann, 李雷)" in table and "Bradley-Terry ranking" in table
    shot = tmp_path / "rate-zh.png"
    pages["李雷"][1].screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    for context, _, _ in pages.values():
        context.close()

