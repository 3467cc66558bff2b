"""Every byte has an owner and a bound (DESIGN invariant 10): after a workload through the real
app and a real worker, every Redis key left under the deployment's prefix is one the key table
of docs/architecture.md names, and is either expiring or one of a fixed number per partition or
deployment. A key that matches no rule, or a per-user or per-command key without a TTL, fails."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from app import create_app
from gateway.device_registry import MAX_DEVICES_PER_USER
from tests.support import cluster
from tests.support.api import bearer, token
from tests.support.services import wait_until

pytestmark = pytest.mark.integration

# Keys of which there is a fixed number (per partition or per deployment): they need no TTL.
FIXED = [
    r"\{P:\d+\}:stream",
    r"\{P:\d+\}:dead",
    r"\{P:\d+\}:dead:trimmed",
    r"\{P:\d+\}:stats",
    r"\{P:\d+\}:fence",
    r"P:backlog",
    r"P:outbox",
    r"\{P:\d+\}:backlog",  # on a Redis Cluster, the backlog and the outbox go per partition
    r"\{P:\d+\}:outbox",
    r"P:web",  # one per deployment; a member per live web process, the gone ones removed
    r"rq:[a-z]+:P-(apply|push)",  # RQ's own queue and registries of the two queues
]
# Keys made per user, command, token or moment: each must expire.
EXPIRING = [
    r"\{P:\d+\}:cmd:\d+-[A-Za-z0-9_-]+",
    r"\{P:\d+\}:idem:[0-9a-f]{64}",
    r"\{P:\d+\}:(lease|kick|pause|wait|outages)",
    r"P:ratelimit:.+",
    r"P:events:.+",
    r"P:finished:.+",
    r"P:idemkeys:.+",
    r"P:pending:.+",
    r"\{P:\d+\}:(pending|finished|idemkeys):.+",  # on a Redis Cluster, per user and partition
    r"P:devices:.+",
    r"P:device:.+",
    r"P:web:.+",
]


def owner_rule(key: str, prefix: str) -> str | None:
    """'fixed', 'expiring', or None for a key no rule knows."""
    for kind, patterns in (("fixed", FIXED), ("expiring", EXPIRING)):
        for pattern in patterns:
            if re.fullmatch(pattern.replace("P", re.escape(prefix)), key):
                return kind
    return None


def test_every_key_a_workload_leaves_has_an_owner(
    settings_env: dict[str, str], prefix: str, start_worker: Callable[..., Any]
) -> None:
    app = create_app(
        {k.lower(): v for k, v in settings_env.items()}
        | {"jwt_secret": "s" * 32, "max_dead_letter_payload_bytes": "100", "status_records_per_user": "20"}
    )
    client: Any = app.test_client()
    gw = app.extensions["gateway"]
    start_worker(JWT_SECRET="s" * 32, MAX_DEAD_LETTER_PAYLOAD_BYTES="100", STATUS_RECORDS_PER_USER="20")
    alice, bob = bearer(token("alice", secret="s" * 32)), bearer(token("bob", secret="s" * 32))
    command_ids = []
    for i in range(30):
        body = {"id": f"n{i % 10}", "text": "x" * (i * 10)}  # ids repeat: 20 creates fail
        keyed = {**alice, "Idempotency-Key": f"k{i}"} if i % 3 == 0 else alice
        answer = client.post("/api/notes", json=body, headers=keyed)
        assert answer.status_code == 202, answer.json
        command_ids.append(answer.json["command_id"])
    command_ids.append(client.delete("/api/notes/n1", headers=bob).json["command_id"])
    devices = MAX_DEVICES_PER_USER + 5 if not cluster.ENABLED else 0  # not on a cluster yet
    for i in range(devices):
        assert client.post("/api/devices", json={"token": f"device-{i}"}, headers=bob).status_code == 201

    def finished() -> bool:
        answers = [
            client.get(f"/api/commands/{c}", headers=alice if n < 30 else bob)
            for n, c in enumerate(command_ids)
        ]
        return all(a.status_code == 404 or a.json["status"] != "pending" for a in answers)

    wait_until(finished, 60, "the workload to finish")

    keys = sorted(gw.redis.scan_iter(match=f"*{prefix}*", count=1000))
    assert keys
    unowned = [key for key in keys if owner_rule(key, prefix) is None]
    assert unowned == [], f"keys no rule of docs/architecture.md owns: {unowned}"
    # -1: no TTL (-2 is a key gone since the scan, such as a lease released meanwhile)
    immortal = [key for key in keys if owner_rule(key, prefix) == "expiring" and gw.redis.ttl(key) == -1]
    assert immortal == [], "per-user or per-command keys without a TTL"
    assert not [k for k in keys if ":pending:" in k]  # every command finished: the sets are gone
    owners = [k for k in keys if re.fullmatch(rf"{re.escape(prefix)}:device:.+", k)]
    assert len(owners) == min(devices, MAX_DEVICES_PER_USER)  # the trimmed tokens' owner keys went with them
    records = [k for k in keys if ":cmd:" in k]
    assert len(records) <= 20 + 1  # STATUS_RECORDS_PER_USER for alice, and bob's one
    partitions = range(gw.settings.partitions)
    assert sum(int(gw.redis.get(gw.keys.backlog(p)) or 0) for p in partitions) == 0
    app.extensions["gateway"].close()
