// The owngpt chat page: talks to this server's OpenAI-compatible API (/v1/models, /v1/chat/completions with
// "stream": true), keeps past chats in this browser's localStorage, and renders replies with markdown.js (text only,
// never HTML). No framework, no CDN: every file is served by owngpt itself.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const STORE = "owngpt.chats", SETTINGS = "owngpt.settings";
  const state = { chats: [], current: null, models: [], controller: null, busy: false };

  // ------------------------------------------------------------------ storage

  function load(key, fallback) {
    try { return JSON.parse(localStorage.getItem(key)) ?? fallback; } catch (e) { return fallback; }
  }
  function save() {
    localStorage.setItem(STORE, JSON.stringify(state.chats));
    const settings = {};
    for (const id of ["temperature", "top_p", "max_tokens", "seed", "api-key"]) settings[id] = $(id).value;
    localStorage.setItem(SETTINGS, JSON.stringify(settings));
  }
  function chat() { return state.chats.find((c) => c.id === state.current); }

  function newChat() {
    if (state.busy) return;
    const c = { id: String(Date.now()) + Math.random().toString(16).slice(2, 6), title: "New chat",
                model: $("model").value, system: "", messages: [], updated: Date.now() };
    state.chats.unshift(c);
    state.current = c.id;
    save();
    renderAll();
    $("input").focus();
  }

  // ------------------------------------------------------------------ rendering

  function renderChats() {
    const list = $("chats");
    list.replaceChildren();
    for (const c of state.chats) {
      const li = document.createElement("li");
      li.className = c.id === state.current ? "current" : "";
      const open = document.createElement("button");
      open.type = "button";
      open.className = "open";
      open.textContent = c.title;
      open.title = c.title;
      open.onclick = () => { if (!state.busy) { state.current = c.id; renderAll(); } };
      const del = document.createElement("button");
      del.type = "button";
      del.className = "delete";
      del.textContent = "×";
      del.title = "Delete this chat";
      del.setAttribute("aria-label", "Delete chat " + c.title);
      del.onclick = () => {
        if (state.busy) return;
        state.chats = state.chats.filter((x) => x.id !== c.id);
        if (state.current === c.id) state.current = state.chats.length ? state.chats[0].id : null;
        save();
        if (!state.current) newChat(); else renderAll();
      };
      li.append(open, del);
      list.appendChild(li);
    }
  }

  function bubble(message, index, c) {
    const div = document.createElement("div");
    div.className = "message " + message.role + (message.error ? " error" : "");
    const body = document.createElement("div");
    body.className = "body";
    if (message.role === "assistant") body.appendChild(window.owngptMarkdown.render(message.content));
    else body.textContent = message.content;
    div.appendChild(body);
    if (message.note) {
      const note = document.createElement("div");
      note.className = "note";
      note.textContent = message.note;
      div.appendChild(note);
    }
    const tools = document.createElement("div");
    tools.className = "tools";
    if (message.role === "user" && !state.busy) tools.appendChild(button("Edit", "edit", () => edit(index, div)));
    if (message.role === "assistant" && index === c.messages.length - 1 && !state.busy) {
      tools.appendChild(button("Regenerate", "regenerate", regenerate));
    }
    div.appendChild(tools);
    return div;
  }

  function button(text, cls, onclick) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = cls;
    b.textContent = text;
    b.onclick = onclick;
    return b;
  }

  function renderMessages() {
    const c = chat();
    const box = $("messages");
    box.replaceChildren(...(c ? c.messages.map((m, i) => bubble(m, i, c)) : []));
    box.scrollTop = box.scrollHeight;
  }

  function renderAll() {
    const c = chat();
    if (c) {
      $("system").value = c.system || "";
      if (c.model && state.models.some((m) => m.id === c.model)) $("model").value = c.model;
    }
    showSystemDefault();
    renderChats();
    renderMessages();
    $("send").hidden = state.busy;
    $("stop").hidden = !state.busy;
  }

  function showSystemDefault() {
    const m = state.models.find((x) => x.id === $("model").value);
    $("system").placeholder = m && m.system_prompt ? m.system_prompt + "   (the model's own)" : "(none)";
  }

  function status(text, isError) {
    $("status").textContent = text || "";
    $("status").className = isError ? "error" : "";
  }

  // ------------------------------------------------------------------ the API

  function headers() {
    const h = { "Content-Type": "application/json" };
    const key = $("api-key").value.trim();
    if (key) h.Authorization = "Bearer " + key;
    return h;
  }

  async function errorOf(response) {
    try {
      const body = await response.json();
      return (body.error && body.error.message) || response.statusText;
    } catch (e) {
      return response.status + " " + response.statusText;
    }
  }

  async function loadModels() {
    let response;
    try {
      response = await fetch("/v1/models", { headers: headers() });
    } catch (e) {
      status("cannot reach the server: " + e.message, true);
      return;
    }
    if (!response.ok) {
      status(await errorOf(response) + (response.status === 401 ? " (enter it under Settings)" : ""), true);
      if (response.status === 401) openSettings(true);
      return;
    }
    state.models = (await response.json()).data;
    const select = $("model");
    select.replaceChildren(...state.models.map((m) => {
      const o = document.createElement("option");
      o.value = m.id;
      o.textContent = m.id + (m.adapter ? " (persona)" : "");
      return o;
    }));
    const c = chat();
    if (c && c.model && state.models.some((m) => m.id === c.model)) select.value = c.model;
    status("");
    renderAll();
  }

  function request(c) {
    const messages = [];
    if (c.system.trim()) messages.push({ role: "system", content: c.system });
    for (const m of c.messages) if (!m.error) messages.push({ role: m.role, content: m.content });
    const body = { model: c.model, messages, stream: true, stream_options: { include_usage: true } };
    for (const [id, cast] of [["temperature", parseFloat], ["top_p", parseFloat], ["max_tokens", parseInt],
                              ["seed", parseInt]]) {
      const v = cast($(id).value);
      if (!Number.isNaN(v)) body[id] = v;
    }
    return body;
  }

  async function generate() {
    const c = chat();
    c.model = $("model").value;
    c.system = $("system").value;
    const reply = { role: "assistant", content: "" };
    const body = request(c);
    c.messages.push(reply);
    state.busy = true;
    state.controller = new AbortController();
    status("");
    renderAll();
    const box = $("messages");
    const shown = box.lastChild.querySelector(".body");
    let finish = null;
    try {
      const response = await fetch("/v1/chat/completions", { method: "POST", headers: headers(),
                                                               body: JSON.stringify(body),
                                                               signal: state.controller.signal });
      if (!response.ok) throw new Error(await errorOf(response));
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const event = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          for (const line of event.split("\n")) {
            if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
            const data = JSON.parse(line.slice(6));
            if (data.error) throw new Error(data.error.message);
            for (const ch of data.choices || []) {
              if (ch.delta && ch.delta.content) {
                reply.content += ch.delta.content;
                shown.replaceChildren(window.owngptMarkdown.render(reply.content));
                box.scrollTop = box.scrollHeight;
              }
              if (ch.finish_reason) finish = ch.finish_reason;
            }
          }
        }
      }
      if (finish === "length") reply.note = "(cut at the length limit)";
      if (finish === "content_filter") reply.note = "(cut by the content filter)";
    } catch (e) {
      if (e.name === "AbortError") {
        reply.note = "(stopped)";
      } else {
        reply.error = true;
        reply.content = "error: " + e.message;
        status(e.message, true);
      }
    } finally {
      state.busy = false;
      state.controller = null;
      if (c.title === "New chat") {
        const first = c.messages.find((m) => m.role === "user");
        if (first) c.title = first.content.slice(0, 40);
      }
      c.updated = Date.now();
      save();
      renderAll();
    }
  }

  // ------------------------------------------------------------------ actions

  function send(text) {
    if (state.busy || !text.trim()) return;
    if (!state.models.length) { status("no model to talk to: check the server and the API key", true); return; }
    const c = chat();
    c.messages = c.messages.filter((m) => !m.error);
    c.messages.push({ role: "user", content: text });
    $("input").value = "";
    generate();
  }

  function regenerate() {
    const c = chat();
    if (state.busy || !c.messages.length || c.messages[c.messages.length - 1].role !== "assistant") return;
    c.messages.pop();
    generate();
  }

  function edit(index, div) {
    const c = chat();
    const editor = document.createElement("textarea");
    editor.className = "editor";
    editor.value = c.messages[index].content;
    const tools = document.createElement("div");
    tools.className = "tools";
    tools.append(button("Save & send", "resend", () => {
      if (!editor.value.trim() || state.busy) return;
      c.messages = c.messages.slice(0, index);
      c.messages.push({ role: "user", content: editor.value });
      generate();
    }), button("Cancel", "cancel", renderMessages));
    div.replaceChildren(editor, tools);
    editor.focus();
  }

  function openSettings(open) {
    $("settings").hidden = !open;
    $("toggle-settings").setAttribute("aria-expanded", String(open));
  }

  // ------------------------------------------------------------------ wiring

  $("composer").addEventListener("submit", (e) => { e.preventDefault(); send($("input").value); });
  $("input").addEventListener("keydown", (e) => {
    // Enter sends, but never while an input method is composing (Chinese, Japanese, ...): that Enter picks a word
    if (e.key !== "Enter" || e.shiftKey || e.isComposing || e.keyCode === 229) return;
    e.preventDefault();
    send($("input").value);
  });
  $("stop").onclick = () => { if (state.controller) state.controller.abort(); };
  $("new-chat").onclick = newChat;
  $("toggle-settings").onclick = () => openSettings($("settings").hidden);
  $("model").onchange = () => { const c = chat(); if (c) { c.model = $("model").value; save(); } showSystemDefault(); };
  $("system").onchange = () => { const c = chat(); if (c) { c.system = $("system").value; save(); } };
  for (const id of ["temperature", "top_p", "max_tokens", "seed"]) $(id).onchange = save;
  $("api-key").onchange = () => { save(); loadModels(); };

  state.chats = load(STORE, []);
  const settings = load(SETTINGS, {});
  for (const [id, v] of Object.entries(settings)) if ($(id) && v !== undefined) $(id).value = v;
  if (state.chats.length) state.current = state.chats[0].id; else newChat();
  renderAll();
  loadModels();
  window.owngptChat = { state, send, regenerate, newChat };
})();
