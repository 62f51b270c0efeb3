// trainq's page: plain JavaScript, no build step, nothing loaded from elsewhere.
// Every action goes through the same HTTP API as the CLI; live updates come over the WebSocket
// stream (/api/training/ws), which resumes from the last event id after a reconnect.
"use strict";

const STEP_KEYS = ["global_step", "step", "iteration", "training_iteration", "epoch"];
const TOTAL_KEYS = ["max_steps", "total_steps", "total", "steps", "num_steps"];
const OPTIONAL_FIELDS = ["owner", "pending_reason", "preemptions", "retries", "resumable", "expected_paused_by"];
const COLORS = ["#2563eb", "#d97706", "#059669", "#db2777", "#7c3aed", "#0891b2"];

const state = {
  token: sessionStorage.getItem("trainq-token"),
  config: { token_required: false, ray_dashboard_url: null, actions: {} },  // actions: state -> verbs it allows
  jobs: new Map(),          // job_id -> job, as the API returns it
  selected: null,           // job_id shown in the detail panel
  reports: [],              // the selected job's reports, oldest first
  history: { transitions: [], attempts: [] },
  lastEventId: null,        // the newest event id seen: a reconnect resumes after it
  ws: null,
  models: new Map(),
};

const $ = (sel) => document.querySelector(sel);
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined) node.setAttribute(k, v);
  }
  for (const c of children.flat()) node.append(c instanceof Node ? c : document.createTextNode(String(c ?? "")));
  return node;
};

