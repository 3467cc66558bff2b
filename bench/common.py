"""Shared helpers of the benchmark scripts: fresh prefixes, filling streams, worker processes."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson

from gateway.accept import prepare
from gateway.context import Gateway
from gateway.redis_client import RoundTrip
from plugins.store import Op
from settings import load

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REDIS = "redis://127.0.0.1:6379/14"
DEFAULT_DATABASE = "postgresql://postgres@127.0.0.1:5432/test"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def gunicorn(app: str, env: dict[str, str], ready_path: str = "/healthz") -> Iterator[str]:
    """gunicorn with the project's gunicorn.conf.py serving `app`; yields its base URL once
    `ready_path` answers, and stops it afterwards."""
    with gunicorn_process(app, env, ready_path) as (base, _):
        yield base


@contextmanager
def gunicorn_process(
    app: str, env: dict[str, str], ready_path: str = "/healthz"
) -> Iterator[tuple[str, int]]:
    """`gunicorn`, yielding its base URL and its master's pid."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", app, "--access-logfile", "/dev/null"],
        cwd=ROOT,
        env={"APP_ENV": "development", **os.environ, **env, "PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(base + ready_path, timeout=1).read()
            break
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                raise
            time.sleep(0.2)
    try:
        yield base, process.pid
    finally:
        process.terminate()
        process.wait(30)


@contextmanager
def redis_server() -> Iterator[tuple[str, int]]:
    """A private redis-server on a free port, without persistence, so that its CPU is this
    benchmark's alone; yields its URL and pid, and stops it afterwards."""
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                raise
            time.sleep(0.05)
    try:
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(30)


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and its live children."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for each in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{each}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(each) == pid or int(fields[1]) == pid:  # fields[1]: the parent's pid
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


# Which processes a CPU figure is charged to, by command line (or name, for the servers). The
# web and worker processes counted are the run's own (started by this process): other runs on a
# shared machine start theirs too. Redis and PostgreSQL are shared servers: their figures include
# whatever else uses them meanwhile.
CPU_GROUPS = (
    ("web (gunicorn)", lambda cmd, name: "gunicorn" in cmd),
    ("workers", lambda cmd, name: "-m workers" in cmd),
    ("redis", lambda cmd, name: name.startswith("redis-server")),
    ("postgres", lambda cmd, name: name.startswith("postgres")),
)
OWN_GROUPS = frozenset({"web (gunicorn)", "workers"})


def cpu_snapshot() -> dict[str, tuple[str, float]]:
    """Each running process of a CPU_GROUPS group: its group and the user + system CPU seconds it
    has used so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    seen: dict[str, tuple[str, str, str, list[str]]] = {}  # pid: name, parent, command, stat fields
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        seen[pid] = (stat[stat.index("(") + 1 : stat.rindex(")")], fields[1], cmd, fields)
    snapshot: dict[str, tuple[str, float]] = {}
    for pid, (name, _, cmd, fields) in seen.items():
        for label, matches in CPU_GROUPS:
            if matches(cmd, name):
                if label not in OWN_GROUPS or _descends_from_us(pid, seen):
                    snapshot[pid] = (label, (int(fields[11]) + int(fields[12])) / ticks)
                break
    return snapshot


def _descends_from_us(pid: str, seen: dict[str, tuple[str, str, str, list[str]]]) -> bool:
    mine = str(os.getpid())
    while pid in seen and pid != "1":
        pid = seen[pid][1]
        if pid == mine:
            return True
    return False


def cpu_used(before: dict[str, tuple[str, float]], after: dict[str, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds used by each group between two snapshots (processes started in between
    count whole; ones that ended in between are not seen)."""
    used = dict.fromkeys((label for label, _ in CPU_GROUPS), 0.0)
    for pid, (label, seconds) in after.items():
        used[label] += seconds - before.get(pid, (label, 0.0))[1]
    return used


def verdict(name: str, value: float, limit: float, *, at_most: bool, unit: str = "") -> str:
    """One line for a target: the figure, the limit and whether it is met."""
    met = value <= limit if at_most else value >= limit
    bound = "<=" if at_most else ">="
    return f"  {name}: {value:.2f}{unit} (target {bound} {limit:g}{unit}): {'met' if met else 'MISSED'}"


def fresh_prefix() -> str:
    return "bench" + secrets.token_hex(3)


def payload(i: int) -> bytes:
    """A small document, about 60 bytes as JSON."""
    return orjson.dumps({"n": i, "text": "hello world", "tags": ["a", "b"], "ok": True})


def gateway_for(prefix: str, redis_url: str, database_url: str, **extra: object) -> Gateway:
    """The product's gateway on these servers, in development (a benchmark declares no tokens
    or collections) and with quotas no backlog of a benchmark reaches, unless `extra` says
    otherwise."""
    settings = {"app_env": "development", "max_pending_per_user": 10**9, "max_backlog": 10**9, **extra}
    return Gateway(load(key_prefix=prefix, redis_url=redis_url, database_url=database_url, **settings))


def fill(gw: Gateway, collection: str, count: int, op: Op = "create") -> None:
    """Accept `count` commands (`op`, creates by default) on the distinct entities e0, e1, ...
    through the product's accept script, each with a request id as the web process gives every
    write (16 hex characters)."""
    trip = RoundTrip(gw.redis)  # each call routed to its node on a Redis Cluster
    for i in range(count):
        document = orjson.loads(payload(i))
        call = prepare(gw, "bench", op, collection, f"e{i}", document, request_id=f"{i:016x}")
        gw.scripts.queue(trip, call.script)
        if i % 2000 == 1999:
            _check(trip.send())
            trip = RoundTrip(gw.redis)
    _check(trip.send())


def _check(replies: list[object]) -> None:
    """Raise unless every accept call of a batch was accepted (a quota's refusal included)."""
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
        answer = reply[0] if isinstance(reply, list) and reply else reply
        if answer not in ("accepted", b"accepted"):
            raise RuntimeError(f"the accept script answered {reply!r}")


def cluster_settings(queue_redis_url: str) -> dict[str, str]:
    """The environment that puts a deployment's REDIS_URL on a Redis Cluster, RQ on `queue_redis_url`."""
    return {"REDIS_CLUSTER": "true", "QUEUE_REDIS_URL": queue_redis_url}


def backlog(gw: Gateway) -> int:
    pipe = gw.redis.pipeline(transaction=False)
    for p in range(gw.settings.partitions):
        pipe.xlen(gw.keys.stream(p))
    return sum(pipe.execute())


def wait_drained(gw: Gateway, timeout: float) -> float:
    start = time.perf_counter()
    while backlog(gw):
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"backlog of {backlog(gw)} left after {timeout} s")
        time.sleep(0.02)
    return time.perf_counter() - start


