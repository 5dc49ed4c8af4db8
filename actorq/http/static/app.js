// The actorq dashboard: plain JavaScript over the REST API (/api) and its live stream
// (/api/events). Everything shown is built with textContent: task arguments and errors
// are data, never markup.
"use strict";

const STATES = ["pending", "scheduled", "queued", "running", "succeeded", "failed", "dead",
                "cancelled", "expired"];
const WINDOW_S = 300;  // the chart shows the last five minutes
let token = sessionStorage.getItem("actorq-token") || "";
let role = "open";
let last = null;  // the previous stats event, for rates
const series = [[], [], [], []];  // time, submitted/s, succeeded/s, failed/s
let chart = null;
let taskCursor = null;

// ---- helpers ----------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "on") for (const [ev, fn] of Object.entries(v)) node.addEventListener(ev, fn);
    else if (v !== null && v !== undefined) node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : String(c ?? ""));
  return node;
}

function table(id, head, rows) {
  const t = document.getElementById(id);
  t.replaceChildren(el("tr", {}, ...head.map(h => el("th", {}, h))), ...rows);
}

function when(unix) {
  return unix ? new Date(unix * 1000).toISOString().replace("T", " ").slice(0, 19) : "never";
}

function showError(message) {
  document.getElementById("error").textContent = message || "";
}

async function api(method, path, body) {
  const headers = {"Content-Type": "application/json"};
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(path, {method, headers,
                                      body: body === undefined ? undefined : JSON.stringify(body)});
  const data = await response.json();
  if (response.status === 401) { askToken(data.error.message); throw new Error(data.error.message); }
  if (!response.ok) { showError(data.error.message); throw new Error(data.error.message); }
  showError("");
  return data;
}

function button(label, action, testid) {
  return el("button", {class: "admin-only", "data-testid": testid, on: {click: async e => {
    e.stopPropagation();
    try { await action(); } catch (err) { /* shown by api() */ }
  }}}, label);
}

// ---- token and role ---------------------------------------------------------------

function askToken(why) {
  document.getElementById("login").hidden = false;
  document.getElementById("login-error").textContent = why || "";
}

document.getElementById("login").addEventListener("submit", async e => {
  e.preventDefault();
  token = document.getElementById("token").value.trim();
  sessionStorage.setItem("actorq-token", token);
  document.getElementById("login").hidden = true;
  start();
});

async function whoami() {
  role = (await api("GET", "/api/whoami")).role;
  document.body.classList.toggle("read-only", role === "read");
}

// ---- theme ------------------------------------------------------------------------

function applyTheme() {
  const theme = localStorage.getItem("actorq-theme");
  if (theme) document.documentElement.dataset.theme = theme;
}

document.getElementById("theme").addEventListener("click", () => {
  const dark = document.documentElement.dataset.theme === "dark" ||
    (!document.documentElement.dataset.theme && matchMedia("(prefers-color-scheme: dark)").matches);
  const theme = dark ? "light" : "dark";
  localStorage.setItem("actorq-theme", theme);
  document.documentElement.dataset.theme = theme;
});

// ---- views ------------------------------------------------------------------------

function route() {
  const name = (location.hash || "#overview").slice(1);
  for (const v of document.querySelectorAll(".view")) v.classList.toggle("shown", v.id === name);
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("active", a.getAttribute("href") === `#${name}`);
  }
  const load = {workers: loadPools, tasks: loadTasks, dead: loadDead, queues: loadQueues,
                crons: loadCrons}[name];
  if (load) load().catch(() => {});
}

// ---- live: the event stream -------------------------------------------------------

function connect() {
  const url = "/api/events" + (token ? `?access_token=${encodeURIComponent(token)}` : "");
  const source = new EventSource(url);
  source.addEventListener("open", () => { document.getElementById("live").textContent = "live"; });
  source.addEventListener("error", () => {
    document.getElementById("live").textContent = "reconnecting";
  });
  source.addEventListener("stats", e => onStats(JSON.parse(e.data)));
  source.addEventListener("workers", e => onWorkers(JSON.parse(e.data)));
}

