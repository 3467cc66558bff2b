"""What the accept step's quota checks cost: accept.lua with MAX_PENDING_PER_USER and MAX_BACKLOG
on, and with both off (0), in alternating rounds of the same run.

Each round accepts `--commands` small creates of `--users` users through the product's accept
call (prepare + accept.lua, pipelined by 100 as busy web processes send them), on distinct
entities, nobody draining them. Printed per accept: Redis's CPU inside the script (INFO
commandstats, `usec_per_call` of EVALSHA over the round) and this process's CPU (building and
sending the call). The figure inside Redis is only clean on a Redis nobody else uses meanwhile:

    redis-server --port 6390 --save '' --appendonly no &
    .venv/bin/python -m bench.quotas --redis-url redis://127.0.0.1:6390/0
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from bench.common import DEFAULT_DATABASE, DEFAULT_REDIS, clean, fresh_prefix, gateway_for
from gateway.accept import prepare
from gateway.context import Gateway


def evalsha_stats(gw: Gateway) -> tuple[int, int]:
    """EVALSHA calls and the microseconds Redis spent in them so far."""
    stats: dict[str, Any] = gw.redis.info("commandstats").get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0)), int(stats.get("usec", 0))


def round_of(gw: Gateway, commands: int, users: int, start: int) -> tuple[float, float]:
    """Accept `commands` creates; Redis µs per EVALSHA and this process's µs per accept."""
    calls, usec = evalsha_stats(gw)
    cpu = time.process_time()
    pipe = gw.redis.pipeline(transaction=False)
    for i in range(start, start + commands):
        call = prepare(gw, f"user-{i % users}", "create", "notes", f"e{i}", {"text": "hello", "n": i})
        gw.scripts.run(call.script, client=pipe)
        if i % 100 == 99:
            assert all(reply[0] == "accepted" for reply in pipe.execute())
    pipe.execute()
    spent = time.process_time() - cpu
    calls_after, usec_after = evalsha_stats(gw)
    return (usec_after - usec) / max(1, calls_after - calls), spent * 1e6 / commands


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--commands", type=int, default=20_000, help="accepts per round")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each, alternating")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS)
    args = parser.parse_args()
    on = gateway_for(fresh_prefix(), args.redis_url, DEFAULT_DATABASE, app_env="development")
    # Off: both quotas 0, which accept.lua skips (the settings refuse 0; the bench sets it after).
    off = gateway_for(fresh_prefix(), args.redis_url, DEFAULT_DATABASE, app_env="development")
    off.settings = off.settings.model_copy(update={"max_pending_per_user": 0, "max_backlog": 0})
    results: dict[str, list[tuple[float, float]]] = {"on": [], "off": []}
    try:
        for n in range(args.rounds):
            for name, gw in (("off", off), ("on", on)):
                results[name].append(round_of(gw, args.commands, args.users, n * args.commands))
    finally:
        for gw in (on, off):
            clean(gw)
            gw.close()
    print(
        f"\naccept.lua, {args.commands:,} accepts a round over {args.users} users, "
        f"{args.rounds} rounds of each, alternating"
    )
    print(f"  {'quotas':8} {'Redis µs/accept':>16} {'client µs/accept':>17}")
    for name in ("off", "on"):
        redis_us = sorted(r for r, _ in results[name])
        client_us = sorted(c for _, c in results[name])
        rounds = " / ".join(f"{r:.1f}" for r in redis_us)
        print(f"  {name:8} {rounds:>16} {client_us[len(client_us) // 2]:>17.1f}")
    median = {name: sorted(r for r, _ in rs)[len(rs) // 2] for name, rs in results.items()}
    print(f"  quotas on / off inside Redis: {median['on'] / median['off']:.2f}x (medians)")


if __name__ == "__main__":
    main()
