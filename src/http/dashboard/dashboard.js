// cpe-config dashboard script: served as /dashboard.js. Reads Service B's JSON API and /metrics;
// keeps nothing but chart samples and the token (sessionStorage). Every value from the API is
// shown with textContent, never as HTML: task errors come from devices.
"use strict";

const REFRESH_MS = 3000;
const WINDOW_MS = 10 * 60 * 1000; // the chart's span
const PAGE = 25;
const AUDIT_PAGE = 50;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const DEVICE = /^[a-zA-Z0-9]{6,128}$/;

const state = { writable: false, tokenRequired: false, cursors: [null], page: 0, next: null, shown: [], selected: null, samples: [] };
// The audit view: open or not, whether the mode says it can work, its own paging, and a counter
// so only the answer to the latest request is drawn.
const audit = { open: false, allowed: false, cursors: [null], page: 0, next: null, asked: 0 };
const $ = (id) => document.getElementById(id);

function headers() {
  const token = sessionStorage.getItem("cpe-config-token");
  return token ? { Authorization: "Bearer " + token } : {};
}

async function api(method, path, body) {
  const init = { method, headers: headers() };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    // A write's body must say it is JSON: a text/plain one is refused (cross-site forms send those).
    init.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, init);
  let json = null;
  try { json = await response.json(); } catch (_) { /* not JSON */ }
  return { status: response.status, json };
}

function text(el, value) { el.textContent = value === null || value === undefined ? "–" : String(value); }

function age(seconds) {
  if (seconds < 90) return Math.round(seconds) + " s";
  if (seconds < 5400) return Math.round(seconds / 60) + " min";
  return (seconds / 3600).toFixed(1) + " h";
}

// --- mode and token ---

async function loadMode() {
  const { json } = await api("GET", "/api/v1/dashboard");
  if (!json) throw new Error("no answer from /api/v1/dashboard");
  state.writable = json.writable;
  state.tokenRequired = json.tokenRequired;
  const mode = $("mode");
  text(mode, (json.writable ? "read-write" : "read-only") + (json.scope ? ` (${json.scope} token)` : ""));
  mode.className = "badge " + (json.writable ? "rw" : "ro");
  document.body.classList.toggle("read-only", !json.writable);
  // A token in force with a narrow scope is not asked for again: the page is read-only by design.
  const needToken = json.tokenRequired && !json.scope;
  $("token-form").hidden = !needToken;
  if (needToken) text($("token-note"), sessionStorage.getItem("cpe-config-token") ? "token refused" : "this service needs its API token");
  audit.allowed = auditAllowed(json);
  showAuditToggle();
}

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem("cpe-config-token", $("token-input").value.trim());
  $("token-input").value = "";
  refresh();
});

// --- metrics: counts, oldest queued, throughput chart ---

