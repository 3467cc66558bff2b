// Unit tests of the browser client (gateway/client/gateway.js) in Node, against the in-memory
// gateway of fake_gateway.mjs: no network. `node --test tests/client/` runs them (make test does).

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { afterEach, describe, test } from "node:test";

import Gateway, { GatewayError, SseParser, compareIds } from "../../gateway/client/gateway.js";
import { FakeGateway, json, problem, sleep, until } from "./fake_gateway.mjs";

const clients = [];

/** A client of `server` with short timings; closed after the test. */
function clientOf(server, options = {}) {
  const gw = new Gateway({
    baseUrl: server.base,
    fetch: server.fetch,
    WebSocket: server.WebSocket,
    retryMinMs: 5,
    retryMaxMs: 40,
    requestTimeoutMs: 1000,
    pollIntervalMs: 20,
    ...options,
  });
  clients.push(gw);
  return gw;
}

/** Every detail of `name` events the client dispatches, in order. */
function record(gw, name) {
  const details = [];
  gw.on(name, (detail) => details.push(detail));
  return details;
}

/** How `promise` settled: {status: "resolved"|"rejected", value|reason}, counted in `calls`. */
function watch(promise) {
  const outcome = { calls: 0, status: "pending" };
  promise.then(
    (value) => Object.assign(outcome, { calls: outcome.calls + 1, status: "resolved", value }),
    (reason) => Object.assign(outcome, { calls: outcome.calls + 1, status: "rejected", reason }),
  );
  return outcome;
}

afterEach(() => {
  while (clients.length) clients.pop().close();
});

