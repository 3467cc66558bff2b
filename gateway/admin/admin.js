// The operators' live page: polls /admin/api/status every POLL_MS, keeps the last HISTORY_MS of
// samples in the page (nothing is stored on the server for it), and draws backlog and
// throughput (from the deltas of the deployment's totals) as plain SVG. Dead letters are listed
// with filters and can be replayed or dropped, one or all matching. Every value is put in the
// page as text, never as HTML: dead letters hold users' data.

const POLL_MS = 2000;
const HISTORY_MS = 10 * 60 * 1000;
const TOKEN_KEY = "gateway.admin.token";
const SVG = "http://www.w3.org/2000/svg";

const state = {
  token: sessionStorage.getItem(TOKEN_KEY) || "",
  samples: [], // {t, backlog, accepted, applied, failed}
  filters: {},
  followed: new Map(), // command id -> {dead_letter, status}
  timer: null,
};

const $ = (selector) => document.querySelector(selector);

class NeedsLogin extends Error {}

async function call(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const answer = await response.json().catch(() => null);
  if (response.status === 401 || response.status === 403) {
    throw new NeedsLogin((answer && answer.detail) || response.statusText);
  }
  if (!response.ok) throw new Error((answer && answer.detail) || `${response.status} ${response.statusText}`);
  return answer;
}

function showLogin(reason) {
  clearTimeout(state.timer);
  $("#login-reason").textContent = reason ? `${reason} An operator's token is needed.` : "An operator's token is needed.";
  $("#login").hidden = false;
  $("#main").hidden = true;
  setConnection("down", "no access");
}

function setConnection(className, text) {
  const badge = $("#connection");
  badge.className = className;
  badge.textContent = text;
}

function element(tag, text, attributes = {}) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

function seconds(value) {
  return value === null || value === undefined ? "-" : value < 10 ? value.toFixed(1) : Math.round(value).toString();
}

// --- polling --------------------------------------------------------------------------------

