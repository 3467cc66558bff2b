"""The worker runtime's side of the notifier contract: its `NotifierServices`, and the RQ job
that runs a notifier's background jobs.

The services are the runtime's own clients (its Redis, its push queue) seen through the
contract, so a notifier opens and closes nothing of the gateway's. A `plugins.notifier.Job` is
queued on the `<prefix>-push` queue as `run_job`, with the plugin's function as a keyword; RQ
runs it in a worker process (the gateway's, or a plain `rq worker` of the same environment),
which calls the function with that process's services.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

import redis
from rq import Queue

from gateway.device_registry import DeviceRegistry
from plugins.notifier import Job
from settings import Settings
from workers import runtime

RUN_JOB = "workers.plugin_services.run_job"


class RuntimeServices:
    """A worker runtime's clients as notifier plugins see them (`plugins.notifier.NotifierServices`).

    Without a runtime, the process's one (`workers.runtime.current()`), looked up on each use,
    so that services handed out before the runtime is installed still reach it."""

    def __init__(self, rt: runtime.Runtime | None = None) -> None:
        self._runtime = rt

    @property
    def runtime(self) -> runtime.Runtime:
        return self._runtime or runtime.current()

    @property
    def settings(self) -> Settings:
        return self.runtime.gw.settings

    @property
    def redis(self) -> redis.Redis:
        return self.runtime.gw.redis

    @property
    def devices(self) -> DeviceRegistry:
        gw = self.runtime.gw
        return DeviceRegistry(gw.redis, gw.keys)

    def enqueue(self, jobs: Sequence[Job]) -> None:
        self.runtime.push_queue.enqueue_many([_prepared(job) for job in jobs])


def _prepared(job: Job) -> Any:
    return Queue.prepare_data(
        RUN_JOB,
        args=job.args,
        kwargs={"function": job.function},
        timeout=job.timeout_seconds,
        result_ttl=0,
        failure_ttl=job.keep_failed_seconds,
        description=job.description or job.function,
    )


def run_job(*args: Any, function: str) -> Any:
    """RQ job: a notifier's job, `function(services, *args)` with this process's services."""
    module, _, name = function.rpartition(".")
    return getattr(importlib.import_module(module), name)(RuntimeServices(), *args)