describe("writes", () => {
  test("a create resolves when accepted, and applied resolves with its event", async () => {
    const server = new FakeGateway();
    const gw = clientOf(server);
    const pending = record(gw, "pending");
    const applied = record(gw, "applied");
    const accepted = await gw.create("notes", { text: "hi" });
    assert.match(accepted.command_id, /-c$/);
    assert.equal(accepted.entity_id, pending[0].entity_id, "the entity id is made before sending");
    assert.equal(JSON.parse(server.writes()[0].body).id, accepted.entity_id);
    await until(() => gw.connection.state === "open");
    const event = server.finish(accepted.command_id);
    assert.deepEqual(await accepted.applied, event);
    assert.equal(applied.length, 1);
    assert.equal(applied[0].key, pending[0].key);
    assert.equal(gw.pendingCount, 0);
  });

  test("replace, patch and delete send their methods, media types and one key each", async () => {
    const server = new FakeGateway();
    const gw = clientOf(server);
    await gw.replace("notes", "n/1", { text: "a" });
    await gw.patch("notes", "n/1", { text: null });
    await gw.delete("notes", "n/1");
    const writes = server.writes();
    assert.deepEqual(
      writes.map((w) => [w.method, w.path, w.headers["content-type"]]),
      [
        ["PUT", "/api/notes/n%2F1", "application/json"],
        ["PATCH", "/api/notes/n%2F1", "application/merge-patch+json"],
        ["DELETE", "/api/notes/n%2F1", undefined],
      ],
    );
    const keys = new Set(writes.map((w) => w.headers["idempotency-key"]));
    assert.equal(keys.size, 3);
    for (const key of keys) assert.match(key, /^[0-9a-f]{32}$/);
  });

  test("a failed command rejects applied with a GatewayError carrying its event", async () => {
    const server = new FakeGateway();
    const gw = clientOf(server);
    const failed = record(gw, "failed");
    const { command_id, applied } = await gw.create("notes", { id: "n1" });
    await until(() => gw.connection.state === "open");
    const event = server.finish(command_id, "failed", "notes/n1 already exists");
    const error = await applied.then(
      () => assert.fail("applied resolved"),
      (reason) => reason,
    );
    assert.ok(error instanceof GatewayError);
    assert.equal(error.code, "failed");
    assert.equal(error.message, "notes/n1 already exists");
    assert.deepEqual(error.event, event);
    assert.equal(failed.length, 1);
    assert.equal(failed[0].command_id, command_id);
  });

  test("a refused write rejects at once with its problem, and is told as failed", async () => {
    const server = new FakeGateway();
    const gw = clientOf(server);
    const failed = record(gw, "failed");
    const error = await gw.create("notes", { invalid: true }).catch((reason) => reason);
    assert.equal(error.code, "refused");
    assert.equal(error.status, 422);
    assert.equal(error.problem.type, "/problems/validation");
    assert.equal(server.writes().length, 1, "a refusal is not retried");
    assert.equal(failed.length, 1);
    assert.equal(failed[0].command_id, null);
  });

  test("a write whose answer was lost is sent again with the same key and body, and queued once", async () => {
    const server = new FakeGateway();
    const gw = clientOf(server);
    let lost = 0;
    server.intercept = (request) => (request.method === "POST" && lost++ < 2 ? "lose" : undefined);
    const accepted = await gw.create("notes", { text: "once" });
    const writes = server.writes();
    assert.equal(writes.length, 3);
    assert.equal(new Set(writes.map((w) => w.headers["idempotency-key"])).size, 1);
    assert.equal(new Set(writes.map((w) => w.body)).size, 1);
    assert.equal(server.commands.size, 1, "the server queued one command");
    assert.equal(accepted.replayed, true);
  });

  test("a write whose answer does not come within requestTimeoutMs is sent again with the same key", async () => {
    const server = new FakeGateway();
    const gw = clientOf(server, { requestTimeoutMs: 50 });
    let stalled = false;
    server.intercept = (request) => {
      if (request.method !== "PUT" || stalled) return undefined;
      stalled = true;
      return "stall"; // queued, but the answer never comes
    };
    const accepted = await gw.replace("notes", "n1", { text: "x" });
    const keys = server.writes().map((w) => w.headers["idempotency-key"]);
    assert.equal(keys.length, 2);
    assert.equal(keys[0], keys[1]);
    assert.equal(server.commands.size, 1);
    assert.equal(accepted.replayed, true);
  });

  test("503 and 429 answers are retried with the same key after their Retry-After", async () => {
    const server = new FakeGateway();
    const gw = clientOf(server);
    const answers = [problem(503, "backlog", { "Retry-After": "0" }), problem(429, "rate-limited", { "Retry-After": "1" })];
    server.intercept = (request) => (request.method === "PUT" ? answers.shift() : undefined);
    const started = Date.now();
    await gw.replace("notes", "n1", { text: "x" });
    const elapsed = Date.now() - started;
    const writes = server.writes();
    assert.equal(writes.length, 3);
    assert.equal(new Set(writes.map((w) => w.headers["idempotency-key"])).size, 1);
    assert.ok(elapsed >= 950, `waited ${elapsed} ms, Retry-After said 1 s`);
  });

  test("a 500 is retried a few times, then the write is rejected", async () => {
    const server = new FakeGateway();
    const gw = clientOf(server);
    server.intercept = (request) => (request.method === "PUT" ? problem(500, "crash") : undefined);
    const error = await gw.replace("notes", "n1", {}).catch((reason) => reason);
    assert.equal(error.code, "network");
    assert.equal(server.writes().length, 6);
  });

  test("writes to one document are sent in order, each after the previous one was accepted", async () => {
    const server = new FakeGateway();
    const gw = clientOf(server);
    let lose = true;
    server.intercept = (request) => {
      if (request.method === "PUT" && lose) {
        lose = false;
        return "lose";
      }
      return undefined;
    };
    const first = gw.replace("notes", "n1", { v: 1 });
    const second = gw.patch("notes", "n1", { v: 2 });
    const other = gw.replace("notes", "n2", { v: 3 });
    await Promise.all([first, second, other]);
    const onN1 = server.writes().filter((w) => w.path === "/api/notes/n1").map((w) => w.method);
    assert.deepEqual(onN1, ["PUT", "PUT", "PATCH"], "the patch waited for the replace's answer");
    const commands = [...server.commands.values()].filter((c) => c.entity_id === "n1");
    assert.deepEqual(
      commands.map((c) => c.op),
      ["replace", "patch"],
    );
  });

  test("close() rejects the writes not accepted and the commands not settled", async () => {
    const server = new FakeGateway();
    const gw = clientOf(server);
    const accepted = await gw.replace("notes", "n1", {});
    const outcome = watch(accepted.applied);
    server.intercept = (request) => (request.method === "PUT" ? problem(503, "down", { "Retry-After": "5" }) : undefined);
    const waiting = gw.replace("notes", "n2", {}).catch((reason) => reason);
    await until(() => server.writes().length === 2);
    gw.close();
    assert.equal((await waiting).code, "closed");
    await until(() => outcome.status === "rejected");
    assert.equal(outcome.reason.code, "closed");
    assert.equal(gw.connection.state, "closed");
  });
});

