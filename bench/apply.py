"""Apply throughput: commands/s from the streams to committed PostgreSQL rows.

Runs, in one go and on the same machine:
  1. the product with 1 and with 2 worker processes, on a backlog of N accepted commands;
  2. the ceiling: a bare loop of XREADGROUP COUNT 100 + MGET + one batched INSERT + XACK/XDEL;
  3. the naive way: one RQ job per command with RQ's default (forking) worker.
and prints each rate and its ratio to the bare loop.

    .venv/bin/python -m bench.apply --commands 50000

`--access-cost ROUNDS` measures instead what the access policy costs where writes are applied:
2 worker processes apply creates and then replaces of the same documents to a collection
declared `owner` (the owner recorded on create, checked on replace, in the write's
transaction) and to one declared `shared` (no owner), in alternating order, ROUNDS times each,
and prints the workers' and PostgreSQL's CPU per command of each and their ratio.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import redis
import sqlalchemy as sa

from bench.common import (
    DEFAULT_DATABASE,
    DEFAULT_REDIS,
    ROOT,
    clean,
    cpu_snapshot,
    cpu_used,
    fill,
    fresh_prefix,
    gateway_for,
    pause_all,
    payload,
    resume_all,
    verdict,
    wait_drained,
    wait_workers_ready,
    worker_processes,
)


def product(
    workers: int,
    count: int,
    redis_url: str,
    database_url: str,
    policy: str | None = None,
    settings: dict[str, str] | None = None,
) -> float:
    """The product's commands/s with `workers` worker processes on a backlog of `count`; the CPU
    it cost per command goes to PRODUCT_CPU. With a `policy`, the collection is declared with it
    and the backlog is half creates, then half replaces of the same documents. `settings`: more
    of the environment (a Redis Cluster's, bench/cluster.py)."""
    settings = settings or {}
    prefix = fresh_prefix()
    collection = f"{prefix}_docs"
    declared = {"collections": f"{collection}:{policy}"} if policy else {}
    extra = {k.lower(): v for k, v in settings.items()} | declared
    gw = gateway_for(prefix, redis_url, database_url, **extra)
    gw.ensure_groups()
    pause_all(gw, 600)
    if policy:
        fill(gw, collection, count // 2)
        fill(gw, collection, count - count // 2, op="replace")
    else:
        fill(gw, collection, count)
    env = {"KEY_PREFIX": prefix, "REDIS_URL": redis_url, "DATABASE_URL": database_url, **settings}
    env |= {"COLLECTIONS": declared["collections"]} if policy else {}
    try:
        with worker_processes(workers, env):
            wait_workers_ready(gw, workers)
            gw.stores.default.apply([])  # the ledger table exists before the clock starts
            before = cpu_snapshot()
            resume_all(gw)
            elapsed = wait_drained(gw, timeout=600)
            used = cpu_used(before, cpu_snapshot())
            PRODUCT_CPU[workers] = {group: seconds / count * 1e6 for group, seconds in used.items()}
    finally:
        clean(gw)
        drop(database_url, collection)
        gw.close()
    return count / elapsed


PRODUCT_CPU: dict[int, dict[str, float]] = {}  # workers: CPU us per command, by process group


def bare_loop(count: int, redis_url: str, database_url: str) -> float:
    prefix = fresh_prefix()
    client = redis.Redis.from_url(redis_url)
    stream, table = f"{prefix}:stream", f"{prefix}_bare"
    engine = sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {table} (id varchar(200) PRIMARY KEY, doc jsonb NOT NULL)"))
    client.xgroup_create(stream, "g", id="0", mkstream=True)
    pipe = client.pipeline(transaction=False)
    for i in range(count):
        pipe.set(f"{prefix}:p:{i}", payload(i))
        pipe.xadd(stream, {"c": i})
        if i % 2000 == 1999:
            pipe.execute()
    pipe.execute()
    insert = sa.text(f"INSERT INTO {table} (id, doc) VALUES (:id, CAST(:doc AS jsonb))")
    start = time.perf_counter()
    done = 0
    while done < count:
        reply = client.xreadgroup("g", "c", {stream: ">"}, count=100)
        entries = reply[0][1]
        ids = [fields[b"c"].decode() for _, fields in entries]
        docs = client.mget([f"{prefix}:p:{i}" for i in ids])
        with engine.begin() as conn:
            conn.execute(
                insert, [{"id": f"e{i}", "doc": d.decode()} for i, d in zip(ids, docs, strict=False)]
            )
        entry_ids = [entry_id for entry_id, _ in entries]
        pipe.xack(stream, "g", *entry_ids)
        pipe.xdel(stream, *entry_ids)
        pipe.delete(*[f"{prefix}:p:{i}" for i in ids])
        pipe.execute()
        done += len(entries)
    elapsed = time.perf_counter() - start
    client.delete(stream)
    drop(database_url, table)
    return count / elapsed


def rq_job_per_command(count: int, redis_url: str, database_url: str) -> float:
    from rq import Queue

    prefix = fresh_prefix()
    table = f"{prefix}_rq"
    url = database_url.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {table} (id varchar(200) PRIMARY KEY, doc jsonb NOT NULL)"))
    client = redis.Redis.from_url(redis_url)
    queue = Queue(f"{prefix}-rq", connection=client)
    for i in range(count):
        queue.enqueue("bench.jobs.insert_one", table, f"e{i}", payload(i).decode(), result_ttl=0)
    env = {**os.environ, "BENCH_DATABASE_URL": url}
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "rq.cli", "worker", "--burst", "--quiet", "--url", redis_url, queue.name],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    elapsed = time.perf_counter() - start
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
    drop(database_url, table)
    assert rows == count, f"rq baseline inserted {rows} of {count}"
    return count / elapsed


def drop(database_url: str, table: str) -> None:
    engine = sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        for ledger in ("_gateway_applied", "_gateway_refused"):
            if sa.inspect(conn).has_table(ledger):
                conn.execute(sa.text(f"DELETE FROM {ledger} WHERE collection = :c"), {"c": table})
    engine.dispose()


def access_cost(rounds: int, count: int, redis_url: str, database_url: str) -> None:
    """CPU per applied command with the `owner` policy against `shared`, alternating."""
    spent = {"owner": [0.0, 0.0], "shared": [0.0, 0.0]}  # workers, postgres: us per command, summed
    rates: dict[str, list[float]] = {"owner": [], "shared": []}
    for n in range(rounds):
        for policy in ("owner", "shared") if n % 2 == 0 else ("shared", "owner"):
            rates[policy].append(product(2, count, redis_url, database_url, policy))
            cpu = PRODUCT_CPU[2]
            spent[policy][0] += cpu["workers"]
            spent[policy][1] += cpu["postgres"]
    print(
        f"\naccess cost: {rounds} rounds of {count} commands per policy (creates, then replaces), 2 workers"
    )
    print(f"{'policy':8} {'commands/s':>11} {'workers us':>11} {'postgres us':>12} {'total us':>9}")
    total = {}
    for policy, (workers, postgres) in spent.items():
        workers, postgres = workers / rounds, postgres / rounds
        total[policy] = workers + postgres
        rate = sum(rates[policy]) / rounds
        print(f"{policy:8} {rate:11.0f} {workers:11.0f} {postgres:12.0f} {total[policy]:9.0f}")
    print(
        verdict(
            "owner / shared, CPU per command", total["owner"] / total["shared"], 1.05, at_most=True, unit="x"
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--commands", type=int, default=50_000)
    parser.add_argument("--rq-commands", type=int, default=300, help="the forking baseline is slow")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE)
    parser.add_argument("--access-cost", type=int, metavar="ROUNDS", help="owner against shared policy")
    args = parser.parse_args()
    n, redis_url, db = args.commands, args.redis_url, args.database_url
    if args.access_cost:
        access_cost(args.access_cost, n, redis_url, db)
        return

    rates = {
        "bare loop (XREADGROUP+MGET+INSERT batch 100)": bare_loop(n, redis_url, db),
        "product, 1 worker process": product(1, n, redis_url, db),
        "product, 2 worker processes": product(2, n, redis_url, db),
        f"RQ, one job per command, default worker ({args.rq_commands})": rq_job_per_command(
            args.rq_commands, redis_url, db
        ),
    }
    ceiling = rates["bare loop (XREADGROUP+MGET+INSERT batch 100)"]
    print(f"\napply throughput, {n} commands to PostgreSQL ({len(payload(0))} B documents)")
    print(f"{'run':60} {'commands/s':>11} {'x bare loop':>12}")
    for name, rate in rates.items():
        print(f"{name:60} {rate:11.0f} {rate / ceiling:12.2f}")
    print("\nCPU per applied command (us), by process group (Redis and PostgreSQL: shared servers)")
    for workers, cpu in PRODUCT_CPU.items():
        print(
            f"  {workers} worker process(es): " + ", ".join(f"{g.split()[0]} {v:.0f}" for g, v in cpu.items())
        )
    print(
        verdict(
            "2 workers / bare loop",
            rates["product, 2 worker processes"] / ceiling,
            0.5,
            at_most=False,
            unit="x",
        )
    )


if __name__ == "__main__":
    main()
