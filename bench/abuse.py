"""Soak: one abusive user at full rate beside a well-behaved one, through the real processes.

Starts gunicorn (gunicorn.conf.py) and worker processes with the default quotas and bounds and a
JWT secret. For `--seconds`, the abuser sends, from `--abusers` connections as fast as they are
answered, creates of an entity that exists (each fails and is dead-lettered) with a payload of
`--payload-kb` KiB, and registers devices; the well-behaved user sends `--rate` small creates a
second (open loop). Every second it samples the memory of the run's Redis keys (MEMORY USAGE of
each key under its prefix, so that other users of the same Redis do not count). At the end it
prints the answers each user got, the peak memory against CEILING_MB, and the well-behaved
user's accept -> applied latency (p50/p99/max from the status records) against 250 ms.

    .venv/bin/python -m bench.abuse --seconds 60 --redis-url redis://127.0.0.1:6379/8
"""

from __future__ import annotations

import argparse
import collections
import http.client
import itertools
import os
import threading
import time
from pathlib import Path
from typing import Any

import jwt
import orjson

from bench.common import (
    DEFAULT_DATABASE,
    DEFAULT_REDIS,
    clean,
    fresh_prefix,
    gateway_for,
    gunicorn,
    wait_drained,
    wait_workers_ready,
    worker_processes,
)
from bench.e2e import percentile
from gateway import record
from gateway.context import Gateway
from gateway.ids import partition_of, partition_of_command

SECRET = "abuse-bench-secret-of-32-bytes-long!"
# What the run's keys may hold at most: the abuser's status records (STATUS_RECORDS_PER_USER
# 10,000 x ~0.3 KB), events (1,000), dead letters (MAX_DEAD_LETTERS 10,000, their payloads kept
# as digests), the outbox's share (OUTBOX_LENGTH 100,000 x ~0.3 KB) and the payloads in flight.
CEILING_MB = 64
TARGET_P99_MS = 250


def bearer(user: str) -> dict[str, str]:
    claims = {"sub": user, "exp": int(time.time()) + 3600}
    return {"Authorization": f"Bearer {jwt.encode(claims, SECRET, algorithm='HS256')}"}


def post(
    conn: http.client.HTTPConnection, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, Any]:
    conn.request("POST", path, body, {**headers, "Content-Type": "application/json"})
    response = conn.getresponse()
    return response.status, orjson.loads(response.read() or b"null")


def abuse(port: int, until: float, payload_kb: int, answers: collections.Counter[int]) -> None:
    """Failing creates (and a device registration every tenth call) as fast as answered."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    headers = bearer("mallory")
    body = orjson.dumps({"id": "taken", "blob": "x" * payload_kb * 1024})
    for i in itertools.count():
        if time.monotonic() > until:
            break
        if i % 10 == 9:
            status, _ = post(conn, "/api/devices", orjson.dumps({"token": f"device-{i}"}), headers)
        else:
            status, _ = post(conn, "/api/abuse", body, headers)
        answers[status] += 1
    conn.close()


def behave(port: int, until: float, rate: float, ids: list[str], answers: collections.Counter[int]) -> None:
    """Small creates at `rate` a second, each on its own entity."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    headers = bearer("alice")
    start = time.monotonic()
    for i in itertools.count():
        due = start + i / rate
        if due > until:
            break
        time.sleep(max(0.0, due - time.monotonic()))
        status, answer = post(conn, "/api/notes", orjson.dumps({"n": i, "text": "hello"}), headers)
        answers[status] += 1
        if status == 202:
            ids.append(answer["command_id"])
    conn.close()


def keys_memory(gw: Gateway) -> int:
    """Bytes held by the run's keys (MEMORY USAGE of each, pipelined)."""
    keys = [
        k
        for pattern in (f"{{{gw.keys.prefix}:*", f"{gw.keys.prefix}:*")
        for k in gw.redis.scan_iter(match=pattern, count=5000)
    ]
    pipe = gw.redis.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key)
    return sum(size or 0 for size in pipe.execute())


def own_cpu(prefix: str) -> dict[str, float]:
    """CPU seconds used so far by this run's web and worker processes (found by their
    KEY_PREFIX, so that other processes on the machine do not count)."""
    ticks = os.sysconf("SC_CLK_TCK")
    used = {"web": 0.0, "workers": 0.0}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if f"KEY_PREFIX={prefix}".encode() not in Path(f"/proc/{pid}/environ").read_bytes():
                continue
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        group = "web" if b"gunicorn" in cmd else "workers" if b"workers" in cmd else ""
        if group:
            used[group] += (int(fields[11]) + int(fields[12])) / ticks
    return used


