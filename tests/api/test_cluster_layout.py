"""What a Redis Cluster changes in the accept path (the cluster lane, GATEWAY_TEST_CLUSTER=1):
the quotas' counts per partition, in its slot, and what is not kept on a cluster yet."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.api import assert_problem

pytestmark = [pytest.mark.integration, pytest.mark.cluster]


def test_a_commands_counts_are_in_its_partitions_slot(app: Any, client: Any) -> None:
    gw = app.extensions["gateway"]
    answer = client.put("/api/notes/a", json={"v": 1})
    assert answer.status_code == 202
    partition = int(answer.json["command_id"].split("-")[0])
    assert gw.redis.zcard(gw.keys.pending("dev", partition)) == 1
    assert gw.redis.get(gw.keys.backlog(partition)) == "1"
    assert gw.keys.pending("dev", partition).startswith(gw.keys.tag(partition))


def test_devices_are_refused_plainly_on_a_cluster(client: Any) -> None:
    assert_problem(client.post("/api/devices", json={"token": "device-1"}), 501)
