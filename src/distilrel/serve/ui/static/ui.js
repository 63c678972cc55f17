// distilrel relevance explorer: selection, keyboard judging, related documents.
// Everything the server sends back is written with textContent, never innerHTML: document texts are data.
"use strict";

(function () {
  const login = document.getElementById("login");
  if (login) {
    login.addEventListener("submit", (event) => {
      event.preventDefault();
      const key = document.getElementById("api-key").value;
      document.cookie = `${login.dataset.cookie}=${encodeURIComponent(key)}; path=/ui; SameSite=Strict`;
      window.location.reload();
    });
    return;
  }

  const panel = document.getElementById("judging");
  if (!panel) return;
  const levels = JSON.parse(panel.dataset.levels || "[]");
  const query = panel.dataset.query || "";
  const judging = panel.dataset.judging === "on";
  const relatedK = Number.parseInt(panel.dataset.relatedK || "8", 10);
  const status = document.getElementById("status");
  const annotatorInput = document.getElementById("annotator");
  let selected = null; // the selected <li class="result">

  if (annotatorInput) {
    const saved = window.localStorage.getItem("distilrel.annotator");
    if (saved) annotatorInput.value = saved;
    annotatorInput.addEventListener("change", () =>
      window.localStorage.setItem("distilrel.annotator", annotatorInput.value));
  }

  function say(text, kind) {
    status.textContent = text;
    status.className = kind || "";
  }

  function rowsOf(docId) {
    return Array.from(document.querySelectorAll("li.result")).filter((li) => li.dataset.doc === docId);
  }

  function select(li) {
    document.querySelectorAll("li.result.selected").forEach((el) => el.classList.remove("selected"));
    selected = li;
    if (!li) return;
    rowsOf(li.dataset.doc).forEach((el) => el.classList.add("selected"));
    li.focus({ preventScroll: false });
  }

  function move(step) {
    if (!selected) return select(document.querySelector("li.result"));
    const list = Array.from(selected.parentElement.querySelectorAll("li.result"));
    const next = list[list.indexOf(selected) + step];
    if (next) select(next);
  }

  function showJudgments(docId, judgments, conflict) {
    const text = judgments.length
      ? "judged: " + judgments.map((j) => `${j.label} (${j.annotator})`).join(", ") + (conflict ? " — conflict" : "")
      : "";
    rowsOf(docId).forEach((li) => {
      const span = li.querySelector(".judged");
      span.textContent = text;
      span.classList.toggle("conflict", conflict);
    });
  }

  async function judge(li, label) {
    if (!judging) return say("judging is off: start the server with --judgments FOLDER", "error");
    const docId = li.dataset.doc;
    const body = { query, doc_id: docId, label };
    if (annotatorInput && annotatorInput.value.trim()) body.annotator = annotatorInput.value.trim();
    say(`saving ${label} for ${docId}…`, "pending");
    try {
      const resp = await fetch("/ui/api/judgments", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      const data = await resp.json();
      if (!resp.ok) return say(`not saved: ${typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail)}`, "error");
      showJudgments(docId, data.judgments, data.conflict);
      say(`saved: ${docId} is ${label}`, "saved");
    } catch (err) {
      say(`not saved: ${err}`, "error");
    }
  }

  async function related(li) {
    const list = li.querySelector("ul.related");
    if (list.childElementCount) return list.replaceChildren(); // a second press hides them
    try {
      const resp = await fetch(`/ui/api/related/${encodeURIComponent(li.dataset.doc)}?k=${relatedK}`);
      const data = await resp.json();
      if (!resp.ok) return say(`related: ${data.detail}`, "error");
      for (const n of data.neighbours) {
        const item = document.createElement("li");
        const link = document.createElement("span");
        link.className = "rel-title";
        link.textContent = n.title;
        const meta = document.createElement("small");
        meta.textContent = ` ${n.id} · ${n.score.toFixed(3)}`;
        item.append(link, meta);
        list.append(item);
      }
      if (!data.neighbours.length) {
        const item = document.createElement("li");
        item.textContent = "no related documents";
        list.append(item);
      }
    } catch (err) {
      say(`related: ${err}`, "error");
    }
  }

  document.addEventListener("click", (event) => {
    const li = event.target.closest("li.result");
    if (!li) return;
    select(li);
    const button = event.target.closest("button");
    if (button && button.classList.contains("judge")) judge(li, button.dataset.level);
    else if (button && button.classList.contains("related-btn")) related(li);
  });

  document.addEventListener("keydown", (event) => {
    const tag = event.target.tagName;
    if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "j" || event.key === "ArrowDown") { move(1); event.preventDefault(); return; }
    if (event.key === "k" || event.key === "ArrowUp") { move(-1); event.preventDefault(); return; }
    if (!selected) return;
    if (event.key === "r") { related(selected); return; }
    const n = Number.parseInt(event.key, 10);
    if (n >= 1 && n <= levels.length) { judge(selected, levels[n - 1]); event.preventDefault(); }
  });

  // Start on the student's best result, so 1..K judge right away.
  select(document.querySelector('section[data-key="student"] li.result') || document.querySelector("li.result"));
})();
