"""Test plugin: SQL stores that misbehave on purpose, for the pipeline's fault tests.

- `flaky`: a batch fails, before anything is written, with probability FLAKY_RATE.
- `poisonable`: a command whose document holds `"poison": true` always fails.
- `slow`: sleeps SLOW_BEFORE_COMMIT seconds inside its transaction, after writing, and
  SLOW_AFTER_COMMIT seconds after the commit, so that a worker can be killed with a transaction
  open, or between the commit and the acknowledgement.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from plugins.hookspecs import hookimpl
from plugins.sql_store import SqlStore
from plugins.store import Command, Outcome
from settings import Settings


class FlakyStore(SqlStore):
    name = "flaky"

    def apply(self, commands: Sequence[Command]) -> list[Outcome]:
        if random.random() < float(os.environ.get("FLAKY_RATE", "0.3")):
            raise RuntimeError("flaky store: injected failure")
        return super().apply(commands)


class PoisonableStore(SqlStore):
    name = "poisonable"

    def apply(self, commands: Sequence[Command]) -> list[Outcome]:
        if any((c.payload or {}).get("poison") for c in commands):
            raise RuntimeError("poisonable store: refuses poison")
        return super().apply(commands)


class SlowStore(SqlStore):
    name = "slow"

    def _apply_collection(self, conn: Connection, table: sa.Table, batch: list[Command]) -> list[Outcome]:
        outcomes = super()._apply_collection(conn, table, batch)
        time.sleep(float(os.environ.get("SLOW_BEFORE_COMMIT", "0")))
        return outcomes

    def apply(self, commands: Sequence[Command]) -> list[Outcome]:
        outcomes = super().apply(commands)
        time.sleep(float(os.environ.get("SLOW_AFTER_COMMIT", "0")))
        return outcomes


@hookimpl
def register_stores(settings: Settings) -> list[SqlStore]:
    return [cls(settings.database_url) for cls in (FlakyStore, PoisonableStore, SlowStore)]
