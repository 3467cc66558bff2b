"""What the web side's access checks cost an accepted write (`bench.accept --access-cost`).

In one process, through the WSGI app (Flask's test client, no gunicorn), writes to a collection
declared `owner` are timed in rounds, alternately with the route's write check (the collection's
policy for the caller, then the `authorize` hook) as it is and replaced by one that allows
everything. The CPU of this process (`time.process_time`) per write of each, summed over the
rounds, and their ratio are printed. The policy's other half, the owner check where the write
is applied, is measured by `bench.apply --access-cost`.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from app import create_app
from bench.common import clean, fresh_prefix, verdict
from gateway.api import commands

MODES = ("checked", "unchecked")


def access_cost(args: argparse.Namespace) -> None:
    prefix = fresh_prefix()
    app = create_app(
        {
            "app_env": "development",
            "redis_url": args.redis_url,
            "database_url": args.database_url,
            "key_prefix": prefix,
            "collections": "notes:owner",
            "max_pending_per_user": 10**9,  # no worker drains: the quotas must not refuse
            "max_backlog": 10**9,
            "rate_limit_writes": "1000000000/minute",
        }
    )
    client = app.test_client()
    checked = commands._check_write
    writes = args.writes
    spent = dict.fromkeys(MODES, 0.0)

    def run(mode: str) -> float:
        commands._check_write = checked if mode == "checked" else _allow  # type: ignore[assignment]
        start = time.process_time()
        for i in range(writes):
            answer = client.put(f"/api/notes/n{i}", json={"text": "hello world", "n": i})
            assert answer.status_code == 202, answer.get_data(as_text=True)
        return time.process_time() - start

    try:
        run("checked")  # warm up: imports, scripts, connections
        for n in range(args.rounds):
            for mode in MODES if n % 2 == 0 else MODES[::-1]:
                spent[mode] += run(mode)
    finally:
        commands._check_write = checked  # type: ignore[assignment]
        clean(app.extensions["gateway"])
    total = writes * args.rounds
    print(f"\naccess cost on the web side: {args.rounds} rounds of {writes} writes per mode, alternating")
    for mode in MODES:
        print(f"  {mode:10} {spent[mode] / total * 1e6:8.1f} us of CPU per write (this process)")
    ratio = spent["checked"] / spent["unchecked"]
    print(verdict("checked / unchecked, CPU per write", ratio, 1.05, at_most=True, unit="x"))


def _allow(*args: Any) -> None:
    """A write check that allows everything."""
