"""`python -m workers`: the worker process of the Procfile.

An RQ worker that runs the drain jobs in its own process (no fork per job), beside the
scheduler thread that queues them, and the notifier threads that hand finished commands' events
to the notifier plugins (whose push jobs the same RQ worker runs, after the drain jobs). Run as
many of these processes as the load needs.

The process outlives Redis: RQ's loop ends when Redis goes away (its own bookkeeping needs
Redis), so `supervise` waits for Redis to answer again and starts the loop anew, for as long as
it takes. Only a signal ends the process: SIGTERM lets the running drain job end after its
current pass (well within a platform's grace period), SIGKILL is what the leases cover.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from typing import Any

import redis
from rq import SimpleWorker
from rq.exceptions import StopRequested

from gateway import logs
from gateway.redis_client import Outage, wait_for_redis
from settings import load
from workers import runtime
from workers.delivery import start_notifiers, stop_notifiers
from workers.scheduler import Scheduler

log = logging.getLogger("gateway.worker")


class GatewayWorker(SimpleWorker):
    """RQ's SimpleWorker, which tells the runtime when SIGTERM asks it to stop, and leaves the
    logging of a Redis outage to the runtime's `Outage` (one line, not one per retry)."""

    # RQ retries a lost connection while it waits for jobs, doubling its wait up to this: a
    # Redis that is back is found within seconds, not a minute.
    max_connection_wait_time = 2.0

    def __init__(self, *args: Any, rt: runtime.Runtime, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rt = rt

    def request_stop(self, signum: int, frame: Any) -> None:
        self.rt.stopping.set()  # the running drain job ends after its current pass
        super().request_stop(signum, frame)

    def subscribe(self) -> None:
        """No pub/sub thread for RQ's remote commands (the gateway sends none): it would die
        with a traceback at every Redis outage, and holds a connection for nothing."""

    def heartbeat(self, *args: Any, **kwargs: Any) -> None:
        super().heartbeat(*args, **kwargs)
        self.rt.redis_outage.up()  # it answered


class RedisOutageFilter(logging.Filter):
    """Drops RQ's log lines about a lost Redis (a line per retry, a traceback when its loop ends)
    and notes the outage instead, which logs it once."""

    def __init__(self, outage: Outage) -> None:
        super().__init__()
        self.outage = outage

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if error is None and isinstance(record.args, tuple):
            error = next((arg for arg in record.args if isinstance(arg, redis.RedisError)), None)
        if error is None and "Redis connection timeout" in str(record.msg):
            error = redis.TimeoutError("no answer from Redis")
        if isinstance(error, redis.RedisError):
            self.outage.down(error)
            return False
        return True


def main() -> None:
    # While RQ's loop is not running (starting, or waiting for Redis between two runs), nothing
    # is held that a SIGTERM should wait for: it ends the process at once, cleanly.
    signal.signal(signal.SIGTERM, _exit_now)
    settings = load()
    logs.configure(logs.format_for(settings.log_format, settings.app_env), settings.log_level)
    rt = runtime.Runtime(settings)
    runtime.install(rt)
    logging.getLogger("rq.worker").addFilter(RedisOutageFilter(rt.redis_outage))
    scheduler = Scheduler(rt)
    scheduler.start()
    notifiers = start_notifiers(rt)
    log.info(
        "worker %s: %d partitions, stores %s, queue %s",
        rt.name,
        rt.gw.settings.partitions,
        ", ".join(rt.gw.stores.by_name),
        rt.queue.name,
    )
    try:
        supervise(rt)
    finally:
        stop_notifiers(notifiers)
        scheduler.stop()
        rt.close()


def supervise(rt: runtime.Runtime) -> None:
    """Run RQ's worker loop until SIGTERM stops it; whenever it ends for another reason (Redis
    went away), wait for Redis and run it again.

    Each run registers under a name of its own: a run that ended with Redis down could not
    unregister, and RQ refuses a name still registered. It is unregistered once Redis is back."""
    never = threading.Event()
    previous: GatewayWorker | None = None
    runs = 0
    while not rt.stopping.is_set():
        signal.signal(signal.SIGTERM, _exit_now)
        wait_for_redis(rt.gw.redis, rt.redis_outage, never)
        try:
            rt.gw.ensure_groups()
            if previous is not None:
                _unregister(previous)
            runs += 1
            name = rt.name if runs == 1 else f"{rt.name}.{runs}"
            previous = GatewayWorker([rt.queue, rt.push_queue], connection=rt.rq_redis, name=name, rt=rt)
            previous.work(logging_level="WARNING", with_scheduler=False)
        except StopRequested:
            return  # SIGTERM came between two runs, while RQ's handler was still installed
        except redis.RedisError as error:
            rt.redis_outage.down(error)
        except ValueError as error:  # RQ: the name is still registered (should not happen: each is new)
            log.warning("worker loop could not start: %s", error)
            never.wait(1)


def _unregister(worker: GatewayWorker) -> None:
    """Remove an earlier run from RQ's registry of live workers (it counts them)."""
    with contextlib.suppress(redis.RedisError):  # else its registration expires on its own
        worker.register_death()


def _exit_now(signum: int, frame: object) -> None:
    raise SystemExit(0)


if __name__ == "__main__":
    main()