async function tick() {
  clearTimeout(state.timer);
  try {
    const snapshot = await call("/admin/api/status");
    $("#login").hidden = true;
    $("#main").hidden = false;
    $("#logout").hidden = !state.token;
    record(snapshot);
    renderStatus(snapshot);
    await refreshDeadLetters();
    await followReplays();
    setConnection("open", "live");
    $("#updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    $("#problem").textContent = "";
  } catch (error) {
    if (error instanceof NeedsLogin) return showLogin(error.message);
    setConnection("down", "unreachable");
    $("#problem").textContent = String(error.message || error);
  }
  state.timer = setTimeout(tick, POLL_MS);
}

function record(snapshot) {
  const now = Date.now();
  state.samples.push({ t: now, backlog: snapshot.backlog, ...snapshot.totals });
  while (state.samples.length && state.samples[0].t < now - HISTORY_MS) state.samples.shift();
}

function rates() {
  // Commands per second between consecutive samples; a counter that went down (reset) counts 0.
  const out = { accepted: [], applied: [], failed: [] };
  for (let i = 1; i < state.samples.length; i++) {
    const [a, b] = [state.samples[i - 1], state.samples[i]];
    const dt = (b.t - a.t) / 1000;
    for (const name of Object.keys(out)) out[name].push({ t: b.t, v: dt > 0 ? Math.max(0, b[name] - a[name]) / dt : 0 });
  }
  return out;
}

// --- rendering ------------------------------------------------------------------------------

function renderStatus(snapshot) {
  $("#backlog").textContent = snapshot.backlog;
  $("#oldest").textContent = seconds(snapshot.oldest_pending_seconds);
  $("#workers-count").textContent = snapshot.workers.length;
  $("#dead-count").textContent = snapshot.dead_letters.total;
  const speed = rates();
  const last = speed.applied[speed.applied.length - 1];
  $("#rate").textContent = last ? last.v.toFixed(1) : "-";
  drawChart($("#backlog-chart"), [{ name: "backlog", points: state.samples.map((s) => ({ t: s.t, v: s.backlog })) }]);
  drawChart($("#throughput-chart"), ["accepted", "applied", "failed"].map((name) => ({ name, points: speed[name] })));

  const rows = snapshot.partitions.map((p) => {
    const row = element("tr", undefined, { "data-partition": p.partition });
    if (p.backlog) row.className = "behind";
    const holder = p.holder ? p.holder + (p.paused_seconds ? ` (paused ${seconds(p.paused_seconds)} s)` : "") : "-";
    for (const value of [p.partition, p.backlog, seconds(p.oldest_pending_seconds), p.dead_letters, holder]) {
      row.append(element("td", value));
    }
    return row;
  });
  $("#partitions tbody").replaceChildren(...rows);

  const workers = snapshot.workers.map((w) =>
    element("li", `${w.name}: partitions ${w.partitions.join(", ") || "none"}`, { "data-worker": w.name }),
  );
  for (const gone of snapshot.leases_without_worker || []) {
    workers.push(element("li", `${gone.name} (gone; lease expiring): partitions ${gone.partitions.join(", ")}`));
  }
  if (!workers.length) workers.push(element("li", "no live worker: nothing is being applied", { class: "failed" }));
  $("#workers").replaceChildren(...workers);
  const errors = snapshot.dead_letters.by_error.map((e) => element("li", `${e.count} × ${e.error}`));
  $("#dead-by-error").replaceChildren(...(errors.length ? errors : [element("li", "none")]));
}

function drawChart(svg, series) {
  // The time axis spans the samples kept (at least a minute, at most HISTORY_MS), ending now.
  const [width, height, left, bottom, top] = [600, 180, 44, 20, 8];
  const now = Date.now();
  const first = state.samples.length ? state.samples[0].t : now;
  const span = Math.min(HISTORY_MS, Math.max(60_000, now - first));
  const from = now - span;
  const values = series.flatMap((s) => s.points.map((p) => p.v));
  const max = niceMax(Math.max(1, ...values));
  const x = (t) => left + ((t - from) / span) * (width - left - 4);
  const y = (v) => top + (1 - v / max) * (height - top - bottom);
  const nodes = [];
  for (const fraction of [0, 0.5, 1]) {
    const v = max * fraction;
    nodes.push(svgNode("line", { class: "grid", x1: left, x2: width - 4, y1: y(v), y2: y(v) }));
    nodes.push(svgNode("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end" }, formatNumber(v)));
  }
  for (const [back, anchor] of [[span, "start"], [span / 2, "middle"], [0, "end"]]) {
    nodes.push(svgNode("text", { x: x(now - back), y: height - 4, "text-anchor": anchor }, ago(back)));
  }
  for (const s of series) {
    if (!s.points.length) continue;
    const points = s.points.map((p) => `${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(" ");
    nodes.push(svgNode("polyline", { class: `line ${s.name}`, points, "data-series": s.name }));
  }
  svg.replaceChildren(...nodes);
}

function ago(ms) {
  if (ms <= 0) return "now";
  return ms < 120_000 ? `-${Math.round(ms / 1000)} s` : `-${Math.round(ms / 60_000)} min`;
}

function svgNode(tag, attributes, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function niceMax(value) {
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (value <= step * power) return step * power;
  return 10 * power;
}

function formatNumber(v) {
  return v >= 100 || Number.isInteger(v) ? Math.round(v).toString() : v.toFixed(1);
}

// --- dead letters ---------------------------------------------------------------------------

function query() {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(state.filters)) if (value) params.set(name, value);
  return params.toString();
}

async function refreshDeadLetters() {
  const answer = await call(`/admin/api/dead-letters?${query()}`);
  $("#matching").textContent = `${answer.matching} matching`;
  $("#replay-all").disabled = $("#drop-all").disabled = answer.matching === 0;
  const rows = answer.dead_letters.map((d) => {
    const row = element("tr", undefined, { "data-dead-letter": d.dead_letter, "data-collection": d.collection });
    if (d.request_id) row.dataset.requestId = d.request_id; // to find its lines in the logs
    const error = d.error_type ? `${d.error_type}: ${d.error || ""}` : d.error;
    const cells = [d.failed_at, d.collection, d.op, d.entity_id, d.user, error, d.attempts];
    cells.forEach((value, index) => {
      const attributes = value === error ? { class: "error", title: JSON.stringify(d.payload) } : {};
      if (index === 0 && d.request_id) attributes.title = `request ${d.request_id}`;
      row.append(element("td", value, attributes));
    });
    const actions = element("td");
    const replay = element("button", "Replay", { type: "button", class: "replay" });
    replay.addEventListener("click", () => act("replay", { dead_letter: d.dead_letter }));
    const drop = element("button", "Drop", { type: "button", class: "drop danger" });
    drop.addEventListener("click", () => act("drop", { dead_letter: d.dead_letter }));
    actions.append(replay, " ", drop);
    row.append(actions);
    return row;
  });
  $("#dead tbody").replaceChildren(...rows);
}

async function act(action, body) {
  try {
    const answer = await call(`/admin/api/dead-letters/${action}`, { method: "POST", body });
    if (action === "replay") {
      for (const done of answer.replayed) state.followed.set(done.command_id, { ...done, status: "pending" });
    }
    $("#problem").textContent = action === "drop" ? `dropped ${answer.dropped}` : "";
  } catch (error) {
    if (error instanceof NeedsLogin) return showLogin(error.message);
    $("#problem").textContent = `${action} failed: ${error.message}`;
  }
  await tick();
}

async function followReplays() {
  const items = [];
  for (const [commandId, followed] of state.followed) {
    if (followed.status === "pending") {
      try {
        followed.status = (await call(`/admin/api/commands/${encodeURIComponent(commandId)}`)).status;
      } catch (error) {
        if (error instanceof NeedsLogin) throw error;
        followed.status = "unknown";
      }
    }
    items.push(
      element("li", `${followed.dead_letter} → command ${commandId}: ${followed.status}`, {
        "data-command": commandId,
        "data-status": followed.status,
      }),
    );
  }
  $("#replays").replaceChildren(...items.reverse());
}

function bulk(action) {
  const count = $("#matching").textContent;
  const scope = query() ? `the ${count} dead letters matching the filters` : `all ${count} dead letters`;
  if (confirm(`${action === "replay" ? "Replay" : "Drop"} ${scope}?`)) act(action, { all: true, ...state.filters });
}

// --- wiring ---------------------------------------------------------------------------------

$("#login").addEventListener("submit", (event) => {
  event.preventDefault();
  state.token = $("#token").value.trim();
  sessionStorage.setItem(TOKEN_KEY, state.token);
  $("#token").value = "";
  tick();
});
$("#logout").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = "";
  tick();
});
$("#filters").addEventListener("submit", (event) => {
  event.preventDefault();
  state.filters = {};
  for (const name of ["collection", "error", "since"]) {
    const value = $(`#f-${name}`).value.trim();
    if (value) state.filters[name] = value;
  }
  tick();
});
$("#replay-all").addEventListener("click", () => bulk("replay"));
$("#drop-all").addEventListener("click", () => bulk("drop"));

tick();
