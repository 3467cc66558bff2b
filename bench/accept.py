"""Accept throughput and latency: the product's write route beside two baselines.

Starts gunicorn with the project's gunicorn.conf.py on `bench/baseline_app.py` (the product plus
a hello-world route and a synchronous INSERT+COMMIT route), loads each route with wrk, and prints
req/s, p50 and p99, and the ratios to hello world. The write route is measured three times: with
a worker applying to PostgreSQL, with the store slowed to 50 ms a write, and with the store
stopped; a frontend must not see the difference. Authentication is on (JWT_SECRET set) and every
request carries the same bearer token, as a logged-in frontend's would.

A second table charges the CPU the machine spent to each process group, per request: what a
write costs beyond hello world, and how much of it the worker and the store take from the same
cores while they apply the writes.

With `--metrics-cost`, it measures instead what the metrics cost the accept path: two gunicorns
(one process each) on a private Redis, one with the metrics as in production, one without them
(`BENCH_METRICS=off`, see bench/baseline_app.py), loaded in turn, in alternating rounds, with no
worker running; it prints the CPU per accepted write (the web process and Redis) of each and
their ratio.

Needs wrk (`apt-get install wrk`).

    .venv/bin/python -m bench.accept --seconds 8
    .venv/bin/python -m bench.accept --metrics-cost --rounds 6 --seconds 5
    .venv/bin/python -m bench.accept --access-cost --rounds 6   # bench/access.py; no wrk needed
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

import jwt
import sqlalchemy as sa

from bench.access import access_cost
from bench.common import (
    DEFAULT_DATABASE,
    DEFAULT_REDIS,
    clean,
    cpu_snapshot,
    cpu_used,
    fresh_prefix,
    gateway_for,
    gunicorn,
    gunicorn_process,
    redis_server,
    tree_cpu,
    verdict,
    worker_processes,
)

FAULTY = "tests.plugins.faulty_store"  # the `slow` store: sleeps inside each write transaction
BODY = '{"text":"hello world","n":1,"tags":["a","b"]}'


def wrk(url: str, seconds: int, connections: int, post: bool, token: str = "") -> dict[str, float]:
    """req/s, p50 and p99 (ms) of one wrk run, and the CPU seconds each process group used
    (`cpu`, wrk's own under "wrk")."""
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        if post:
            script.write(f"wrk.method = \"POST\"\nwrk.body = '{BODY}'\n")
            script.write('wrk.headers["Content-Type"] = "application/json"\n')
        if token:
            script.write(f'wrk.headers["Authorization"] = "Bearer {token}"\n')
    command += ["-s", script.name, url]
    before, children = cpu_snapshot(), resource.getrusage(resource.RUSAGE_CHILDREN)
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    cpu = cpu_used(before, cpu_snapshot())
    done = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu["wrk"] = done.ru_utime + done.ru_stime - children.ru_utime - children.ru_stime
    os.unlink(script.name)
    if "Non-2xx" in output:
        raise RuntimeError(f"errors during the run:\n{output}")
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    return {
        "requests": requests,
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),  # type: ignore[union-attr]
        "p50": _ms(re.search(r"50%\s+([\d.]+\w+)", output).group(1)),  # type: ignore[union-attr]
        "p99": _ms(re.search(r"99%\s+([\d.]+\w+)", output).group(1)),  # type: ignore[union-attr]
        "cpu": {group: seconds / requests * 1e6 for group, seconds in cpu.items()},  # type: ignore[dict-item]
    }


