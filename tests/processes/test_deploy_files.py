"""The files a platform reads: app.json describes every setting, .python-version names the
Python the project runs on, and Procfile.dev runs the web and worker processes under honcho."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from settings import Settings
from tests.support import ROOT
from tests.support.services import wait_until

# Read by gunicorn.conf.py, not by the settings model.
GUNICORN_VARIABLES = {"WEB_CONCURRENCY", "WORKER_CONNECTIONS", "FORWARDED_ALLOW_IPS"}


def app_json() -> dict[str, Any]:
    return json.loads((ROOT / "app.json").read_text())


def test_app_json_describes_every_setting() -> None:
    env = app_json()["env"]
    expected = {name.upper() for name in Settings.model_fields} | GUNICORN_VARIABLES
    assert set(env) == expected
    for name, entry in env.items():
        assert len(entry["description"]) > 20, name
        assert entry.get("required", True) is False or "value" in entry or "generator" in entry, name


def test_app_json_deploys_fail_closed_with_a_generated_secret() -> None:
    manifest = app_json()
    assert manifest["env"]["JWT_SECRET"]["generator"] == "secret"
    assert manifest["env"]["APP_ENV"]["value"] == "production"
    assert {k: v["quantity"] for k, v in manifest["formation"].items()} == {"web": 1, "worker": 1}
    plans = {addon["plan"].split(":")[0] for addon in manifest["addons"]}
    assert plans == {"heroku-redis", "heroku-postgresql"}


def test_python_version_is_the_one_the_project_requires() -> None:
    pinned = (ROOT / ".python-version").read_text().strip()
    assert pinned == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert 'requires-python = ">=3.11"' in (ROOT / "pyproject.toml").read_text()


def test_empty_variables_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """A platform's form may send a blank config var for a setting left alone."""
    for name in ("PORT", "PARTITIONS", "JWT_SECRET", "MONGO_URL"):
        monkeypatch.setenv(name, "")
    settings = Settings(app_env="development")
    assert (settings.port, settings.partitions, settings.jwt_secret, settings.mongo_url) == (
        5000,
        16,
        None,
        None,
    )


@pytest.mark.integration
def test_honcho_runs_procfile_dev(settings_env: dict[str, str], tmp_path: Path) -> None:
    """`honcho -f Procfile.dev start` keeps web and worker running (the Procfile's `release`
    line ends, and would take the others with it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = os.environ | settings_env
    env.pop("APP_ENV")  # Procfile.dev says development itself
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    log_path = tmp_path / "honcho.log"
    with log_path.open("wb") as log:
        honcho = subprocess.Popen(
            [sys.executable, "-m", "honcho", "-f", "Procfile.dev", "start", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:

        def answers() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    return response.status == 200
            except OSError:
                return False

        wait_until(answers, 30, "web under honcho")
        wait_until(lambda: "worker.1" in log_path.read_text() and "partitions" in log_path.read_text(), 30)
        time.sleep(2)
        assert honcho.poll() is None, log_path.read_text()
    finally:
        os.killpg(honcho.pid, signal.SIGTERM)
        honcho.wait(30)