describe("settling exactly once", () => {
  test("an event that comes before the write's answer settles it once the answer is read", async () => {
    const server = new FakeGateway();
    const gw = clientOf(server);
    gw.connect();
    await until(() => gw.connection.state === "open");
    const applied = record(gw, "applied");
    server.intercept = (request) => {
      if (request.method !== "POST") return undefined;
      return (async () => {
        // Accepted, applied, and its event sent, all before the 202 reaches the client.
        const answer = server.handle(request);
        server.finish((await answer.clone().json()).command_id);
        await sleep(20);
        return answer;
      })();
    };
    const accepted = await gw.create("notes", { text: "fast" });
    const outcome = watch(accepted.applied);
    await until(() => outcome.status === "resolved");
    assert.equal(outcome.value.command_id, accepted.command_id);
    assert.equal(applied.length, 1);
    assert.equal(gw.pendingCount, 0);
  });

  test("an event received twice, and a status check that raced it, settle the command once", async () => {
    const server = new FakeGateway();
    const gw = clientOf(server, { staleAfterMs: 10 });
    const applied = record(gw, "applied");
    const accepted = await gw.replace("notes", "n1", {});
    const outcome = watch(accepted.applied);
    await until(() => gw.connection.state === "open");
    const event = server.finish(accepted.command_id);
    server.resend(event);
    server.resend({ ...event, id: `${server.clock++}-0` }); // as if replayed under another id
    await until(() => outcome.calls === 1);
    await sleep(60); // the stale-command check runs too
    assert.equal(outcome.calls, 1);
    assert.equal(applied.length, 1);
    assert.ok(server.requests.some((r) => r.path === `/api/commands/${accepted.command_id}`), "checked");
  });

  test("the status URL settles a command whose event came before the live connection opened", async () => {
    const server = new FakeGateway();
    server.wsOpenDelayMs = 80;
    const gw = clientOf(server);
    const applied = record(gw, "applied");
    const accepted = await gw.replace("notes", "n1", {});
    server.finish(accepted.command_id); // committed before the socket opens: never sent on it
    const outcome = watch(accepted.applied);
    await until(() => outcome.status === "resolved", 2000, "applied");
    assert.equal(outcome.value.id, null, "made from the status record");
    assert.ok(server.requests.some((r) => r.path === `/api/commands/${accepted.command_id}`));
    assert.equal(applied.length, 1);
  });

  test("a write sent before the connection opened, answered after, is checked on its status URL", async () => {
    const server = new FakeGateway();
    server.wsOpenDelayMs = 60;
    const gw = clientOf(server);
    server.intercept = (request) => {
      if (request.method !== "PUT") return undefined;
      return (async () => {
        const answer = server.handle(request);
        server.finish((await answer.clone().json()).command_id); // before the socket opens
        await until(() => gw.connection.state === "open"); // the 202 is read after it opened
        return answer;
      })();
    };
    const accepted = await gw.replace("notes", "n1", {});
    const outcome = watch(accepted.applied);
    await until(() => outcome.status === "resolved", 2000, "applied");
    assert.equal(outcome.value.id, null, "made from the status record");
  });

  test("commands accepted while a stream with its last id is open are not checked on their status URLs", async () => {
    const server = new FakeGateway();
    const gw = clientOf(server);
    const first = await gw.replace("notes", "n1", {});
    await until(() => gw.connection.state === "open");
    server.finish(first.command_id);
    await first.applied;
    server.drop(1001);
    await until(() => server.wsUrls.length === 2 && gw.connection.state === "open");
    const second = await gw.replace("notes", "n2", {});
    server.finish(second.command_id);
    await second.applied;
    const checks = server.requests.filter((r) => r.path.startsWith("/api/commands/")).map((r) => r.path);
    assert.ok(!checks.includes(`/api/commands/${second.command_id}`), "the second one came on the stream");
  });
});