// -- the API ------------------------------------------------------------------------------------
async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (state.token) headers["Authorization"] = `Bearer ${state.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    return { ok: false, status: 0, body: { error: "unreachable", message: `cannot reach trainq: ${e}` } };
  }
  let data = null;
  try { data = await response.json(); } catch (e) { data = { error: "error", message: response.statusText }; }
  if (response.status === 401) askForToken(state.token ? "The server refused this token: wrong token." : "");
  return { ok: response.ok, status: response.status, body: data };
}

const get = (path) => api("GET", path);

// -- token --------------------------------------------------------------------------------------
function askForToken(message) {
  $("#token-dialog").hidden = false;
  $("#token-error").textContent = message || "";
  $("#token-input").focus();
}

$("#token-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  state.token = $("#token-input").value.trim();
  const check = await get("/api/training/jobs?limit=1");
  if (check.status === 401) {
    state.token = null;
    sessionStorage.removeItem("trainq-token");
    $("#token-error").textContent = "Wrong token: the server refused it (401).";
    return;
  }
  sessionStorage.setItem("trainq-token", state.token);
  $("#token-dialog").hidden = true;
  $("#forget-token").hidden = false;
  start();
});

$("#forget-token").addEventListener("click", () => {
  sessionStorage.removeItem("trainq-token");
  state.token = null;
  if (state.ws) state.ws.close();
  location.reload();
});

// -- tabs ---------------------------------------------------------------------------------------
for (const button of document.querySelectorAll(".tab")) {
  button.addEventListener("click", () => showTab(button.dataset.tab));
}
function showTab(name) {
  for (const b of document.querySelectorAll(".tab")) b.classList.toggle("active", b.dataset.tab === name);
  for (const p of document.querySelectorAll(".tab-panel")) p.hidden = p.id !== `tab-${name}`;
  if (name === "cluster") loadCluster();
  if (name === "models") loadModels();
}

// -- formatting ---------------------------------------------------------------------------------
const stepOf = (m) => { if (!m) return null; for (const k of STEP_KEYS) if (typeof m[k] === "number") return m[k]; return null; };
const totalOf = (job) => { const c = (job.spec && job.spec.config) || {}; for (const k of TOTAL_KEYS) if (Number.isInteger(c[k]) && c[k] > 0) return c[k]; return null; };
const num = (v) => typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toPrecision(4)) : String(v);
const metricsText = (m) => m ? Object.entries(m).slice(0, 4).map(([k, v]) => `${k}=${num(v)}`).join(" ") : "-";
const time = (iso) => iso ? iso.slice(0, 19).replace("T", " ") : "-";
const known = (v) => v !== undefined && v !== null && v !== "";
const badge = (status) => el("span", { class: `badge ${status}`, "data-status": status }, status);
// A queued job's estimated start, "in ~N min", with what the estimate rests on when hovered.
function etaCell(job) {
  if (job.status !== "queued") return "";
  const text = job.eta ? `in ~${Math.max(1, Math.round((Date.parse(job.eta) - Date.now()) / 60000))} min` : "no estimate";
  return el("span", { class: "eta", title: job.eta_basis || "", "data-eta": job.eta || "" }, text);
}
// The verbs the server allows in this state (from /api/ui/config, read off the transition table).
const allows = (job, verb) => (state.config.actions[job.status] || []).includes(verb)
  && (verb !== "checkpoint" || job.cooperative);

function progressCell(job) {
  const total = totalOf(job), step = stepOf(job.metrics);
  if (!total) return step === null ? "-" : `step ${step}`;
  const done = step === null ? 0 : Math.min(step + 1, total);
  const bar = el("span", { class: "bar" }, el("span", { style: `width:${(100 * done / total).toFixed(1)}%` }));
  return el("span", { class: "progress" }, bar, el("span", { class: "bar-label" }, `${done}/${total}`));
}

// -- jobs table ---------------------------------------------------------------------------------
async function loadJobs() {
  const r = await get("/api/training/jobs?limit=200");
  if (!r.ok) return;
  state.jobs = new Map(r.body.jobs.map((j) => [j.job_id, j]));
  $("#job-count").textContent = `(${r.body.total})`;
  renderJobs();
  loadSweeps();
}

// -- sweeps: the ones among the listed jobs, each as its route ranks it ---------------------------
const MAX_SWEEPS = 10;
async function loadSweeps() {
  const ids = [...new Set([...state.jobs.values()].map((j) => j.spec && j.spec.sweep_id).filter(Boolean))];
  const views = (await Promise.all(ids.slice(0, MAX_SWEEPS).map((id) => get(`/api/training/sweeps/${id}`))))
    .filter((r) => r.ok).map((r) => r.body);
  $("#sweeps-card").hidden = views.length === 0;
  $("#sweeps").replaceChildren(...views.map((v) => {
    const counts = Object.entries(v.counts).map(([s, n]) => `${n} ${s}`).join(", ");
    const limit = v.max_running ? `at most ${v.max_running} at once` : "no limit";
    const by = v.metric ? `, best first by ${v.metric} (${v.mode})` : "";
    return el("div", { class: "sweep", "data-sweep-id": v.sweep_id },
      el("h3", {}, el("code", {}, v.sweep_id), " ", el("span", { class: "muted" }, `${counts}; ${limit}${by}`)),
      el("table", { class: "grid small" }, el("tbody", {}, ...v.jobs.map((j) =>
        el("tr", { "data-job-id": j.job_id, onclick: () => selectJob(j.job_id) },
          el("td", {}, j.name), el("td", {}, badge(j.status)),
          el("td", {}, j.pending_reason ? `${j.pending_reason.code}` : ""),
          el("td", { class: "metrics" }, metricsText(j.metrics)))))));
  }));
}

// What a job waits for, and the sweep it belongs to, on its row.
const dependsText = (job) => ((job.spec && job.spec.depends_on) || []).map((d) => `${d.job_id} ${d.on}`).join(", ");

function renderJobs() {
  const tbody = $("#jobs tbody");
  const showFinished = $("#show-finished").checked;
  const rows = [];
  for (const job of state.jobs.values()) {
    if (!showFinished && ["completed", "failed", "cancelled"].includes(job.status)) continue;
    const queue = job.queue_position ? `#${job.queue_position}` : "-";
    const reason = job.pending_reason;
    const why = reason ? el("span", { class: "why" }, typeof reason === "object" ? `${reason.code}: ${reason.message}` : reason) : "";
    rows.push(el("tr", { "data-job-id": job.job_id, class: job.job_id === state.selected ? "selected" : "",
                         onclick: () => selectJob(job.job_id) },
      el("td", {}, el("strong", {}, job.name), " ", el("code", {}, job.job_id),
        dependsText(job) ? el("div", { class: "why depends" }, `after ${dependsText(job)}`) : "",
        job.spec && job.spec.sweep_id ? el("div", { class: "why sweep-of" }, `sweep ${job.spec.sweep_id}`) : ""),
      el("td", { class: "status" }, badge(job.status)),
      el("td", {}, known(job.owner) ? job.owner : "-"),
      el("td", {}, job.priority),
      el("td", { class: "queue" }, queue, " ", etaCell(job), why),
      el("td", {}, job.attempt),
      el("td", { class: "metrics" }, metricsText(job.metrics)),
      el("td", {}, progressCell(job))));
  }
  tbody.replaceChildren(...rows);
  $("#no-jobs").hidden = state.jobs.size > 0;
}
$("#show-finished").addEventListener("change", renderJobs);