function onStats(s) {
  const set = (id, v) => { document.getElementById(id).textContent = v; };
  set("f-succeeded", s.succeeded);
  set("f-failed", s.failed);
  set("f-queued", s.queued);
  set("f-running", s.running);
  set("f-workers", s.workers_alive);
  set("f-p50", `${s.duration_p50_s} / ${s.duration_p99_s} s`);
  table("states", ["state", "tasks"], [["queued", s.queued], ["running", s.running],
    ["scheduled", s.scheduled], ["pending", s.pending], ["succeeded", s.succeeded],
    ["dead", s.dead], ["cancelled", s.cancelled]].map(r => el("tr", {}, ...r.map(v => el("td", {}, v)))));
  table("depths", ["queue", "queued", "by priority"], Object.entries(s.queue_depth).map(
    ([q, n]) => el("tr", {}, el("td", {}, q), el("td", {"data-testid": `depth-${q}`}, n),
      el("td", {}, Object.entries(s.queue_by_priority[q] || {}).sort((a, b) => b[0] - a[0])
        .map(([p, k]) => `${p}: ${k}`).join(", ")))));
  if (last && s.t > last.t) {
    const dt = s.t - last.t;
    series[0].push(s.t);
    series[1].push((s.submitted - last.submitted) / dt);
    series[2].push((s.succeeded - last.succeeded) / dt);
    series[3].push((s.failed - last.failed) / dt);
    while (series[0].length && series[0][0] < s.t - WINDOW_S) for (const x of series) x.shift();
    drawChart();
  }
  last = s;
  for (const [pool, size] of Object.entries(s.pools)) {  // the pools table's live cells
    const set = (what, v) => { const c = document.getElementById(`${what}-${pool}`); if (c) c.textContent = v; };
    set("workers", size.workers);
    set("target", size.target);
    set("restarts", s.worker_restarts[pool] || 0);
  }
}

function drawChart() {
  const box = document.getElementById("chart");
  if (!chart) {
    chart = new uPlot({width: Math.min(900, box.clientWidth || 900), height: 220,
      series: [{}, {label: "submitted", stroke: "#2563eb"}, {label: "succeeded", stroke: "#16a34a"},
               {label: "failed", stroke: "#c2410c"}],
      axes: [{stroke: "currentColor"}, {stroke: "currentColor"}]}, series, box);
  } else {
    chart.setData(series);
  }
}

const workers = new Map();

function onWorkers(update) {
  for (const w of update.changed) workers.set(w.name, w);
  for (const name of update.gone) workers.delete(name);
  const rows = [...workers.values()].sort((a, b) => a.name.localeCompare(b.name)).map(w =>
    el("tr", {"data-testid": "worker-row", "data-worker": w.name, "data-pid": w.pid},
       ...[w.name, w.pool, w.host, w.pid, w.state, w.tasks.slice(0, 3).join(", "), w.done,
           `${w.last_seen_s} s ago`].map(v => el("td", {}, v))));
  document.getElementById("worker-rows").replaceChildren(...rows);
}

// ---- workers and pools ------------------------------------------------------------

async function loadPools() {
  // Built once when the view opens (its inputs must keep what is typed); the stream
  // updates the live cells (onStats).
  const pools = (await api("GET", "/api/pools")).pools;
  table("pools", ["pool", "state", "workers", "target", "min", "max", "restarts", ""],
    pools.map(p => {
      const low = el("input", {type: "number", min: 1, value: p.min_workers, "data-testid": `min-${p.name}`});
      const high = el("input", {type: "number", min: 1, value: p.max_workers, "data-testid": `max-${p.name}`});
      const cell = (what, v) => el("td", {id: `${what}-${p.name}`, "data-testid": `${what}-${p.name}`}, v);
      return el("tr", {"data-testid": `pool-${p.name}`}, el("td", {}, p.name), el("td", {}, p.state),
        cell("workers", p.workers), cell("target", p.target),
        el("td", {}, low), el("td", {}, high), cell("restarts", p.restarts),
        el("td", {}, button("Scale", async () => {
          await api("POST", `/api/pools/${encodeURIComponent(p.name)}/scale`,
                    {min_workers: Number(low.value), max_workers: Number(high.value)});
          await loadPools();
        }, `scale-${p.name}`)));
    }));
}

// ---- tasks ------------------------------------------------------------------------

const filter = document.getElementById("task-filter");
filter.state.append(...STATES.map(s => el("option", {value: s}, s)));
filter.addEventListener("submit", e => { e.preventDefault(); loadTasks().catch(() => {}); });
document.getElementById("more").addEventListener("click", () => loadTasks(true).catch(() => {}));

function taskRow(t) {
  return el("tr", {class: "clickable", "data-testid": "task-row", "data-task": t.id,
                   on: {click: () => showTask(t.id).catch(() => {})}},
            ...[t.id, t.name, t.queue, t.priority, t.state, t.attempts, t.worker,
                when(t.submitted_at), t.error].map(v => el("td", {}, v)));
}

async function loadTasks(more = false) {
  const f = new FormData(filter);
  if (f.get("id")) { await showTask(f.get("id")); return; }
  const q = new URLSearchParams({limit: "25"});
  for (const k of ["state", "queue", "name"]) if (f.get(k)) q.set(k, f.get(k));
  if (more && taskCursor) q.set("cursor", taskCursor);
  const page = await api("GET", `/api/tasks?${q}`);
  taskCursor = page.next_cursor;
  document.getElementById("more").hidden = !taskCursor;
  const head = ["id", "name", "queue", "priority", "state", "attempts", "worker", "submitted", "error"];
  const rows = page.tasks.map(taskRow);
  if (more) document.getElementById("task-list").append(...rows);
  else table("task-list", head, rows);
}

