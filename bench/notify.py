"""Notification latency with many open WebSockets on one web process, and plain GETs meanwhile.

Starts one gunicorn process (gunicorn.conf.py: gevent) and one worker process, opens N WebSocket
clients (one user each), then sends writes over HTTP at a steady rate, round-robin over the
users, for a while. Each event's latency is commit to frame: from the time in its id (the Redis
clock when the worker's finish script logged it, right after the store committed) to the time
its frame is read by the client. Meanwhile two loops send plain GETs (a command's status, a
document from the store) and time them. Prints p50/p99/max of both, for each N.

Every client lives in this process, in one asyncio loop (wsproto for the WebSocket protocol),
so the figures include this process's share of the machine's two cores.

    .venv/bin/python -m bench.notify --clients 100,1000 --rate 100 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import resource
import statistics
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import jwt
import orjson
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Ping, RejectConnection, Request, TextMessage
from wsproto.extensions import PerMessageDeflate

from bench.common import (
    DEFAULT_DATABASE,
    DEFAULT_REDIS,
    ROOT,
    clean,
    free_port,
    fresh_prefix,
    gateway_for,
    wait_workers_ready,
    worker_processes,
)
from bench.e2e import percentile

SECRET = "bench-secret-of-at-least-thirty-two-bytes"
HOST = "127.0.0.1"
GET_PAUSE_SECONDS = 0.02  # between two GETs of one loop: about 50 a second per loop


def token(user: str) -> str:
    return jwt.encode({"sub": user}, SECRET, algorithm="HS256")


@contextmanager
def web(env: dict[str, str]) -> Iterator[tuple[int, int]]:
    """One gunicorn process with the project's config; (port, pid of its worker process)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "wsgi:app", "--access-logfile", "/dev/null"],
        cwd=ROOT,
        env={**os.environ, **env, "PORT": str(port), "WEB_CONCURRENCY": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not (children := _children(process.pid)) or not _answers(port):
            if time.monotonic() > deadline:
                raise TimeoutError("gunicorn did not start")
            time.sleep(0.2)
        yield port, children[0]
    finally:
        process.terminate()
        process.wait(30)


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as listing:
            return [int(child) for child in listing.read().split()]
    except OSError:
        return []


def _answers(port: int) -> bool:
    import urllib.request

    try:
        return urllib.request.urlopen(f"http://{HOST}:{port}/healthz", timeout=1).status == 200
    except OSError:
        return False


def rss_mib(pid: int) -> float:
    """Resident memory of the process, MiB."""
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- HTTP, the plain way ---------------------------------------------------------------------------


class Http:
    """One keep-alive HTTP/1.1 connection (gunicorn answers with Content-Length)."""

    def __init__(self, port: int) -> None:
        self.port = port

    async def open(self) -> Http:
        self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        return self

    async def call(self, method: str, path: str, user: str, body: bytes = b"") -> tuple[int, bytes]:
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {token(user)}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return int(status_line.split()[1]), await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


# -- WebSocket clients -----------------------------------------------------------------------------


@dataclass
class Client:
    """One user's WebSocket; `latencies` gets commit-to-frame ms of each event it reads."""

    user: str
    latencies: dict[str, float]
    connected: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, port: int) -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        ws = WSConnection(ConnectionType.CLIENT)
        target = "/ws?" + urllib.parse.urlencode({"token": token(self.user)})
        writer.write(ws.send(Request(host=HOST, target=target, extensions=[PerMessageDeflate()])))
        parts: list[str] = []
        try:
            while data := await reader.read(65536):
                arrived_ms = time.time() * 1000
                ws.receive_data(data)
                for event in ws.events():
                    if isinstance(event, AcceptConnection):
                        self.connected.set()
                    elif isinstance(event, TextMessage):
                        parts.append(event.data)
                        if event.message_finished:
                            message = orjson.loads("".join(parts))
                            parts.clear()
                            commit_ms = int(message["id"].split("-")[0])
                            self.latencies[message["command_id"]] = arrived_ms - commit_ms
                    elif isinstance(event, Ping):
                        writer.write(ws.send(event.response()))
                    elif isinstance(event, (CloseConnection, RejectConnection)):
                        return
        finally:
            writer.close()


# -- one run ---------------------------------------------------------------------------------------


async def connect_all(port: int, count: int, latencies: dict[str, float]) -> list[asyncio.Task[None]]:
    clients = [Client(f"user{i}", latencies) for i in range(count)]
    tasks = [asyncio.create_task(c.run(port)) for c in clients]
    for batch in range(0, count, 100):  # SYN backlog: a hundred at a time
        await asyncio.wait_for(
            asyncio.gather(*(c.connected.wait() for c in clients[batch : batch + 100])), 60
        )
    return tasks


