"""The chat page in a real headless browser (Debian's chromium driven by Playwright; no browser download): a full
streamed exchange, Stop (which stops the reply on the server), Regenerate, edit-and-resend, past chats kept,
a Chinese message, Enter during input-method composition, and model output that never becomes HTML."""

from __future__ import annotations

import json
import os
import re
import time
import urllib.request

import pytest

sync_api = pytest.importorskip("playwright.sync_api")
pytest.importorskip("uvicorn")
CHROMIUM = os.environ.get("OWNGPT_CHROMIUM", "/usr/bin/chromium")
if not os.path.exists(CHROMIUM):
    pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

from owngpt.chat.reply import ReplyModel  # noqa: E402
from owngpt.serve.app import create_app  # noqa: E402
from owngpt.serve.config import ServeConfig  # noqa: E402
from owngpt.serve.models import ServedModel  # noqa: E402
from serve_fixtures import ScriptLM, char_tokenizer, live_server, served  # noqa: E402

MARKDOWN = "Hello **world**! Try `owngpt chat`. <img src=x onerror=window.pwned=1> <script>window.pwned=2</script>"
CHINESE = "你好！我是小欧，今天天气很好。"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="module")
def server():
    tok = char_tokenizer()
    models = served(tok, markdown=MARKDOWN, zh=CHINESE)
    models["slow"] = ServedModel("slow", ReplyModel(ScriptLM(tok, "word " * 60, delay=0.05), tok, None, None), "mem")
    with live_server(create_app(models, ServeConfig())) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1100, "height": 760})
    page = context.new_page()
    page.goto(server + "/")
    page.wait_for_function("document.querySelectorAll('#model option').length > 0")
    yield page
    context.close()


def get(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def ask(page, model: str, text: str) -> None:
    page.select_option("#model", model)
    page.fill("#input", text)
    page.press("#input", "Enter")


def wait_reply_done(page) -> None:
    page.wait_for_selector("#send:not([hidden])")
    page.wait_for_function("document.querySelector('#messages .message.assistant:last-child .body').textContent.length > 0")


def test_a_streamed_exchange_renders_markdown_as_text_and_is_kept(page, server):
    ask(page, "markdown", "hi there")
    wait_reply_done(page)
    reply = page.locator("#messages .message.assistant").last
    assert reply.locator("strong").inner_text() == "world"
    assert reply.locator("code").inner_text() == "owngpt chat"
    assert "<img src=x onerror=window.pwned=1>" in reply.inner_text()  # shown as text ...
    assert page.locator("#messages img, #messages script").count() == 0  # ... never as HTML
    assert page.evaluate("window.pwned") is None
    assert page.locator("#chats li").first.inner_text().startswith("hi there")
    page.reload()  # past chats live in the browser
    page.wait_for_selector("#messages .message.assistant")
    assert page.locator("#messages .message.user .body").inner_text() == "hi there"


def test_stop_cancels_the_reply_on_the_server(page, server):
    ask(page, "slow", "talk for a while")
    page.wait_for_function("document.querySelector('#messages .message.assistant:last-child .body').textContent"
                           ".length > 5")
    page.click("#stop")
    page.wait_for_selector("text=(stopped)")
    shown = page.locator("#messages .message.assistant").last.locator(".body").inner_text()
    assert 0 < len(shown) < len("word " * 60)
    deadline = time.monotonic() + 10
    while json.loads(get(server + "/health"))["running"]:
        assert time.monotonic() < deadline, "the stopped reply still runs on the server"
        time.sleep(0.05)
    assert int(re.search(r"owngpt_cancelled_total (\d+)", get(server + "/metrics")).group(1)) >= 1


def test_regenerate_and_edit_and_resend(page):
    bodies = []
    page.on("request", lambda r: bodies.append(json.loads(r.post_data)) if r.url.endswith("/chat/completions") else None)
    ask(page, "tiny", "first question")
    wait_reply_done(page)
    page.click("#messages .message.assistant >> text=Regenerate")
    wait_reply_done(page)
    assert page.locator("#messages .message").count() == 2  # the reply was replaced, not added
    assert len(bodies) == 2 and bodies[1]["messages"] == bodies[0]["messages"]
    page.click("#messages .message.user >> text=Edit")
    page.fill("#messages .message.user textarea", "second question")
    page.click("text=Save & send")
    wait_reply_done(page)
    assert len(bodies) == 3 and bodies[2]["messages"][-1] == {"role": "user", "content": "second question"}
    assert [m["role"] for m in bodies[2]["messages"]] == ["user"]  # the old reply went with the old question
    assert page.locator("#messages .message.user .body").inner_text() == "second question"
    page.click("#new-chat")
    assert page.locator("#messages .message").count() == 0 and page.locator("#chats li").count() >= 2


def test_a_chinese_exchange_and_enter_while_composing(page, tmp_path):
    page.select_option("#model", "zh")
    page.fill("#input", "你好，你叫什么名字？")
    # Enter that confirms an input method's candidate must not send
    page.evaluate("""() => document.querySelector('#input').dispatchEvent(
        new KeyboardEvent('keydown', {key: 'Enter', isComposing: true, bubbles: true, cancelable: true}))""")
    assert page.locator("#messages .message").count() == 0
    page.press("#input", "Enter")
    wait_reply_done(page)
    assert page.locator("#messages .message.user .body").inner_text() == "你好，你叫什么名字？"
    assert page.locator("#messages .message.assistant").last.inner_text().startswith(CHINESE)
    page.screenshot(path=str(tmp_path / "chat-zh.png"))
    assert (tmp_path / "chat-zh.png").stat().st_size > 10_000


def test_settings_reach_the_request(page):
    bodies = []
    page.on("request", lambda r: bodies.append(json.loads(r.post_data)) if r.url.endswith("/chat/completions") else None)
    page.click("#toggle-settings")
    page.fill("#system", "You are terse.")
    page.fill("#temperature", "0")
    page.fill("#max_tokens", "7")
    page.fill("#seed", "3")
    page.dispatch_event("#seed", "change")
    ask(page, "tiny", "hello")
    wait_reply_done(page)
    body = bodies[-1]
    assert body["messages"][0] == {"role": "system", "content": "You are terse."}
    assert body["temperature"] == 0 and body["max_tokens"] == 7 and body["seed"] == 3 and body["stream"] is True
    assert "length" in page.locator("#messages .message.assistant").last.inner_text()  # 7 tokens: cut at the limit
