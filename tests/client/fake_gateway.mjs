// An in-memory gateway for the client's unit tests: its fetch and WebSocket stand for the
// network, and the test decides when commands finish, when a socket closes, which answers are
// lost or refused. It keeps the server's rules the client relies on: an Idempotency-Key answers
// its first 202 again, an event log per user replayed after a last event id, events in order.

export class FakeGateway {
  constructor({ base = "http://api.test" } = {}) {
    this.base = base;
    this.commands = new Map(); // command id -> the command as the server holds it
    this.keys = new Map(); // Idempotency-Key -> {body, answer}
    this.log = []; // events, oldest first
    this.requests = []; // every fetch: {method, path, headers, body}
    this.sockets = new Set(); // open WebSockets
    this.streams = new Set(); // open SSE streams: {send(text), close()}
    this.wsUrls = []; // the URL of every WebSocket the client opened
    this.sseHeaders = []; // the headers of every SSE request
    this.refuseWebSocket = false;
    this.refuseSse = false;
    this.wsOpenDelayMs = 0;
    this.down = false; // /healthz answers 503
    this.validTokens = null; // a Set: only these tokens are let in (null: any, or none)
    // (request) => undefined (handled), a Response or an Error (instead), "lose" (handled, then the
    // answer is lost), "stall" (handled, the answer never comes), or a promise of one of these.
    this.intercept = null;
    this.seq = 0;
    this.clock = 1_700_000_000_000;
    const server = this;
    this.fetch = (url, init) => server.#fetch(url, init ?? {});
    this.WebSocket = class extends FakeWebSocket {
      constructor(url) {
        super(server, url);
      }
    };
  }

  // --- what a test does -----------------------------------------------------------------------

  /** Finish a command as the worker does: its status, and one event in its owner's log. */
  finish(commandId, status = "applied", error = null) {
    const command = this.commands.get(commandId);
    command.status = status;
    command.error = error;
    const event = {
      id: `${this.clock++}-0`,
      type: `command.${status}`,
      command_id: commandId,
      op: command.op,
      collection: command.collection,
      entity_id: command.entity_id,
      status,
      error,
    };
    this.log.push(event);
    for (const socket of this.sockets) socket.deliver(event);
    for (const stream of this.streams) stream.send(`id: ${event.id}\ndata: ${JSON.stringify(event)}\n\n`);
    return event;
  }

  /** Send an event again on every open connection (as a faulty replay would). */
  resend(event) {
    for (const socket of this.sockets) socket.deliver(event);
    for (const stream of this.streams) stream.send(`id: ${event.id}\ndata: ${JSON.stringify(event)}\n\n`);
  }

  /** Close every WebSocket from the server's side with `code`; end every SSE stream. */
  drop(code = 1001, comment = null) {
    for (const socket of [...this.sockets]) socket.close(code);
    for (const stream of [...this.streams]) {
      if (comment) stream.send(`: ${comment}\n\n`);
      stream.close();
    }
  }

  writes() {
    return this.requests.filter((r) => r.method !== "GET");
  }

  // --- the fake network -----------------------------------------------------------------------

