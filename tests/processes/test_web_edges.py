"""The `web` process's edges, through a real gunicorn with the project's config: what a client
controls cannot forge access-log lines, set the scheme or the mount path, or get an HTML page."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.services import wait_until
from tests.support.web import Gunicorn

pytestmark = pytest.mark.integration


class Web:
    """A running web process, spoken to over raw sockets, and its log."""

    def __init__(self, server: Gunicorn) -> None:
        self.server = server
        self.port = server.port

    def raw(self, request: bytes) -> tuple[int, dict[str, str], bytes]:
        """Send `request` as is; the answer's status, headers (lower-case) and body."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as conn:
            conn.sendall(request)
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        return int(status_line.split()[1]), headers, body

    def get(self, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
        lines = "".join(f"{name.replace('_', '-')}: {value}\r\n" for name, value in headers.items())
        return self.raw(
            f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{lines}\r\n".encode()
        )

    def log(self) -> str:
        return self.server.log()


@pytest.fixture
def web_with(start_web: Callable[..., Gunicorn]) -> Callable[..., Web]:
    """Start gunicorn as the Procfile does, with extra environment."""
    return lambda **env: Web(start_web(**env))


def assert_problem(answer: tuple[int, dict[str, str], bytes], status: int) -> dict[str, Any]:
    code, headers, body = answer
    assert code == status, body
    assert headers["content-type"] == "application/problem+json", headers
    problem = json.loads(body)
    assert problem["status"] == status and problem["title"] and problem["detail"]
    return problem


def test_gunicorns_own_refusals_are_problems(web_with: Callable[..., Web]) -> None:
    web = web_with()
    assert_problem(web.raw(b"NOT A REQUEST LINE\r\n\r\n"), 400)
    assert_problem(web.raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n"), 400)
    huge = b"X-Big: " + b"a" * 9000 + b"\r\n"
    assert_problem(web.raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + huge + b"\r\n"), 431)


def test_a_newline_in_a_path_cannot_forge_an_access_log_line(web_with: Callable[..., Web]) -> None:
    web = web_with()
    forged = '127.0.0.1 - - [01/Jan/2026:00:00:00 +0000] "GET /admin HTTP/1.1" 200'
    web.get("/healthz%0D%0A" + forged.replace(" ", "%20").replace('"', "%22"))
    wait_until(lambda: "/healthz" in web.log().split("Booting worker")[-1], 10, "the access line")
    lines = web.log().splitlines()
    assert not any(line.startswith("127.0.0.1 - - [01/Jan/2026") for line in lines), lines
    assert any("/healthz\\x0d\\x0a127.0.0.1" in line and "\\x22GET /admin" in line for line in lines), lines


def test_device_tokens_stay_out_of_the_access_log(web_with: Callable[..., Web]) -> None:
    web = web_with()
    token = "fcm-registration-token-" + "z" * 20
    web.raw(f"DELETE /api/devices/{token} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    wait_until(lambda: "DELETE /api/devices/<token>" in web.log(), 10, "the access line")
    assert token not in web.log()


def test_the_scheme_is_taken_from_forwarded_allow_ips_only(web_with: Callable[..., Web]) -> None:
    trusting = web_with()  # loopback, where this test's requests come from, is trusted by default
    assert "strict-transport-security" in trusting.get("/healthz", X_Forwarded_Proto="https")[1]
    assert "strict-transport-security" not in trusting.get("/healthz", X_Forwarded_Ssl="on")[1]
    both = trusting.get("/healthz", X_Forwarded_Proto="http", X_Forwarded_Ssl="on")  # once a 400 page
    assert both[0] == 200 and "strict-transport-security" not in both[1]

    elsewhere = web_with(FORWARDED_ALLOW_IPS="192.0.2.1")  # a router this test is not
    assert "strict-transport-security" not in elsewhere.get("/healthz", X_Forwarded_Proto="https")[1]


def test_a_client_cannot_set_the_mount_path(web_with: Callable[..., Web]) -> None:
    web = web_with()
    body = b'{"text": "x"}'
    status, headers, _ = web.raw(
        b"POST /api/notes HTTP/1.1\r\nHost: x\r\nConnection: close\r\nSCRIPT_NAME: /evil\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    assert status == 202
    assert headers["location"].startswith("/api/commands/"), headers
