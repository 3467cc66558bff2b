"""Accepting a command (one atomic Redis step) and reading its status record."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from gateway.context import Gateway
from gateway.ids import new_command_id, partition_of, partition_of_command
from plugins.store import Document, Op


@dataclass(frozen=True)
class Accepted:
    command_id: str
    entity_id: str
    seq: str  # the stream entry id: the command's place in its entity's order


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def accept(
    gw: Gateway, user: str, op: Op, collection: str, entity_id: str, payload: Document | None
) -> Accepted:
    """Record the command and queue it, in one Lua script: both are written or neither is."""
    partition = partition_of(collection, entity_id, gw.settings.partitions)
    command_id = new_command_id(partition)
    fields: list[Any] = ["op", op, "col", collection, "eid", entity_id, "uid", user]
    fields += ["st", "pending", "att", 0, "acc", now_ms()]
    if payload is not None:
        fields += ["pl", orjson.dumps(payload)]
    seq = gw.scripts.accept(
        keys=[gw.keys.command(partition, command_id), gw.keys.stream(partition)],
        args=[command_id, *fields],
    )
    return Accepted(command_id=command_id, entity_id=entity_id, seq=seq)


def _iso(ms: str | None) -> str | None:
    if not ms:
        return None
    return datetime.fromtimestamp(int(ms) / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def status_of(gw: Gateway, user: str, command_id: str) -> dict[str, Any] | None:
    """The command's status as the API shows it; None when unknown or not this user's."""
    partition = partition_of_command(command_id, gw.settings.partitions)
    if partition is None:
        return None
    record = gw.redis.hgetall(gw.keys.command(partition, command_id))
    if not record or record.get("uid") != user:
        return None
    status: dict[str, Any] = {
        "command_id": command_id,
        "status": record["st"],
        "op": record["op"],
        "collection": record["col"],
        "entity_id": record["eid"],
        "attempts": int(record.get("att", 0)),
        "accepted_at": _iso(record.get("acc")),
        "finished_at": _iso(record.get("fin")),
        "error": record.get("err") or None,
    }
    if record.get("nxt") and record["st"] == "pending":
        status["next_attempt_at"] = _iso(record["nxt"])
    return status