  async #fetch(url, init) {
    await tick();
    if (init.signal?.aborted) throw abortError();
    const path = url.slice(this.base.length);
    const headers = lowerCase(init.headers);
    const request = { method: init.method ?? "GET", path, headers, body: init.body };
    this.requests.push(request);
    let override = this.intercept?.(request);
    if (typeof override?.then === "function") override = await abortable(override, init.signal);
    if (override instanceof Response) return override;
    if (override instanceof Error) throw override;
    const answer = this.handle(request, init.signal);
    if (override === "lose") throw new TypeError("Failed to fetch (answer lost)");
    if (override === "stall") return abortable(new Promise(() => undefined), init.signal);
    return answer;
  }

  #authorized(headers) {
    if (!this.validTokens) return true;
    const token = (headers.authorization ?? "").replace(/^Bearer /, "");
    return this.validTokens.has(token);
  }

  /** Answer `request` as the gateway would. */
  handle(request, signal) {
    if (request.path === "/healthz") return this.down ? problem(503, "down") : json(200, { status: "ok" });
    if (!this.#authorized(request.headers)) return problem(401, "unauthorized");
    const { method, path } = request;
    if (method === "GET" && path === "/api/events") return this.#sse(request, signal);
    let match = path.match(/^\/api\/commands\/([^/]+)$/);
    if (method === "GET" && match) {
      const command = this.commands.get(decodeURIComponent(match[1]));
      return command ? json(200, { ...command }) : problem(404, "not-found");
    }
    match = path.match(/^\/api\/([a-z][a-z0-9_]*)(?:\/([^/?]+))?$/);
    if (!match) return problem(404, "not-found");
    if (method === "GET") return json(200, { items: [], next: null });
    const key = request.headers["idempotency-key"];
    const known = this.keys.get(key);
    if (known) {
      if (known.body !== request.body) return problem(422, "idempotency-key-reused");
      return json(202, known.answer, { "Idempotent-Replayed": "true" });
    }
    const op = { POST: "create", PUT: "replace", PATCH: "patch", DELETE: "delete" }[method];
    const body = request.body === undefined ? {} : JSON.parse(request.body);
    if (body.invalid) return problem(422, "validation");
    const entityId = match[2] ? decodeURIComponent(match[2]) : body.id;
    const commandId = `${++this.seq}-c`;
    this.commands.set(commandId, {
      command_id: commandId,
      status: "pending",
      op,
      collection: match[1],
      entity_id: entityId,
      attempts: 0,
      error: null,
      key,
    });
    const answer = { command_id: commandId, entity_id: entityId, status: "pending", status_url: `/api/commands/${commandId}` };
    this.keys.set(key, { body: request.body, answer });
    return json(202, answer, { Location: answer.status_url, "Retry-After": "1" });
  }

  #sse(request, signal) {
    this.sseHeaders.push(request.headers);
    if (this.refuseSse) return problem(503, "unavailable", { "Retry-After": "0" });
    const server = this;
    const after = request.headers["last-event-id"];
    let stream;
    const body = new ReadableStream({
      start(controller) {
        const encoder = new TextEncoder();
        stream = {
          send: (text) => controller.enqueue(encoder.encode(text)),
          close: () => {
            server.streams.delete(stream);
            try {
              controller.close();
            } catch {}
          },
        };
        server.streams.add(stream);
        stream.send("retry: 2000\n: connected\n\n");
        for (const event of server.#after(after)) stream.send(`id: ${event.id}\ndata: ${JSON.stringify(event)}\n\n`);
        signal?.addEventListener("abort", () => {
          server.streams.delete(stream);
          try {
            controller.error(abortError());
          } catch {}
        });
      },
      cancel() {
        server.streams.delete(stream);
      },
    });
    return new Response(body, { status: 200, headers: { "Content-Type": "text/event-stream" } });
  }

  #after(lastId) {
    if (!lastId) return [];
    const index = this.log.findIndex((event) => event.id === lastId);
    return this.log.slice(index + 1);
  }

  _openSocket(socket) {
    const url = new URL(socket.url);
    const token = url.searchParams.get("token");
    if (this.refuseWebSocket || (this.validTokens && !this.validTokens.has(token))) {
      setTimeout(() => socket._closed(1006), 1);
      return;
    }
    setTimeout(() => {
      if (socket.readyState !== 0) return;
      socket.readyState = 1;
      this.sockets.add(socket);
      socket.onopen?.({});
      for (const event of this.#after(url.searchParams.get("last_event_id"))) socket.deliver(event);
    }, this.wsOpenDelayMs || 1);
  }
}

class FakeWebSocket {
  constructor(server, url) {
    this.server = server;
    this.url = url;
    this.readyState = 0;
    server.wsUrls.push(url);
    server._openSocket(this);
  }

  deliver(event) {
    if (this.readyState === 1) this.onmessage?.({ data: JSON.stringify(event) });
  }

  send() {}

  close(code = 1000) {
    if (this.readyState >= 2) return;
    this.readyState = 2;
    setTimeout(() => this._closed(code), 1);
  }

  _closed(code) {
    this.readyState = 3;
    this.server.sockets.delete(this);
    this.onclose?.({ code });
  }
}

function json(status, body, headers = {}) {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json", ...headers } });
}

function problem(status, slug, headers = {}) {
  return new Response(JSON.stringify({ type: `/problems/${slug}`, title: slug, status, detail: `${slug} (${status})` }), {
    status,
    headers: { "Content-Type": "application/problem+json", ...headers },
  });
}

function lowerCase(headers = {}) {
  return Object.fromEntries(Object.entries(headers).map(([name, value]) => [name.toLowerCase(), value]));
}

function abortError() {
  return new DOMException("aborted", "AbortError");
}

function abortable(promise, signal) {
  if (!signal) return promise;
  return new Promise((resolve, reject) => {
    if (signal.aborted) reject(abortError());
    signal.addEventListener("abort", () => reject(abortError()), { once: true });
    promise.then(resolve, reject);
  });
}

function tick() {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** Wait until `predicate()` is true (polling every few ms); fail after `ms`. */
export async function until(predicate, ms = 2000, what = "a condition") {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A response the test hands out itself. */
export { json, problem };
