"""End to end: accept-to-applied latency at a steady rate of commands, through the real processes.

Starts gunicorn (gunicorn.conf.py) and worker processes on PostgreSQL, sends creates over HTTP at
a steady rate (open loop: each request leaves at its scheduled time, whatever the answers), then
reads each command's acceptance and finish times from its status record and prints p50/p99/max,
and the CPU each process group (web, workers, Redis, PostgreSQL) spent per command.

    .venv/bin/python -m bench.e2e --rate 500 --seconds 20
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import statistics
import threading
import time

import orjson

from bench.common import (
    DEFAULT_DATABASE,
    DEFAULT_REDIS,
    clean,
    cluster_settings,
    cpu_snapshot,
    cpu_used,
    fresh_prefix,
    gateway_for,
    gunicorn,
    verdict,
    wait_drained,
    wait_workers_ready,
    worker_processes,
)
from gateway import record
from gateway.ids import partition_of_command
from gateway.redis_client import RoundTrip


def send_steadily(port: int, rate: float, seconds: float, senders: int = 16) -> tuple[list[str], int]:
    """POST creates at `rate` per second for `seconds`; returns the command ids and late sends."""
    total = int(rate * seconds)
    counter = itertools.count()
    ids: list[str] = []
    late = [0]
    lock = threading.Lock()
    start = time.perf_counter() + 0.2

    def sender() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while (i := next(counter)) < total:
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            elif delay < -0.01:
                with lock:
                    late[0] += 1
            body = orjson.dumps({"n": i, "text": "hello world"})
            conn.request("POST", "/api/e2e", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            answer = orjson.loads(response.read())
            if response.status != 202:
                raise RuntimeError(f"{response.status}: {answer}")
            with lock:
                ids.append(answer["command_id"])
        conn.close()

    errors: list[BaseException] = []

    def guarded() -> None:
        try:
            sender()
        except BaseException as error:  # noqa: BLE001 - reported below, the run is void
            errors.append(error)

    threads = [threading.Thread(target=guarded) for _ in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"{len(errors)} senders failed, first: {errors[0]!r}")
    return ids, late[0]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE)
    parser.add_argument(
        "--queue-redis-url", help="with it, --redis-url names a Redis Cluster node and RQ runs on this one"
    )
    args = parser.parse_args()
    prefix = fresh_prefix()
    env = {"KEY_PREFIX": prefix, "REDIS_URL": args.redis_url, "DATABASE_URL": args.database_url}
    env["RATE_LIMIT_WRITES"] = "100000000/minute"  # counted as in production, never reached
    if args.queue_redis_url:
        env |= cluster_settings(args.queue_redis_url)
    gw = gateway_for(
        prefix,
        args.redis_url,
        args.database_url,
        redis_cluster=bool(args.queue_redis_url),
        queue_redis_url=args.queue_redis_url,
    )
    gw.ensure_groups()
    gw.stores.default.apply([])
    try:
        with gunicorn("wsgi:app", env) as base, worker_processes(args.workers, env):
            wait_workers_ready(gw, args.workers)
            before = cpu_snapshot()
            ids, late = send_steadily(int(base.rsplit(":", 1)[1]), args.rate, args.seconds)
            wait_drained(gw, timeout=120)
            cpu = cpu_used(before, cpu_snapshot())
        trip = RoundTrip(gw.redis)
        for command_id in ids:
            partition = partition_of_command(command_id, gw.settings.partitions)
            key = gw.keys.command(partition, command_id)
            trip.command("HMGET", key, record.STATUS, record.ACCEPTED_AT, record.FINISHED_AT)
        records = trip.send()
    finally:
        clean(gw)
        gw.close()
    statuses = {st for st, _, _ in records}
    latencies = [int(fin) - int(acc) for _, acc, fin in records]
    print(
        f"\nend to end: {len(ids)} creates at {args.rate:.0f}/s for {args.seconds:.0f} s over HTTP, "
        f"{args.workers} worker processes, PostgreSQL ({late} sends left late)"
    )
    print(f"  statuses: {sorted(statuses)}")
    print(
        f"  accept -> applied: p50 {percentile(latencies, 50):.0f} ms, "
        f"p99 {percentile(latencies, 99):.0f} ms, max {max(latencies)} ms, "
        f"mean {statistics.mean(latencies):.1f} ms"
    )
    print(verdict("p50", percentile(latencies, 50), 10, at_most=True, unit=" ms"))
    print(verdict("p99", percentile(latencies, 99), 50, at_most=True, unit=" ms"))
    per_command = ", ".join(
        f"{group.split()[0]} {seconds / len(ids) * 1e6:.0f}" for group, seconds in cpu.items()
    )
    print(f"  CPU per command (us): {per_command}")


if __name__ == "__main__":
    main()