describe("the live connection", () => {
  test("after the server closes the socket the client reconnects with the last event id and gets what it missed", async () => {
    const server = new FakeGateway();
    const gw = clientOf(server);
    const states = record(gw, "connection");
    const a = await gw.replace("notes", "a", {});
    const b = await gw.replace("notes", "b", {});
    await until(() => gw.connection.state === "open");
    const eventA = server.finish(a.command_id);
    await a.applied;
    server.drop(1001);
    await until(() => gw.connection.state === "down");
    server.finish(b.command_id); // committed while the client is away
    await b.applied;
    assert.equal(server.wsUrls.length, 2);
    assert.equal(new URL(server.wsUrls[1]).searchParams.get("last_event_id"), eventA.id);
    assert.equal(new URL(server.wsUrls[0]).searchParams.get("last_event_id"), null);
    assert.deepEqual(
      states.map((s) => `${s.state}:${s.transport}`).slice(0, 4),
      ["connecting:websocket", "open:websocket", "down:websocket", "connecting:websocket"],
    );
    assert.equal(gw.lastEventId, server.log.at(-1).id);
  });

  test("with WebSockets refused the client falls back to Server-Sent Events, with Last-Event-ID", async () => {
    const server = new FakeGateway();
    server.refuseWebSocket = true;
    const gw = clientOf(server);
    const a = await gw.replace("notes", "a", {});
    await until(() => gw.connection.state === "open");
    assert.equal(gw.connection.transport, "sse");
    const eventA = server.finish(a.command_id);
    await a.applied;
    const b = await gw.replace("notes", "b", {});
    server.drop();
    server.finish(b.command_id);
    await b.applied;
    assert.equal(server.sseHeaders.at(-1)["last-event-id"], eventA.id);
    assert.equal(server.sseHeaders.at(-1).accept, "text/event-stream");
  });

  test("with WebSockets and SSE refused the client polls the status URLs", async () => {
    const server = new FakeGateway();
    server.refuseWebSocket = true;
    server.refuseSse = true;
    const gw = clientOf(server);
    const transports = record(gw, "connection");
    const a = await gw.replace("notes", "a", {});
    await until(() => gw.connection.transport === "poll");
    server.finish(a.command_id);
    const event = await a.applied;
    assert.equal(event.status, "applied");
    assert.deepEqual(
      [...new Set(transports.map((t) => t.transport).filter(Boolean))],
      ["websocket", "sse", "poll"],
    );
  });

  test("in polling mode with nothing pending, the state says whether the server answers", async () => {
    const server = new FakeGateway();
    const gw = clientOf(server, { transports: ["poll"], retryMinMs: 30, retryMaxMs: 30 });
    const states = record(gw, "connection");
    gw.connect();
    await until(() => gw.connection.state === "open");
    server.down = true;
    await until(() => gw.connection.state === "down");
    assert.deepEqual(
      [...new Set(states.map((s) => `${s.state}:${s.transport}`))],
      ["connecting:poll", "open:poll", "down:poll"],
    );
  });

  test("the transports option picks and orders them", async () => {
    const server = new FakeGateway();
    const gw = clientOf(server, { transports: ["sse"] });
    gw.connect();
    await until(() => gw.connection.state === "open");
    assert.equal(gw.connection.transport, "sse");
    assert.equal(server.wsUrls.length, 0);
  });

  test("reconnect() drops the connection and opens it again at once", async () => {
    const server = new FakeGateway();
    const gw = clientOf(server, { retryMinMs: 5000, retryMaxMs: 5000 });
    gw.connect();
    await until(() => gw.connection.state === "open");
    gw.reconnect();
    await until(() => server.wsUrls.length === 2 && gw.connection.state === "open", 1000);
  });

  test("an SSE stream silent for longer than idleTimeoutMs is taken as dead and opened again", async () => {
    const server = new FakeGateway();
    const gw = clientOf(server, { transports: ["sse"], idleTimeoutMs: 50 });
    gw.connect();
    await until(() => server.sseHeaders.length >= 2, 2000, "a second stream");
  });
});

