"""CPU per write for the worst bodies a user can send, beside a small write, in one process.

Each body is at most MAX_BODY_BYTES (1 MiB) and is sent through the real write route (Flask's
test client, open dev mode, the real Redis, an SQLite store, a JSON Schema for one collection),
so the figure covers reading, parsing, every check and, for accepted ones, the accept step. A
write's check stalls every connection of its gevent process while it runs: the target is at
most ~50 ms of CPU for any body.

    .venv/bin/python -m bench.bodies --repeat 5
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from app import create_app
from bench.common import DEFAULT_REDIS, clean, fresh_prefix

MiB = 1024 * 1024
TARGET_MS = 50


def bodies() -> dict[str, tuple[str, bytes]]:
    """Name -> (collection, body): a small write, then the worst shapes within 1 MiB."""
    small = orjson.dumps({"text": "hello", "done": False})
    arrays = b'{"a": [' + b"[]," * 349_000 + b"[]]}"
    digits = b'{"n": [' + b"1234567890123456789," * 52_000 + b"1]}"
    members = orjson.dumps({f"k{i:05}": "v" * 90 for i in range(9_999)})
    wide = orjson.dumps({"n": list(range(9_999))})
    wrong = orjson.dumps({"n": [*range(9_998), "x"]})
    escapes = orjson.dumps({"s": '\u0001"\\' * (MiB // 20)})
    deep = orjson.dumps(_nested(31, {f"k{i:04}": [1, 2, 3] for i in range(2_400)}))
    return {
        "small write (baseline)": ("notes", small),
        "1 MiB of empty arrays (refused)": ("notes", arrays),
        "1 MiB of 19-digit integers (refused)": ("notes", digits),
        "10,000 members of 90 chars, ~1 MiB": ("notes", members),
        "10,000 integers": ("notes", wide),
        "1 MiB of escaped characters": ("notes", escapes),
        "31 levels deep, 9,600 members": ("notes", deep),
        "10,000 integers, JSON Schema": ("checked", wide),
        "10,000 integers, last wrong, JSON Schema": ("checked", wrong),
    }


def _nested(depth: int, leaf: dict[str, Any]) -> dict[str, Any]:
    body = leaf
    for _ in range(depth - 1):
        body = {"x": body}
    return body


def cpu_ms(call: Callable[[], Any], repeat: int) -> float:
    """Median CPU time of `call`, in ms."""
    times = []
    for _ in range(repeat):
        started = time.process_time()
        call()
        times.append((time.process_time() - started) * 1000)
    return sorted(times)[len(times) // 2]


def measure(client: Any, name: str, collection: str, body: bytes, repeat: int) -> tuple[str, int, int, float]:
    """The body's name, size, answer and median CPU ms through the write route."""
    status = client.post(f"/api/{collection}", data=body, content_type="application/json")
    ms = cpu_ms(lambda: client.post(f"/api/{collection}", data=body, content_type="application/json"), repeat)
    return name, len(body), status.status_code, ms


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        schemas = Path(folder) / "schemas"
        schemas.mkdir()
        schema = {"type": "object", "properties": {"n": {"type": "array", "items": {"type": "integer"}}}}
        (schemas / "checked.json").write_text(json.dumps(schema))
        app = create_app(
            {
                "app_env": "development",
                "redis_url": args.redis_url,
                "key_prefix": fresh_prefix(),
                "database_url": f"sqlite:///{folder}/bench.db",
                "schemas_dir": str(schemas),
                "collections": "notes",
                "rate_limit_writes": "",
            }
        )
        client = app.test_client()
        try:
            results = [measure(client, name, *sent, args.repeat) for name, sent in bodies().items()]
            # The same schema bodies checked by `jsonschema` alone, as before jsonschema-rs.
            app.extensions["gateway"].collections.fast.clear()
            for name, (collection, body) in bodies().items():
                if collection == "checked":
                    alone = name.replace("JSON Schema", "jsonschema alone")
                    results.append(measure(client, alone, collection, body, args.repeat))
        finally:
            clean(app.extensions["gateway"])
            app.extensions["gateway"].close()
    base = results[0][3]
    print(f"\nCPU per write through the route (median of {args.repeat}); target: at most {TARGET_MS} ms")
    print(f"  {'body':40} {'bytes':>9} {'answer':>6} {'CPU ms':>8} {'x small':>8}")
    for name, size, status, ms in results:
        print(f"  {name:40} {size:>9,} {status:>6} {ms:>8.2f} {ms / base:>8.1f}")
    worst = max(ms for _, _, _, ms in results)
    print(f"  worst: {worst:.1f} ms ({'within' if worst <= TARGET_MS else 'OVER'} the target)")


if __name__ == "__main__":
    main()
