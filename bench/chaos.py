"""Fault injection: the Procfile's processes under a load of writes while a nemesis breaks things,
then a checker that proves from the store's own audit trail that nothing accepted was lost,
applied twice or applied out of order. docs/reliability.md explains it and keeps the last results.

    .venv/bin/python -m bench.chaos --duration 60                         # the CI run
    .venv/bin/python -m bench.chaos --duration 600 --faults-per-kind 50   # the long run

Everything runs on loopback: a private redis-server (AOF, fsync on every write) on a free port
with its own directory, a scratch database on the local PostgreSQL reached through a TCP proxy
of this script (cut to take the store away, slowed to make it answer slowly; the server itself
is shared and never touched), two `gunicorn wsgi:app` and three `python -m workers`.

The load: writer threads, each owning some entities, send PUT/PATCH/DELETE with an
Idempotency-Key, one request at a time per entity, and send it again with the same key until it
is answered 202: so each write is accepted exactly once, and the order of an entity's 202s is
its acceptance order. Each write carries a number `n` that no other write has.

The nemesis injects one fault at a time, in shuffled rounds of every kind, waits for the
backlog built during it to be applied (the recovery time), then pauses. Kinds: SIGKILL of a
worker or a web process (restarted at once, as a platform does), SIGSTOP of a worker past its
lease (then SIGCONT), the store cut, the store slow, SIGKILL of Redis (restarted from its AOF,
which holds a ballast of keys so that it loads for a while), and SIGKILL of Redis again while it
loads that AOF.

The checker replays every entity's accepted writes on a model and compares, exiting 1 on any
finding: each command's status (terminal, and the model's: a PATCH of an absent entity fails),
the audit trail of the store (a trigger writes every row change to `chaos_audit`; a batch folds
an entity's writes into one change, so its changes must be a subsequence of the model's states:
a state seen twice is a write applied twice, one out of the model's order an order violation),
the final rows, the dead letters, and processes that exited on their own (or did not stop
cleanly on SIGTERM at the end). It also counts the 503 answers that were accepted after all
(Redis lost in the middle of the call; the retry with the key found the command).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.client
import itertools
import json
import os
import random
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import redis

from bench.common import ROOT, free_port
from gateway.keys import Keys

PREFIX = "chaos"
COLLECTION = "chaos"
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
KINDS = (
    "worker_kill",
    "web_kill",
    "worker_stop",
    "store_cut",
    "store_slow",
    "redis_kill",
    "redis_kill_loading",
)
LEASE_SECONDS = 2  # short, so that a stopped or killed worker's partitions move on quickly
RECOVERY_LIMIT_SECONDS = 60.0  # a backlog not applied by then is a finding
ABSENT = ("absent",)

State = tuple[Any, ...]  # ("absent",) or (n, p): the row's columns


# -- the store's side: a table of its own, and its audit trail ------------------------------------

SCHEMA = f"""
CREATE TABLE {COLLECTION} (id text PRIMARY KEY, n bigint NOT NULL, p bigint);
CREATE TABLE {COLLECTION}_audit (at bigserial PRIMARY KEY, op text NOT NULL, id text NOT NULL,
                                 n bigint, p bigint, tx bigint NOT NULL DEFAULT txid_current());
CREATE FUNCTION {COLLECTION}_audit() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    INSERT INTO {COLLECTION}_audit (op, id) VALUES (TG_OP, OLD.id);
  ELSE
    INSERT INTO {COLLECTION}_audit (op, id, n, p) VALUES (TG_OP, NEW.id, NEW.n, NEW.p);
  END IF;
  RETURN NULL;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER {COLLECTION}_audit AFTER INSERT OR UPDATE OR DELETE ON {COLLECTION}
  FOR EACH ROW EXECUTE FUNCTION {COLLECTION}_audit();