// -- one job ------------------------------------------------------------------------------------
async function selectJob(jobId) {
  state.selected = jobId;
  state.reports = [];
  state.history = { transitions: [], attempts: [] };
  $("#action-result").textContent = "";
  $("#job-detail").hidden = false;
  renderJobs();
  await Promise.all([refreshJob(), loadReports(), loadHistory(), loadCheckpoints(), loadLogs()]);
}

async function refreshJob() {
  if (!state.selected) return;
  const r = await get(`/api/training/jobs/${state.selected}`);
  if (!r.ok) return;
  state.jobs.set(r.body.job_id, r.body);
  renderDetail(r.body);
  renderJobs();
}

function renderDetail(job) {
  $("#d-name").textContent = job.name;
  $("#d-id").textContent = job.job_id;
  const s = $("#d-status");
  s.textContent = job.status; s.className = `badge ${job.status}`; s.dataset.status = job.status;
  const fields = [["attempt", job.attempt], ["priority", job.priority], ["queue position", job.queue_position],
    ...OPTIONAL_FIELDS.map((k) => [k.replace(/_/g, " "), job[k]]),
    ["created", time(job.created_at)], ["started", job.started_at && time(job.started_at)],
    ["paused", job.paused_at && time(job.paused_at)], ["finished", job.finished_at && time(job.finished_at)],
    ["checkpoint", job.checkpoint_path], ["resumed from", job.resume_from], ["metrics", job.metrics && metricsText(job.metrics)],
    ["lost work", job.lost_work && (job.lost_work.steps !== null && job.lost_work.steps !== undefined
      ? `${job.lost_work.steps} steps, ${job.lost_work.seconds}s past the checkpoint` : `${job.lost_work.seconds}s past the checkpoint`)],
    ["error", job.error], ["warning", job.warning],
    ["runs", `${job.spec.entrypoint || "workload " + job.spec.workload} on ${workersText(job)}`],
    ["depends on", dependsText(job)], ["sweep", job.spec.sweep_id],
    ["sizes", attemptSizes(job)]];
  for (const verb of ["pause", "resume", "cancel", "checkpoint"]) $(`#btn-${verb}`).hidden = !allows(job, verb);
  $("#d-fields").replaceChildren(...fields.filter(([, v]) => known(v)).flatMap(([k, v]) =>
    [el("dt", {}, k), el("dd", { "data-field": k }, typeof v === "object" ? JSON.stringify(v) : v)]));
  if (state.history.attempts && state.history.attempts.length && state.history.attempts[0].job_id === job.job_id) renderRayLinks();
}

// An elastic job's spec is a range; what it runs with is its current attempt's size.
function workersText(job) {
  const n = job.spec.num_workers;
  if (typeof n !== "object") return `${n} worker(s)`;
  return job.workers ? `${job.workers} of ${n.min}-${n.max} workers (elastic)` : `${n.min}-${n.max} workers (elastic)`;
}

