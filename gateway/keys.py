"""Every Redis key the gateway writes, in one place.

Keys of one partition share the hash tag `{prefix:p}`, so that the multi-key scripts touching a
partition (accept, finish, retry) stay in one Redis Cluster slot. On one Redis, a user's pending
set and finished list and the backlog counter are one per user or deployment; on a Redis Cluster
(`cluster=True`) each is kept per partition, in its slot, and a finished command's event goes to
the partition's outbox, from which gateway/notify/relay.py moves it to its owner's log and the
deployment's outbox (docs/scaling.md).
"""

from __future__ import annotations

from dataclasses import dataclass

GROUP = "appliers"  # the consumer group every worker reads the partition streams through


@dataclass(frozen=True)
class Keys:
    """Key names under one deployment prefix."""

    prefix: str = "gw"
    cluster: bool = False  # REDIS_CLUSTER: the per-user and per-deployment counts go per partition

    def tag(self, partition: int) -> str:
        return f"{{{self.prefix}:{partition}}}"

    def stream(self, partition: int) -> str:
        """The partition's command stream: one entry per accepted, unfinished command."""
        return f"{self.tag(partition)}:stream"

    def command(self, partition: int, command_id: str) -> str:
        """Hash: the command's status record and, until it is applied, its payload."""
        return f"{self.tag(partition)}:cmd:{command_id}"

    def dead(self, partition: int) -> str:
        """Stream of dead-lettered commands, payload included, for inspection and replay."""
        return f"{self.tag(partition)}:dead"

    def stats(self, partition: int) -> str:
        """Hash of the partition's counters for /metrics, kept for the life of the deployment:
        `acc|<collection>|<op>` accepted, `fin|<collection>|<op>|<status>` finished, `lat|<i>`
        finished within latency bucket i (accept to finish), `lat_ms` their sum, `alat|<i>` and
        `alat_us` the same of the accept step's latency, `retries`, `outages`. Written by the
        scripts and stages that count them (gateway/stats.py)."""
        return f"{self.tag(partition)}:stats"

    def web_processes(self) -> str:
        """Set of the names of the web processes that report to `web_process` (a name whose
        report expired is removed by the next report of any process)."""
        return f"{self.prefix}:web"

    def web_process(self, name: str) -> str:
        """Hash of what one web process alone knows: `streams|<channel>`, its open notification
        streams. Written every REPORT_SECONDS (gateway/process_report.py); expires soon after
        the process stops reporting."""
        return f"{self.prefix}:web:{name}"

    def dead_trimmed(self, partition: int) -> str:
        """Counter of the partition's dead letters trimmed to keep its stream under its share of
        MAX_DEAD_LETTERS (the oldest go first); summed into a metric."""
        return f"{self.tag(partition)}:dead:trimmed"

    def lease(self, partition: int) -> str:
        """The fencing token of the one worker allowed to apply this partition now."""
        return f"{self.tag(partition)}:lease"

    def fence(self, partition: int) -> str:
        """Counter the lease tokens are drawn from, so that each holder's token is new."""
        return f"{self.tag(partition)}:fence"

    def kick(self, partition: int) -> str:
        """Marker: a drain job for this partition is queued (short TTL)."""
        return f"{self.tag(partition)}:kick"

    def pause(self, partition: int) -> str:
        """Marker: a store was unreachable; do not drain before it expires."""
        return f"{self.tag(partition)}:pause"

    def outages(self, partition: int) -> str:
        """Counter of consecutive store outages seen by this partition, for the backoff."""
        return f"{self.tag(partition)}:outages"

    def wait(self, partition: int) -> str:
        """Marker: the pending retries are not due before it expires (new entries still drain)."""
        return f"{self.tag(partition)}:wait"

    def idempotency(self, partition: int, digest: str) -> str:
        """Hash: the first command a user's Idempotency-Key came with (`cid`, `eid`) and that
        request's fingerprint (`fp`). `digest` hashes the (user, key) pair, and so does the
        partition: a retry finds the record before it knows which entity it is about."""
        return f"{self.tag(partition)}:idem:{digest}"

    def idempotency_keys(self, user: str, partition: int) -> str:
        """List of the record keys of the user's Idempotency-Keys, newest first: accept.lua
        deletes the records beyond IDEMPOTENCY_KEYS_PER_USER. Expires with the records. On a
        cluster, one per user and partition of the records (accept.lua's or idempotency.lua's
        call), holding the partition's share of the cap."""
        if self.cluster:
            return f"{self.tag(partition)}:idemkeys:{user}"
        return f"{self.prefix}:idemkeys:{user}"

    def write_window(self, user_digest: str, window: int) -> str:
        """Counter of a user's writes in one rate-limit window (numbered since the epoch), counted
        by accept.lua; it expires after two windows."""
        return f"{self.rate_limits()}:writes:{user_digest}:{window}"

    def rate_limits(self) -> str:
        """Prefix of the per-user rate-limit counters, which expire within two windows; the
        `limits` library adds `:{LIMITER/<user digest>/<scope>/<limit>}` (and `/-1`)."""
        return f"{self.prefix}:ratelimit"

    def pending(self, user: str, partition: int) -> str:
        """Sorted set of the user's unfinished command ids, scored by acceptance time (ms): added
        by accept.lua (refused past MAX_PENDING_PER_USER), removed by finish.lua. Empty, it is
        gone; it also expires STATUS_TTL_SECONDS after the user's last accept or finish. On a
        cluster, one per user and partition, holding the partition's share of the quota."""
        if self.cluster:
            return f"{self.tag(partition)}:pending:{user}"
        return f"{self.prefix}:pending:{user}"

    def backlog(self, partition: int) -> str:
        """Counter of unfinished commands in all (MAX_BACKLOG): counted up by accept.lua, down by
        finish.lua as it deletes a stream entry, and recounted from the streams' lengths now and
        then (see accept.lua), so that it cannot drift for long. On a cluster, one per partition,
        recounted from its own stream, against the partition's share of MAX_BACKLOG."""
        if self.cluster:
            return f"{self.tag(partition)}:backlog"
        return f"{self.prefix}:backlog"

    def finished(self, user: str, partition: int) -> str:
        """List of the record keys of the user's finished commands, newest first: finish.lua
        deletes the records beyond STATUS_RECORDS_PER_USER (on a cluster, one list per user and
        partition, with the partition's share). Expires with the records."""
        if self.cluster:
            return f"{self.tag(partition)}:finished:{user}"
        return f"{self.prefix}:finished:{user}"

    def event_log(self, user: str, partition: int) -> str:
        """Where finish.lua writes a finished command's event: its owner's log on one Redis; on a
        cluster the partition's outbox (the relay then writes the log), which finish.lua takes as
        the sign not to write a log itself."""
        if self.cluster:
            return self.partition_outbox(partition)
        return self.events(user)

    def finish_outbox(self, partition: int) -> str:
        """The outbox finish.lua writes: the deployment's on one Redis, the partition's on a cluster."""
        if self.cluster:
            return self.partition_outbox(partition)
        return self.outbox()

    def partition_outbox(self, partition: int) -> str:
        """On a Redis Cluster, stream of the partition's finished commands' events (`u` owner, `e`
        event) not yet relayed to their owners' logs and the outbox: written by finish.lua,
        emptied by gateway/notify/relay.py under the partition's lease."""
        return f"{self.tag(partition)}:outbox"

    def events(self, user: str) -> str:
        """Stream of the user's notification events, bounded, replayable by id."""
        return f"{self.prefix}:events:{user}"

    def outbox(self) -> str:
        """Stream of every notification event, all users: web processes follow it to wake their
        open WebSocket and SSE connections; notifier plugins consume it through a group."""
        return f"{self.prefix}:outbox"

    def rq_queue(self) -> str:
        """Name of the RQ queue the drain jobs go through."""
        return f"{self.prefix}-apply"

    def devices(self, user: str) -> str:
        """Sorted set of the user's FCM registration tokens, scored by registration time (ms)."""
        return f"{self.prefix}:devices:{user}"

    def device_owner(self, token: str) -> str:
        """The user an FCM registration token is registered to now: a device that changes hands
        leaves its former owner's set, so one user's events never reach another's device."""
        return f"{self.prefix}:device:{token}"

    def push_queue(self) -> str:
        """Name of the RQ queue of push notification jobs (FCM sends)."""
        return f"{self.prefix}-push"