def _ms(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(\w+)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE)
    parser.add_argument("--metrics-cost", action="store_true", help="metrics on against off (see above)")
    parser.add_argument(
        "--access-cost", action="store_true", help="write checks on against off (bench/access.py)"
    )
    parser.add_argument(
        "--rounds", type=int, default=6, help="with --metrics-cost, --access-cost: rounds of each"
    )
    parser.add_argument("--writes", type=int, default=2000, help="with --access-cost: writes per round")
    args = parser.parse_args()
    if args.access_cost:
        access_cost(args)
        return
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")
    if args.metrics_cost:
        metrics_cost(args)
        return

    prefix = fresh_prefix()
    table = f"{prefix}_sync"
    url = args.database_url.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {table} (id varchar(200) PRIMARY KEY, doc jsonb NOT NULL)"))
    secret = secrets.token_urlsafe(32)
    token = jwt.encode({"sub": "bench-user"}, secret, algorithm="HS256")
    env = {
        "JWT_SECRET": secret,
        "RATE_LIMIT_WRITES": "100000000/minute",  # counted as in production, never reached
        "MAX_PENDING_PER_USER": "1000000000",  # checked as in production, never reached: one
        "MAX_BACKLOG": "1000000000",  # user's writes pile up while the store is slowed or stopped
        "KEY_PREFIX": prefix,
        "REDIS_URL": args.redis_url,
        "DATABASE_URL": args.database_url,
        "BENCH_INSERT_URL": url,
        "BENCH_INSERT_TABLE": table,
    }
    gw = gateway_for(prefix, args.redis_url, args.database_url)
    results: dict[str, dict[str, Any]] = {}
    run = lambda base, path, post: wrk(base + path, args.seconds, args.connections, post, token)  # noqa: E731
    try:
        with gunicorn("bench.baseline_app:app", env, ready_path="/bench/hello") as base:
            results["hello world (GET)"] = run(base, "/bench/hello", False)
            results["INSERT+COMMIT route (POST)"] = run(base, "/bench/insert", True)
            stores = {
                "store up": {},
                "store slowed to 50 ms a write": {
                    "PLUGINS": FAULTY,
                    "DEFAULT_STORE": "slow",
                    "SLOW_BEFORE_COMMIT": "0.05",
                },
                "store stopped": {"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none"},
            }
            for label, store_env in stores.items():
                with worker_processes(1, {**env, **store_env}):
                    time.sleep(2)
                    results[f"product write route, {label} (POST)"] = run(base, "/api/notes", True)
                clean(gw)
    finally:
        clean(gw)
        gw.close()
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
            conn.execute(sa.text("DROP TABLE IF EXISTS notes"))
        engine.dispose()

    hello = results["hello world (GET)"]
    print(f"\naccept: wrk -t2 -c{args.connections} -d{args.seconds}s, gunicorn.conf.py, one machine")
    print(f"{'route':55} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'x hello req/s':>14} {'x hello p99':>12}")
    for name, r in results.items():
        print(
            f"{name:55} {r['rps']:8.0f} {r['p50']:7.2f} {r['p99']:7.2f} "
            f"{r['rps'] / hello['rps']:14.2f} {r['p99'] / hello['p99']:12.2f}"
        )
    groups = list(hello["cpu"])
    print("\nCPU per request (us), by process group")
    print(f"{'route':55} " + " ".join(f"{g.split()[0]:>8}" for g in groups) + f" {'total':>8}")
    for name, r in results.items():
        cpu = r["cpu"]
        print(f"{name:55} " + " ".join(f"{cpu[g]:8.0f}" for g in groups) + f" {sum(cpu.values()):8.0f}")
    web = "web (gunicorn)"
    print("\nweb CPU per accepted write / per GET of hello world, in the same gunicorn:")
    for label in ("store up", "store stopped"):
        write = results[f"product write route, {label} (POST)"]["cpu"][web]
        print(
            verdict(
                f"{label:13} ({write:.0f} / {hello['cpu'][web]:.0f} us)",
                write / hello["cpu"][web],
                1.3,
                at_most=True,
                unit="x",
            )
        )


MODES = ("on", "off")


def metrics_cost(args: argparse.Namespace) -> None:
    """CPU per accepted write with the metrics on and off, measured in alternating rounds."""
    secret = secrets.token_urlsafe(32)
    token = jwt.encode({"sub": "bench-user"}, secret, algorithm="HS256")
    used = {mode: {"requests": 0.0, "web": 0.0, "redis": 0.0} for mode in MODES}
    rounds: list[float] = []
    with redis_server() as (redis_url, redis_pid):
        env = {
            "JWT_SECRET": secret,
            "RATE_LIMIT_WRITES": "100000000/minute",  # counted as in production, never reached
            "MAX_PENDING_PER_USER": "1000000000",  # no worker drains: the quotas must not refuse
            "MAX_BACKLOG": "1000000000",
            "REDIS_URL": redis_url,
            "DATABASE_URL": args.database_url,
            "WEB_CONCURRENCY": "1",
            "BENCH_INSERT_URL": args.database_url.replace("postgresql://", "postgresql+psycopg://", 1),
            "BENCH_INSERT_TABLE": "unused",
        }
        app = "bench.baseline_app:app"
        with (
            gunicorn_process(app, env, ready_path="/bench/hello") as on,
            gunicorn_process(app, {**env, "BENCH_METRICS": "off"}, ready_path="/bench/hello") as off,
        ):
            servers = {"on": on, "off": off}
            for base, _ in servers.values():  # warm up: connections, first imports, the scripts
                wrk(base + "/api/notes", 2, args.connections, True, token)
            for n in range(args.rounds):
                this_round = {}
                for mode in MODES if n % 2 == 0 else MODES[::-1]:
                    base, pid = servers[mode]
                    web, redis = tree_cpu(pid), tree_cpu(redis_pid)
                    requests = wrk(base + "/api/notes", args.seconds, args.connections, True, token)[
                        "requests"
                    ]
                    spent = {"web": tree_cpu(pid) - web, "redis": tree_cpu(redis_pid) - redis}
                    used[mode]["requests"] += requests
                    used[mode]["web"] += spent["web"]
                    used[mode]["redis"] += spent["redis"]
                    this_round[mode] = (spent["web"] + spent["redis"]) / requests
                rounds.append(this_round["on"] / this_round["off"])
    load = f"wrk -t2 -c{args.connections} -d{args.seconds}s"
    print(f"\nmetrics cost: {args.rounds} rounds of {load} per mode, alternating")
    print(f"{'metrics':8} {'writes':>9} {'web us/write':>13} {'redis us/write':>15} {'total':>8}")
    per_write = {}
    for mode in MODES:
        n = int(used[mode]["requests"])
        web, in_redis = used[mode]["web"] / n * 1e6, used[mode]["redis"] / n * 1e6
        per_write[mode] = web + in_redis
        print(f"{mode:8} {n:9d} {web:13.1f} {in_redis:15.1f} {web + in_redis:8.1f}")
    ratio = per_write["on"] / per_write["off"]
    print(f"on / off, CPU per write: {ratio:.3f} ({(ratio - 1) * 100:+.1f} %)")
    print("by round: " + " ".join(f"{r:.3f}" for r in rounds))


if __name__ == "__main__":
    main()
