"""Auto-pipelining of script calls (gateway/pipelining.py) against the real Redis: concurrent
calls share round trips, each caller gets its own reply or error, and the line is never left
blocked, under threads and under gevent as gunicorn runs it."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from gateway.accept import accept, prepare
from gateway.context import Gateway
from gateway.pipelining import ScriptBatcher, _Call
from gateway.redis_client import RoundTrip
from settings import load
from tests.support import ROOT

pytestmark = pytest.mark.integration

# Echoes its argument with a counter value; 'bad' raises a script error; 'slow' holds Redis
# (a busy loop) so that callers queue up behind it.
SCRIPT = """
if ARGV[1] == 'bad' then return redis.error_reply('ERR refused ' .. ARGV[1]) end
if ARGV[1] == 'slow' then
  local t = redis.call('TIME')
  local start = t[1] * 1000000 + t[2]
  repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] - start > 150000
end
return {ARGV[1], redis.call('INCR', KEYS[1])}
"""


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_url, decode_responses=True)
    yield connection
    connection.close()


@pytest.fixture
def counter(client: redis.Redis, prefix: str) -> str:
    return f"{prefix}:counter"


def call_all(
    batcher: ScriptBatcher, counter: str, names: list[str], first: str | None = None
) -> dict[str, Any]:
    """Each name's outcome (reply or exception) from one thread per name, started together;
    `first` is sent alone before the others start, so that they queue behind it."""
    outcomes: dict[str, Any] = {}
    start = threading.Barrier(len(names))

    def run(name: str, wait: bool) -> None:
        if wait:
            start.wait()
        try:
            outcomes[name] = batcher([counter], [name])
        except Exception as error:  # noqa: BLE001 - the test looks at it
            outcomes[name] = error

    threads = []
    if first is not None:
        threads.append(threading.Thread(target=run, args=(first, False)))
        threads[0].start()
        while not batcher._sending.locked():  # the slow call is on the line
            pass
    threads += [threading.Thread(target=run, args=(name, True)) for name in names]
    for thread in threads[1 if first else 0 :]:
        thread.start()
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive(), "a caller was left waiting"
    return outcomes


def test_calls_queued_behind_one_in_flight_go_out_together(client: redis.Redis, counter: str) -> None:
    batcher = ScriptBatcher(client, client.register_script(SCRIPT))
    names = [f"c{i}" for i in range(40)]
    outcomes = call_all(batcher, counter, names, first="slow")
    assert outcomes["slow"] == ["slow", 1]
    counts = sorted(outcomes[name][1] for name in names)
    assert counts == list(range(2, 42))  # every call ran once, after the slow one
    assert all(outcomes[name][0] == name for name in names)  # each caller got its own reply
    assert batcher.calls == 41
    assert batcher.batches <= 4  # 40 calls waited 150 ms behind one: a few batches, not 40


def test_a_failing_call_fails_alone(client: redis.Redis, counter: str) -> None:
    batcher = ScriptBatcher(client, client.register_script(SCRIPT))
    outcomes = call_all(batcher, counter, ["a", "bad", "b", "c"], first="slow")
    assert isinstance(outcomes["bad"], redis.ResponseError) and "refused bad" in str(outcomes["bad"])
    assert sorted(outcomes[name][1] for name in "abc") == [2, 3, 4]


def test_scripts_flushed_from_redis_are_loaded_again(client: redis.Redis, counter: str) -> None:
    """After a Redis restart (no scripts cached) the calls of a batch are sent again, once."""
    batcher = ScriptBatcher(client, client.register_script(SCRIPT))
    assert batcher([counter], ["x"]) == ["x", 1]
    client.script_flush()
    outcomes = call_all(batcher, counter, [f"c{i}" for i in range(10)], first="slow")
    assert sorted(reply[1] for reply in outcomes.values()) == list(range(2, 13))


def test_a_lost_connection_fails_each_caller_and_frees_the_line(counter: str) -> None:
    dead = redis.Redis(port=1, socket_connect_timeout=0.5, retry=None)
    batcher = ScriptBatcher(dead, dead.register_script(SCRIPT))
    outcomes = call_all(batcher, counter, ["a", "b", "c"])
    assert all(isinstance(error, redis.ConnectionError) for error in outcomes.values())
    assert not batcher._sending.locked()
    with pytest.raises(redis.ConnectionError):
        batcher([counter], ["again"])


def test_a_batch_after_redis_closed_the_held_connection_goes_out_on_a_new_one(
    client: redis.Redis, counter: str
) -> None:
    """The batcher keeps one connection; Redis closing it (a restart, a timeout, CLIENT KILL)
    costs no caller a 503: the next batch connects again first, as the pool would."""
    batcher = ScriptBatcher(client, client.register_script(SCRIPT))
    assert batcher([counter], ["a"]) == ["a", 1]
    host, port = batcher._connection._sock.getsockname()[:2]
    client.client_kill(f"{host}:{port}")
    assert batcher([counter], ["b"]) == ["b", 2]


def test_a_caller_never_waits_on_a_wake_up_that_does_not_come(client: redis.Redis, counter: str) -> None:
    """The line is freed without anyone being woken (the caller it was handed to is gone): a
    waiting caller still sends its call."""
    batcher = ScriptBatcher(client, client.register_script(SCRIPT))
    batcher._sending.acquire()  # someone else is sending
    outcome: list[Any] = []
    waiting = threading.Thread(target=lambda: outcome.append(batcher([counter], ["late"])))
    waiting.start()
    time.sleep(0.2)
    assert not outcome  # it waits while the line is busy
    batcher._sending.release()  # freed, and nobody wakes it
    waiting.join(2)
    assert outcome == [["late", 1]]


def test_an_interrupted_sender_fails_its_batch_as_lost_and_frees_the_line(
    client: redis.Redis, counter: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sender's greenlet killed mid-batch: its callers get a ConnectionError (503), not the
    sender's own interruption, and the next call goes through."""
    batcher = ScriptBatcher(client, client.register_script(SCRIPT))
    with monkeypatch.context() as patched:
        patched.setattr(RoundTrip, "send", lambda trip: (_ for _ in ()).throw(KeyboardInterrupt()))
        other = _Call([counter], ["queued"])  # another caller's call, waiting in the same batch
        batcher._queue.append(other)
        with pytest.raises(KeyboardInterrupt):
            batcher([counter], ["sender"])
    assert isinstance(other.error, redis.ConnectionError) and "interrupted" in str(other.error)
    assert not batcher._sending.locked()
    assert batcher([counter], ["after"]) == ["after", 1]