async def send_writes(port: int, users: int, rate: float, seconds: float, sent: list[str]) -> int:
    """PUT one document per 1/rate s (open loop, over 8 connections), round-robin over users."""
    total = int(rate * seconds)
    counter = itertools.count()
    start = time.perf_counter() + 0.1
    late = 0

    async def sender() -> None:
        nonlocal late
        http = await Http(port).open()
        while (i := next(counter)) < total:
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.01:
                late += 1
            status, body = await http.call("PUT", f"/api/bench/d{i}", f"user{i % users}", b'{"n": 1}')
            if status != 202:
                raise RuntimeError(f"write answered {status}: {body!r}")
            sent.append(orjson.loads(body)["command_id"])
        http.close()

    await asyncio.gather(*(sender() for _ in range(8)))
    return late


async def get_loop(port: int, path: str, until: float, timings: list[float]) -> None:
    http = await Http(port).open()
    while time.perf_counter() < until:
        began = time.perf_counter()
        status, _ = await http.call("GET", path, "user0")
        timings.append((time.perf_counter() - began) * 1000)
        if status != 200:
            raise RuntimeError(f"GET {path} answered {status}")
        await asyncio.sleep(GET_PAUSE_SECONDS)
    http.close()


async def run(port: int, web_pid: int, clients: int, rate: float, seconds: float) -> dict[str, object]:
    latencies: dict[str, float] = {}
    tasks = await connect_all(port, clients, latencies)
    http = await Http(port).open()  # a command and a document for the GET loops to read
    _, body = await http.call("PUT", "/api/bench/probe", "user0", b'{"probe": true}')
    probe = orjson.loads(body)["command_id"]
    while probe not in latencies:
        await asyncio.sleep(0.05)
    http.close()
    latencies.clear()

    sent: list[str] = []
    status_gets: list[float] = []
    document_gets: list[float] = []
    until = time.perf_counter() + seconds + 0.2
    cpu_before, wall_before = cpu_seconds(web_pid), time.perf_counter()
    late, *_ = await asyncio.gather(
        send_writes(port, clients, rate, seconds, sent),
        get_loop(port, f"/api/commands/{probe}", until, status_gets),
        get_loop(port, "/api/bench/probe", until, document_gets),
    )
    deadline = time.perf_counter() + 10
    while len(latencies) < len(sent) and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    cpu = (cpu_seconds(web_pid) - cpu_before) / (time.perf_counter() - wall_before)
    rss = rss_mib(web_pid)  # with every client still connected
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    values = [latencies[c] for c in sent if c in latencies]
    gets = status_gets + document_gets
    return {
        "clients": clients,
        "writes": len(sent),
        "late": late,
        "events": len(values),
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "max": max(values),
        "mean": statistics.mean(values),
        "gets": len(gets),
        "get_p50": percentile(gets, 50),
        "get_p99": percentile(gets, 99),
        "get_max": max(gets),
        "status_p99": percentile(status_gets, 99),
        "document_p99": percentile(document_gets, 99),
        "web_cpu": cpu,
        "web_rss": rss,
    }


def report(result: dict[str, object], rate: float, seconds: float) -> None:
    r = result
    print(
        f"\n{r['clients']} WebSocket clients, one web process; {r['writes']} writes at {rate:.0f}/s "
        f"for {seconds:.0f} s ({r['late']} sent late); web process: CPU {r['web_cpu']:.0%} of a core, "
        f"{r['web_rss']:.0f} MiB resident"
    )
    print(
        f"  commit -> frame: p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, max {r['max']:.1f} ms "
        f"({r['events']} of {r['writes']} events read; target p99 < 250 ms)"
    )
    print(
        f"  plain GET:       p50 {r['get_p50']:.1f} ms, p99 {r['get_p99']:.1f} ms, max {r['get_max']:.1f} ms "
        f"({r['gets']} requests; status p99 {r['status_p99']:.1f} ms, document p99 "
        f"{r['document_p99']:.1f} ms; target p99 < 100 ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", default="100,1000", help="numbers of clients, comma-separated")
    parser.add_argument("--rate", type=float, default=100, help="writes per second")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # a socket each; gunicorn inherits it

    for clients in (int(n) for n in args.clients.split(",")):
        prefix = fresh_prefix()
        env = {
            "KEY_PREFIX": prefix,
            "REDIS_URL": args.redis_url,
            "DATABASE_URL": args.database_url,
            "JWT_SECRET": SECRET,
            "APP_ENV": "production",
            "RATE_LIMIT_WRITES": "",  # the bench's users are not the clients the limits are for
            "RATE_LIMIT_READS": "",
        }
        gw = gateway_for(prefix, args.redis_url, args.database_url, jwt_secret=SECRET)
        gw.ensure_groups()
        try:
            with web(env) as (port, web_pid), worker_processes(1, env):
                wait_workers_ready(gw, 1)
                result = asyncio.run(run(port, web_pid, clients, args.rate, args.seconds))
        finally:
            clean(gw)
            gw.close()
        report(result, args.rate, args.seconds)


if __name__ == "__main__":
    main()
