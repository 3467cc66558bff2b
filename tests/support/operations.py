"""Helpers of the operators' tests: dead letters as the finish script writes them, and waiting
for the pipeline's snapshot to say something."""

from __future__ import annotations

import itertools
from typing import Any

import orjson

from gateway import pipeline_status
from gateway.context import Gateway
from tests.support.services import wait_until


class DeadLetterMaker:
    """`make(partition, collection=..., error=..., failed_ms=...)` adds one; returns its name."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.serial = itertools.count(1)

    def __call__(
        self,
        partition: int,
        *,
        collection: str = "notes",
        entity_id: str | None = None,
        error: str = "the document does not exist",
        failed_ms: int | None = None,
        user: str = "dev",
        op: str = "create",
        payload: Any = None,
        **extra: str,
    ) -> str:
        n = next(self.serial)
        entity = entity_id or f"e{n}"
        fields = {
            "c": f"{partition}-cmd{n}",
            "op": op,
            "col": collection,
            "eid": entity,
            "uid": user,
            "pl": orjson.dumps(payload if payload is not None else {"n": n}).decode()
            if op != "delete"
            else "",
            "err": error,
            "att": "3",
            "acc": str((failed_ms or 1_800_000_000_000) - 500),
            "at": str(failed_ms or 1_800_000_000_000),
            **extra,
        }
        entry_id = self.gw.redis.xadd(
            self.gw.keys.dead(partition), fields, id=f"{failed_ms}-*" if failed_ms else "*"
        )
        return f"{partition}/{entry_id}"


def wait_for_snapshot(gw: Gateway, predicate: Any, timeout: float = 30, what: str = "") -> dict[str, Any]:
    """The first snapshot `predicate` holds for."""
    last: list[dict[str, Any]] = []

    def check() -> dict[str, Any] | None:
        snap = pipeline_status.snapshot(gw)
        last[:] = [snap]
        return snap if predicate(snap) else None

    try:
        return wait_until(check, timeout, what)
    except AssertionError as error:
        raise AssertionError(f"{error}; last snapshot: {last}") from None