async function showTask(id) {
  const t = await api("GET", `/api/tasks/${encodeURIComponent(id)}`);
  const box = document.getElementById("task-detail");
  const json = v => JSON.stringify(v);
  box.replaceChildren(
    el("h2", {}, `Task ${t.id}`),
    el("table", {}, ...[["name", t.name], ["state", t.state], ["queue", t.queue],
      ["priority", t.priority], ["attempts", t.attempts], ["worker", t.worker],
      ["submitted", when(t.submitted_at)], ["started", when(t.started_at)],
      ["finished", when(t.finished_at)], ["arguments", json(t.args)], ["keyword arguments", json(t.kwargs)],
      ["result", json(t.result)], ["error", t.error], ["progress", t.progress],
      ["depends on", (t.depends_on || []).join(", ")]].map(
        ([k, v]) => el("tr", {}, el("th", {}, k), el("td", {"data-testid": `detail-${k}`}, v ?? "")))),
    el("h3", {}, "Attempts"),
    el("table", {}, ...t.history.map((a, i) => el("tr", {}, el("td", {}, i + 1), el("td", {}, a.worker),
      el("td", {}, when(a.started_at)), el("td", {}, a.outcome)))),
    ...(t.traceback ? [el("pre", {}, t.traceback)] : []),
    button("Cancel", async () => { await api("DELETE", `/api/tasks/${t.id}`); await showTask(t.id); },
           "cancel"),
    " ",
    button("Requeue", async () => { await api("POST", `/api/tasks/${t.id}/requeue`); await showTask(t.id); },
           "requeue"));
  box.hidden = false;
}

// ---- dead letters, queues, crons --------------------------------------------------

async function loadDead() {
  const dead = (await api("GET", "/api/dead")).tasks;
  table("dead-list", ["id", "name", "queue", "attempts", "error", ""], dead.map(t =>
    el("tr", {"data-testid": "dead-row"}, ...[t.id, t.name, t.queue, t.attempts, t.error].map(
      v => el("td", {}, v)), el("td", {}, button("Requeue", async () => {
        await api("POST", `/api/tasks/${t.id}/requeue`); await loadDead();
      }, "requeue-dead")))));
}

document.getElementById("requeue-all").addEventListener("click", async () => {
  try { await api("POST", "/api/dead/requeue", {}); await loadDead(); } catch (err) { /* shown */ }
});

async function loadQueues() {
  const queues = (await api("GET", "/api/queues")).queues;
  table("queue-list", ["queue", "depth", "by priority", "paused", "consumers", "oldest", ""],
    queues.map(q => el("tr", {"data-testid": `queue-${q.name}`},
      ...[q.name, q.depth, Object.entries(q.by_priority).map(([p, n]) => `${p}: ${n}`).join(", "),
          q.paused ? "yes" : "no", q.consumers, `${q.oldest_s.toFixed(1)} s`].map(v => el("td", {}, v)),
      el("td", {},
        button(q.paused ? "Resume" : "Pause", async () => {
          await api("POST", `/api/queues/${encodeURIComponent(q.name)}/${q.paused ? "resume" : "pause"}`);
          await loadQueues();
        }, q.paused ? `resume-${q.name}` : `pause-${q.name}`), " ",
        button("Purge", async () => {
          if (!confirm(`Cancel every task queued in ${q.name}? This cannot be undone.`)) return;
          await api("DELETE", `/api/queues/${encodeURIComponent(q.name)}/tasks`);
          await loadQueues();
        }, `purge-${q.name}`)))));
}

async function loadCrons() {
  const crons = (await api("GET", "/api/crons")).crons;
  table("cron-list", ["cron", "schedule (UTC)", "task", "arguments", "last fired", "next run", ""],
    crons.map(c => el("tr", {}, ...[c.name, c.schedule, c.task, JSON.stringify(c.args),
      when(c.last_fired), when(c.next_run)].map(v => el("td", {}, v)),
      el("td", {}, button("Run now", () => api("POST", `/api/crons/${encodeURIComponent(c.name)}/run`),
                          "run-cron")))));
}

// ---- submit -----------------------------------------------------------------------

document.getElementById("submit-form").addEventListener("submit", async e => {
  e.preventDefault();
  const f = new FormData(e.target);
  let args;
  try { args = JSON.parse(f.get("args") || "[]"); } catch (err) {
    showError(`arguments are not JSON: ${err.message}`); return;
  }
  try {
    const made = await api("POST", "/api/tasks", {task: f.get("task"), args, queue: f.get("queue"),
      priority: Number(f.get("priority")), delay: Number(f.get("delay"))});
    document.getElementById("submitted").textContent = `submitted ${made.id} (${made.state})`;
  } catch (err) { /* shown */ }
});

// ---- start ------------------------------------------------------------------------

async function start() {
  try { await whoami(); } catch (err) { return; }  // asks for a token when one is needed
  connect();
  route();
}

applyTheme();
window.addEventListener("hashchange", route);
start();