describe("tokens", () => {
  test("a token function is called again when a write is answered 401", async () => {
    const server = new FakeGateway();
    server.validTokens = new Set(["t2"]);
    const issued = ["t1", "t2"];
    let calls = 0;
    const gw = clientOf(server, {
      token: async () => {
        calls += 1;
        return issued.shift() ?? "t2";
      },
      transports: [],
    });
    const accepted = await gw.replace("notes", "n1", {});
    assert.ok(accepted.command_id);
    assert.deepEqual(
      server.writes().map((w) => w.headers.authorization),
      ["Bearer t1", "Bearer t2"],
    );
    assert.equal(new Set(server.writes().map((w) => w.headers["idempotency-key"])).size, 1);
    assert.equal(calls, 2);
  });

  test("a token that stays refused rejects the write as unauthorized", async () => {
    const server = new FakeGateway();
    server.validTokens = new Set(["good"]);
    const gw = clientOf(server, { token: "bad", transports: [] });
    const error = await gw.replace("notes", "n1", {}).catch((reason) => reason);
    assert.equal(error.code, "unauthorized");
    assert.equal(server.writes().length, 1);
  });

  test("a socket closed with 4401 reconnects with a fresh token and the last event id", async () => {
    const server = new FakeGateway();
    server.validTokens = new Set(["t1", "t2"]);
    const issued = ["t1", "t2"];
    const gw = clientOf(server, { token: () => issued.shift() ?? "t3" });
    const a = await gw.replace("notes", "a", {});
    await until(() => gw.connection.state === "open");
    const eventA = server.finish(a.command_id);
    await a.applied;
    await sleep(1100); // the token lived a while before it expired
    server.drop(4401);
    await until(() => server.wsUrls.length === 2 && gw.connection.state === "open");
    const url = new URL(server.wsUrls[1]);
    assert.equal(url.searchParams.get("token"), "t2");
    assert.equal(url.searchParams.get("last_event_id"), eventA.id);
  });

  test("an SSE stream ended after ': token expired' reconnects with a fresh token", async () => {
    const server = new FakeGateway();
    const issued = ["t1", "t2"];
    const gw = clientOf(server, { token: async () => issued.shift() ?? "t3", transports: ["sse"] });
    gw.connect();
    await until(() => gw.connection.state === "open");
    await sleep(1100);
    server.drop(1000, "token expired");
    await until(() => server.sseHeaders.length === 2);
    assert.equal(server.sseHeaders[0].authorization, "Bearer t1");
    assert.equal(server.sseHeaders[1].authorization, "Bearer t2");
  });

  test("a 401 on the event stream renews the token and starts again from the WebSocket", async () => {
    const server = new FakeGateway();
    server.validTokens = new Set(["t2"]);
    const issued = ["t1", "t2"];
    const gw = clientOf(server, { token: async () => issued.shift() ?? "t3" });
    gw.connect();
    await until(() => gw.connection.state === "open");
    assert.equal(gw.connection.transport, "websocket");
    assert.deepEqual(
      server.wsUrls.map((u) => new URL(u).searchParams.get("token")),
      ["t1", "t2"],
    );
    const streams = server.requests.filter((r) => r.path === "/api/events");
    assert.deepEqual(
      streams.map((r) => r.headers.authorization),
      ["Bearer t1"],
    );
  });

  test("a JWT is renewed before its exp: 30 s before, or halfway for a short-lived one", async () => {
    const server = new FakeGateway();
    const jwt = (exp) => `e30.${Buffer.from(JSON.stringify({ sub: "u", exp })).toString("base64url")}.sig`;
    const now = Date.now() / 1000;
    const issued = [jwt(now + 0.2), jwt(now + 3600), jwt(now + 7200)];
    const gw = clientOf(server, { token: () => issued.shift(), transports: [] });
    await gw.replace("notes", "n1", {});
    await sleep(150); // past halfway to the first token's exp
    await gw.replace("notes", "n2", {});
    await gw.replace("notes", "n3", {}); // the second token is good for an hour: kept
    const tokens = server.writes().map((w) => w.headers.authorization);
    assert.notEqual(tokens[0], tokens[1]);
    assert.equal(tokens[1], tokens[2]);
  });
});

