"""The /admin page in a real headless Chromium (Debian's `chromium`, driven by Playwright),
against the web process as the Procfile runs it and a real worker: an operator logs in with a
token, watches a backlog drain, sees a dead letter appear, replays it once its cause is fixed,
and sees the replay applied.

ADMIN_SCREENSHOT=<path> saves the page with the dead letter shown (docs/admin.png is taken so).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.support.api import SECRET, token
from tests.support.services import wait_until
from tests.support.web import Gunicorn

pytestmark = pytest.mark.integration


@pytest.fixture
def api(start_web: Any) -> Gunicorn:
    """The web process with HS256 tokens: the page needs an operator's."""
    return start_web(JWT_SECRET=SECRET)


def test_an_operator_sees_a_dead_letter_appear_and_replays_it_applied(
    browser: Any, api: Gunicorn, start_worker: Any, tmp_path: Path
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 760})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda message: message.type == "error" and problems.append(message.text))
    try:
        page.goto(api.base + "/admin")
        page.locator("#login").wait_for(timeout=10_000)  # no token yet: 401, the page asks for one
        page.fill("#token", token("bob", roles=["reader"], exp=2_000_000_000))
        page.click("#login button[type=submit]")
        wait_until(lambda: "Only operators" in page.inner_text("#login-reason"), 10, "403 shown")
        problems.clear()  # the browser logs the refused calls as errors: those were expected
        page.fill("#token", token("olga", roles=["admin"], exp=2_000_000_000))
        page.click("#login button[type=submit]")
        page.locator("#main").wait_for(timeout=10_000)
        assert page.evaluate("sessionStorage.length") == 1

        for n in range(12):  # no worker yet: a backlog builds up
            api.write("alice", f"/api/notes/b{n}", {"n": n})
        wait_until(lambda: page.inner_text("#backlog") == "12", 10, "the backlog shown")
        assert page.inner_text("#workers") == "no live worker: nothing is being applied"

        start_worker()
        wait_until(lambda: page.inner_text("#backlog") == "0", 30, "the backlog drained")
        page.locator("#workers li[data-worker]").wait_for(timeout=10_000)

        traced = {**alice(), "X-Request-ID": "admin-page-1"}
        sent = api.call("PATCH", "/api/notes/later", {"done": True}, traced)  # no such note: dead letter
        assert sent[0] == 202
        row = page.locator("#dead tbody tr[data-collection=notes]")
        row.wait_for(timeout=20_000)
        assert "patch" in row.inner_text() and "alice" in row.inner_text()
        assert row.get_attribute("data-request-id") == "admin-page-1"  # its lines in the logs
        assert page.inner_text("#dead-count") == "1"

        api.write("alice", "/api/notes/later", {"text": "written later"})  # the cause, fixed
        wait_until(lambda: api.call("GET", "/api/notes/later", headers=alice())[0] == 200, 20, "created")
        page.screenshot(
            path=os.environ.get("ADMIN_SCREENSHOT") or str(tmp_path / "admin.png"), full_page=True
        )
        row.locator("button.replay").click()
        page.locator("#replays li[data-status=applied]").wait_for(timeout=20_000)
        assert page.locator("#dead tbody tr").count() == 0
        status, stored, _ = api.call("GET", "/api/notes/later", headers=alice())
        assert stored == {"id": "later", "text": "written later", "done": True}
        assert page.locator("#backlog-chart polyline[data-series=backlog]").count() == 1
        assert page.locator("#throughput-chart polyline").count() == 3
        assert problems == []
    finally:
        context.close()


def alice() -> dict[str, str]:
    return {"Authorization": f"Bearer {token('alice')}"}
