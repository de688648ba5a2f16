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
  let sessionId = null;
  let first = null; // the offset the page's transcript starts at
  const cpu = [];
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
      el("a", { href: `/api/jobs/${id}/output?format=text` }, "whole transcript as text")),
    earlier, transcript, result);

  earlier.addEventListener("click", async () => {
    const from = Math.max(0, first - (1 << 20));
    const r = await fetch(`/api/jobs/${id}/output?format=text&offset=${from}&limit=${first - from}`);
    transcript.prepend(document.createTextNode(await r.text()));
    first = from;
    earlier.hidden = first === 0;
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
    facts.replaceChildren(...[
      el("span", { class: `state-${s.status}`, id: "state" }, s.status),
      el("span", {}, `session ${s.sessionId}`),
      el("span", {}, activity(s)),
      el("span", {}, seconds(s.elapsedSeconds)),
      s.numTurns !== null && s.numTurns !== undefined ? el("span", {}, `${s.numTurns} turn${s.numTurns === 1 ? "" : "s"}`) : null,
      s.costUsd !== null && s.costUsd !== undefined ? el("span", {}, `$${s.costUsd.toFixed(4)}`) : null,
      s.error ? el("span", { class: "state-failed" }, `${s.error.kind}: ${s.error.message}`) : null,
    ].filter((x) => x !== null));
    if (s.metrics && typeof s.metrics.cpuPercent === "number") {
      cpu.push(s.metrics.cpuPercent);
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
  stream.addEventListener("text", (m) => {
    const t = JSON.parse(m.data);
    if (first === null) {
      first = t.offset;
      earlier.hidden = first === 0;
    }
    const atBottom = transcript.scrollTop + transcript.clientHeight >= transcript.scrollHeight - 4;
    transcript.append(document.createTextNode(t.content));
    // Keep the page light: drop what is far above.
    let size = transcript.textContent.length;
    while (size > KEEP && transcript.firstChild) {
      size -= transcript.firstChild.textContent.length;
      first += new TextEncoder().encode(transcript.firstChild.textContent).length;
      transcript.firstChild.remove();
      earlier.hidden = false;
    }
    if (atBottom) transcript.scrollTop = transcript.scrollHeight;
  });
  stream.addEventListener("end", () => { stream.close(); live.textContent = "ended"; });
}

const m = location.pathname.match(/^\/job\/([0-9a-f]{12})$/);
if (m) jobPage(m[1]); else overview();