// Each attempt's worker count, for an elastic job (from its history).
function attemptSizes(job) {
  const attempts = (state.history.attempts || []).filter((a) => a.job_id === job.job_id);
  if (typeof job.spec.num_workers !== "object" || !attempts.length) return null;
  return attempts.map((a) => `attempt ${a.attempt}: ${a.workers ?? "?"}`).join(", ");
}

async function act(verb, query = "") {
  const jobId = state.selected;
  const r = await api("POST", `/api/training/${verb}/${jobId}${query}`);
  const box = $("#action-result");
  box.className = `answer ${r.ok ? "ok" : "err"}`;
  box.textContent = r.ok ? (r.body.message || `${verb}: ${r.body.status}`) : `${verb} refused (${r.status}): ${r.body.message || r.body.detail || r.body.error}`;
  await refreshJob();
}
$("#btn-pause").addEventListener("click", () => act("pause"));
$("#btn-resume").addEventListener("click", () => act("resume"));
$("#btn-cancel").addEventListener("click", () => act("cancel"));
$("#btn-checkpoint").addEventListener("click", () => act("checkpoint"));

async function loadReports() {
  const jobId = state.selected;
  const r = await get(`/api/training/jobs/${jobId}/metrics`);
  if (!r.ok || jobId !== state.selected) return;
  state.reports = r.body;
  renderMetricChoices();
  renderChart();
}

async function loadHistory() {
  const jobId = state.selected;
  const r = await get(`/api/training/jobs/${jobId}/history`);
  if (!r.ok || jobId !== state.selected) return;
  state.history = r.body;
  $("#timeline").replaceChildren(...r.body.transitions.map((t) =>
    el("li", { "data-to": t.to_status }, `${time(t.at)}  ${t.from_status || "new"} → `, badge(t.to_status),
       ` attempt ${t.attempt}: ${t.reason}`)));
  renderRayLinks();
  renderChart();
}

async function loadCheckpoints() {
  const jobId = state.selected;
  const r = await get(`/api/training/jobs/${jobId}/checkpoints`);
  if (!r.ok || jobId !== state.selected) return;
  const job = state.jobs.get(jobId);
  const resumable = job && allows(job, "resume");
  $("#checkpoints tbody").replaceChildren(...r.body.map((c) => el("tr", { "data-path": c.path },
    el("td", { title: c.path }, time(c.at)), el("td", {}, c.attempt), el("td", {}, metricsText(c.metrics)),
    el("td", {}, resumable ? el("button", { class: "small resume-here",
      onclick: () => act("resume", `?checkpoint_path=${encodeURIComponent(c.path)}`) }, "Resume from here") : ""))));
}

async function loadLogs() {
  const jobId = state.selected;
  const r = await get(`/api/training/jobs/${jobId}/logs?tail=80`);
  if (!r.ok || jobId !== state.selected) return;
  $("#log-attempt").textContent = `attempt ${r.body.attempt}`;
  const parts = Object.entries(r.body.logs).map(([source, lines]) => `==> ${source} <==\n${lines.join("\n")}`);
  $("#logs").textContent = parts.join("\n\n") || "no output yet";
}
$("#btn-logs").addEventListener("click", loadLogs);

function renderRayLinks() {
  const base = state.config.ray_dashboard_url;
  const runs = (state.history.attempts || []).map((a) => a.run_name).filter(Boolean);
  const dd = document.querySelector('#d-fields dd[data-field="ray train runs"]');
  if (dd) { dd.previousSibling.remove(); dd.remove(); }
  if (!runs.length) return;
  // The Ray dashboard lists Train runs by run name; its Train state API shows each one.
  const links = runs.map((name) => base
    ? el("a", { href: `${base}/api/train/v2/runs/v1`, target: "_blank", rel: "noopener", title: "Ray Train state for this run" }, name)
    : el("span", {}, name));
  $("#d-fields").append(el("dt", {}, "ray train runs"),
    el("dd", { "data-field": "ray train runs" }, ...links.flatMap((l, i) => i ? [", ", l] : [l])));
}