def pause_all(gw: Gateway, seconds: float) -> None:
    """Hold every partition (the outage pause), so that work can pile up before a timed run."""
    for p in range(gw.settings.partitions):
        gw.redis.set(gw.keys.pause(p), 1, px=int(seconds * 1000))


def resume_all(gw: Gateway) -> None:
    gw.redis.delete(*[gw.keys.pause(p) for p in range(gw.settings.partitions)])


@contextmanager
def worker_processes(count: int, env: dict[str, str]) -> Iterator[list[subprocess.Popen[bytes]]]:
    full = {"APP_ENV": "development", **os.environ, **env}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "workers"],
            cwd=ROOT,
            env=full,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(count)
    ]
    try:
        yield processes
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()


def wait_workers_ready(gw: Gateway, count: int, timeout: float = 30) -> None:
    """Wait until `count` RQ workers listen on the gateway's queue."""
    from rq import Queue, Worker

    from gateway.redis_client import connect_queue

    raw = connect_queue(gw.settings)
    queue = Queue(gw.keys.rq_queue(), connection=raw)
    start = time.monotonic()
    while len(Worker.all(queue=queue)) < count:
        if time.monotonic() - start > timeout:
            raise TimeoutError("workers did not start")
        time.sleep(0.1)
    raw.close()


def clean(gw: Gateway) -> None:
    """Delete every key under the benchmark's prefix."""
    for pattern in (f"{{{gw.keys.prefix}:*", f"{gw.keys.prefix}:*"):
        keys = list(gw.redis.scan_iter(match=pattern, count=5000))
        for i in range(0, len(keys), 5000):
            gw.redis.delete(*keys[i : i + 5000])
