"""Every setting of the gateway, read from the environment, typed and checked at start.

The defaults are the embedded ones: a local Redis and an SQLite file, so that the product runs
with nothing configured. Heroku-style deploys set the same names as config vars.
"""

from __future__ import annotations

import logging
from typing import Literal

from limits import parse_many
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger("gateway.settings")

DEV_USER = "dev"


class Settings(BaseSettings):
    """The gateway's configuration; one instance per process, built by `load()`."""

    # An empty variable counts as unset (a platform's form may send a blank config var).
    model_config = SettingsConfigDict(
        extra="ignore", frozen=True, case_sensitive=False, env_ignore_empty=True
    )

    # Production unless said otherwise, so that a deploy that forgets a setting fails closed
    # (`make run` and the test suite say development and test).
    app_env: Literal["development", "production", "test"] = "production"

    # Redis: payload cache and broker.
    redis_url: str = "redis://localhost:6379/0"
    redis_tls_verify: bool = True
    # Connections each Redis client of a process may hold; more callers at once wait for one.
    # Mind the plan's limit (a managed Redis caps clients) times the processes and their clients.
    redis_max_connections: int = Field(default=50, ge=2, le=10_000)
    # True: REDIS_URL names a node of a Redis Cluster (the client finds the others). Every key a
    # script touches in one call is then in its partition's slot (docs/scaling.md says what
    # changes: per-partition quota shares, the event relay, the Idempotency-Key's partition).
    redis_cluster: bool = False
    # A plain Redis for RQ's job queues, which do not run on a Redis Cluster. Unset: REDIS_URL.
    queue_redis_url: str | None = None
    # Replicas each accepted command must reach before its 202 (WAIT after each batch of accept
    # calls, one round trip per batch): 0 answers once the master has it. Not answered in time
    # (REDIS_WAIT_TIMEOUT_MS), the batch's writes are answered 503, though they may still apply.
    redis_wait_replicas: int = Field(default=0, ge=0, le=16)
    redis_wait_timeout_ms: int = Field(default=1000, ge=1, le=60_000)
    # Prefix of every Redis key the gateway writes, so that several deployments can share a Redis.
    key_prefix: str = Field(default="gw", pattern=r"^[A-Za-z0-9_.-]{1,32}$")

    # Stores.
    database_url: str = "sqlite:///data.db"
    mongo_url: str | None = None
    # Extra plugin modules to register by dotted name, comma-separated, beside the built-in
    # ones and those installed packages declare under the `gateway` entry point group.
    plugins: str = ""
    # Plugins not to load, comma-separated: built-in modules or PLUGINS entries by dotted name,
    # installed packages by entry point name (`flask plugins` lists the names).
    disabled_plugins: str = ""
    # Name of the store that receives every collection not routed elsewhere.
    default_store: str = "sql"
    # Per-collection routing, `collection=store` pairs, comma-separated (e.g. `audit=mongo`).
    collection_stores: str = ""

    # Web.
    # Tokens: HS256 signed with JWT_SECRET, and/or RS256/ES256 signed by a key of the JWKS at
    # JWT_JWKS_URL (Firebase Auth, Auth0, Cognito, Keycloak). Neither: open dev mode.
    jwt_secret: str | None = None
    jwt_jwks_url: str | None = None
    # When set, a token must carry exactly this `iss` / this `aud` (one of its audiences).
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    # The claim holding a user's roles (a list; a dotted name reaches into nested claims), and
    # the role that makes a user an operator, who may read and write every document.
    jwt_roles_claim: str = Field(default="roles", min_length=1)
    admin_role: str = Field(default="admin", min_length=1)
    # Claims of the token carried with each command to the store plugins and notifiers
    # (comma-separated top-level names; the roles claim always is), at most 2 KiB as JSON
    # (gateway/claims.py): what an application's rule needs, not the whole token.
    command_claims: str = ""
    port: int = Field(default=5000, ge=1, le=65535)
    max_body_bytes: int = Field(default=1024 * 1024, ge=64)
    cors_origins: str = ""
    # How long the first answer to an Idempotency-Key is kept for replay: at least a day, so a
    # client may retry through a day-long outage of its own.
    idempotency_ttl_seconds: int = Field(default=24 * 3600, ge=24 * 3600)
    # Idempotency-Key records kept per user (the oldest go first, even before
    # IDEMPOTENCY_TTL_SECONDS): a user writing at the rate limit for a day cannot fill Redis.
    idempotency_keys_per_user: int = Field(default=10_000, ge=1)
    # The shape a write's JSON body may take, beside its size: nesting depth (the body is 1) and
    # object members and array elements in the whole body (so a check's cost is bounded).
    max_json_depth: int = Field(default=32, ge=1, le=512)
    max_json_members: int = Field(default=10_000, ge=1)
    # Folder of `<collection>.json` JSON Schemas (Draft 2020-12); writes must match them.
    schemas_dir: str = ""
    # The collections that exist, comma-separated; empty: any well-formed name (or, with
    # SCHEMAS_DIR, the collections that have a schema, plus these).
    collections: str = ""
    # Per-user rate limits, shared by all web processes (counted in Redis), in the `limits`
    # notation ("100/second", "5000/hour"); empty: no limit. Writes: POST, PUT, PATCH, DELETE on
    # /api; reads: GET on /api, command status included. A minute's window lets a client send a
    # burst (an import, a reconnect's catch-up) while holding it to 100 writes a second overall.
    rate_limit_writes: str = "6000/minute"
    rate_limit_reads: str = "18000/minute"
    # Per-user limit of the bytes of write bodies beyond the first WRITE_BYTES_FREE (16 KiB) of
    # each, checked from Content-Length before the body is read: one user's large writes cannot
    # take the machine's CPU (parsing, Redis, the workers) from the others. Empty: none.
    rate_limit_write_bytes: str = "60000000/minute"
    # The demo page at /demo (a to-do app written with /client.js). Unset: on in development
    # and test, off in production, where a page nobody asked for is only more to look after.
    demo_page: bool | None = None

    # Quotas, checked by the accept script itself so that concurrent web processes cannot pass
    # them: a user's unfinished commands beyond which a write is refused with 429 (a client
    # looping on failing writes stops at it), and unfinished commands in all beyond which a write
    # is refused with 503 (the workers are behind; Redis holds each pending payload until then).
    max_pending_per_user: int = Field(default=10_000, ge=1)
    max_backlog: int = Field(default=1_000_000, ge=1)

    # Command pipeline.
    # Streams the commands are spread over (entity -> partition by a stable hash). Change it only
    # with an empty backlog: a pending command's partition is part of its id.
    partitions: int = Field(default=16, ge=1, le=1024)
    # Commands applied per store transaction.
    batch_size: int = Field(default=500, ge=1, le=10_000)
    # Longest wait, in ms, for a partial batch to fill before it is applied: 0 applies at once
    # (lowest latency); a few ms give larger batches, so fewer transactions, under steady load.
    batch_wait_ms: int = Field(default=0, ge=0, le=1000)
    # Attempts before a failing command is dead-lettered and marked failed.
    max_attempts: int = Field(default=5, ge=1, le=100)
    # Days a dead letter is kept for an operator to look at, replay or drop; older ones are
    # trimmed as new ones come, so a store that refuses everything cannot fill Redis.
    dead_letter_days: int = Field(default=30, ge=1, le=3650)
    # Dead letters kept in all (each partition keeps its share; the oldest go first, counted in
    # gateway_dead_letters_trimmed_total and logged), and the largest payload a dead letter keeps
    # whole: a larger one is kept as its size and SHA-1. Together they bound the dead letters'
    # memory (10,000 x 16 KiB: at most ~170 MB), whatever a store refuses.
    max_dead_letters: int = Field(default=10_000, ge=1)
    max_dead_letter_payload_bytes: int = Field(default=16 * 1024, ge=0)
    # Backoff between attempts: base * 2**(attempt-1), capped.
    retry_base_seconds: float = Field(default=1.0, gt=0)
    retry_max_seconds: float = Field(default=60.0, gt=0)
    # How long a partition lease lives without renewal: the takeover time after a worker dies.
    lease_seconds: float = Field(default=15.0, ge=1, le=55)
    # How long one drain job may run before it yields its worker to other partitions.
    drain_slice_seconds: float = Field(default=1.0, gt=0)
    # How often each worker process looks for partitions with work and nobody on them.
    scan_interval_seconds: float = Field(default=0.25, gt=0)
    # How long finished commands' status records are kept.
    status_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=60)
    # Finished commands' status records kept per user (the oldest go first, even before
    # STATUS_TTL_SECONDS): a user writing at the rate limit for a week cannot fill Redis.
    status_records_per_user: int = Field(default=10_000, ge=1)
    # Notification events kept per user for replay.
    events_per_user: int = Field(default=1000, ge=10)
    # Notification events of all users kept in the outbox that live deliveries and notifier
    # plugins follow; a notifier further behind than this misses the oldest.
    outbox_length: int = Field(default=100_000, ge=100)

    # When set, GET /metrics needs `Authorization: Bearer <METRICS_TOKEN>` (Prometheus's
    # `authorization` scrape setting); unset, the page is open to whoever reaches the process.
    metrics_token: str | None = None

    # Logs: `json` (one object a line) or `text`; unset: json in production, text elsewhere.
    log_format: Literal["json", "text"] | None = None
    # The lowest level written. DEBUG adds a line per applied command (its request id, command
    # id and collection), to follow one request through the worker; INFO has a line per retry
    # and a warning per dead letter.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # Notifications.
    # Seconds between WebSocket pings and between SSE heartbeat comments on an idle connection:
    # below the 55 s after which Heroku's router (and many proxies) cut an idle connection.
    notify_keepalive_seconds: float = Field(default=20.0, gt=0, lt=55)
    # Open WebSocket and SSE streams one user may hold on one web process; past it, 429.
    streams_per_user: int = Field(default=10, ge=1, le=10_000)
    # Firebase Cloud Messaging: a service-account JSON file's path, or the JSON itself (handy as
    # a config var). Unset: push notifications are off (the worker says so once at start).
    fcm_credentials: str | None = None

    @field_validator("database_url")
    @classmethod
    def _sqlalchemy_url(cls, url: str) -> str:
        """Accept Heroku's `postgres://` and plain `postgresql://`, driving both with psycopg 3."""
        for scheme in ("postgres://", "postgresql://"):
            if url.startswith(scheme):
                return "postgresql+psycopg://" + url[len(scheme) :]
        return url

    @field_validator("collection_stores")
    @classmethod
    def _routing_pairs(cls, value: str) -> str:
        for pair in filter(str.strip, value.split(",")):
            collection, _, store = pair.partition("=")
            if not collection.strip() or not store.strip():
                raise ValueError(f"COLLECTION_STORES entry {pair!r} is not collection=store")
        return value

    @field_validator("jwt_jwks_url")
    @classmethod
    def _https_jwks(cls, url: str | None) -> str | None:
        """Keys fetched over plain HTTP could be swapped on the way; loopback is for tests."""
        if url and not url.startswith(("https://", "http://127.0.0.1", "http://localhost")):
            raise ValueError("JWT_JWKS_URL must be an https:// URL")
        return url or None

    @model_validator(mode="after")
    def _production_needs_a_verifier(self) -> Settings:
        if self.app_env == "production" and self.open_dev_mode:
            raise ValueError(
                "JWT_SECRET or JWT_JWKS_URL must be set when APP_ENV=production (the default; "
                "APP_ENV=development runs in open dev mode, for a local machine only)"
            )
        return self

    @model_validator(mode="after")
    def _queue_on_plain_redis(self) -> Settings:
        if self.redis_cluster and not self.queue_redis_url:
            raise ValueError(
                "QUEUE_REDIS_URL must name a plain Redis when REDIS_CLUSTER=true (RQ's queues do not "
                "run on a Redis Cluster)"
            )
        return self

    @property
    def queue_url(self) -> str:
        """The Redis of RQ's job queues."""
        return self.queue_redis_url or self.redis_url

    @property
    def open_dev_mode(self) -> bool:
        """Without a way to verify tokens every caller is the one dev user."""
        return not (self.jwt_secret or self.jwt_jwks_url)

    @property
    def demo_page_on(self) -> bool:
        return self.demo_page if self.demo_page is not None else self.app_env != "production"

    @property
    def collection_store_map(self) -> dict[str, str]:
        pairs = (p.split("=", 1) for p in self.collection_stores.split(",") if p.strip())
        return {c.strip(): s.strip() for c, s in pairs}

    @property
    def plugin_modules(self) -> list[str]:
        return [m.strip() for m in self.plugins.split(",") if m.strip()]

    @property
    def disabled_plugin_names(self) -> list[str]:
        return [m.strip() for m in self.disabled_plugins.split(",") if m.strip()]

    @field_validator("rate_limit_writes", "rate_limit_reads", "rate_limit_write_bytes")
    @classmethod
    def _one_rate_limit(cls, value: str) -> str:
        """One limit per kind of call, so that counting it stays one Redis call."""
        if value.strip() and len(parse_many(value)) != 1:
            raise ValueError(f"{value!r}: give one limit, such as 100/second")
        return value.strip()

    @property
    def collection_allowlist(self) -> list[str]:
        return [c.strip() for c in self.collections.split(",") if c.strip()]

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]


def load(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides (tests, CLI) on top."""
    return Settings(**overrides)  # type: ignore[arg-type]