// -- the chart: one metric over steps, one line per attempt, pauses/preemptions/resumes marked --
function renderMetricChoices() {
  const select = $("#metric-select");
  const keys = new Set();
  for (const r of state.reports) for (const [k, v] of Object.entries(r.metrics)) if (typeof v === "number") keys.add(k);
  const preferred = ["loss", "train_loss", "eval_loss"].find((k) => keys.has(k));
  const current = select.value;
  select.replaceChildren(...[...keys].map((k) => el("option", { value: k }, k)));
  select.value = keys.has(current) ? current : (preferred || [...keys].find((k) => !STEP_KEYS.includes(k)) || [...keys][0] || "");
}
$("#metric-select").addEventListener("change", renderChart);

function renderChart() {
  const box = $("#chart");
  const metric = $("#metric-select").value;
  const points = state.reports.map((r, i) => ({ x: stepOf(r.metrics) ?? i, y: r.metrics[metric], attempt: r.attempt, at: Date.parse(r.at) }))
    .filter((p) => typeof p.y === "number");
  const W = Math.max(box.clientWidth, 400), H = box.clientHeight || 260, L = 50, R = 16, T = 26, B = 28;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const add = (tag, attrs, text) => {
    const n = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    svg.append(n); return n;
  };
  if (!points.length) {
    add("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, metric ? "no reports yet" : "no metrics reported yet");
    box.replaceChildren(svg); return;
  }
  const xs = points.map((p) => p.x), ys = points.map((p) => p.y);
  let [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  if (x0 === x1) { x0 -= 1; x1 += 1; } if (y0 === y1) { y0 -= 1; y1 += 1; }
  const sx = (x) => L + (x - x0) / (x1 - x0) * (W - L - R), sy = (y) => H - B - (y - y0) / (y1 - y0) * (H - T - B);
  for (let i = 0; i <= 4; i++) {
    const y = y0 + (y1 - y0) * i / 4, x = x0 + (x1 - x0) * i / 4;
    add("line", { class: "grid-line", x1: L, x2: W - R, y1: sy(y), y2: sy(y) });
    add("text", { x: L - 6, y: sy(y) + 4, "text-anchor": "end" }, num(+y.toPrecision(3)));
    add("text", { x: sx(x), y: H - 10, "text-anchor": "middle" }, num(Math.round(x)));
  }
  add("line", { class: "axis", x1: L, x2: L, y1: T, y2: H - B });
  add("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B });
  // Marks: where the run was asked to pause, paused, preempted (requeued from running) and resumed.
  let markIndex = 0;
  for (const t of state.history.transitions || []) {
    let kind = null, label = null;
    if (t.to_status === "pausing") { kind = "pause"; label = "pause asked"; }
    else if (t.to_status === "paused") { kind = "pause"; label = "paused"; }
    else if (t.to_status === "queued" && ["running", "pending", "pausing"].includes(t.from_status)) { kind = "preempt"; label = "preempted"; }
    else if (t.to_status === "queued" && ["paused", "failed", "cancelled"].includes(t.from_status)) { kind = "resume"; label = "resumed"; }
    if (!kind) continue;
    const at = Date.parse(t.at);
    const before = points.filter((p) => p.at <= at);
    if (!before.length) continue;
    const x = sx(before[before.length - 1].x);
    add("line", { class: `mark ${kind}`, x1: x, x2: x, y1: T, y2: H - B, "data-mark": label });
    add("text", { x: x + 3, y: T + 10 + 12 * (markIndex++ % 3) }, label);  // staggered: marks often share a step
  }
  const attempts = [...new Set(points.map((p) => p.attempt))];
  attempts.forEach((attempt, i) => {
    const mine = points.filter((p) => p.attempt === attempt);
    const color = COLORS[i % COLORS.length];
    add("polyline", { fill: "none", stroke: color, "stroke-width": 2, points: mine.map((p) => `${sx(p.x)},${sy(p.y)}`).join(" ") });
    for (const p of mine) add("circle", { class: "pt", cx: sx(p.x), cy: sy(p.y), r: 3, fill: color, "data-attempt": attempt });
    add("text", { x: W - R - 80 * (attempts.length - 1 - i), y: 14, "text-anchor": "end", style: `fill:${color}` }, `● attempt ${attempt}`);  // legend above the plot
  });
  box.replaceChildren(svg);
}

// -- cluster ------------------------------------------------------------------------------------
const fmtResource = (name, v) => /memory/.test(name) ? `${(v / 2 ** 30).toFixed(1)} GiB` : num(+v.toFixed(2));
async function loadCluster() {
  const r = await get("/api/training/cluster");
  if (!r.ok) return;
  const c = r.body;
  $("#cluster-counts").textContent = `running ${c.running} · starting ${c.starting} · queued ${c.queued} · paused ${c.paused}`;
  $("#resources tbody").replaceChildren(...Object.entries(c.resources).map(([name, u]) => el("tr", { "data-resource": name },
    el("td", {}, name), el("td", {}, fmtResource(name, u.used)), el("td", {}, fmtResource(name, u.free)),
    el("td", {}, fmtResource(name, u.total)),
    el("td", {}, el("span", { class: "bar" }, el("span", { style: `width:${u.total ? (100 * u.used / u.total).toFixed(1) : 0}%` }))))));
  loadNodes();
  const users = Object.entries(c.by_user || {});
  $("#by-user tbody").replaceChildren(...users.map(([user, res]) =>
    el("tr", {}, el("td", {}, user), el("td", {}, Object.entries(res).map(([k, v]) => `${k}=${num(v)}`).join(" ")))));
  $("#no-users").hidden = users.length > 0;
  $("#by-user").hidden = users.length === 0;
}

// One row per live node: its real resources (Ray's placement-group bookkeeping is left out by the
// server), the jobs with a worker on it, and whether it is draining and until when.
async function loadNodes() {
  const r = await get("/api/cluster/nodes");
  if (!r.ok) return;
  $("#nodes tbody").replaceChildren(...r.body.map((n) => el("tr", { "data-node": n.node_id },
    el("td", { title: n.node_id }, `${n.node_id.slice(0, 8)}${n.is_head ? " (head)" : ""}`),
    el("td", {}, Object.entries(n.resources).map(([k, total]) =>
      `${k} ${fmtResource(k, n.free[k] ?? 0)} / ${fmtResource(k, total)}`).join(" · ")),
    el("td", {}, n.jobs.length ? n.jobs.join(", ") : "—"),
    el("td", {}, n.draining ? `${n.drain_reason || "draining"} until ${new Date(n.drain_deadline_at * 1000).toLocaleTimeString()}`
      : "no"))));
}

// -- models -------------------------------------------------------------------------------------
const bytes = (n) => n === null || n === undefined ? "?" : n < 1024 ? `${n} B` : n < 2 ** 20 ? `${(n / 1024).toFixed(1)} KB` : n < 2 ** 30 ? `${(n / 2 ** 20).toFixed(1)} MB` : `${(n / 2 ** 30).toFixed(1)} GB`;
async function loadModels() {
  const r = await get("/api/models");
  if (!r.ok) return;
  state.models = new Map(r.body.map((m) => [m.model_id, m]));
  renderModels();
}
function renderModels() {
  $("#models tbody").replaceChildren(...[...state.models.values()].filter((m) => m.status !== "deleted").map((m) => {
    const pct = m.bytes_total ? Math.min(100, 100 * m.bytes_done / m.bytes_total) : (m.status === "ready" ? 100 : 0);
    return el("tr", { "data-model": m.model_id },
      el("td", {}, m.model_id), el("td", {}, badge(m.status)),
      el("td", {}, el("span", { class: "bar" }, el("span", { style: `width:${pct.toFixed(1)}%` })),
        el("span", { class: "bar-label" }, `${pct.toFixed(0)}%`)),
      el("td", {}, `${bytes(m.bytes_done)} / ${bytes(m.bytes_total)}`), el("td", {}, el("code", {}, m.path)),
      el("td", {}, el("button", { class: "small danger", onclick: () => deleteModel(m.model_id) }, "Delete")));
  }));
  $("#no-models").hidden = [...state.models.values()].some((m) => m.status !== "deleted");
}
async function deleteModel(id) {
  const r = await api("DELETE", `/api/models/${id}`);
  $("#pull-result").className = `answer ${r.ok ? "ok" : "err"}`;
  $("#pull-result").textContent = r.ok ? `deleted ${id}` : r.body.message;
  loadModels();
}
$("#pull-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const body = { model_id: $("#pull-model").value.trim(), revision: $("#pull-revision").value.trim() || null };
  const r = await api("POST", "/api/models", body);
  $("#pull-result").className = `answer ${r.ok ? "ok" : "err"}`;
  $("#pull-result").textContent = r.ok ? `${r.body.model_id}: ${r.body.status}` : r.body.message;
  if (r.ok) { state.models.set(r.body.model_id, r.body); renderModels(); }
});

// -- submit -------------------------------------------------------------------------------------
function showFieldErrors(body) {
  const problems = body.problems || [`${body.field || "spec"}: ${body.message}`];
  for (const p of problems) {
    const i = p.indexOf(": ");
    const loc = i > 0 ? p.slice(0, i) : "spec";
    const msg = i > 0 ? p.slice(i + 2) : p;
    // The most specific slot: "runtime_env.working_dir" -> that field, else "runtime_env", else the spec box.
    const parts = loc.split(".");
    let slot = null;
    for (let n = parts.length; n > 0 && !slot; n--) slot = document.querySelector(`[data-error-for="${parts.slice(0, n).join(".")}"]`);
    slot = slot || document.querySelector('[data-error-for="spec"]');
    slot.textContent = (slot.textContent ? slot.textContent + "; " : "") + `${loc}: ${msg}`;
  }
}

function specFromForm(form) {
  const raw = $("#spec-json").value.trim();
  if (raw) return JSON.parse(raw);
  const f = new FormData(form);
  const spec = {};
  for (const key of ["name", "entrypoint", "workload"]) if (f.get(key)) spec[key] = f.get(key);
  for (const key of ["priority", "max_failures"]) if (f.get(key) !== "" && f.get(key) !== null) spec[key] = Number(f.get(key));
  const workers = (f.get("num_workers") || "").trim();  // "4", or "2-8" for an elastic job
  const range = workers.match(/^(\d+)\s*-\s*(\d+)$/);
  if (range) spec.num_workers = { min: Number(range[1]), max: Number(range[2]) };
  else if (workers) spec.num_workers = Number(workers);
  if (f.get("use_gpu")) spec.use_gpu = true;
  const config = (f.get("config") || "").trim();
  if (config && config !== "{}") {
    try { spec.config = JSON.parse(config); } catch (e) { throw Object.assign(new Error(`config: not JSON (${e.message})`), { field: "config" }); }
  }
  if (f.get("working_dir")) spec.runtime_env = { working_dir: f.get("working_dir") };
  return spec;
}

$("#submit-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  for (const slot of document.querySelectorAll("[data-error-for]")) slot.textContent = "";
  const result = $("#submit-result");
  let spec;
  try { spec = specFromForm(e.target); } catch (err) {
    document.querySelector(`[data-error-for="${err.field || "spec"}"]`).textContent = err.message;
    return;
  }
  const r = await api("POST", "/api/training/jobs", spec);
  result.className = `answer ${r.ok ? "ok" : "err"}`;
  // 422 (malformed), 403 (the admin's policy) or 409 (this server cannot run it): all "invalid", all name the field.
  if (!r.ok) { result.textContent = r.body.message; if (r.body.error === "invalid") showFieldErrors(r.body); return; }
  result.textContent = `submitted ${r.body.job_id} (${r.body.status})`;
  state.jobs.set(r.body.job_id, r.body);
  showTab("jobs");
  selectJob(r.body.job_id);
});

// -- the live stream ----------------------------------------------------------------------------
let refreshTimer = null;
function refreshSoon() {
  // Many status events arrive together (a pause is three transitions); one refresh covers them.
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => {
    loadJobs();
    if (state.selected) { refreshJob(); loadHistory(); loadCheckpoints(); loadLogs(); }
    if (!$("#tab-cluster").hidden) loadCluster();
  }, 150);
}

