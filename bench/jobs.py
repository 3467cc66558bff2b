"""Baseline job for `bench/apply.py`: one RQ job per command, inserting one row."""

from __future__ import annotations

import os

import sqlalchemy as sa

_engine: sa.Engine | None = None


def insert_one(table: str, entity_id: str, document: str) -> None:
    global _engine
    if _engine is None:
        _engine = sa.create_engine(os.environ["BENCH_DATABASE_URL"])
    with _engine.begin() as conn:
        conn.execute(
            sa.text(f"INSERT INTO {table} (id, doc) VALUES (:id, CAST(:doc AS jsonb))"),
            {"id": entity_id, "doc": document},
        )
