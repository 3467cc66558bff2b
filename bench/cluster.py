"""A Redis Cluster beside one Redis: apply throughput with 1, 2 and 4 worker processes, and the
end-to-end latency at a steady rate, in one run (docs/scaling.md).

Starts a loopback cluster of the machine's redis-server (3 masters, 3 replicas, ports
7100-7105, as the tests' cluster lane does), runs bench.apply's product on a backlog of N
commands against the plain Redis and against the cluster (RQ's queues on the plain Redis in
both), then bench.e2e against each, and prints every rate with its ratio to the plain Redis's
with one worker process. The cluster is stopped at the end.

    .venv/bin/python -m bench.cluster --commands 20000 --redis-url redis://127.0.0.1:6379/14
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from bench.apply import product
from bench.common import DEFAULT_DATABASE, DEFAULT_REDIS, ROOT, cluster_settings
from tests.support import cluster


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--commands", type=int, default=20_000)
    parser.add_argument("--workers", default="1,2,4", help="worker processes to measure, comma-separated")
    parser.add_argument("--e2e-rate", type=float, default=300)
    parser.add_argument("--e2e-seconds", type=float, default=10)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS, help="the plain Redis (RQ's, in both runs)")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE)
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",")]

    nodes = cluster.start()
    try:
        runs = {
            "one Redis": (args.redis_url, {}),
            "Redis Cluster": (nodes.url, cluster_settings(args.redis_url)),
        }
        rates = {
            (name, workers): product(workers, args.commands, url, args.database_url, settings=settings)
            for name, (url, settings) in runs.items()
            for workers in counts
        }
        base = rates[("one Redis", counts[0])]
        print(f"\napply throughput, {args.commands} commands to PostgreSQL")
        print(f"{'run':40} {'commands/s':>11} {'per worker':>11} {'x one Redis, 1 worker':>22}")
        for (name, workers), rate in rates.items():
            label = f"{name}, {workers} worker processes"
            print(f"{label:40} {rate:11.0f} {rate / workers:11.0f} {rate / base:22.2f}")
        for name, (url, settings) in runs.items():
            print(f"\n{name}:", flush=True)
            command = [
                sys.executable,
                "-m",
                "bench.e2e",
                "--redis-url",
                url,
                "--database-url",
                args.database_url,
            ]
            command += ["--rate", str(args.e2e_rate), "--seconds", str(args.e2e_seconds)]
            if settings:
                command += ["--queue-redis-url", args.redis_url]
            subprocess.run(command, cwd=ROOT, check=True)
    finally:
        nodes.stop()


if __name__ == "__main__":
    main()