GEVENT_CALLS = """
from gevent import monkey
monkey.patch_all()
import json, sys
import gevent, redis
from gateway.pipelining import ScriptBatcher, _Call
client = redis.Redis.from_url(sys.argv[1], decode_responses=True)
batcher = ScriptBatcher(client, client.register_script(sys.argv[3]))
jobs = [gevent.spawn(batcher, [sys.argv[2]], [f"g{i}"]) for i in range(300)]
gevent.joinall(jobs, timeout=20)
replies = [job.value for job in jobs]
print(json.dumps({"replies": replies, "batches": batcher.batches, "calls": batcher.calls}))
"""


def test_greenlets_share_round_trips(redis_url: str, counter: str) -> None:
    """As in a gunicorn gevent worker: 300 greenlets call at once; every one gets its reply, in
    far fewer round trips than calls."""
    done = subprocess.run(
        [sys.executable, "-c", GEVENT_CALLS, redis_url, counter, SCRIPT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result = json.loads(done.stdout)
    replies = result["replies"]
    assert [reply[0] for reply in replies] == [f"g{i}" for i in range(300)]
    assert sorted(reply[1] for reply in replies) == list(range(1, 301))
    assert result["calls"] == 300
    assert result["batches"] < 30


def test_an_accept_call_sent_twice_queues_one_command(redis_url: str, prefix: str) -> None:
    """A client that resends a call after losing its reply (a retry policy on the connection,
    a batch sent again) finds the command recorded and queues nothing more."""
    gw = Gateway(load(redis_url=redis_url, key_prefix=prefix))
    try:
        call = prepare(gw, "alice", "create", "notes", "n1", {"text": "hi"})
        first = accept(gw, call)
        again = accept(gw, call)
        assert first.command_id == again.command_id and not again.replayed
        partition = int(call.command_id.split("-")[0])
        assert gw.redis.xlen(gw.keys.stream(partition)) == 1
    finally:
        gw.close()
