// A small Markdown renderer that builds DOM nodes and sets text with textContent only: model output never becomes
// HTML (a reply holding <script> or <img onerror> shows those characters). Handles fenced code blocks, headings,
// bullet and numbered lists, block quotes, paragraphs with line breaks, and inline `code`, **bold**, *italic* and
// [links](https://...) (http, https and mailto only). Anything else stays plain text.
"use strict";

(function () {
  const SAFE_LINK = /^(https?:|mailto:)/i;

  function inline(parent, text) {
    // the earliest of: `code`, **bold**, *italic* / _italic_, [text](url)
    const pattern = /`([^`]+)`|\*\*([^*]+)\*\*|\*([^*\s][^*]*)\*|_([^_\s][^_]*)_|\[([^\]]+)\]\(([^)\s]+)\)/g;
    let last = 0;
    let m;
    while ((m = pattern.exec(text)) !== null) {
      if (m.index > last) parent.appendChild(document.createTextNode(text.slice(last, m.index)));
      let node;
      if (m[1] !== undefined) {
        node = document.createElement("code");
        node.textContent = m[1];
      } else if (m[2] !== undefined) {
        node = document.createElement("strong");
        inline(node, m[2]);
      } else if (m[3] !== undefined || m[4] !== undefined) {
        node = document.createElement("em");
        inline(node, m[3] !== undefined ? m[3] : m[4]);
      } else if (SAFE_LINK.test(m[6])) {
        node = document.createElement("a");
        node.href = m[6];
        node.rel = "noopener noreferrer nofollow";
        node.target = "_blank";
        node.textContent = m[5];
      } else {
        node = document.createTextNode(m[0]);
      }
      parent.appendChild(node);
      last = pattern.lastIndex;
    }
    if (last < text.length) parent.appendChild(document.createTextNode(text.slice(last)));
  }

  function lines(parent, block) {
    block.forEach((line, i) => {
      if (i) parent.appendChild(document.createElement("br"));
      inline(parent, line);
    });
  }

  function render(text) {
    const root = document.createDocumentFragment();
    const src = String(text).replace(/\r\n?/g, "\n").split("\n");
    let i = 0;
    while (i < src.length) {
      const line = src[i];
      const fence = line.match(/^\s*(```|~~~)\s*([\w+-]*)\s*$/);
      if (fence) {
        const body = [];
        i += 1;
        while (i < src.length && !src[i].trim().startsWith(fence[1])) body.push(src[i++]);
        i += 1;  // the closing fence (or the end: a reply still streaming)
        const pre = document.createElement("pre");
        const code = document.createElement("code");
        if (fence[2]) code.dataset.lang = fence[2];
        code.textContent = body.join("\n");
        pre.appendChild(code);
        root.appendChild(pre);
        continue;
      }
      if (!line.trim()) { i += 1; continue; }
      const heading = line.match(/^(#{1,6})\s+(.*)$/);
      if (heading) {
        const h = document.createElement("h" + Math.min(6, heading[1].length + 2));
        inline(h, heading[2]);
        root.appendChild(h);
        i += 1;
        continue;
      }
      const bullet = /^\s*[-*+]\s+/, number = /^\s*\d+[.)]\s+/;
      if (bullet.test(line) || number.test(line)) {
        const kind = bullet.test(line) ? bullet : number;
        const list = document.createElement(kind === bullet ? "ul" : "ol");
        while (i < src.length && kind.test(src[i])) {
          const li = document.createElement("li");
          inline(li, src[i].replace(kind, ""));
          list.appendChild(li);
          i += 1;
        }
        root.appendChild(list);
        continue;
      }
      if (/^\s*>/.test(line)) {
        const quote = document.createElement("blockquote");
        const body = [];
        while (i < src.length && /^\s*>/.test(src[i])) body.push(src[i++].replace(/^\s*>\s?/, ""));
        lines(quote, body);
        root.appendChild(quote);
        continue;
      }
      const para = [];
      while (i < src.length && src[i].trim() && !/^\s*(```|~~~|#{1,6}\s|[-*+]\s|\d+[.)]\s|>)/.test(src[i])) {
        para.push(src[i++]);
      }
      if (!para.length) para.push(src[i++]);
      const p = document.createElement("p");
      lines(p, para);
      root.appendChild(p);
    }
    return root;
  }

  window.owngptMarkdown = { render };
})();
