"""Redis memory per pending command, with a backlog of N small commands and no worker.

Accepts N creates through the product's accept script (pipelined), reads Redis's `used_memory`
before and after, and prints the bytes per pending command, beside the payload's own size.

    .venv/bin/python -m bench.memory --commands 1000000
"""

from __future__ import annotations

import argparse
import time

from bench.common import DEFAULT_DATABASE, DEFAULT_REDIS, clean, fill, fresh_prefix, gateway_for, payload


def used_memory(gw) -> int:  # type: ignore[no-untyped-def]
    return int(gw.redis.info("memory")["used_memory"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--commands", type=int, default=1_000_000)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS)
    args = parser.parse_args()
    prefix = "m" + fresh_prefix()[-2:]  # as long as the default prefix, "gw", give or take
    gw = gateway_for(prefix, args.redis_url, DEFAULT_DATABASE)
    gw.ensure_groups()
    try:
        before = used_memory(gw)
        started = time.perf_counter()
        fill(gw, f"{prefix}_docs", args.commands)
        elapsed = time.perf_counter() - started
        after = used_memory(gw)
    finally:
        clean(gw)
        gw.close()
    per_command = (after - before) / args.commands
    body = len(payload(0))
    print(f"\nRedis memory with a backlog of {args.commands} pending commands (filled in {elapsed:.0f} s)")
    print(f"  used_memory grew by {after - before:,} bytes")
    print(f"  per pending command: {per_command:.0f} bytes, of which payload {body} bytes")
    print(f"  beyond the payload:  {per_command - body:.0f} bytes (target: at most 300)")


if __name__ == "__main__":
    main()