describe("reads", () => {
  test("get answers the document, or null when there is none; list passes limit and cursor", async () => {
    const server = new FakeGateway();
    const gw = clientOf(server, { transports: [] });
    server.intercept = (request) => {
      if (request.path === "/api/notes/n1") return json(200, { id: "n1", text: "hi" });
      if (request.path === "/api/notes/gone") return problem(404, "not-found");
      if (request.path.startsWith("/api/notes?")) return json(200, { items: [{ id: "n1" }], next: "c2" });
      return undefined;
    };
    assert.deepEqual(await gw.get("notes", "n1"), { id: "n1", text: "hi" });
    assert.equal(await gw.get("notes", "gone"), null);
    assert.deepEqual(await gw.list("notes", { limit: 1, cursor: "c1" }), { items: [{ id: "n1" }], next: "c2" });
    assert.equal(server.requests.at(-1).path, "/api/notes?limit=1&cursor=c1");
  });
});

describe("parts", () => {
  test("SseParser reads events split anywhere, with CRLF, and hands comments on", () => {
    const events = [];
    const comments = [];
    const parser = new SseParser({ event: (d) => events.push(d), comment: (c) => comments.push(c) });
    for (const chunk of ["retry: 2000\r\n: conn", "ected\r\n\r\nid: 1-0\ndata: {\"a\"", ":1}\n\n: token expired\n\n"]) {
      parser.push(chunk);
    }
    assert.deepEqual(events, ['{"a":1}']);
    assert.deepEqual(comments, [" connected", " token expired"]);
  });

  test("event ids compare as numbers, not as strings", () => {
    assert.equal(compareIds("10-0", "9-0"), 1);
    assert.equal(compareIds("9-10", "9-9"), 1);
    assert.equal(compareIds("9-1", "9-1"), 0);
    assert.equal(compareIds("9-1", "18446744073709551615-0"), -1);
  });

  test("the TypeScript declarations declare what the module exports, and the same version", async () => {
    const module = await import("../../gateway/client/gateway.js");
    const declarations = readFileSync(new URL("../../gateway/client/gateway.d.ts", import.meta.url), "utf8");
    const declared = [...declarations.matchAll(/^export (?:class|function) (\w+)/gm)].map((m) => m[1]);
    const exported = Object.keys(module).filter((name) => name !== "default");
    assert.deepEqual(declared.sort(), exported.sort());
    assert.match(declarations, /^export default Gateway;$/m);
    assert.match(Gateway.version, /^\d+\.\d+\.\d+$/);
    const methods = Object.getOwnPropertyNames(Gateway.prototype).filter((n) => n !== "constructor");
    for (const name of methods) assert.match(declarations, new RegExp(`^  (readonly )?${name}\\b`, "m"), name);
  });
});
