"""Logs: one format for every process (LOG_FORMAT), and X-Request-ID on answers and log lines."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from typing import Any

import pytest

from gateway import logs
from settings import load
from tests.support.services import wait_until
from tests.support.web import Gunicorn


def line(formatter: logging.Formatter, message: str = "hello %s", **extra: Any) -> str:
    record = logging.LogRecord("gateway.test", logging.WARNING, __file__, 1, message, ("world",), None)
    for name, value in extra.items():
        setattr(record, name, value)
    return formatter.format(record)


def test_json_lines_carry_the_context_fields() -> None:
    parsed = json.loads(line(logs.JsonFormatter(), request_id="r1", command_id="3-abc", user="alice"))
    assert parsed["msg"] == "hello world"
    assert (parsed["level"], parsed["logger"]) == ("WARNING", "gateway.test")
    assert (parsed["request_id"], parsed["command_id"], parsed["user"]) == ("r1", "3-abc", "alice")
    assert parsed["ts"].endswith("+00:00")
    assert "request_id" not in json.loads(line(logs.JsonFormatter()))


def test_a_traceback_stays_on_its_json_line() -> None:
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    text = logs.JsonFormatter().format(record)
    assert "\n" not in text
    assert "ValueError: boom" in json.loads(text)["exc"]


def test_text_lines_append_the_context() -> None:
    assert line(logs.TextFormatter(), command_id="3-abc").endswith(
        "gateway.test: hello world [command_id=3-abc]"
    )
    assert line(logs.TextFormatter()).endswith("gateway.test: hello world")


@pytest.mark.parametrize(
    ("setting", "env", "expected"),
    [
        (None, "production", "json"),
        (None, "development", "text"),
        (None, "test", "text"),
        ("text", "production", "text"),
    ],
)
def test_the_default_format_follows_app_env(setting: str | None, env: str, expected: str) -> None:
    assert logs.format_for(setting, env) == expected


def test_log_format_is_a_setting() -> None:
    assert load(app_env="development", log_format="json").log_format == "json"
    with pytest.raises(ValueError, match="log_format"):
        load(app_env="development", log_format="xml")


@pytest.mark.integration
def test_a_request_id_is_made_or_taken_and_echoed(client: Any) -> None:
    made = client.get("/healthz").headers["X-Request-ID"]
    assert len(made) == 16 and made != client.get("/healthz").headers["X-Request-ID"]
    assert (
        client.get("/healthz", headers={"X-Request-ID": "router-id-42"}).headers["X-Request-ID"]
        == "router-id-42"
    )
    junk = client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"}).headers["X-Request-ID"]
    assert junk != "bad id\twith spaces" and len(junk) == 16
    problem = client.post(
        "/api/notes", data=b"{", content_type="application/json", headers={"X-Request-ID": "p-1"}
    )
    assert problem.status_code == 400 and problem.headers["X-Request-ID"] == "p-1"


@pytest.mark.integration
def test_the_app_logs_its_info_lines_with_the_request_id(make_app: Any, capsys: Any) -> None:
    app = make_app(log_format="json")
    logger = logging.getLogger("gateway.test")

    @app.get("/log-something")
    def log_something() -> str:
        logger.info("inside the request")
        return "ok"

    app.test_client().get("/log-something", headers={"X-Request-ID": "req-7"})
    lines = [json.loads(raw) for raw in capsys.readouterr().err.splitlines() if raw.startswith("{")]
    [mine] = [entry for entry in lines if entry["msg"] == "inside the request"]
    assert (mine["level"], mine["request_id"]) == ("INFO", "req-7")  # INFO lines are kept


@pytest.mark.integration
def test_gunicorn_and_the_app_log_json_lines_in_production_format(start_web: Callable[..., Gunicorn]) -> None:
    web = start_web(LOG_FORMAT="json")
    assert web.call("GET", "/healthz", headers={"X-Request-ID": "probe-1"})[0] == 200
    wait_until(lambda: "probe-1" in web.log(), 10, "the access line")
    web.stop()
    parsed = [json.loads(raw) for raw in web.log().splitlines()]  # every line is one JSON object
    access = [
        entry
        for entry in parsed
        if entry["logger"] == "gunicorn.access" and entry.get("request_id") == "probe-1"
    ]
    assert access and access[0]["path"] == "/healthz" and access[0]["status"] == 200
    assert any(entry["logger"] == "gunicorn.error" and "Booting worker" in entry["msg"] for entry in parsed)
