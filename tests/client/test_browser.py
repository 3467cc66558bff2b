"""The browser client in a real headless Chromium (Debian's `chromium`, driven by Playwright),
against the real app and a real worker process.

The page under test is on another origin than the API: it is served by a second local HTTP
server, and the API allows it through CORS_ORIGINS. The client is imported from the API's
/client.js, as a frontend would. Each write's `applied` promise is watched from the page; the
tests count how often each settled, and what Redis and the store hold, so that a write settled
twice or applied twice shows.

Chromium comes from the `browser` fixture (tests/support/browser.py says what happens when it is
missing).
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from gateway.keys import Keys
from tests.support import ROOT
from tests.support.api import SECRET, token
from tests.support.services import wait_until
from tests.support.web import Gunicorn

pytestmark = pytest.mark.integration

USER = "alice"
PAGE = b"<!doctype html><meta charset=utf-8><title>client under test</title><p>a frontend elsewhere</p>"

# Loaded into the page: a client of the API, and a record of what happened to each write.
HARNESS = (ROOT / "tests" / "client" / "harness.js").read_text()


# The app, behind a wrapper that refuses the paths REFUSED_PATHS names (for the fallback test).
APP = "tests.client.refusing_app:app"


class PageServer:
    """A second web server, on another port (so another origin), serving the page under test."""

    def __init__(self) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the standard library's name
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(PAGE)))
                self.end_headers()
                self.wfile.write(PAGE)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def page_server() -> Iterator[PageServer]:
    server = PageServer()
    yield server
    server.close()


@pytest.fixture
def refused_paths() -> str:
    """Paths the API answers 403 for (tests/client/refusing_app.py); a test parametrizes it."""
    return ""


@pytest.fixture
def api(
    settings_env: dict[str, str], page_server: PageServer, tmp_path: Path, refused_paths: str
) -> Iterator[Gunicorn]:
    """The API, on its own origin, open to the page's origin, with HS256 tokens."""
    env = settings_env | {
        "JWT_SECRET": SECRET,
        "CORS_ORIGINS": page_server.origin,
        "NOTIFY_KEEPALIVE_SECONDS": "1",
        "REFUSED_PATHS": refused_paths,
    }
    server = Gunicorn(env, tmp_path / "web.log", APP)
    yield server
    server.stop(graceful=False)
    print(server.log_path.read_text(errors="replace")[-3000:])


@pytest.fixture
def page(browser: Any, page_server: PageServer, api: Gunicorn) -> Iterator[Any]:
    """A fresh page on the page server's origin; `tokens` counts the tokens it was given."""
    context = browser.new_context()
    tab = context.new_page()
    tab.errors = []
    tab.on("pageerror", lambda error: tab.errors.append(str(error)))
    tab.tokens = []
    tab.token_lifetime = [60]

    def issue() -> str:
        lifetime = tab.token_lifetime.pop(0) if len(tab.token_lifetime) > 1 else tab.token_lifetime[0]
        tab.tokens.append(token(USER, exp=int(time.time()) + lifetime))
        return tab.tokens[-1]

    tab.expose_function("issueToken", issue)
    tab.goto(page_server.origin + "/")
    yield tab
    context.close()


def open_client(page: Any, api: Gunicorn, **options: Any) -> None:
    page.evaluate(HARNESS, {"api": api.base, "options": options})


def record(page: Any) -> dict[str, Any]:
    return page.evaluate("window.record")


def settled(page: Any, count: int, timeout: float = 20) -> list[dict[str, Any]]:
    """Wait until `count` writes have settled (or were refused); their entries."""

    def done() -> list[dict[str, Any]] | None:
        writes = record(page)["writes"]
        finished = [w for w in writes if w["status"] in ("applied", "failed", "refused")]
        return writes if len(writes) >= count and len(finished) == len(writes) else None

    return wait_until(done, timeout, f"{count} writes settled: {record(page)}")


def connection(page: Any) -> dict[str, Any]:
    return page.evaluate("window.gw.connection")


def wait_transport(page: Any, transport: str) -> None:
    wait_until(
        lambda: connection(page) == {"state": "open", "transport": transport},
        15,
        f"an open {transport} connection: {record(page)['connection']}",
    )


def stored(api: Gunicorn, collection: str, entity_id: str) -> Any:
    status, body, _ = api.call("GET", f"/api/{collection}/{entity_id}", headers=bearer())
    return body if status == 200 else None


