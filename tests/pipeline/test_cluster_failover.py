"""A Redis Cluster master killed under load (the cluster lane, GATEWAY_TEST_CLUSTER=1).

With REDIS_WAIT_REPLICAS=1 a 202 means the command reached a replica too, so a replica that
takes over its master's slots has it: every answered command is applied once, in order per
entity. Writers that get a 503 meanwhile (the slots have no master for a moment, or their new
master has no replica yet) send the same write again with the same Idempotency-Key.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tests.support.cluster import Cluster
from tests.support.services import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

ENTITIES = 6
PATCHES = 40


class Writer(threading.Thread):
    """Writes one entity's create and patches in order, each until it is answered 202."""

    def __init__(self, app: Any, entity: str) -> None:
        super().__init__(daemon=True)
        self.client = app.test_client()
        self.entity = entity
        self.accepted: list[str] = []  # command ids answered 202, in order
        self.refused = 0  # answers other than 202 (sent again)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.send("POST", "/api/orders", {"id": self.entity, "k-1": -1}, "create")
            for i in range(PATCHES):
                body = {"last": i, f"k{i}": i, f"k{i - 1}": None}  # drops the previous key
                self.send("PATCH", f"/api/orders/{self.entity}", body, f"patch-{i}")
                time.sleep(0.02)
        except BaseException as error:  # noqa: BLE001 - shown by the test
            self.error = error

    def send(self, method: str, path: str, body: dict[str, Any], key: str) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            answer = self.client.open(
                path, method=method, json=body, headers={"Idempotency-Key": f"{self.entity}-{key}"}
            )
            if answer.status_code == 202:
                self.accepted.append(answer.json["command_id"])
                return
            assert answer.status_code in (500, 503), answer.json
            self.refused += 1
            time.sleep(0.1)
        raise AssertionError(f"{self.entity}: {key} not accepted within 60 s")


def test_a_master_killed_under_load_loses_no_accepted_command(
    make_app: Any, start_worker: Any, redis_cluster: Cluster
) -> None:
    app = make_app(redis_wait_replicas="1", rate_limit_writes="")
    gw = app.extensions["gateway"]
    start_worker()
    writers = [Writer(app, f"o{i}") for i in range(ENTITIES)]
    for writer in writers:
        writer.start()
    wait_until(lambda: sum(len(w.accepted) for w in writers) >= ENTITIES * 5, 30, "writes to begin")

    victim = gw.keys.stream(0)
    port = redis_cluster.kill_master(victim)
    wait_until(lambda: redis_cluster.master_of(victim) != port, 30, "a replica to take over")
    redis_cluster.restart(port)  # back as a replica: WAIT 1 can be met again on those slots
    for writer in writers:
        writer.join(120)
        assert writer.error is None, writer.error
    assert sum(w.refused for w in writers) > 0, "no write saw the failover: the test proves nothing"

    client = app.test_client()

    def finished() -> list[dict[str, Any]] | None:
        answers = [client.get(f"/api/commands/{c}") for w in writers for c in w.accepted]
        if any(a.status_code == 503 for a in answers):  # the client still finding the new master
            return None
        found = [a.json for a in answers]
        return found if all(s.get("status") != "pending" for s in found) else None

    statuses = wait_until(finished, 90, "every accepted command to finish")
    assert [s.get("status") for s in statuses] == ["applied"] * len(statuses), statuses
    for writer in writers:  # any reordering or lost patch leaves a stale key or an older "last"
        assert len(writer.accepted) == PATCHES + 1
        document = client.get(f"/api/orders/{writer.entity}").json
        assert document == {"id": writer.entity, "last": PATCHES - 1, f"k{PATCHES - 1}": PATCHES - 1}