"""


@contextlib.contextmanager
def scratch_database() -> Iterator[str]:
    """A database of this run on the local PostgreSQL, with the table and its audit trigger."""
    name = "chaos_" + secrets.token_hex(4)
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    url = ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(SCHEMA)
        yield url
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


class Proxy:
    """A TCP proxy to the database: `cut()` drops every connection and refuses new ones until
    `restore()`; `delay` holds each chunk of data that long (a store that answers slowly)."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.port = free_port()
        self.delay = 0.0
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._open = self._open, set()
        for sock in [s for s in (listener,) if s is not None] + list(conns):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if self.delay:
                    time.sleep(self.delay)
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


# -- processes ----------------------------------------------------------------------------------------


@dataclass
class Managed:
    """A process the run starts, kills and restarts; any other exit is a finding."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    ready: Callable[[], bool] | None = None  # a check that it answers, for a start to wait on
    process: subprocess.Popen[bytes] | None = None
    down_on_purpose: bool = False
    exits: list[str] = field(default_factory=list)  # exits nobody asked for

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.down_on_purpose = False
        if self.ready is not None:
            deadline = time.monotonic() + 60
            while not self.ready():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} did not become ready; see {self.log_path}")
                time.sleep(0.05)

    def send(self, signum: int) -> None:
        assert self.process is not None
        if signum in (signal.SIGKILL, signal.SIGTERM):
            self.down_on_purpose = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)  # the whole process group: gunicorn and its workers
        if signum == signal.SIGKILL:
            self.process.wait(30)

    def check(self) -> None:
        """Note and restart the process if it exited while nobody was stopping it."""
        if self.process is None or self.down_on_purpose or self.process.poll() is None:
            return
        self.exits.append(f"{self.name} exited with {self.process.returncode}")
        print(f"chaos: UNPLANNED EXIT: {self.exits[-1]} (log: {self.log_path})", flush=True)
        self.start()


def http_ok(base: str, path: str) -> bool:
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=2)
    try:
        conn.request("GET", path)
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def redis_answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=5)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


# -- the load -----------------------------------------------------------------------------------------


@dataclass
class Accepted:
    n: int
    entity: str
    op: str
    command_id: str
    # Answered 503, yet a retry of its key found it accepted: Redis went away in the middle of
    # the call (the 503 says it may happen); the key made the retry safe.
    replayed_after_503: bool


class Load:
    """Writer threads; each owns entities and sends one write at a time per entity until 202."""

    def __init__(self, webs: list[str], entities: int, rate: float, threads: int) -> None:
        self.webs = webs
        self.rate = rate
        self.stopped = threading.Event()
        self.numbers = itertools.count(1)
        self.accepted: dict[str, list[Accepted]] = defaultdict(list)  # entity -> in acceptance order
        self.answers: Counter[str] = Counter()
        self.unexpected: list[str] = []
        self.threads = [
            threading.Thread(
                target=self._write,
                args=([f"e{i}" for i in range(t, entities, threads)], threads),
                daemon=True,
            )
            for t in range(threads)
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stopped.set()
        for thread in self.threads:
            thread.join()

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.accepted.values())

    def _write(self, entities: list[str], threads: int) -> None:
        pause = threads / self.rate
        conn: http.client.HTTPConnection | None = None
        while not self.stopped.is_set():
            started = time.monotonic()
            entity = random.choice(entities)
            op = random.choices(("PUT", "PATCH", "DELETE"), (50, 35, 15))[0]
            n = next(self.numbers)
            body = {"n": n} if op == "PUT" else {"n": n, "p": n} if op == "PATCH" else None
            conn, accepted = self._until_accepted(conn, op, entity, n, body)
            self.accepted[entity].append(accepted)
            time.sleep(max(0.0, pause - (time.monotonic() - started)))

    def _until_accepted(
        self,
        conn: http.client.HTTPConnection | None,
        op: str,
        entity: str,
        n: int,
        body: dict[str, int] | None,
    ) -> tuple[http.client.HTTPConnection | None, Accepted]:
        key = secrets.token_hex(12)
        definite_refusals = 0
        ambiguous = False
        while True:
            if conn is None:
                host, port = random.choice(self.webs).removeprefix("http://").split(":")
                conn = http.client.HTTPConnection(host, int(port), timeout=15)
            try:
                headers = {"Idempotency-Key": key}
                if body is not None:
                    headers["Content-Type"] = "application/json"
                conn.request(op, f"/api/{COLLECTION}/{entity}", json.dumps(body) if body else None, headers)
                response = conn.getresponse()
                answer = json.loads(response.read() or b"{}")
            except (OSError, http.client.HTTPException, ValueError):
                self.answers["connection error"] += 1
                ambiguous = True  # it may have been accepted: the retry with its key tells
                conn.close()
                conn = None
                time.sleep(0.1)
                continue
            self.answers[str(response.status)] += 1
            if response.status == 202:
                replayed = response.getheader("Idempotent-Replayed") == "true"
                after_503 = replayed and definite_refusals > 0 and not ambiguous
                return conn, Accepted(n, entity, op, answer["command_id"], after_503)
            if response.status in (429, 503):
                definite_refusals += 1
                time.sleep(0.2)
                continue
            if response.status >= 500:
                ambiguous = True
                time.sleep(0.2)
                continue
            self.unexpected.append(f"{op} {entity}: {response.status} {answer}")
            time.sleep(0.5)


# -- the nemesis --------------------------------------------------------------------------------------


class Chaos:
    """The whole run: the services, the processes, the load, the faults and the checks."""

    def __init__(self, args: argparse.Namespace, workdir: Path, database_url: str) -> None:
        self.args = args
        self.workdir = workdir
        self.keys = Keys(PREFIX)
        redis_port = free_port()
        self.redis_url = f"redis://127.0.0.1:{redis_port}/0"
        self.proxy = Proxy(5432)
        self.proxy.restore()
        proxied = database_url.replace("127.0.0.1:5432", f"127.0.0.1:{self.proxy.port}")
        self.database_url = database_url
        env = {
            **os.environ,
            "APP_ENV": "development",
            # The audited table is the harness's own, with columns of its own: declared, since a
            # table that merely exists is never reachable, and shared (one writer, no owner column).
            "COLLECTIONS": f"{COLLECTION}:shared",
            "LOG_FORMAT": "text",
            "REDIS_URL": self.redis_url,
            "DATABASE_URL": proxied.replace("postgresql://", "postgresql+psycopg://", 1),
            "KEY_PREFIX": PREFIX,
            "LEASE_SECONDS": str(LEASE_SECONDS),
            "RATE_LIMIT_WRITES": "1000000/minute",
            "RATE_LIMIT_READS": "1000000/minute",
            "WEB_CONCURRENCY": "1",
            # The checker reads every accepted command's record and counts every dead letter: a
            # long run makes more than the default caps keep (10,000 records per user, 10,000
            # dead letters in all), and a record or dead letter trimmed would look lost.
            "STATUS_RECORDS_PER_USER": "10000000",
            "MAX_DEAD_LETTERS": "10000000",
        }
        self.redis = Managed(
            "redis",
            [
                shutil.which("redis-server") or "/usr/bin/redis-server",
                *("--port", str(redis_port), "--bind", "127.0.0.1", "--dir", str(workdir)),
                *("--save", "", "--appendonly", "yes", "--appendfsync", "always"),
            ],
            env,
            workdir / "redis.log",
            ready=functools.partial(redis_answers, self.redis_url),
        )
        self.webs: list[Managed] = []
        for i in range(args.webs):
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            self.webs.append(
                Managed(
                    f"web{i}",
                    [sys.executable, "-m", "gunicorn", "wsgi:app", "--access-logfile", "/dev/null"],
                    {**env, "PORT": str(port)},
                    workdir / f"web{i}.log",
                    ready=functools.partial(http_ok, base, "/healthz"),
                )
            )
        self.bases = [m.env["PORT"] for m in self.webs]
        self.workers = [
            Managed(f"worker{i}", [sys.executable, "-m", "workers"], env, workdir / f"worker{i}.log")
            for i in range(args.workers)
        ]
        self.faults: Counter[str] = Counter()
        self.recovery: dict[str, list[float]] = defaultdict(list)
        self.findings: list[str] = []
        self.redis_loading: list[float] = []
        self._watching = threading.Event()

    @property
    def processes(self) -> list[Managed]:
        return [self.redis, *self.webs, *self.workers]

    def start(self) -> None:
        self.redis.start()
        if self.args.ballast_keys:
            self._ballast(self.args.ballast_keys)
        setup = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "app", "setup"],
            cwd=ROOT,
            env=self.redis.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if setup.returncode:
            raise RuntimeError(f"flask setup failed: {setup.stderr}")
        for process in [*self.webs, *self.workers]:
            process.start()
        threading.Thread(target=self._watch, daemon=True).start()

    def _ballast(self, count: int) -> None:
        """Keys in another database, so that a restarted Redis loads its AOF for a while."""
        client = redis.Redis.from_url(self.redis_url.rsplit("/", 1)[0] + "/1")
        value = "x" * 100
        for start in range(0, count, 5000):
            client.mset({f"ballast:{i}": value for i in range(start, min(count, start + 5000))})
        client.close()

    def _watch(self) -> None:
        while not self._watching.wait(0.2):
            for process in self.processes:
                process.check()

    def stop(self) -> list[str]:
        """SIGTERM every process, as a platform does at a deploy: each must exit 0 within 30 s."""
        self._watching.set()
        problems = []
        for process in [*self.workers, *self.webs]:
            if process.process is not None and process.process.poll() is None:
                process.send(signal.SIGTERM)
        for process in [*self.workers, *self.webs]:
            assert process.process is not None
            try:
                code = process.process.wait(30)
            except subprocess.TimeoutExpired:
                process.send(signal.SIGKILL)
                code = None
            if process.name.startswith("worker") and code != 0:
                problems.append(f"{process.name} did not stop cleanly on SIGTERM (exit {code})")
        self.redis.send(signal.SIGKILL)
        self.proxy.cut()
        return problems

    # the faults

    def inject(self, kind: str) -> float:
        """Inject one fault of `kind` and heal it; the monotonic time it healed."""
        if kind == "worker_kill":
            victim = random.choice(self.workers)
            victim.send(signal.SIGKILL)
            victim.start()
        elif kind == "web_kill":
            victim = random.choice(self.webs)
            victim.send(signal.SIGKILL)
            victim.start()
        elif kind == "worker_stop":
            victim = random.choice(self.workers)
            victim.send(signal.SIGSTOP)
            time.sleep(LEASE_SECONDS + 1.5)
            victim.send(signal.SIGCONT)
        elif kind == "store_cut":
            self.proxy.cut()
            time.sleep(self.args.outage_seconds)
            self.proxy.restore()
        elif kind == "store_slow":
            self.proxy.delay = 0.05
            time.sleep(self.args.outage_seconds)
            self.proxy.delay = 0.0
        elif kind in ("redis_kill", "redis_kill_loading"):
            self.redis.send(signal.SIGKILL)
            time.sleep(self.args.redis_down_seconds)
            if kind == "redis_kill_loading":  # killed again while it loads its AOF
                self.redis.ready = None
                self.redis.start()
                time.sleep(0.3)
                self.redis.send(signal.SIGKILL)
                self.redis.ready = functools.partial(redis_answers, self.redis_url)
            started = time.monotonic()
            self.redis.start()  # waits until it answers PING: its AOF loaded
            self.redis_loading.append(time.monotonic() - started)
        self.faults[kind] += 1
        return time.monotonic()

    def recovered_in(self, healed: float) -> float | None:
        """Seconds from `healed` until no command accepted before then is still unfinished (the
        streams hold exactly the unfinished ones); None past RECOVERY_LIMIT_SECONDS."""
        client = redis.Redis.from_url(self.redis_url, socket_timeout=5)
        try:
            seconds, micros = client.time()
            cutoff_ms = seconds * 1000 + micros // 1000 - int((time.monotonic() - healed) * 1000)
            while time.monotonic() - healed < RECOVERY_LIMIT_SECONDS:
                pipe = client.pipeline(transaction=False)
                for p in range(16):
                    pipe.xrange(self.keys.stream(p), count=1)
                oldest = [entries[0][0] for entries in pipe.execute() if entries]
                if all(int(entry_id.split(b"-")[0]) > cutoff_ms for entry_id in oldest):
                    return time.monotonic() - healed
                time.sleep(0.05)
        except redis.RedisError:
            pass
        finally:
            client.close()
        return None

    def nemesis(self, until: float, stop: threading.Event) -> None:
        chosen = self.args.kinds.split(",") if self.args.kinds else list(KINDS)
        kinds: list[str] = []
        while not stop.is_set():
            enough = all(self.faults[k] >= self.args.faults_per_kind for k in chosen)
            if time.monotonic() >= until and enough:
                return
            if not kinds:
                kinds = random.sample(chosen, len(chosen))
            kind = kinds.pop()
            healed = self.inject(kind)
            took = self.recovered_in(healed)
            if took is None:
                self.findings.append(f"{kind}: backlog not applied within {RECOVERY_LIMIT_SECONDS:.0f} s")
            else:
                self.recovery[kind].append(took)
            shown = "never" if took is None else f"{took:.2f} s"
            print(f"chaos: {kind} #{self.faults[kind]}: recovered in {shown}", flush=True)
            stop.wait(self.args.interval)

    def drained(self, timeout: float) -> bool:
        client = redis.Redis.from_url(self.redis_url)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                pipe = client.pipeline(transaction=False)
                for p in range(16):
                    pipe.xlen(self.keys.stream(p))
                if not sum(pipe.execute()):
                    return True
                time.sleep(0.2)
        finally:
            client.close()
        return False


# -- the checker --------------------------------------------------------------------------------------


def model(writes: list[Accepted]) -> tuple[list[State], dict[str, str], State]:
    """An entity's accepted writes replayed in order: its states after each change, the status
    each command must end in, its final state."""
    state: State = ABSENT
    states: list[State] = []
    statuses: dict[str, str] = {}
    for write in writes:
        status = "applied"
        if write.op == "PUT":
            state = (write.n, None)
        elif write.op == "PATCH":
            if state == ABSENT:
                status = "failed"
            else:
                state = (write.n, write.n)
        elif state != ABSENT:
            state = ABSENT
        else:
            status = "applied"  # deleting an absent entity changes nothing
            statuses[write.command_id] = status
            continue
        statuses[write.command_id] = status
        if status == "applied":
            states.append(state)
    return states, statuses, state


def check(load: Load, redis_url: str, database_url: str) -> dict[str, Any]:
    keys = Keys(PREFIX)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    with psycopg.connect(database_url) as conn:
        audit: dict[str, list[State]] = defaultdict(list)
        for op, entity, n, p in conn.execute(f"SELECT op, id, n, p FROM {COLLECTION}_audit ORDER BY at"):
            audit[entity].append(ABSENT if op == "DELETE" else (n, p))
        rows = {entity: (n, p) for entity, n, p in conn.execute(f"SELECT id, n, p FROM {COLLECTION}")}
    report: Counter[str] = Counter()
    details: list[str] = []
    expected_failed = 0
    applied = 0
    found_after_503 = 0
    for entity, writes in load.accepted.items():
        states, statuses, final = model(writes)
        pipe = client.pipeline(transaction=False)
        for write in writes:
            pipe.hget(keys.command(int(write.command_id.split("-")[0]), write.command_id), "st")
        pipe_replies = pipe.execute()
        for write, status in zip(writes, pipe_replies, strict=True):
            if status not in ("applied", "failed"):
                report["not terminal"] += 1
                details.append(f"{write.command_id} ({write.op} {entity} n={write.n}) is {status}")
            elif status != statuses[write.command_id]:
                report["lost" if statuses[write.command_id] == "applied" else "wrong status"] += 1
                details.append(f"{write.command_id} ({write.op} {entity} n={write.n}): {status}")
            found_after_503 += write.replayed_after_503
            applied += status == "applied"
        expected_failed += sum(1 for s in statuses.values() if s == "failed")
        seen = audit.get(entity, [])
        ns = [s[0] for s in seen if s != ABSENT]
        if len(ns) != len(set(ns)):
            report["applied twice"] += 1
            details.append(f"{entity}: a write changed the row twice: {seen}")
        elif not _subsequence(seen, states):
            report["order violations"] += 1
            details.append(f"{entity}: changes {seen} are not in the order of {states}")
        if rows.get(entity, ABSENT) != final:
            report["state violations"] += 1
            details.append(f"{entity}: row {rows.get(entity, ABSENT)}, expected {final}")
    dead = sum(client.xlen(keys.dead(p)) for p in range(16))
    client.close()
    if dead != expected_failed:
        report["dead letters off"] += 1
        details.append(f"{dead} dead letters, expected {expected_failed} (PATCHes of absent entities)")
    return {
        "accepted": load.count,
        "applied": applied,
        "expected failed (patch of an absent entity)": expected_failed,
        "audit rows": sum(len(v) for v in audit.values()),
        "503 then found accepted by its key": found_after_503,
        "findings": {k: v for k, v in report.items() if v},
        "details": details[:50],
    }


def _subsequence(seen: list[State], states: list[State]) -> bool:
    remaining = iter(states)
    return all(any(s == state for state in remaining) for s in seen)


# -- the run ------------------------------------------------------------------------------------------


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {
        "median": round(statistics.median(ordered), 2),
        "p95": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))], 2),
        "max": round(ordered[-1], 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60, help="seconds of load and faults, at least")
    parser.add_argument(
        "--faults-per-kind", type=int, default=0, help="keep going until each kind had this many"
    )
    parser.add_argument("--rate", type=float, default=100, help="writes a second, all writers together")
    parser.add_argument("--entities", type=int, default=200)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--webs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument(
        "--interval", type=float, default=1.0, help="pause between a recovery and the next fault"
    )
    parser.add_argument("--outage-seconds", type=float, default=4.0, help="store cut and store slow length")
    parser.add_argument("--redis-down-seconds", type=float, default=1.0)
    parser.add_argument("--ballast-keys", type=int, default=200_000, help="keys that make Redis load longer")
    parser.add_argument(
        "--kinds", help=f"the faults to inject, comma-separated (default: all of {','.join(KINDS)})"
    )
    parser.add_argument("--report", type=Path, help="also write the results here, as JSON")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="chaos-"))
    print(f"chaos: logs and Redis data in {workdir}", flush=True)
    started = time.monotonic()
    with scratch_database() as database_url:
        chaos = Chaos(args, workdir, database_url)
        try:
            chaos.start()
            load = Load(
                [f"http://127.0.0.1:{port}" for port in chaos.bases], args.entities, args.rate, args.writers
            )
            load.start()
            stop = threading.Event()
            chaos.nemesis(time.monotonic() + args.duration, stop)
            load.stop()
            drained = chaos.drained(120)
            result = check(load, chaos.redis_url, database_url)
        finally:
            stop_problems = chaos.stop()
    findings: dict[str, Any] = result["findings"]
    exits = [e for p in chaos.processes for e in p.exits]
    if exits:
        findings["unplanned exits"] = len(exits)
    if stop_problems:
        findings["unclean SIGTERM"] = len(stop_problems)
    if not drained:
        findings["backlog left"] = 1
    if chaos.findings:
        findings["slow recoveries"] = len(chaos.findings)
    if load.unexpected:
        findings["unexpected answers"] = len(load.unexpected)
    results = {
        **result,
        "seconds": round(time.monotonic() - started),
        "faults": dict(chaos.faults),
        "recovery seconds": {k: summary(v) for k, v in chaos.recovery.items()},
        "redis load seconds": summary(chaos.redis_loading),
        "answers": dict(load.answers),
        "unplanned exits": exits,
        "notes": chaos.findings + stop_problems + load.unexpected[:10],
    }
    print(json.dumps(results, indent=2), flush=True)
    if args.report:
        args.report.write_text(json.dumps(results, indent=2) + "\n")
    if findings:
        print(f"chaos: FAILED: {findings} (logs in {workdir})", flush=True)
        return 1
    print("chaos: OK: nothing lost, nothing applied twice, order and final state exact, no unplanned exit")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