function parseMetrics(body) {
  const out = { counts: {}, finished: {}, oldest: null };
  for (const line of body.split("\n")) {
    if (line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    for (const l of (m[2] || "").matchAll(/(\w+)="([^"]*)"/g)) labels[l[1]] = l[2];
    const value = Number(m[3]);
    if (m[1] === "cpe_config_tasks" && labels.state) out.counts[labels.state] = value;
    else if (m[1] === "cpe_config_tasks_finished_total" && labels.result) out.finished[labels.result] = (out.finished[labels.result] || 0) + value;
    else if (m[1] === "cpe_config_oldest_queued_task_timestamp_seconds") out.oldest = value;
  }
  return out;
}

async function loadMetrics() {
  const response = await fetch("/metrics");
  const m = parseMetrics(await response.text());
  for (const s of ["queued", "running", "completed", "failed", "cancelled"]) text($("count-" + s), m.counts[s] ?? 0);
  text($("oldest"), m.oldest && (m.counts.queued || 0) > 0 ? age(Date.now() / 1000 - m.oldest) : "none");
  const now = Date.now();
  const f = m.finished;
  state.samples.push({ t: now, ok: f.completed || 0, bad: f.failed || 0 });
  // A restart resets the counters: start the chart again rather than draw negative rates.
  const n = state.samples.length;
  if (n > 1 && (state.samples[n - 1].ok < state.samples[n - 2].ok || state.samples[n - 1].bad < state.samples[n - 2].bad)) state.samples = [state.samples[n - 1]];
  state.samples = state.samples.filter((s) => now - s.t <= WINDOW_MS);
  drawChart();
}

function drawChart() {
  const canvas = $("chart");
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const s = state.samples;
  if (s.length < 2) return;
  const rates = [];
  for (let i = 1; i < s.length; i++) {
    const minutes = (s[i].t - s[i - 1].t) / 60000;
    rates.push({ t: s[i].t, ok: (s[i].ok - s[i - 1].ok) / minutes, bad: (s[i].bad - s[i - 1].bad) / minutes });
  }
  const max = Math.max(1, ...rates.map((r) => r.ok + r.bad));
  const t0 = Date.now() - WINDOW_MS;
  const x = (t) => ((t - t0) / WINDOW_MS) * canvas.width;
  const y = (v) => canvas.height - 2 - (v / max) * (canvas.height - 4);
  for (const [key, colour] of [["ok", "#2e7d32"], ["bad", "#c62828"]]) {
    ctx.strokeStyle = colour;
    ctx.lineWidth = 2;
    ctx.beginPath();
    rates.forEach((r, i) => (i ? ctx.lineTo(x(r.t), y(r[key])) : ctx.moveTo(x(r.t), y(r[key]))));
    ctx.stroke();
  }
  const first = s[0], last = s[s.length - 1];
  const minutes = (last.t - first.t) / 60000;
  const ok = last.ok - first.ok, bad = last.bad - first.bad;
  const total = ok + bad;
  text($("rate"), `last ${minutes.toFixed(1)} min: ${(total / minutes).toFixed(1)} finished/min, ` +
    `failure rate ${total ? ((100 * bad) / total).toFixed(0) + " %" : "–"} (peak ${max.toFixed(1)}/min)`);
}

// --- the task list ---

function listPath(cursor) {
  const q = $("search").value.trim();
  const params = new URLSearchParams();
  const st = $("state").value;
  if (st) params.set("status", st);
  params.set("limit", UUID.test(q) ? "500" : String(PAGE));
  if (cursor) params.set("cursor", cursor);
  const base = DEVICE.test(q) ? "/api/v1/equipment/cpe/" + encodeURIComponent(q) + "/tasks" : "/api/v1/tasks";
  return base + "?" + params;
}

async function loadTasks() {
  const q = $("search").value.trim();
  if (q && !UUID.test(q) && !DEVICE.test(q)) {
    state.shown = [];
    state.next = null;
    render("not a device serial (6 to 128 letters or digits) or a task id");
    return;
  }
  if (UUID.test(q)) {
    // There is no route from a task id alone: look through the newest tasks (up to 5,000).
    let cursor = null, found = [];
    for (let i = 0; i < 10 && found.length === 0; i++) {
      const { status, json } = await api("GET", listPath(cursor));
      if (status !== 200) return failed(status, json);
      found = json.tasks.filter((t) => t.taskId.toLowerCase() === q.toLowerCase());
      cursor = json.nextCursor;
      if (!cursor) break;
    }
    state.shown = found;
    state.next = null;
    render(found.length ? "" : "no such task among the newest 5,000");
    return;
  }
  const { status, json } = await api("GET", listPath(state.cursors[state.page]));
  if (status !== 200) return failed(status, json);
  state.shown = json.tasks;
  state.next = json.nextCursor;
  render("");
}

function failed(status, json) {
  if (status === 401) loadMode();
  const line = $("status-line");
  text(line, `HTTP ${status}: ${json && json.message ? json.message : "no answer"}`);
  line.className = "error";
}

function cell(row, value, cls) {
  const td = document.createElement("td");
  text(td, value);
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

function when(iso) { return iso ? new Date(iso).toLocaleString() : "–"; }

function render(note) {
  const body = $("tasks");
  body.replaceChildren();
  for (const t of state.shown) {
    const row = document.createElement("tr");
    row.className = "task" + (t.taskId === state.selected ? " selected" : "");
    row.dataset.taskId = t.taskId;
    cell(row, t.taskId, "id");
    cell(row, t.equipmentId, "device");
    cell(row, t.status, "status st-" + t.status);
    cell(row, t.attempts, "attempts");
    cell(row, when(t.createdAt));
    cell(row, when(t.updatedAt));
    const actions = cell(row, "", "actions");
    if (state.writable && t.status === "failed" && !t.retriedAs) actions.appendChild(button("retry", () => retry(t)));
    if (state.writable && t.status === "queued") actions.appendChild(button("cancel", () => cancel(t)));
    row.addEventListener("click", () => { state.selected = t.taskId; render(note); });
    body.appendChild(row);
  }
  if (note) {
    const row = document.createElement("tr");
    const td = cell(row, note, "note");
    td.colSpan = 7;
    body.appendChild(row);
  }
  $("prev").disabled = state.page === 0;
  $("next").disabled = !state.next;
  showDetail();
}

function button(label, action) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = label;
  text(b, label);
  b.addEventListener("click", (event) => { event.stopPropagation(); action(); });
  return b;
}

function showDetail() {
  const t = state.shown.find((x) => x.taskId === state.selected);
  $("detail").hidden = !t;
  if (!t) return;
  text($("d-task"), t.taskId);
  text($("d-device"), t.equipmentId);
  text($("d-status"), t.status);
  text($("d-attempts"), t.attempts);
  text($("d-created"), when(t.createdAt));
  text($("d-updated"), when(t.updatedAt));
  text($("d-error"), t.lastError);
  text($("d-retried"), t.retriedAs);
  text($("d-requested"), t.requestedBy);
}

// --- actions ---

function taskPath(t) { return "/api/v1/equipment/cpe/" + encodeURIComponent(t.equipmentId) + "/task/" + encodeURIComponent(t.taskId); }

function report(message) { text($("report"), message); }

async function retry(t) {
  const { status, json } = await api("POST", taskPath(t) + "/retry");
  report(status === 200 ? `retried ${t.taskId} as ${json.taskId}` : `retry: HTTP ${status}: ${json && json.message}`);
  refresh();
}

async function cancel(t) {
  const { status, json } = await api("DELETE", taskPath(t));
  report(status === 200 ? `cancelled ${t.taskId}` : `cancel: HTTP ${status}: ${json && json.message}`);
  refresh();
}

// Retries exactly the failed tasks on screen, one by one: the bulk route filters by device and
// would also retry failed tasks of those devices that are not shown.
$("retry-all").addEventListener("click", async () => {
  const failedShown = state.shown.filter((t) => t.status === "failed" && !t.retriedAs);
  if (!failedShown.length) return report("no failed task shown that was not retried already");
  if (!window.confirm(`Retry ${failedShown.length} failed task(s) shown?`)) return;
  let done = 0, skipped = 0, errors = 0;
  for (const t of failedShown) {
    const { status } = await api("POST", taskPath(t) + "/retry");
    if (status === 200) done++; else if (status === 409 || status === 404) skipped++; else errors++;
  }
  report(`retry all: done ${done}, skipped ${skipped}` + (errors ? `, errors ${errors}` : ""));
  refresh();
});

$("prev").addEventListener("click", () => { if (state.page > 0) { state.page--; loadTasks(); } });
$("next").addEventListener("click", () => {
  if (!state.next) return;
  state.cursors[state.page + 1] = state.next;
  state.page++;
  loadTasks();
});

function restart() { state.cursors = [null]; state.page = 0; loadTasks(); }
$("search").addEventListener("input", restart);
$("state").addEventListener("change", restart);

// --- the audit trail ---

// GET /api/v1/audit answers an admin token, or, with no token configured, a loopback client: the
// one case where the mode says writable without a token.
function auditAllowed(mode) { return mode.scope === "admin" || (!mode.tokenRequired && mode.writable); }

// Offered only where it can work; kept while open, so a token revoked meanwhile shows its refusal
// in the view and the way back stays.
function showAuditToggle() {
  const toggle = $("audit-toggle");
  toggle.hidden = !audit.allowed && !audit.open;
  text(toggle, audit.open ? "‹ Tasks" : "Audit trail");
}

function setAuditOpen(open) {
  audit.open = open;
  document.body.classList.toggle("auditing", open);
  showAuditToggle();
  if (open) restartAudit(); else loadTasks();
}

function auditPath(cursor) {
  const params = new URLSearchParams({ limit: String(AUDIT_PAGE) });
  if (cursor) params.set("cursor", cursor);
  const actor = $("audit-actor").value.trim();
  if (actor) params.set("actor", actor);
  const action = $("audit-action").value;
  if (action) params.set("action", action);
  return "/api/v1/audit?" + params;
}

async function loadAudit() {
  const asked = ++audit.asked;
  const { status, json } = await api("GET", auditPath(audit.cursors[audit.page]));
  // The actor filter asks once a key; an earlier, slower answer must not overwrite a later one.
  if (asked !== audit.asked) return;
  const note = $("audit-note");
  if (status !== 200 || !json) {
    if (status === 401) loadMode();
    text(note, `HTTP ${status}: ${json && json.message ? json.message : "no answer"}`);
    note.className = "error";
    audit.next = null;
    return renderAudit([], "");
  }
  text(note, "");
  note.className = "";
  audit.next = json.nextCursor;
  renderAudit(json.records, "no records");
}

// Bulk records count what they did instead of naming tasks.
function outcome(r) { return r.counts ? `${r.outcome} (done ${r.counts.done}, skipped ${r.counts.skipped})` : r.outcome; }

// `empty` is shown in the table when there is no record to show.
function renderAudit(records, empty) {
  const body = $("audit-rows");
  body.replaceChildren();
  for (const r of records) {
    const row = document.createElement("tr");
    row.className = "record";
    cell(row, r.at, "at");
    cell(row, r.actor, "actor");
    cell(row, r.source, "source");
    cell(row, r.action, "action");
    cell(row, r.route, "route");
    cell(row, Array.isArray(r.taskIds) && r.taskIds.length ? r.taskIds.join(", ") : null, "id");
    cell(row, r.status, "http");
    cell(row, outcome(r), "outcome");
    body.appendChild(row);
  }
  if (!records.length && empty) {
    const row = document.createElement("tr");
    cell(row, empty, "note").colSpan = 8;
    body.appendChild(row);
  }
  $("audit-prev").disabled = audit.page === 0;
  $("audit-next").disabled = !audit.next;
}

function restartAudit() { audit.cursors = [null]; audit.page = 0; loadAudit(); }

$("audit-toggle").addEventListener("click", () => setAuditOpen(!audit.open));
$("audit-actor").addEventListener("input", restartAudit);
$("audit-action").addEventListener("change", restartAudit);
$("audit-prev").addEventListener("click", () => { if (audit.page > 0) { audit.page--; loadAudit(); } });
$("audit-next").addEventListener("click", () => {
  if (!audit.next) return;
  audit.cursors[audit.page + 1] = audit.next;
  audit.page++;
  loadAudit();
});

// --- refresh loop ---

let busy = false;
async function refresh() {
  if (busy) return;
  busy = true;
  const line = $("status-line");
  try {
    await loadMode();
    // Set first: a failing listing replaces it with its error.
    text(line, "updated " + new Date().toLocaleTimeString());
    line.className = "";
    // The open view only: the other is loaded again when it is shown.
    await Promise.all([loadMetrics(), audit.open ? loadAudit() : loadTasks()]);
  } catch (e) {
    text(line, "service unreachable, retrying: " + e.message);
    line.className = "error";
  } finally {
    busy = false;
  }
}

refresh();
setInterval(refresh, REFRESH_MS);
