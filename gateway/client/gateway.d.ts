// Types of the command gateway's browser client (gateway.js, served at /client.js).

/** A JSON document as stored: an object, with its `id` when read back. */
export type Document = { [field: string]: unknown };

export type Op = "create" | "replace" | "patch" | "delete";

/** The event a finished command sends its owner (docs/notifications.md). `id` is null when the
 * client learnt the outcome from the command's status URL rather than from a live stream. */
export interface CommandEvent {
  id: string | null;
  type: "command.applied" | "command.failed";
  command_id: string;
  op: Op;
  collection: string;
  entity_id: string;
  status: "applied" | "failed";
  error: string | null;
}

/** What a write resolves with once the gateway accepted it (202). */
export interface Accepted {
  command_id: string;
  entity_id: string;
  /** Resolves with the command's event when it is applied; rejects with a GatewayError
   * (code "failed", `event` set) when it failed. Settles exactly once. */
  applied: Promise<CommandEvent>;
  /** True when the server answered an earlier attempt's Idempotency-Key again. */
  replayed: boolean;
}

export interface Page<T = Document> {
  items: T[];
  next: string | null;
}

export interface CommandStatus {
  command_id: string;
  status: "pending" | "applied" | "failed";
  op: Op;
  collection: string;
  entity_id: string;
  attempts: number;
  accepted_at: string | null;
  finished_at: string | null;
  error: string | null;
  next_attempt_at?: string;
}

export type Transport = "websocket" | "sse" | "poll";

/** idle: not started; connecting; open (on `transport`); down (waiting to reconnect); closed. */
export type ConnectionState = "idle" | "connecting" | "open" | "down" | "closed";

/** A token, or a function that returns one; the function is called again when the server
 * answers 401 or closes a stream because the token expired, and before a JWT's exp. */
export type TokenSource = string | null | (() => string | null | Promise<string | null>);

export interface GatewayOptions {
  /** The gateway's origin, e.g. "https://api.example.com"; default: the page's origin. */
  baseUrl?: string;
  token?: TokenSource;
  /** The order in which live connections are tried; default ["websocket", "sse", "poll"]. */
  transports?: Transport[];
  /** Resume the live connection after this event id (one kept from `lastEventId`). */
  lastEventId?: string;
  /** How long a request may take before it counts as unanswered (ms, default 15000). */
  requestTimeoutMs?: number;
  /** Backoff of retried writes and of reconnects: from retryMinMs doubling up to retryMaxMs
   * (ms, defaults 250 and 30000), with jitter. A Retry-After answer is waited for. */
  retryMinMs?: number;
  retryMaxMs?: number;
  /** Polling mode: how often the status URLs of pending commands are read (ms, default 1000). */
  pollIntervalMs?: number;
  /** A command pending this long is checked on its status URL, then less often (ms, 15000). */
  staleAfterMs?: number;
  /** An SSE stream silent this long (no event, no heartbeat) is taken as dead (ms, 65000). */
  idleTimeoutMs?: number;
  /** How long an unanswered write is retried; below the server's IDEMPOTENCY_TTL_SECONDS
   * (ms, default 23 hours). */
  keyLifetimeMs?: number;
  /** For tests and other runtimes: the fetch and WebSocket to use (null: no WebSocket). */
  fetch?: typeof fetch;
  WebSocket?: typeof WebSocket | null;
}

export type GatewayErrorCode =
  | "failed" // the command was accepted and failed: `event` says why
  | "refused" // the write or read was refused (4xx): `status` and `problem` say why
  | "unauthorized" // 401 even with a fresh token, or the token function threw
  | "network" // no usable answer (reads, after their retries; writes after repeated 500s)
  | "expired" // a write unanswered for keyLifetimeMs
  | "closed"; // close() was called

/** An RFC 9457 problem, as the gateway answers every error. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  errors?: { field: string; message: string }[];
  [extension: string]: unknown;
}

export class GatewayError extends Error {
  readonly name: "GatewayError";
  readonly code: GatewayErrorCode;
  readonly status: number | null;
  readonly problem: Problem | null;
  readonly event: CommandEvent | null;
}

/** The detail of each event the client dispatches. */
export interface WriteInfo {
  /** The write's Idempotency-Key: one per write, the same on its retries. */
  key: string;
  op: Op;
  collection: string;
  entity_id: string;
}

export interface GatewayEvents {
  /** A write was started (before it is sent). */
  pending: WriteInfo & { body: Document | undefined };
  /** A write was accepted (202). */
  accepted: WriteInfo & Accepted;
  /** A command was applied. */
  applied: WriteInfo & { command_id: string; event: CommandEvent };
  /** A write was refused (command_id null) or its command failed. */
  failed: WriteInfo & { command_id: string | null; event: CommandEvent | null; error: GatewayError };
  /** The live connection changed. */
  connection: { state: ConnectionState; transport: Transport | null };
  /** Every event received on the live connection, the user's other clients' included. */
  event: CommandEvent;
}

export class Gateway extends EventTarget {
  static readonly version: string;
  readonly version: string;
  constructor(options?: GatewayOptions);

  readonly connection: { state: ConnectionState; transport: Transport | null };
  readonly lastEventId: string | null;
  readonly pendingCount: number;

  create(collection: string, doc: Document): Promise<Accepted>;
  replace(collection: string, id: string, doc: Document): Promise<Accepted>;
  patch(collection: string, id: string, patch: Document): Promise<Accepted>;
  delete(collection: string, id: string): Promise<Accepted>;

  get<T extends Document = Document>(collection: string, id: string): Promise<(T & { id: string }) | null>;
  list<T extends Document = Document>(
    collection: string,
    options?: { limit?: number; cursor?: string | null },
  ): Promise<Page<T & { id: string }>>;
  status(commandId: string): Promise<CommandStatus>;

  on<K extends keyof GatewayEvents>(name: K, fn: (detail: GatewayEvents[K]) => void): () => void;
  connect(): this;
  reconnect(): void;
  close(): void;
}

export default Gateway;

/** The text/event-stream reader the client uses (exported for tests and other tools). */
export class SseParser {
  constructor(handlers: { event?: (data: string) => void; comment?: (text: string) => void });
  push(text: string): void;
}

/** The order of two event ids (`<ms>-<seq>`): negative, zero or positive. */
export function compareIds(a: string, b: string): number;
