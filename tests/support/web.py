"""The `web` process as the Procfile runs it, for tests: gunicorn with the project's
gunicorn.conf.py, one gevent process, on a free port of this machine."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT
from tests.support.notify import Endpoint
from tests.support.services import wait_until


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Gunicorn(Endpoint):
    """`gunicorn <app>`, started at once and answering `/healthz` before the constructor
    returns; a test can stop it (SIGTERM, as a platform does) and start it again. Its output
    goes to `log_path`."""

    def __init__(self, env: dict[str, str], log_path: Path, app: str = "wsgi:app") -> None:
        port = free_port()
        super().__init__("127.0.0.1", port)
        self.app = app
        self.env = {
            **os.environ,
            **env,
            "PORT": str(port),
            "WEB_CONCURRENCY": env.get("WEB_CONCURRENCY", "1"),
        }
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self, **env: str) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", self.app],
                cwd=ROOT,
                env=self.env | env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(self._answers, 30, "gunicorn to answer")

    def _answers(self) -> bool:
        assert self.process is not None and self.process.poll() is None, self.log()
        try:
            return self.call("GET", "/healthz")[0] == 200
        except OSError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, *, graceful: bool = True) -> int | None:
        """SIGTERM, as a platform stops a process (`graceful`), else SIGKILL; its exit code."""
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            if graceful:
                process.terminate()
            else:
                process.kill()
        try:
            return process.wait(25)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait(5)
