// The browser client of the command gateway: an ES module without dependencies, served at
// /client.js. Writes resolve once accepted (202) with an `applied` promise that settles, exactly
// once, when the command is applied or has failed; one live connection per client (WebSocket,
// else Server-Sent Events, else polling the status URLs) tells it so. docs/frontend.md has the
// guarantees and gateway.d.ts the types.
//
// How a command is settled, whatever the order things arrive in:
// - An event may come before the write's 202 is read: it is parked by command id (`#early`)
//   and settles the command as soon as the 202 names it.
// - An event may come twice (a replay after a reconnect, a status check that raced it): a
//   command is settled once, then forgotten, and later news of it is ignored (`#done`).
// - A live stream opened without a last event id misses what was committed before it: every
//   command sent before such an opening is checked once on its status URL (the "coverage"
//   below). One opened with the last id gets everything after it, so nothing is checked.
// - A command still pending after `staleAfterMs` is checked on its status URL, then less and
//   less often (a log trimmed while the client was away for long, any event lost).

const VERSION = "1.0.0";

const METHODS = { create: "POST", replace: "PUT", patch: "PATCH", delete: "DELETE" };
const MEDIA = { create: "application/json", replace: "application/json", patch: "application/merge-patch+json" };
const REMEMBERED = 2000; // command ids kept to recognise late or early events; the oldest go first
const STALE_CHECK_MAX_MS = 300_000; // the longest wait between status checks of a stale command
const SERVER_ERROR_RETRIES = 5; // a 500 may be a bug that will not go away: give up after these
const TRANSIENT = new Set([429, 502, 503, 504]); // answers after which the same request may succeed
const TOKEN_EARLY_MS = 30_000; // a cached JWT is renewed this long before its exp (at most)
const POLL_BATCH = 20; // status URLs polled per round in polling mode

/** An error of the gateway: a write refused, a command failed, the client closed. */
export class GatewayError extends Error {
  constructor(message, { code, status = null, problem = null, event = null, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "GatewayError";
    this.code = code; // "failed" | "refused" | "unauthorized" | "network" | "expired" | "unknown" | "closed"
    this.status = status; // the HTTP status, when an answer said so
    this.problem = problem; // the RFC 9457 problem body of a refusal
    this.event = event; // the command's event, when it failed
  }
}

export class Gateway extends EventTarget {
  static version = VERSION;

  #base;
  #wsBase;
  #tokenSource;
  #token = null;
  #tokenRenewAt = 0;
  #tokenRefresh = null;
  #fetch;
  #WebSocket;
  #streams;
  #polling;
  #options;

  #seq = 0; // a counter of moments, for ordering sends and stream openings
  #coverageSince = Infinity; // commands sent at or after this moment get their event on the stream
  #lastEventId = null;
  #commands = new Map(); // command id -> an accepted command not settled yet
  #early = new Map(); // command id -> an event that came before its write's 202
  #done = new Map(); // command ids settled already
  #chains = new Map(); // "collection/id" -> the last write to that entity, for sending in order
  #inFlight = 0;

  #state = "idle";
  #transport = null;
  #started = false;
  #closed = false;
  #stopSession = null; // ends the current live connection
  #wakers = new Set(); // resolvers of sleeps cut short by reconnect(), close() or `online`
  #abort = new AbortController(); // aborts every request at close()
  #onOnline = () => this.#wakeAll();