function onEvent(msg) {
  if (msg.id !== null && msg.id !== undefined) state.lastEventId = msg.id;
  const d = msg.data;
  if (msg.event === "snapshot") { refreshSoon(); return; }
  if (msg.event === "status") {
    const job = state.jobs.get(d.job_id);
    if (job) { job.status = d.status; job.attempt = d.attempt; renderJobs(); }
    if (d.job_id === state.selected) $("#d-status").textContent = d.status;
    refreshSoon();
  } else if (msg.event === "report") {
    const job = state.jobs.get(d.job_id);
    if (job) { job.metrics = d.metrics; renderJobs(); }
    if (d.job_id === state.selected) {
      state.reports.push({ job_id: d.job_id, attempt: d.attempt, at: d.at, metrics: d.metrics, checkpoint_path: d.checkpoint_path });
      if (!$("#metric-select").value) renderMetricChoices();
      renderChart();
      if (d.checkpoint_path) loadCheckpoints();
    }
  } else if (msg.event === "warning") {
    refreshSoon();
  } else if (msg.event === "model") {
    state.models.set(d.model_id, { ...(state.models.get(d.model_id) || {}), ...d });
    renderModels();
  } else if (msg.event === "error") {
    $("#live").textContent = `stream refused: ${d.message}`;
    if (d.error === "unauthorized") askForToken("The server refused this token: wrong token.");
  }
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const query = state.lastEventId !== null ? `?last_event_id=${state.lastEventId}` : "";
  const ws = new WebSocket(`${scheme}://${location.host}/api/training/ws${query}`);
  state.ws = ws;
  ws.onopen = () => {
    // The token travels in the first message, not the URL, so it stays out of access logs.
    ws.send(JSON.stringify({ token: state.token || "" }));
    $("#live").textContent = "live"; $("#live").className = "live on";
  };
  ws.onmessage = (m) => onEvent(JSON.parse(m.data));
  ws.onclose = (e) => {
    $("#live").className = "live off";
    if (e.code === 4401) { $("#live").textContent = "not signed in"; return; }
    $("#live").textContent = "reconnecting…";
    if (state.ws === ws) setTimeout(connect, 1000);  // resumes after lastEventId: nothing is missed
  };
}

// -- start --------------------------------------------------------------------------------------
let started = false;
async function start() {
  if (started) return;
  started = true;
  await loadJobs();
  if (!state.ws) connect();
  setInterval(() => { if (!$("#tab-cluster").hidden) loadCluster(); }, 5000);
  setInterval(() => { if ([...state.models.values()].some((m) => m.status === "downloading")) loadModels(); }, 2000);
}

(async function boot() {
  const r = await fetch("/api/ui/config").then((x) => x.json()).catch(() => null);
  if (r) state.config = r;
  if (state.config.ray_dashboard_url) { $("#ray-link").href = state.config.ray_dashboard_url; $("#ray-link").hidden = false; }
  if (state.config.token_required && !state.token) { askForToken(""); return; }
  $("#forget-token").hidden = !state.config.token_required;
  const check = await get("/api/training/jobs?limit=1");
  if (check.status === 401) return;  // askForToken has been shown
  start();
})();
