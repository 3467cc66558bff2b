"""`python -m workers`: the worker process of the Procfile.

An RQ worker that runs the drain jobs in its own process (no fork per job), beside the
scheduler thread that queues them, and the notifier threads that hand finished commands' events
to the notifier plugins (whose push jobs the same RQ worker runs, after the drain jobs). Run as
many of these processes as the load needs.
"""

from __future__ import annotations

import logging
import signal

from rq import SimpleWorker

from gateway import logs
from settings import load
from workers import runtime
from workers.delivery import start_notifiers, stop_notifiers
from workers.scheduler import Scheduler


def main() -> None:
    # Until RQ installs its own handlers (once the worker runs), a SIGTERM (a deploy while the
    # process is still starting) ends it cleanly instead of killing it by the signal.
    signal.signal(signal.SIGTERM, _exit_while_starting)
    settings = load()
    logs.configure(logs.format_for(settings.log_format, settings.app_env))
    rt = runtime.Runtime(settings)
    runtime.install(rt)
    rt.gw.ensure_groups()
    scheduler = Scheduler(rt)
    scheduler.start()
    notifiers = start_notifiers(rt)
    logging.getLogger("gateway.worker").info(
        "worker %s: %d partitions, stores %s, queue %s",
        rt.name,
        rt.gw.settings.partitions,
        ", ".join(rt.gw.stores.by_name),
        rt.queue.name,
    )
    worker = SimpleWorker([rt.queue, rt.push_queue], connection=rt.rq_redis, name=rt.name)
    try:
        worker.work(logging_level="WARNING", with_scheduler=False)
    finally:
        stop_notifiers(notifiers)
        scheduler.stop()
        rt.close()


def _exit_while_starting(signum: int, frame: object) -> None:
    raise SystemExit(0)


if __name__ == "__main__":
    main()
