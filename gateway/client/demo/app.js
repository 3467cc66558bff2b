// The demo page: a to-do list written with the gateway's browser client and nothing else.
// Rows follow the promises of their writes; the activity log follows the client's events.

import { Gateway } from "/client.js";

const collection = new URLSearchParams(location.search).get("collection") || "todos";
const TOKEN_KEY = "gateway-demo-token";
const $ = (id) => document.getElementById(id);

const network = simulatedNetwork();
const gw = new Gateway({
  token: () => sessionStorage.getItem(TOKEN_KEY) || null,
  fetch: network.fetch,
  WebSocket: network.WebSocket,
});
window.gateway = gw; // for the browser's console

const todos = new Map(); // id -> {doc, state: "pending" | "applied" | "failed", note}

// --- writes -------------------------------------------------------------------------------------

/** Run a write for the row `id`: the row shows pending, then how its command ended. */
async function write(id, send, { onRefused } = {}) {
  mark(id, "pending", "");
  let accepted;
  try {
    accepted = await send();
  } catch (error) {
    mark(id, "failed", error.message);
    onRefused?.();
    return;
  }
  try {
    await accepted.applied;
    mark(id, "applied", "");
  } catch (error) {
    mark(id, "failed", error.message);
  }
}

function add(text, id) {
  const doc = id ? { id, text, done: false } : { text, done: false };
  const existing = id && todos.get(id);
  if (!existing) {
    doc.id = newId();
    todos.set(doc.id, { doc, state: "pending", note: "" });
  }
  write(doc.id, () => gw.create(collection, doc), { onRefused: () => existing || todos.delete(doc.id) });
}

function toggle(id) {
  const row = todos.get(id);
  row.doc = { ...row.doc, done: !row.doc.done };
  write(id, () => gw.patch(collection, id, { done: row.doc.done }));
}

function rename(id, text) {
  const row = todos.get(id);
  row.doc = { ...row.doc, text };
  write(id, () => gw.replace(collection, id, { text, done: row.doc.done }));
}

async function remove(id) {
  const row = todos.get(id);
  row.removing = true;
  mark(id, "pending", "deleting");
  try {
    const { applied } = await gw.delete(collection, id);
    await applied;
    todos.delete(id);
    render();
  } catch (error) {
    row.removing = false;
    mark(id, "failed", error.message);
  }
}

function newId() {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function mark(id, state, note) {
  const row = todos.get(id);
  if (!row) return;
  Object.assign(row, { state, note });
  render();
}

// --- the page -------------------------------------------------------------------------------------

function render() {
  const list = $("list");
  list.replaceChildren(...[...todos.values()].map(rowElement));
  $("empty").hidden = todos.size > 0;
  $("duplicate").disabled = ![...todos.values()].some((row) => row.state === "applied");
  const pending = gw.pendingCount;
  $("pending").textContent = pending ? `${pending} write${pending === 1 ? "" : "s"} pending` : "";
}

function rowElement({ doc, state, note, removing }) {
  const item = element("li", { className: `todo ${removing ? "removing" : ""}` });
  item.dataset.id = doc.id;
  item.dataset.state = state;
  const box = element("input", { type: "checkbox", checked: Boolean(doc.done), title: "done (patch)" });
  box.addEventListener("change", () => toggle(doc.id));
  const text = element("input", { className: `text ${doc.done ? "done" : ""}`, value: doc.text ?? "", title: "edit, then Enter (replace)" });
  text.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && text.value.trim() && text.value !== doc.text) rename(doc.id, text.value.trim());
  });
  const pill = element("span", { className: `pill ${state}`, textContent: state });
  const reason = element("span", { className: "note", textContent: note });
  const drop = element("button", { type: "button", className: "delete", textContent: "×", title: "delete" });
  drop.addEventListener("click", () => remove(doc.id));
  item.append(box, text, pill, reason, drop);
  return item;
}

function element(tag, properties) {
  return Object.assign(document.createElement(tag), properties);
}

const started = new Map(); // write key -> when it began, for the log's timings