def bearer() -> dict[str, str]:
    return {"Authorization": f"Bearer {token(USER)}"}


def commands_in_redis(redis_url: str, prefix: str) -> int:
    client = redis.Redis.from_url(redis_url)
    try:
        return sum(1 for _ in client.scan_iter(match=f"{{{prefix}:*}}:cmd:*", count=1000))
    finally:
        client.close()


def events_in_log(redis_url: str, prefix: str) -> list[dict[str, Any]]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return [fields for _, fields in client.xrange(Keys(prefix).events(USER))]
    finally:
        client.close()


def test_writes_resolve_applied_from_another_origin(
    page: Any, api: Gunicorn, page_server: PageServer, start_worker: Any, redis_url: str, prefix: str
) -> None:
    assert page.evaluate("location.origin") == page_server.origin != api.base
    start_worker()
    open_client(page, api)
    page.evaluate("start('create', 'notes', {id: 'n1', text: 'first'})")
    settled(page, 1)
    page.evaluate("start('replace', 'notes', 'n1', {text: 'second', tags: ['a']})")
    page.evaluate("start('patch', 'notes', 'n1', {tags: null, done: true})")
    page.evaluate("start('create', 'notes', {id: 'n2', text: 'gone soon'})")
    page.evaluate("start('delete', 'notes', 'n2')")
    page.evaluate("start('create', 'notes', {id: 'n1', text: 'again'})")  # n1 exists: failed
    page.evaluate("start('create', 'notes', {id: 'bad/id'})")  # refused at once: 422
    writes = settled(page, 7)
    assert [w["status"] for w in writes] == ["applied"] * 5 + ["failed", "refused"], writes
    assert all(w["settled"] == 1 for w in writes[:6]), writes
    assert writes[5]["code"] == "failed" and "already exists" in writes[5]["error"]
    assert writes[6]["code"] == "refused"
    assert stored(api, "notes", "n1") == {"id": "n1", "text": "second", "done": True}
    assert stored(api, "notes", "n2") is None
    assert connection(page) == {"state": "open", "transport": "websocket"}
    seen = record(page)
    assert sorted(seen["applied"].values()) == [1] * 5 and list(seen["failed"].values()) == [1]
    assert commands_in_redis(redis_url, prefix) == 6
    assert page.evaluate("gw.get('notes', 'n1')") == {"id": "n1", "text": "second", "done": True}
    assert page.evaluate("gw.list('notes').then((page) => page.items.map((d) => d.id))") == ["n1"]
    assert page.errors == []


def test_pending_writes_settle_once_across_a_web_server_restart(
    page: Any, api: Gunicorn, start_worker: Any, redis_url: str, prefix: str
) -> None:
    open_client(page, api)
    wait_transport(page, "websocket")
    for n in range(5):  # accepted, not applied: no worker runs yet
        page.evaluate(f"start('replace', 'notes', 'r{n}', {{n: {n}}})")
    page.evaluate("start('patch', 'notes', 'r0', {patched: true})")
    wait_until(lambda: all(w["status"] == "pending" for w in record(page)["writes"]), 10, "accepted")
    api.stop()  # SIGTERM: the WebSocket is closed (1001), then nothing answers on the port
    for n in range(5, 8):  # sent while the web server is down: retried until it is back
        page.evaluate(f"start('replace', 'notes', 'r{n}', {{n: {n}}})")
    assert 1001 in record(page)["closes"]
    start_worker()  # the commands accepted before are applied while the web server is down
    wait_until(lambda: len(events_in_log(redis_url, prefix)) == 6, 10, "the first six applied")
    api.start()
    writes = settled(page, 9)
    assert [w["status"] for w in writes] == ["applied"] * 9, writes
    assert [w["settled"] for w in writes] == [1] * 9
    seen = record(page)
    assert sorted(seen["applied"].values()) == [1] * 9, seen["applied"]
    assert commands_in_redis(redis_url, prefix) == 9  # no write was queued twice
    assert len(events_in_log(redis_url, prefix)) == 9  # nor applied twice
    for n in range(8):
        expected = {"id": f"r{n}", "n": n} | ({"patched": True} if n == 0 else {})
        assert stored(api, "notes", f"r{n}") == expected
    wait_transport(page, "websocket")


