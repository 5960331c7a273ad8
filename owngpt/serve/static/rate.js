// owngpt blind rating page: asks /api/next for the rater's item, shows the prompt and the two replies (as text,
// never as HTML), and posts the verdict to /api/judgement. The rater's name is remembered in this browser.
"use strict";

const KEY = "owngpt-rater";
const $ = (id) => document.getElementById(id);
let rater = null;
let item = null;
let verdict = null;
let busy = false;

function status(text, isError = false) {
  $("status").textContent = text || "";
  $("status").classList.toggle("error", isError);
}

function show(view) {
  for (const id of ["name-form", "rating", "finished"]) $(id).hidden = id !== view;
  $("who").hidden = view === "name-form";
}

async function api(path, options) {
  const response = await fetch(path, options);
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    const message = body && body.error && body.error.message ? body.error.message : `HTTP ${response.status}`;
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return body;
}

function askName() {
  $("name").value = rater || "";
  show("name-form");
  $("name").focus();
}

function start(name) {
  rater = name;
  localStorage.setItem(KEY, name);
  $("rater-name").textContent = name;
  loadNext();
}

function renderPrompt(messages) {
  const box = $("prompt");
  box.replaceChildren();
  messages.forEach((m, i) => {
    const turn = document.createElement("div");
    turn.className = `turn ${m.role}` + (i < messages.length - 1 ? " earlier" : "");
    const role = document.createElement("span");
    role.className = "role";
    role.textContent = i === messages.length - 1 ? "prompt" : m.role;
    turn.append(role, document.createTextNode(m.content));
    box.append(turn);
  });
}

function renderReply(id, text) {
  const el = $(id);
  el.textContent = text || "(empty reply)";
  el.classList.toggle("empty", !text);
}

function choose(value) {
  verdict = value;
  for (const b of document.querySelectorAll("#verdicts button")) {
    b.setAttribute("aria-pressed", String(b.dataset.verdict === value));
  }
  $("next").disabled = busy || verdict === null;
}

async function loadNext() {
  busy = true;
  status("Loading…");
  try {
    const next = await api(`/api/next?rater=${encodeURIComponent(rater)}`);
    if (next.item === null) {
      item = null;
      $("progress").textContent = `${next.done} of ${next.total} rated`;
      show("finished");
    } else {
      item = next.item;
      $("progress").textContent = `${next.done + 1} of ${next.total}`;
      renderPrompt(next.messages);
      renderReply("left", next.left);
      renderReply("right", next.right);
      $("comment").value = "";
      show("rating");
      window.scrollTo(0, 0);
    }
    status("");
  } catch (e) {
    status(e.message, true);
    if (!item) askName();
  } finally {
    busy = false;
    choose(null);
  }
}

async function submit() {
  if (busy || item === null || verdict === null) return;
  busy = true;
  $("next").disabled = true;
  try {
    await api("/api/judgement", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ rater, item, verdict, comment: $("comment").value }),
    });
  } catch (e) {
    busy = false;
    if (e.status === 409) {  // judged meanwhile (the same name in another tab): go on with the next item
      await loadNext();
      status(e.message, true);
      return;
    }
    choose(verdict);
    status(e.message, true);
    return;
  }
  busy = false;
  await loadNext();
}

$("name-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = $("name").value.trim();
  if (name) start(name);
});
$("change-rater").addEventListener("click", () => {
  localStorage.removeItem(KEY);
  item = null;
  askName();
});
for (const b of document.querySelectorAll("#verdicts button")) {
  b.addEventListener("click", () => choose(b.dataset.verdict));
}
$("next").addEventListener("click", submit);
document.addEventListener("keydown", (event) => {
  if ($("rating").hidden || event.isComposing || event.altKey || event.metaKey) return;
  const typing = ["INPUT", "TEXTAREA"].includes(document.activeElement.tagName);
  if (event.key === "Enter" && (event.ctrlKey || !typing)) {
    event.preventDefault();
    submit();
  } else if (!typing && !event.ctrlKey && ["1", "2", "3", "4"].includes(event.key)) {
    choose(["left", "tie", "both_bad", "right"][Number(event.key) - 1]);
  }
});

const saved = localStorage.getItem(KEY);
if (saved) start(saved); else askName();
