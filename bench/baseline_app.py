"""The WSGI app `bench/accept.py` serves: the product itself plus two baseline routes, so that
all three run in the same gunicorn processes with the same configuration.

- `GET /bench/hello`: Flask's hello world, the ceiling of the web stack;
- `POST /bench/insert`: the synchronous way, INSERT + COMMIT of the body before answering.
"""

from __future__ import annotations

import os
import uuid

import orjson
import sqlalchemy as sa
from flask import Response, request

from app import create_app

if os.environ.get("BENCH_METRICS") == "off":
    # bench/accept.py --metrics-cost: the accept path without its metrics (accept.lua's counter,
    # skipped for an empty field, and the latency the process times), to measure their cost.
    from gateway import stats
    from gateway.process_report import ProcessReport

    stats.accepted_field = lambda collection, op: ""
    ProcessReport.observe_accept = lambda self, seconds: None  # type: ignore[method-assign]

app = create_app()
_engine = sa.create_engine(os.environ["BENCH_INSERT_URL"], pool_size=16)
_table = os.environ["BENCH_INSERT_TABLE"]
_insert = sa.text(f"INSERT INTO {_table} (id, doc) VALUES (:id, CAST(:doc AS jsonb))")


@app.get("/bench/hello")
def hello() -> str:
    return "Hello, World!"


@app.post("/bench/insert")
def insert() -> Response:
    document = orjson.loads(request.get_data())
    with _engine.begin() as conn:
        conn.execute(_insert, {"id": str(uuid.uuid4()), "doc": orjson.dumps(document).decode()})
    return Response(b'{"status":"committed"}', status=201, mimetype="application/json")