def test_a_write_whose_answer_was_lost_is_sent_again_and_queued_once(
    page: Any, api: Gunicorn, start_worker: Any, redis_url: str, prefix: str
) -> None:
    start_worker()
    open_client(page, api)
    sent: list[dict[str, str]] = []

    def lose_the_first_answer(route: Any) -> None:
        if route.request.method != "PUT":
            route.continue_()
            return
        sent.append(route.request.headers)
        if len(sent) == 1:
            route.fetch()  # it reaches the server and is queued; its answer never reaches the page
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route(f"{api.base}/api/notes/**", lose_the_first_answer)
    page.evaluate("start('replace', 'notes', 'once', {text: 'only one'})")
    writes = settled(page, 1)
    assert writes[0]["status"] == "applied" and writes[0]["settled"] == 1
    assert writes[0]["replayed"] is True
    assert len(sent) == 2 and sent[0]["idempotency-key"] == sent[1]["idempotency-key"]
    assert commands_in_redis(redis_url, prefix) == 1
    assert len(events_in_log(redis_url, prefix)) == 1


def test_an_expired_token_is_renewed_and_the_socket_reopened(
    page: Any, api: Gunicorn, start_worker: Any
) -> None:
    page.token_lifetime[:] = [2, 60]  # the first token expires in 2 s: the server closes with 4401
    start_worker()
    open_client(page, api)
    wait_transport(page, "websocket")
    wait_until(lambda: 4401 in record(page)["closes"], 10, "the server closing the socket with 4401")
    wait_transport(page, "websocket")
    assert len(page.tokens) == 2
    page.evaluate("start('replace', 'notes', 't1', {n: 1})")
    writes = settled(page, 1)
    assert writes[0]["status"] == "applied"
    assert record(page)["connection"][:4] == [
        "connecting:websocket",
        "open:websocket",
        "down:websocket",
        "connecting:websocket",
    ]


@pytest.mark.parametrize("refused_paths", ["/ws"])
def test_without_websockets_the_client_uses_sse_and_without_sse_polling(
    page: Any, api: Gunicorn, start_worker: Any
) -> None:
    start_worker()
    open_client(page, api)
    wait_transport(page, "sse")
    page.evaluate("start('replace', 'notes', 's1', {via: 'sse'})")
    page.evaluate("start('create', 'notes', {id: 's1'})")  # exists by then: failed
    writes = settled(page, 2)
    assert [w["status"] for w in writes] == ["applied", "failed"]

    api.stop()
    api.start(REFUSED_PATHS="/ws,/api/events")
    wait_transport(page, "poll")
    page.evaluate("start('replace', 'notes', 'p1', {via: 'polling'})")
    page.evaluate("start('create', 'notes', {id: 'p1'})")
    writes = settled(page, 4)
    assert [w["status"] for w in writes] == ["applied", "failed"] * 2
    assert [w["settled"] for w in writes] == [1] * 4
    assert stored(api, "notes", "p1") == {"id": "p1", "via": "polling"}
    tried = record(page)["connection"]
    assert tried.index("connecting:websocket") < tried.index("open:sse") < tried.index("open:poll")


def test_the_demo_page_shows_writes_pending_applied_and_failed(
    browser: Any, settings_env: dict[str, str], start_worker: Any, tmp_path: Path
) -> None:
    """The demo, in open dev mode as `make run` serves it, under its own CSP."""
    server = Gunicorn(settings_env, tmp_path / "demo-web.log", APP)
    context = browser.new_context()
    tab = context.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda error: problems.append(str(error)))
    tab.on("console", lambda message: message.type == "error" and problems.append(message.text))
    try:
        start_worker()
        tab.goto(server.base + "/demo")
        tab.locator("#connection.open").wait_for(timeout=10_000)
        tab.fill("#text", "Write the docs")
        tab.press("#text", "Enter")
        tab.locator("#list li[data-state=applied]").wait_for(timeout=10_000)
        tab.click("#duplicate")
        failed = tab.locator("#list li[data-state=failed] .note")
        failed.wait_for(timeout=10_000)
        assert "already exists" in failed.inner_text()
        tab.click("#offline")
        tab.locator("#connection.down").wait_for(timeout=10_000)
        tab.click("#offline")
        tab.locator("#connection.open").wait_for(timeout=10_000)
        assert problems == []
    finally:
        context.close()
        server.stop(graceful=False)