  /**
   * @param {object} options  see gateway.d.ts (GatewayOptions)
   */
  constructor(options = {}) {
    super();
    const o = options;
    const origin = globalThis.location?.origin;
    const base = (o.baseUrl ?? origin ?? "").replace(/\/+$/, "");
    if (!/^https?:\/\//.test(base)) {
      throw new TypeError("Gateway: baseUrl must be an http(s) URL (or the page's origin, by default)");
    }
    this.#base = base;
    this.#wsBase = base.replace(/^http/, "ws");
    this.#tokenSource = o.token ?? null;
    if (typeof this.#tokenSource === "string") this.#token = this.#tokenSource;
    this.#fetch = o.fetch ?? globalThis.fetch?.bind(globalThis);
    this.#WebSocket = o.WebSocket === undefined ? globalThis.WebSocket : o.WebSocket;
    const transports = o.transports ?? ["websocket", "sse", "poll"];
    this.#streams = transports.filter((t) => t === "websocket" || t === "sse");
    this.#polling = transports.includes("poll");
    this.#options = {
      requestTimeoutMs: o.requestTimeoutMs ?? 15_000,
      retryMinMs: o.retryMinMs ?? 250,
      retryMaxMs: o.retryMaxMs ?? 30_000,
      pollIntervalMs: o.pollIntervalMs ?? 1000,
      staleAfterMs: o.staleAfterMs ?? 15_000,
      idleTimeoutMs: o.idleTimeoutMs ?? 65_000,
      keyLifetimeMs: o.keyLifetimeMs ?? 23 * 3600_000,
    };
    if (o.lastEventId) {
      // Resuming from an id the app kept: every event after it comes on the first connection.
      this.#lastEventId = o.lastEventId;
      this.#coverageSince = 0;
    }
  }

  /** The version of this client, also the one in its immutable URL (/client/v<version>.js). */
  get version() {
    return VERSION;
  }