function logLine(key, text, state) {
  let line = document.querySelector(`#log li[data-key="${key}"]`);
  if (!line) {
    line = element("li", {});
    line.dataset.key = key;
    $("log").prepend(line);
    while ($("log").children.length > 40) $("log").lastElementChild.remove();
  }
  line.dataset.state = state;
  line.replaceChildren(element("span", { className: `pill ${state}`, textContent: state }), ` ${text}`);
}

function describe({ op, entity_id }) {
  return `${op} ${entity_id.slice(0, 8)}`;
}

gw.on("pending", (detail) => {
  started.set(detail.key, performance.now());
  logLine(detail.key, describe(detail), "pending");
  render();
});
gw.on("accepted", (detail) => logLine(detail.key, `${describe(detail)} · accepted as ${detail.command_id}`, "pending"));
gw.on("applied", (detail) => {
  const ms = Math.round(performance.now() - (started.get(detail.key) ?? performance.now()));
  logLine(detail.key, `${describe(detail)} · applied in ${ms} ms`, "applied");
  started.delete(detail.key);
  render();
});
gw.on("failed", (detail) => {
  logLine(detail.key, `${describe(detail)} · ${detail.error.message}`, "failed");
  started.delete(detail.key);
  render();
});
gw.on("connection", ({ state, transport }) => {
  const badge = $("connection");
  badge.className = `badge ${state}`;
  badge.textContent = transport ? `${state} · ${transport === "poll" ? "polling" : transport}` : state;
});

$("add").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("text").value.trim();
  if (text) add(text);
  $("text").value = "";
});
$("duplicate").addEventListener("click", () => {
  const row = [...todos.values()].find((r) => r.state === "applied");
  if (row) add(`${row.doc.text} (again)`, row.doc.id); // a create of an id that exists: failed
});
$("reconnect").addEventListener("click", () => gw.reconnect());
$("offline").addEventListener("click", () => {
  const offline = !network.offline;
  network.setOffline(offline);
  $("offline").setAttribute("aria-pressed", String(offline));
  $("offline").textContent = offline ? "Back online" : "Go offline";
  if (!offline) gw.reconnect(); // retry at once rather than at the next backoff
});
$("token").value = sessionStorage.getItem(TOKEN_KEY) ?? "";
$("token").addEventListener("change", () => {
  sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
  gw.reconnect();
  load();
});
$("version").textContent = `version ${Gateway.version}`;

async function load() {
  try {
    const page = await gw.list(collection, { limit: 100 });
    for (const doc of page.items) todos.set(doc.id, { doc, state: "applied", note: "" });
  } catch (error) {
    if (error.status === 401) $("auth").open = true;
    logLine("load", `list ${collection}: ${error.message}`, "failed");
  }
  render();
}

gw.connect();
load();

/** A network this page can cut: `fetch` and `WebSocket` as the client is given them, which fail
 * while "offline" and drop what is open when it goes offline, as a lost network would. */
function simulatedNetwork() {
  const sockets = new Set();
  const requests = new Set();
  const state = { offline: false };
  class SimulatedWebSocket extends WebSocket {
    constructor(url) {
      super(url);
      if (state.offline) {
        this.close(4000, "offline (simulated)");
        return;
      }
      sockets.add(this);
      this.addEventListener("close", () => sockets.delete(this));
    }
  }
  return {
    get offline() {
      return state.offline;
    },
    WebSocket: SimulatedWebSocket,
    fetch(url, init = {}) {
      if (state.offline) return Promise.reject(new TypeError("offline (simulated)"));
      const controller = new AbortController();
      init.signal?.addEventListener("abort", () => controller.abort(init.signal.reason), { once: true });
      requests.add(controller);
      const answer = fetch(url, { ...init, signal: controller.signal });
      const streaming = String(url).endsWith("/api/events"); // kept so that going offline ends it
      answer.then(
        () => streaming || requests.delete(controller),
        () => requests.delete(controller),
      );
      return answer;
    },
    setOffline(offline) {
      state.offline = offline;
      if (!offline) return;
      for (const socket of sockets) socket.close(4000, "offline (simulated)");
      for (const controller of requests) controller.abort(new TypeError("offline (simulated)"));
      requests.clear();
    },
  };
}
