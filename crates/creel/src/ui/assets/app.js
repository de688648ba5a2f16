// creel ui: the dashboard's one script (no framework, no build step). Everything a job wrote is
// hostile: it only ever reaches the page as text (textContent / text nodes), never as HTML.
"use strict";

const main = document.getElementById("main");
const live = document.getElementById("live");

/// An element with text and children.
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
  }
  return e;
}

async function post(path, body) {
  const r = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body || {}),
  });
  const answer = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(answer.error || r.statusText);
  return answer;
}

function seconds(s) {
  if (s === null || s === undefined) return "";
  if (s < 90) return `${s.toFixed(1)} s`;
  if (s < 5400) return `${(s / 60).toFixed(1)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

function activity(j) {
  if (j.needsInput) return "needs input";
  if (j.needsApproval) return "needs approval";
  return j.activityState || "";
}

// ---- overview ----

function overview() {
  document.title = "creel";
  const sessions = el("tbody");
  const jobs = el("tbody");
  main.replaceChildren(
    el("h2", {}, "Jobs"),
    el("table", { id: "jobs" },
      el("thead", {}, el("tr", {}, ...["job", "session", "state", "activity", "elapsed", "turns", "cost", "egress refused", "cpu", "memory", "prompt"].map((h) => el("th", {}, h)))),
      jobs),
    el("h2", {}, "Sessions"),
    el("table", { id: "sessions" },
      el("thead", {}, el("tr", {}, ...["session", "jobs", "last job", "workspace", "branch"].map((h) => el("th", {}, h)))),
      sessions),
  );
  const events = new EventSource("/api/events");
  events.onopen = () => { live.textContent = "live"; };
  events.onerror = () => { live.textContent = "reconnecting…"; };
  events.addEventListener("overview", (m) => {
    const o = JSON.parse(m.data);
    jobs.replaceChildren(...o.jobs.map((j) => el("tr", { class: j.needsInput || j.needsApproval ? "attention" : "" },
      el("td", {}, el("a", { href: `/job/${j.jobId}` }, j.jobId)),
      el("td", {}, j.sessionId),
      el("td", { class: `state-${j.status}` }, j.status),
      el("td", {}, j.needsInput ? "needs input" : j.needsApproval ? "needs approval" : (j.activityState || "")),
      el("td", {}, seconds(j.elapsedSeconds)),
      el("td", {}, j.numTurns ?? ""),
      el("td", {}, j.costUsd === null || j.costUsd === undefined ? "" : `$${j.costUsd.toFixed(4)}`),
      el("td", {}, j.egressDeniedTotal || ""),
      el("td", {}, typeof j.cpuPercent === "number" ? `${j.cpuPercent.toFixed(0)}%` : ""),
      el("td", {}, j.memoryBytes ? `${(j.memoryBytes / 1048576).toFixed(0)} MiB` : ""),
      el("td", { class: "muted" }, j.prompt || ""))));
    sessions.replaceChildren(...o.sessions.map((s) => el("tr", {},
      el("td", {}, s.sessionId),
      el("td", {}, s.jobCount),
      el("td", {}, s.lastJobId ? el("a", { href: `/job/${s.lastJobId}` }, `${s.lastJobId} (${s.lastJobStatus})`) : ""),
      el("td", { class: "muted" }, s.workspace),
      el("td", { class: "muted" }, s.branch || ""))));
  });
}

// ---- a job ----

// The transcript arrives as creel's rendered text (what `creel output --format text` prints):
// a tool call is a line starting "→ ", its result the line(s) after it starting "  ← ". The
// page folds each call with its result into one line that opens on a click. (Claude's own
// text could start a line the same way; then it is folded too: still text, only shown
// differently.) Every piece of the page's transcript remembers how many bytes of the text it
// holds, so that the page can drop old pieces and still know where it starts.

const utf8 = new TextEncoder();
/// Longest run of plain text in one element (so that old text can be dropped in small pieces).
const RUN = 64 << 10;

/// Elements for complete lines of transcript text, appended to `into` (an array); `last` is
/// the element complete lines before them ended in (it may be extended), or null.
function structure(lines, into, last) {
  for (const line of lines) {
    const bytes = utf8.encode(line).length;
    if (line.startsWith("→ ")) {
      const summary = el("summary", {}, line.replace(/\n$/, ""));
      last = el("details", { class: "tool" }, summary, el("div", { class: "tool-result" }));
      last._bytes = bytes;
      last._chars = line.length;
      into.push(last);
    } else if (line.startsWith("  ← ") && last && last.tagName === "DETAILS") {
      last.lastChild.append(document.createTextNode(line));
      last.classList.add(line.startsWith("  ← error: ") ? "failed" : "done");
      last._bytes += bytes;
      last._chars += line.length;
    } else if (last && last.tagName === "SPAN" && last._chars < RUN) {
      last.append(document.createTextNode(line));
      last._bytes += bytes;
      last._chars += line.length;
    } else {
      last = el("span", {}, line);
      last._bytes = bytes;
      last._chars = line.length;
      into.push(last);
    }
  }
  return last;
}

/// `text` split after each newline; the last piece is what follows the last newline.
function splitLines(text) {
  const parts = text.split("\n");
  const rest = parts.pop();
  return [parts.map((p) => p + "\n"), rest];
}

/// Most of a transcript kept in the page; older text is dropped (and can be fetched again).
const KEEP = 4 << 20;

function jobPage(id) {
  document.title = `creel · ${id}`;
  const facts = el("div", { class: "facts", id: "facts" });
  const controls = el("div", { class: "controls", id: "controls" });
  const ask = el("div", { id: "ask" });
  const transcript = el("pre", { id: "transcript" });
  const earlier = el("button", { id: "earlier", hidden: "" }, "show earlier output");
  const chart = el("canvas", { id: "chart", width: "360", height: "60" });
  const result = el("div", { id: "result" });
  const diff = el("span", { hidden: "" }, " · ", el("a", { id: "diff" }, "the session's diff"));
  let sessionId = null;
  let first = null; // the byte offset the page's transcript starts at
  let end = null; // and where it ends
  let held = 0; // characters held in the page
  let keep = KEEP; // raised by what "show earlier output" fetched
  const cpu = [];
  let lastPoint = 0;
  // What the controls and the question box were built for: rebuilt only when that changes,
  // so that a status update never wipes what someone is typing.
  let controlsFor = null;
  let askFor = null;

  main.replaceChildren(
    el("h2", {}, "Job ", el("span", { id: "job-id" }, id)),
    facts, controls, ask,
    el("div", {}, "CPU ", chart),
    el("p", {},
      el("a", { href: `/api/jobs/${id}/output?format=raw`, id: "raw" }, "raw stream-json"), " · ",
      el("a", { href: `/api/jobs/${id}/output?format=text` }, "transcript as text"), diff),
    earlier, transcript, result);

  earlier.addEventListener("click", async () => {
    earlier.disabled = true;
    try {
      // Where the page's text starts now; live text may drop old pieces while this is fetched,
      // and then what came is not what fits (the next click fetches again).
      const upTo = first;
      const from = Math.max(0, upTo - (1 << 20));
      const r = await fetch(`/api/jobs/${id}/output?format=text&offset=${from}&limit=${upTo - from}`);
      if (!r.ok) throw new Error((await r.json().catch(() => ({}))).error || r.statusText);
      if (first !== upTo) return;
      const start = Number(r.headers.get("x-creel-offset"));
      const next = Number(r.headers.get("x-creel-next-offset"));
      // The page was moved to character boundaries: drop what overlaps the text already shown.
      let bytes = utf8.encode(await r.text());
      if (first !== upTo) return;
      if (next > first) bytes = bytes.subarray(0, bytes.length - (next - first));
      const text = new TextDecoder().decode(bytes);
      const [lines, rest] = splitLines(text);
      if (rest) lines.push(rest);
      const added = [];
      structure(lines, added, null);
      transcript.prepend(...added);
      held += text.length;
      keep += text.length;
      first = start;
      earlier.hidden = first === 0;
    } catch (e) {
      alert(e.message);
    } finally {
      earlier.disabled = false;
    }
  });

  function drawChart() {
    const g = chart.getContext("2d");
    g.clearRect(0, 0, chart.width, chart.height);
    g.beginPath();
    const step = chart.width / 60;
    cpu.slice(-60).forEach((v, i) => {
      const y = chart.height - Math.min(100, v) / 100 * (chart.height - 2) - 1;
      if (i === 0) g.moveTo(0, y); else g.lineTo(i * step, y);
    });
    g.strokeStyle = "#0a64a4";
    g.stroke();
  }

  function showStatus(s) {
    sessionId = s.sessionId;
    // A --repo session: its branch's diff since it started.
    if (s.changes) {
      diff.querySelector("a").setAttribute("href", `/api/sessions/${encodeURIComponent(s.sessionId)}/diff`);
      diff.hidden = false;
    }
    facts.replaceChildren(...[
      el("span", { class: `state-${s.status}`, id: "state" }, s.status),
      el("span", {}, `session ${s.sessionId}`),
      el("span", {}, activity(s)),
      el("span", {}, seconds(s.elapsedSeconds)),
      s.numTurns !== null && s.numTurns !== undefined ? el("span", {}, `${s.numTurns} turn${s.numTurns === 1 ? "" : "s"}`) : null,
      s.costUsd !== null && s.costUsd !== undefined ? el("span", {}, `$${s.costUsd.toFixed(4)}`) : null,
      s.error ? el("span", { class: "state-failed" }, `${s.error.kind}: ${s.error.message}`) : null,
    ].filter((x) => x !== null));
    // One point per metrics sample (every 2 s), however often the status changes.
    if (s.metrics && typeof s.metrics.cpuPercent === "number" && Date.now() - lastPoint >= 1900) {
      lastPoint = Date.now();
      cpu.push(s.metrics.cpuPercent);
      if (cpu.length > 600) cpu.shift();
      drawChart();
    }
    const running = s.status === "pending" || s.status === "running";
    if (controlsFor !== running) {
      controlsFor = running;
      controls.replaceChildren(...buttons(running));
    }
    const request = s.needsInput ? `q${s.needsInput.request}` : s.needsApproval ? `a${s.needsApproval.request}` : "";
    if (askFor !== request) {
      askFor = request;
      showAsk(s);
    }
    result.replaceChildren(s.result ? el("div", {}, el("h3", {}, "Result"), el("pre", { id: "result-text" }, s.result)) : "");
  }

  function buttons(running) {
    const buttons = [];
    if (running) {
      buttons.push(el("button", { id: "cancel", onclick: async () => {
        try { await post(`/api/jobs/${id}/cancel`); } catch (e) { alert(e.message); }
      } }, "Cancel"));
    } else {
      const prompt = el("textarea", { id: "prompt", placeholder: "A new prompt in this session (the conversation continues)" });
      buttons.push(prompt, el("button", { id: "start", onclick: async () => {
        try {
          const r = await post(`/api/sessions/${encodeURIComponent(sessionId)}/jobs`, { prompt: prompt.value });
          location.href = `/job/${r.jobId}`;
        } catch (e) { alert(e.message); }
      } }, "Start"));
    }
    return buttons;
  }

  function showAsk(s) {
    if (s.needsInput) {
      const answer = el("input", { id: "answer", size: "60" });
      ask.replaceChildren(el("div", { class: "ask" },
        el("div", {}, "Claude asks: ", s.needsInput.question || ""),
        (s.needsInput.options || []).length ? el("div", { class: "muted" }, `options: ${s.needsInput.options.join(" | ")}`) : null,
        answer,
        el("button", { id: "reply", onclick: () => post(`/api/jobs/${id}/reply`, { text: answer.value }).catch((e) => alert(e.message)) }, "Reply")));
    } else if (s.needsApproval) {
      ask.replaceChildren(el("div", { class: "ask" },
        el("div", {}, `Claude wants to use ${s.needsApproval.toolName}: `, JSON.stringify(s.needsApproval.input)),
        el("button", { id: "allow", onclick: () => post(`/api/jobs/${id}/approve`, { deny: false }).catch((e) => alert(e.message)) }, "Allow"),
        el("button", { id: "deny", onclick: () => post(`/api/jobs/${id}/approve`, { deny: true }).catch((e) => alert(e.message)) }, "Deny")));
    } else {
      ask.replaceChildren();
    }
  }

  const stream = new EventSource(`/api/jobs/${id}/stream`);
  stream.onopen = () => { live.textContent = "live"; };
  stream.onerror = () => { live.textContent = "reconnecting…"; };
  stream.addEventListener("status", (m) => showStatus(JSON.parse(m.data)));
  // The text after the last newline so far (shown as it is until its line is complete).
  const partial = document.createTextNode("");
  transcript.append(partial);
  stream.addEventListener("text", (m) => {
    const t = JSON.parse(m.data);
    if (first === null) {
      first = t.offset;
      end = t.offset;
      earlier.hidden = first === 0;
    }
    // After a reconnect, text the page already holds is not added twice.
    if (t.offset < end) return;
    end = t.offset + utf8.encode(t.content).length;
    const atBottom = transcript.scrollTop + transcript.clientHeight >= transcript.scrollHeight - 4;
    let [lines, rest] = splitLines(partial.data + t.content);
    // A line longer than a run is shown in pieces rather than held back.
    if (rest.length > RUN) {
      lines.push(rest);
      rest = "";
    }
    const last = partial.previousSibling;
    const added = [];
    structure(lines, added, last);
    partial.before(...added);
    held += t.content.length;
    partial.data = rest;
    // Keep the page light: drop what is far above.
    while (held > keep && transcript.firstChild && transcript.firstChild !== partial &&
           transcript.firstChild.nextSibling !== partial) {
      const gone = transcript.firstChild;
      held -= gone._chars;
      first += gone._bytes;
      gone.remove();
      earlier.hidden = false;
    }
    if (atBottom) transcript.scrollTop = transcript.scrollHeight;
  });
  stream.addEventListener("end", () => { stream.close(); live.textContent = "ended"; });
  stream.addEventListener("gone", () => {
    stream.close();
    live.textContent = "no such job";
    facts.replaceChildren(el("span", { class: "state-failed" }, "creel knows no job " + id));
  });
}

const m = location.pathname.match(/^\/job\/([0-9a-f]{12})$/);
if (m) jobPage(m[1]); else overview();