  /** The live connection: `{state, transport}` (see the `connection` event). */
  get connection() {
    return { state: this.#state, transport: this.#transport };
  }

  /** The id of the last event received; keep it to resume a later client from it. */
  get lastEventId() {
    return this.#lastEventId;
  }

  /** Writes sent and not settled yet: not yet accepted, or accepted and not yet applied or failed. */
  get pendingCount() {
    return this.#inFlight + this.#commands.size;
  }

  /** Listen to `pending`, `accepted`, `applied`, `failed`, `connection` or `event`; `fn` gets
   * the event's detail. Returns a function that stops listening. */
  on(name, fn) {
    const listener = (event) => fn(event.detail);
    this.addEventListener(name, listener);
    return () => this.removeEventListener(name, listener);
  }

  // --- writes -------------------------------------------------------------------------------

  create(collection, doc) {
    const body = { ...doc };
    if (body.id === undefined || body.id === null) body.id = newId(); // known at once, same on retries
    return this.#write("create", collection, String(body.id), body, `/api/${seg(collection)}`);
  }

  replace(collection, id, doc) {
    return this.#write("replace", collection, id, doc, `/api/${seg(collection)}/${seg(id)}`);
  }

  patch(collection, id, patch) {
    return this.#write("patch", collection, id, patch, `/api/${seg(collection)}/${seg(id)}`);
  }

  delete(collection, id) {
    return this.#write("delete", collection, id, undefined, `/api/${seg(collection)}/${seg(id)}`);
  }

  #write(op, collection, entityId, body, path) {
    if (this.#closed) return Promise.reject(new GatewayError("the client is closed", { code: "closed" }));
    const write = {
      key: newKey(),
      op,
      collection,
      entity_id: entityId,
      method: METHODS[op],
      path,
      body: body === undefined ? undefined : JSON.stringify(body),
      sentSeq: null,
    };
    this.#inFlight += 1;
    this.#emit("pending", { key: write.key, op, collection, entity_id: entityId, body });
    this.connect();
    // Writes to one entity are sent one after another, each once the previous one was accepted,
    // so that a retried write can never be overtaken by a later one.
    const chainKey = `${collection}/${entityId}`;
    const previous = this.#chains.get(chainKey) ?? Promise.resolve();
    const sent = previous.then(() => this.#send(write));
    const tail = sent.then(
      () => undefined,
      () => undefined,
    );
    this.#chains.set(chainKey, tail);
    tail.then(() => {
      if (this.#chains.get(chainKey) === tail) this.#chains.delete(chainKey);
    });
    return sent.finally(() => {
      this.#inFlight -= 1;
    });
  }

  /** Send a write until it is answered: accepted, or refused for good. Every attempt carries the
   * same Idempotency-Key and body, so the server applies it once however often it is sent. */
  async #send(write) {
    const started = Date.now();
    let attempt = 0;
    let serverErrors = 0;
    let rejectedToken;
    const info = { key: write.key, op: write.op, collection: write.collection, entity_id: write.entity_id };
    const fail = (error) => {
      this.#emit("failed", { ...info, command_id: null, error, event: null });
      return error;
    };
    for (;;) {
      if (this.#closed) throw fail(new GatewayError("the client is closed", { code: "closed" }));
      if (Date.now() - started > this.#options.keyLifetimeMs) {
        throw fail(new GatewayError("no answer before the idempotency key expired", { code: "expired" }));
      }
      let token;
      try {
        token = await this.#getToken();
      } catch (error) {
        throw fail(new GatewayError("the token function failed", { code: "unauthorized", cause: error }));
      }
      const headers = { "Idempotency-Key": write.key, ...authorization(token) };
      if (write.body !== undefined) headers["Content-Type"] = MEDIA[write.op];
      if (write.sentSeq === null) write.sentSeq = ++this.#seq;
      let answer;
      let accepted;
      try {
        answer = await this.#request(write.path, { method: write.method, headers, body: write.body });
        if (answer.status === 202) accepted = answer.json(); // a body cut short is retried too
      } catch (error) {
        if (this.#closed) continue;
        await this.#sleep(this.#backoff(attempt++)); // the answer never came: send it again
        continue;
      }
      if (accepted) return this.#accepted(write, accepted, answer.headers.get("Idempotent-Replayed") === "true");
      const status = answer.status;
      if (status === 401 && typeof this.#tokenSource === "function" && rejectedToken !== token) {
        rejectedToken = token;
        await this.#refreshToken(token).catch(() => undefined);
        continue;
      }
      if (TRANSIENT.has(status) || (status >= 500 && ++serverErrors <= SERVER_ERROR_RETRIES)) {
        await this.#sleep(Math.max(retryAfterMs(answer), this.#backoff(attempt++)));
        continue;
      }
      const problem = problemOf(answer);
      const message = problem?.detail || problem?.title || `HTTP ${status}`;
      const code = status === 401 ? "unauthorized" : status >= 500 ? "network" : "refused";
      throw fail(new GatewayError(message, { code, status, problem }));
    }
  }

  /** The 202 of a write: its command is pending until its event (or its status) says otherwise. */
  #accepted(write, answer, replayed) {
    const id = answer.command_id;
    let command = this.#commands.get(id);
    if (!command) {
      command = {
        command_id: id,
        entity_id: answer.entity_id ?? write.entity_id,
        op: write.op,
        collection: write.collection,
        key: write.key,
        sentSeq: write.sentSeq,
        checkedSeq: -1,
        staleTimer: null,
        staleDelay: this.#options.staleAfterMs,
      };
      command.applied = new Promise((resolve, reject) => {
        command.resolve = resolve;
        command.reject = reject;
      });
      command.applied.catch(() => undefined); // a failure is also told by the `failed` event
      this.#commands.set(id, command);
    }
    const result = { command_id: id, entity_id: command.entity_id, applied: command.applied, replayed };
    this.#emit("accepted", { key: write.key, op: write.op, collection: write.collection, ...result });
    const early = this.#early.get(id);
    if (early) {
      this.#early.delete(id);
      this.#settle(early);
    } else if (!this.#done.has(id)) {
      this.#watch(command);
      if (this.#state === "open" && this.#transport !== "poll") this.#reconcileOne(command);
    }
    return result;
  }

  // --- reads --------------------------------------------------------------------------------

  /** The stored document, or null when there is none (404). */
  async get(collection, id) {
    const answer = await this.#read(`/api/${seg(collection)}/${seg(id)}`);
    if (answer.status === 404) return null;
    return answer.json();
  }

  /** A page of the caller's documents: `{items, next}`; pass `next` back as `cursor`. */
  async list(collection, { limit, cursor } = {}) {
    const query = new URLSearchParams();
    if (limit !== undefined) query.set("limit", String(limit));
    if (cursor) query.set("cursor", cursor);
    const suffix = query.toString() ? `?${query}` : "";
    return (await this.#read(`/api/${seg(collection)}${suffix}`)).json();
  }

  /** A command's status record (`GET /api/commands/<id>`). */
  async status(commandId) {
    return (await this.#read(`/api/commands/${seg(commandId)}`)).json();
  }

  /** GET `path`: retried a few times on no answer or a transient one; a 401 renews the token once.
   * Answers 200 and 404; anything else is thrown as a GatewayError. */
  async #read(path, { retries = 3 } = {}) {
    let rejectedToken;
    for (let attempt = 0; ; attempt++) {
      if (this.#closed) throw new GatewayError("the client is closed", { code: "closed" });
      const token = await this.#getToken();
      let answer;
      try {
        answer = await this.#request(path, { headers: authorization(token) });
      } catch (error) {
        if (attempt >= retries) throw new GatewayError("no answer", { code: "network", cause: error });
        await this.#sleep(this.#backoff(attempt));
        continue;
      }
      if (answer.status === 200 || answer.status === 404) return answer;
      if (answer.status === 401 && typeof this.#tokenSource === "function" && rejectedToken !== token) {
        rejectedToken = token;
        await this.#refreshToken(token).catch(() => undefined);
        continue;
      }
      if ((TRANSIENT.has(answer.status) || answer.status >= 500) && attempt < retries) {
        await this.#sleep(Math.max(retryAfterMs(answer), this.#backoff(attempt)));
        continue;
      }
      const problem = problemOf(answer);
      const code = answer.status === 401 ? "unauthorized" : answer.status >= 500 ? "network" : "refused";
      throw new GatewayError(problem?.detail || `HTTP ${answer.status}`, { code, status: answer.status, problem });
    }
  }

  /** One request and its whole answer, within requestTimeoutMs (the answer's body included). */
  async #request(path, init) {
    const timeout = new AbortController();
    const timer = setTimeout(() => timeout.abort(), this.#options.requestTimeoutMs);
    try {
      const answer = await this.#fetch(this.#base + path, {
        ...init,
        signal: anySignal([this.#abort.signal, timeout.signal]),
        cache: "no-store",
        credentials: "omit",
      });
      const text = await answer.text();
      return { status: answer.status, headers: answer.headers, json: () => JSON.parse(text) };
    } finally {
      clearTimeout(timer);
    }
  }

  // --- settling -----------------------------------------------------------------------------

  /** An event (from a stream, or made from a status record): settles its command once. */
  #settle(event) {
    const id = event.command_id;
    if (this.#done.has(id)) return;
    const command = this.#commands.get(id);
    if (!command) {
      remember(this.#early, id, event); // its write's 202 is still on the way (or another tab's)
      return;
    }
    this.#commands.delete(id);
    remember(this.#done, id, true);
    clearTimeout(command.staleTimer);
    const detail = {
      key: command.key,
      command_id: id,
      op: command.op,
      collection: command.collection,
      entity_id: command.entity_id,
      event,
    };
    if (event.status === "applied") {
      command.resolve(event);
      this.#emit("applied", detail);
    } else {
      const error = new GatewayError(event.error || "the command failed", { code: "failed", event });
      command.reject(error);
      this.#emit("failed", { ...detail, error });
    }
  }

  /** Ask a command's status URL; settle it if it is finished. */
  async #check(command) {
    command.checkedSeq = ++this.#seq;
    try {
      const answer = await this.#read(`/api/commands/${seg(command.command_id)}`, { retries: 0 });
      if (answer.status === 404) {
        this.#settle({
          ...eventOf({ ...command, status: "failed" }),
          error: "the command's status is no longer known",
        });
        return true;
      }
      const record = await answer.json();
      if (record.status === "applied" || record.status === "failed") this.#settle(eventOf(record));
      return true;
    } catch {
      command.checkedSeq = -1; // try again at the next opening
      return false;
    }
  }

  /** Check each accepted command whose event may have been committed before the live stream
   * began to cover it, once per coverage. */
  #reconcile() {
    for (const command of this.#commands.values()) this.#reconcileOne(command);
  }

  #reconcileOne(command) {
    if (command.sentSeq < this.#coverageSince && command.checkedSeq < this.#coverageSince) {
      this.#check(command);
    }
  }

  /** Check a command that stays pending for long, then less and less often. */
  #watch(command) {
    clearTimeout(command.staleTimer);
    command.staleTimer = setTimeout(async () => {
      if (!this.#commands.has(command.command_id) || this.#closed) return;
      await this.#check(command);
      command.staleDelay = Math.min(command.staleDelay * 2, STALE_CHECK_MAX_MS);
      if (this.#commands.has(command.command_id)) this.#watch(command);
    }, command.staleDelay);
  }

  /** An event from a live stream. */
  #receive(event) {
    if (!event || typeof event.command_id !== "string") return;
    if (event.id) {
      if (this.#lastEventId && compareIds(event.id, this.#lastEventId) <= 0) return; // seen already
      this.#lastEventId = event.id;
    }
    this.#emit("event", event);
    this.#settle(event);
  }

  // --- the live connection --------------------------------------------------------------------

  /** Open the live connection (writes do it themselves); idempotent. */
  connect() {
    if (this.#started || this.#closed) return this;
    this.#started = true;
    globalThis.addEventListener?.("online", this.#onOnline);
    this.#loop();
    return this;
  }

  /** Drop the live connection and open it again at once (e.g. after the network changed). */
  reconnect() {
    this.#stopSession?.("manual");
    this.#wakeAll();
  }

  /** Stop for good: the connection ends, writes not yet accepted are rejected, and so are the
   * `applied` promises of commands not settled yet (the commands themselves still run). */
  close() {
    if (this.#closed) return;
    this.#closed = true;
    this.#abort.abort();
    this.#stopSession?.("closed");
    this.#wakeAll();
    globalThis.removeEventListener?.("online", this.#onOnline);
    for (const command of [...this.#commands.values()]) {
      clearTimeout(command.staleTimer);
      this.#commands.delete(command.command_id);
      command.reject(new GatewayError("the client is closed", { code: "closed" }));
    }
    this.#setState("closed", null);
  }

  async #loop() {
    let failures = 0;
    let unauthorized = 0;
    while (!this.#closed) {
      let end = { opened: false };
      for (const transport of this.#streams) {
        this.#setState("connecting", transport);
        end = transport === "websocket" ? await this.#websocket() : await this.#sse();
        if (this.#closed) return;
        if (end.opened || end.unauthorized || end.manual) break;
      }
      if (end.opened) {
        unauthorized = 0;
        if (end.manual) continue;
        this.#setState("down", end.transport);
        if (end.expired) {
          await this.#refreshToken(end.token).catch(() => undefined); // 4401 or `: token expired`
          if (end.lastedMs > 1000) continue; // at once; else the new token is no better: back off
        }
        if (end.lastedMs > 10_000) failures = 0;
        await this.#sleep(this.#backoff(failures++));
        continue;
      }
      if (end.manual) continue;
      if (end.unauthorized && typeof this.#tokenSource === "function") {
        await this.#refreshToken(end.token).catch(() => undefined);
        if (unauthorized++ === 0) continue; // a fresh token: from the top again, at once
      }
      const wait = Math.max(this.#backoff(failures++), end.retryAfterMs ?? 0);
      if (this.#polling) await this.#poll(wait);
      else {
        this.#setState("down", null);
        await this.#sleep(wait);
      }
    }
  }

  /** A connection has opened. Without a last event id, what was committed before it is not on
   * it: the commands sent until now are checked on their status URLs. */
  #opened(transport, withLastId) {
    if (!withLastId) this.#coverageSince = ++this.#seq;
    this.#setState("open", transport);
    this.#reconcile();
  }

  #websocket() {
    const WebSocketClass = this.#WebSocket;
    if (!WebSocketClass) return Promise.resolve({ opened: false });
    return this.#getToken().then(
      (token) =>
        new Promise((resolve) => {
          const lastId = this.#lastEventId;
          const query = new URLSearchParams();
          if (token) query.set("token", token);
          if (lastId) query.set("last_event_id", lastId);
          let socket;
          try {
            socket = new WebSocketClass(`${this.#wsBase}/ws${query.toString() ? `?${query}` : ""}`);
          } catch {
            resolve({ opened: false });
            return;
          }
          let opened = false;
          let openedAt = 0;
          let why = null;
          const openTimer = setTimeout(() => socket.close(), this.#options.requestTimeoutMs);
          this.#stopSession = (reason) => {
            why = reason;
            socket.close(1000);
          };
          socket.onopen = () => {
            clearTimeout(openTimer);
            opened = true;
            openedAt = Date.now();
            this.#opened("websocket", Boolean(lastId));
          };
          socket.onmessage = (message) => {
            let event;
            try {
              event = JSON.parse(message.data);
            } catch {
              return;
            }
            this.#receive(event);
          };
          socket.onerror = () => undefined; // a close follows
          socket.onclose = (close) => {
            clearTimeout(openTimer);
            this.#stopSession = null;
            resolve({
              opened,
              transport: "websocket",
              token,
              manual: why === "manual",
              expired: close.code === 4401,
              lastedMs: opened ? Date.now() - openedAt : 0,
            });
          };
        }),
      () => ({ opened: false }),
    );
  }

  /** Server-Sent Events read with fetch rather than EventSource: the token goes in a header
   * (not in the URL), a 401 is seen as such, and so is the `: token expired` comment. */
  async #sse() {
    let token;
    try {
      token = await this.#getToken();
    } catch {
      return { opened: false };
    }
    const lastId = this.#lastEventId;
    const headers = { Accept: "text/event-stream", ...authorization(token) };
    if (lastId) headers["Last-Event-ID"] = lastId;
    const abort = new AbortController();
    let why = null;
    let expired = false;
    let opened = false;
    let openedAt = 0;
    this.#stopSession = (reason) => {
      why = reason;
      abort.abort();
    };
    const openTimer = setTimeout(() => abort.abort(), this.#options.requestTimeoutMs);
    const end = (extra) => {
      clearTimeout(openTimer);
      this.#stopSession = null;
      return {
        opened,
        transport: "sse",
        token,
        manual: why === "manual",
        expired,
        lastedMs: opened ? Date.now() - openedAt : 0,
        ...extra,
      };
    };
    let answer;
    try {
      answer = await this.#fetch(`${this.#base}/api/events`, {
        headers,
        signal: anySignal([abort.signal, this.#abort.signal]),
        cache: "no-store",
        credentials: "omit",
      });
    } catch {
      return end();
    }
    clearTimeout(openTimer);
    if (answer.status === 401) return end({ unauthorized: true });
    if (answer.status !== 200 || !answer.body) {
      answer.body?.cancel?.().catch?.(() => undefined);
      return end({ retryAfterMs: retryAfterMs(answer) });
    }
    opened = true;
    openedAt = Date.now();
    this.#opened("sse", Boolean(lastId));
    let idle = setTimeout(() => abort.abort(), this.#options.idleTimeoutMs);
    const parser = new SseParser({
      event: (data) => {
        let event;
        try {
          event = JSON.parse(data);
        } catch {
          return;
        }
        this.#receive(event);
      },
      comment: (text) => {
        if (text.trim() === "token expired") expired = true;
      },
    });
    try {
      const reader = answer.body.getReader();
      const decoder = new TextDecoder();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        clearTimeout(idle);
        idle = setTimeout(() => abort.abort(), this.#options.idleTimeoutMs);
        parser.push(decoder.decode(value, { stream: true }));
      }
    } catch {
      // cut off: reconnect
    } finally {
      clearTimeout(idle);
    }
    return end();
  }

  /** Polling mode: the status URLs of the commands pending, every pollIntervalMs, for `forMs`. */
  async #poll(forMs) {
    const until = Date.now() + forMs;
    this.#setState("connecting", "poll");
    let cursor = 0;
    let probed = false;
    while (!this.#closed && Date.now() < until) {
      const commands = [...this.#commands.values()];
      if (!commands.length && !probed) {
        probed = true; // nothing to poll: whether the server answers at all, once per period
        const up = await this.#request("/healthz", {}).then(
          (answer) => answer.status === 200,
          () => false,
        );
        this.#setState(up ? "open" : "down", "poll");
      } else if (commands.length) {
        const batch = [];
        for (let i = 0; i < Math.min(POLL_BATCH, commands.length); i++) {
          batch.push(commands[(cursor + i) % commands.length]);
        }
        cursor += batch.length;
        const results = await Promise.all(batch.map((command) => this.#check(command)));
        this.#setState(results.some(Boolean) ? "open" : "down", "poll");
      }
      const woken = await this.#sleep(Math.min(this.#options.pollIntervalMs, Math.max(0, until - Date.now())));
      if (woken) return;
    }
  }

  // --- tokens -------------------------------------------------------------------------------

  async #getToken() {
    const source = this.#tokenSource;
    if (typeof source !== "function") return source ?? null;
    const fresh = this.#token !== null && (!this.#tokenRenewAt || Date.now() < this.#tokenRenewAt);
    if (fresh) return this.#token;
    return this.#refreshToken(this.#token);
  }

  /** Call the token function again, once for all callers that saw `stale` refused. */
  #refreshToken(stale) {
    if (typeof this.#tokenSource !== "function") return Promise.resolve(this.#token);
    if (this.#token !== stale && this.#token !== null) return Promise.resolve(this.#token);
    if (!this.#tokenRefresh) {
      this.#tokenRefresh = (async () => {
        try {
          const token = await this.#tokenSource();
          this.#token = token ?? null;
          // Renewed before its exp: TOKEN_EARLY_MS before, or halfway for a short-lived one.
          const expires = expiryOf(token);
          const early = Math.min(TOKEN_EARLY_MS, Math.max(0, expires - Date.now()) / 2);
          this.#tokenRenewAt = expires && expires - early;
          return this.#token;
        } finally {
          this.#tokenRefresh = null;
        }
      })();
    }
    return this.#tokenRefresh;
  }

  // --- small parts --------------------------------------------------------------------------

  #setState(state, transport) {
    if (state === this.#state && transport === this.#transport) return;
    this.#state = state;
    this.#transport = transport;
    this.#emit("connection", { state, transport });
  }

  #emit(name, detail) {
    this.dispatchEvent(detailEvent(name, detail));
  }

  #backoff(attempt) {
    const { retryMinMs, retryMaxMs } = this.#options;
    const ceiling = Math.min(retryMaxMs, retryMinMs * 2 ** Math.min(attempt, 20));
    return ceiling / 2 + Math.random() * (ceiling / 2); // half fixed, half jitter
  }

  /** Wait `ms`; true when cut short by reconnect(), close() or the browser going online. */
  #sleep(ms) {
    if (this.#closed) return Promise.resolve(true);
    return new Promise((resolve) => {
      const waker = () => {
        clearTimeout(timer);
        this.#wakers.delete(waker);
        resolve(true);
      };
      const timer = setTimeout(() => {
        this.#wakers.delete(waker);
        resolve(false);
      }, ms);
      this.#wakers.add(waker);
    });
  }

  #wakeAll() {
    for (const waker of [...this.#wakers]) waker();
  }
}

export default Gateway;

/** Reads the text/event-stream format (WHATWG HTML 9.2.6): `data:` lines make an event,
 * `:` lines are comments. */
export class SseParser {
  #buffer = "";
  #data = [];
  #handlers;

  constructor(handlers) {
    this.#handlers = handlers;
  }

  push(text) {
    this.#buffer += text;
    const lines = this.#buffer.split(/\r\n|\r|\n/);
    this.#buffer = lines.pop();
    for (const line of lines) this.#line(line);
  }

  #line(line) {
    if (line === "") {
      if (this.#data.length) this.#handlers.event?.(this.#data.join("\n"));
      this.#data = [];
      return;
    }
    if (line.startsWith(":")) {
      this.#handlers.comment?.(line.slice(1));
      return;
    }
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.#data.push(value);
  }
}

/** Order of two event ids, `<ms>-<seq>` (they do not sort as strings). */
export function compareIds(a, b) {
  const [am, as = "0"] = a.split("-");
  const [bm, bs = "0"] = b.split("-");
  const byMs = BigInt(am) - BigInt(bm);
  if (byMs !== 0n) return byMs > 0n ? 1 : -1;
  const bySeq = BigInt(as) - BigInt(bs);
  return bySeq === 0n ? 0 : bySeq > 0n ? 1 : -1;
}

/** A CustomEvent (an Event with a `detail` where there is no CustomEvent, as in Node 18). */
function detailEvent(name, detail) {
  if (typeof CustomEvent === "function") return new CustomEvent(name, { detail });
  const event = new Event(name);
  Object.defineProperty(event, "detail", { value: detail });
  return event;
}

function eventOf(record) {
  return {
    id: null, // made from the status URL, not received on a stream
    type: `command.${record.status}`,
    command_id: record.command_id,
    op: record.op,
    collection: record.collection,
    entity_id: record.entity_id,
    status: record.status,
    error: record.error ?? null,
  };
}

function remember(map, key, value) {
  map.delete(key);
  map.set(key, value);
  if (map.size > REMEMBERED) map.delete(map.keys().next().value);
}

function seg(value) {
  return encodeURIComponent(String(value));
}

function authorization(token) {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

function retryAfterMs(answer) {
  const seconds = Number(answer.headers?.get?.("Retry-After"));
  return Number.isFinite(seconds) && seconds >= 0 ? seconds * 1000 : 0;
}

function randomBytes(n) {
  const bytes = new Uint8Array(n);
  globalThis.crypto.getRandomValues(bytes);
  return bytes;
}

/** An Idempotency-Key: 128 random bits, hex. */
function newKey() {
  return Array.from(randomBytes(16), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** An entity id for a create without one: a random UUID (version 4). */
function newId() {
  if (globalThis.crypto.randomUUID) return globalThis.crypto.randomUUID();
  const b = randomBytes(16);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** A JWT's exp in ms (0: not a JWT, or none). */
function expiryOf(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const exp = JSON.parse(atob(payload.padEnd(Math.ceil(payload.length / 4) * 4, "="))).exp;
    return typeof exp === "number" ? exp * 1000 : 0;
  } catch {
    return 0;
  }
}

function problemOf(answer) {
  try {
    return answer.json();
  } catch {
    return null;
  }
}

function anySignal(signals) {
  if (AbortSignal.any) return AbortSignal.any(signals);
  const controller = new AbortController();
  for (const signal of signals) {
    if (signal.aborted) controller.abort(signal.reason);
    else signal.addEventListener("abort", () => controller.abort(signal.reason), { once: true });
  }
  return controller.signal;
}