def machine_busy() -> tuple[int, int]:
    """The machine's busy and total CPU time so far (/proc/stat, in ticks)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return sum(values) - idle, sum(values)


def latencies(gw: Gateway, ids: list[str]) -> list[tuple[int, float]]:
    """Each applied command's partition and accept -> applied time (ms)."""
    pipe = gw.redis.pipeline(transaction=False)
    partitions = []
    for command_id in ids:
        partition = partition_of_command(command_id, gw.settings.partitions)
        assert partition is not None  # an id the gateway made
        partitions.append(partition)
        pipe.hmget(
            gw.keys.command(partition, command_id), [record.STATUS, record.ACCEPTED_AT, record.FINISHED_AT]
        )
    return [
        (partition, float(int(fin) - int(acc)))
        for partition, (st, acc, fin) in zip(partitions, pipe.execute(), strict=True)
        if st == record.APPLIED
    ]


def spread(times: list[float]) -> str:
    if not times:
        return "none"
    p50, p99 = percentile(times, 50), percentile(times, 99)
    return f"p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {max(times):.0f} ms ({len(times)})"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--abusers", type=int, default=4, help="the abuser's concurrent connections")
    parser.add_argument("--payload-kb", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20, help="the well-behaved user's creates a second")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE)
    args = parser.parse_args()
    prefix = fresh_prefix()
    env = {"KEY_PREFIX": prefix, "REDIS_URL": args.redis_url, "DATABASE_URL": args.database_url}
    env |= {"JWT_SECRET": SECRET, "APP_ENV": "production", "COLLECTIONS": "notes,abuse"}
    gw = gateway_for(prefix, args.redis_url, args.database_url, jwt_secret=SECRET)
    gw.ensure_groups()
    gw.stores.default.apply([])
    abused: collections.Counter[int] = collections.Counter()
    behaved: collections.Counter[int] = collections.Counter()
    ids: list[str] = []
    peak = 0
    try:
        with gunicorn("wsgi:app", env) as base, worker_processes(args.workers, env):
            wait_workers_ready(gw, args.workers)
            port = int(base.rsplit(":", 1)[1])
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            post(
                conn, "/api/abuse", orjson.dumps({"id": "taken"}), bearer("mallory")
            )  # the entity that exists
            until = time.monotonic() + args.seconds
            threads = [
                threading.Thread(target=abuse, args=(port, until, args.payload_kb, abused))
                for _ in range(args.abusers)
            ]
            threads.append(threading.Thread(target=behave, args=(port, until, args.rate, ids, behaved)))
            cpu_before, busy_before = own_cpu(prefix), machine_busy()
            for thread in threads:
                thread.start()
            while any(thread.is_alive() for thread in threads):
                peak = max(peak, keys_memory(gw))
                time.sleep(1)
            cpu_after, busy_after = own_cpu(prefix), machine_busy()
            wait_drained(gw, timeout=120)
            peak = max(peak, keys_memory(gw))
            timed = latencies(gw, ids)
            abused_partition = partition_of("abuse", "taken", gw.settings.partitions)
            dead = sum(gw.redis.xlen(gw.keys.dead(p)) for p in range(gw.settings.partitions))
    finally:
        clean(gw)
        gw.close()
    print(
        f"\nabuse soak: {args.seconds:.0f} s, {args.abusers} abusive connections "
        f"({args.payload_kb} KiB failing creates), {args.rate:.0f}/s well-behaved creates, "
        f"{args.workers} workers"
    )
    print(f"  abuser's answers: {dict(sorted(abused.items()))}")
    times = [ms for _, ms in timed]
    print(f"  well-behaved answers: {dict(sorted(behaved.items()))}, {len(times)} of {len(ids)} applied")
    print(f"  dead letters kept: {dead}")
    print(f"  peak memory of the run's keys: {peak / 2**20:.1f} MB (ceiling {CEILING_MB} MB)")
    print(
        f"  well-behaved accept -> applied: p50 {percentile(times, 50):.0f} ms, "
        f"p99 {percentile(times, 99):.0f} ms, max {max(times):.0f} ms (target p99 < {TARGET_P99_MS} ms)"
    )
    print(f"    in the abuser's partition: {spread([ms for p, ms in timed if p == abused_partition])}")
    print(f"    in the other partitions: {spread([ms for p, ms in timed if p != abused_partition])}")
    cores = os.cpu_count() or 1
    busy = (busy_after[0] - busy_before[0]) / max(1, busy_after[1] - busy_before[1])
    web, workers = (cpu_after[g] - cpu_before[g] for g in ("web", "workers"))
    print(
        f"  CPU while sending: this run's web {web:.1f} s, workers {workers:.1f} s; "
        f"the machine (all its users) busy {busy:.0%} of {cores} cores"
    )


if __name__ == "__main__":
    main()
