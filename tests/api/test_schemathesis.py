"""schemathesis over the whole OpenAPI description, against the live app (WSGI, in process).

Every operation of /openapi.json is called with generated requests, valid and invalid, with and
without a token; every answer must be no 5xx and match the description: status, media type,
headers and body schema, plus schemathesis's other default checks (valid data is accepted,
invalid data refused, missing auth refused, undeclared methods answered 405).

Two operations are left out, since a plain request/response tester cannot hold them: the SSE
stream (`GET /api/events`, which never ends by itself) and the WebSocket upgrade (`GET /ws`);
tests/notify/ cover them. Rate limits are off here (tests/api/test_rate_limits.py has
them), or the run would mostly meet 429s.

A few rules of the API cannot be written in JSON Schema, and generated requests are kept within
them instead (see `within_the_rules`): an entity id is printable (the description can only refuse
control characters), a body's integers fit in 64 bits, and a list cursor is one the server gave.
"""

from __future__ import annotations

import os
import re
import secrets
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import redis
import schemathesis
from schemathesis.config import SchemathesisConfig

from app import create_app
from gateway.api.models import IDEMPOTENCY_KEY_PATTERN
from gateway.problems import Problem
from gateway.validation import check_entity_id
from plugins.names import RESERVED
from tests.support.api import SECRET, token

pytestmark = pytest.mark.integration

EXAMPLES_PER_OPERATION = 100
PREFIX = "t" + secrets.token_hex(4)
LEFT_OUT = ["sse.events", "ws.events"]
INT64 = range(-(2**63), 2**63)
IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)


def within_the_rules(value: Any) -> bool:
    """The generated value keeps to the rules JSON Schema cannot state (see the module doc)."""
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return value in INT64
    if isinstance(value, str):
        return value.isprintable()
    if isinstance(value, dict):
        return all(within_the_rules(v) for v in value.values())
    if isinstance(value, list):
        return all(within_the_rules(v) for v in value)
    return True


def is_entity_id(value: Any) -> bool:
    try:
        check_entity_id(value)
    except Problem:
        return False
    return True


def elsewhere(path_parameters: dict[str, Any] | None) -> bool:
    """A reserved collection name: the URL is another route's (`/api/events` is the SSE stream,
    `/api/commands/<id>` a status), so the answer is not this operation's (404 or 405 there)."""
    return (path_parameters or {}).get("collection") in RESERVED


@schemathesis.hook
def filter_path_parameters(ctx: Any, path_parameters: dict[str, Any] | None) -> bool:
    return within_the_rules(path_parameters or {}) and not elsewhere(path_parameters)


@schemathesis.hook
def filter_body(ctx: Any, body: Any) -> bool:
    return within_the_rules(body)


@schemathesis.hook
def filter_query(ctx: Any, query: dict[str, Any] | None) -> bool:
    return "cursor" not in (query or {})


def as_a_client_sends_it(case: Any) -> bool:
    """Keep `case` to the rules (False: leave it out; the filters above do not see every phase's
    cases) and make it as a client makes it where the description cannot say it: a body's `id`
    is the URL's when both are given, and an Idempotency-Key is not reused for another request
    (a reused one is refused, 422, as it must be: tests/api/test_idempotency.py)."""
    if not (within_the_rules(case.path_parameters or {}) and within_the_rules(case.body)):
        return False
    if elsewhere(case.path_parameters) or "cursor" in (case.query or {}):
        return False
    entity_id = unquote(str((case.path_parameters or {}).get("entity_id")))  # held URL-encoded
    if isinstance(case.body, dict) and is_entity_id(case.body.get("id")) and is_entity_id(entity_id):
        case.body["id"] = entity_id  # an id that breaks the rules is left as generated
    key = (case.headers or {}).get("Idempotency-Key")
    if isinstance(key, str) and IDEMPOTENCY_KEY.fullmatch(key):
        case.headers["Idempotency-Key"] = f"{key[:200]}-{uuid.uuid4().hex}"
    return True


def config() -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "seed": 20261127,
            "auth": {"openapi": {"bearer": {"bearer": token("schemathesis")}}},
            "generation": {
                "max-examples": EXAMPLES_PER_OPERATION,
                "codec": "ascii",  # see `within_the_rules`: printable ids, in ASCII at least
                "allow-x00": False,
                "database": "none",
            },
            "operations": [
                *({"include-operation-id": name, "enabled": False} for name in LEFT_OUT),
                # Describing the extra members a device registration takes (scalars) makes a
                # sound positive check; the route takes one level of nesting too, which the
                # negative check would count against it.
                {
                    "include-operation-id": "devices.register",
                    "checks": {"negative_data_rejection": {"enabled": False}},
                },
            ],
        }
    )


def live_app() -> Any:
    """The app under test, with its own Redis key prefix (emptied by `clean_redis`) and SQLite file.

    schemathesis's pytest integration reads the description when this module is imported, so the
    app is built here rather than by a fixture; building it opens no connection.
    """
    folder = Path(tempfile.mkdtemp(prefix="schemathesis-"))
    return create_app(
        {
            "redis_url": os.environ.get("REDIS_TEST_URL", "redis://127.0.0.1:6379/15"),
            "key_prefix": PREFIX,
            "database_url": f"sqlite:///{folder / 'store.db'}",
            "partitions": 4,
            "jwt_secret": SECRET,
            "rate_limit_writes": "",
            "rate_limit_reads": "",
        }
    )


APP = live_app()
schema = schemathesis.openapi.from_wsgi("/openapi.json", APP, config=config())


@pytest.fixture(scope="module", autouse=True)
def clean_redis(redis_url: str) -> Iterator[None]:
    """Needs the real Redis (skips or, under CI=true, fails without it); empties the prefix after."""
    yield
    client = redis.Redis.from_url(redis_url)
    for pattern in (f"{{{PREFIX}:*", f"{PREFIX}:*"):
        keys = list(client.scan_iter(match=pattern, count=1000))
        if keys:
            client.delete(*keys)
    client.close()


@schema.parametrize()
def test_every_operation_keeps_to_its_description(case: Any) -> None:
    if as_a_client_sends_it(case):
        case.call_and_validate()
