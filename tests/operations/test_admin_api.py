"""The operators' JSON endpoints under /admin/api: who may call them, the snapshot they share
with `flask status`, and dead letters listed, replayed and dropped, one or all matching."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.api import SECRET, assert_problem, bearer, token
from tests.support.operations import DeadLetterMaker, wait_for_snapshot

pytestmark = pytest.mark.integration

LATER = 4_000_000_000  # tokens made at import must outlive the session: `exp` far ahead
OPERATOR = bearer(token("olga", roles=["admin"], exp=LATER))
USER = bearer(token("ulrich", roles=["reader"], exp=LATER))


@pytest.fixture
def jwt_app(make_app: Callable[..., Any]) -> Any:
    return make_app(jwt_secret=SECRET)


@pytest.fixture
def jwt_client(jwt_app: Any) -> Any:
    return jwt_app.test_client()


@pytest.fixture
def dead(jwt_app: Any) -> DeadLetterMaker:
    return DeadLetterMaker(jwt_app.extensions["gateway"])


CALLS = [
    ("GET", "/admin/api/status", None),
    ("GET", "/admin/api/dead-letters", None),
    ("GET", "/admin/api/dead-letters/0/1-0", None),
    ("POST", "/admin/api/dead-letters/replay", {"all": True}),
    ("POST", "/admin/api/dead-letters/drop", {"all": True}),
    ("GET", "/admin/api/commands/0-abc", None),
]


@pytest.mark.parametrize(("method", "path", "body"), CALLS)
def test_only_operators_may_call_the_admin_endpoints(
    jwt_client: Any, dead: DeadLetterMaker, method: str, path: str, body: Any
) -> None:
    dead(0)
    assert_problem(jwt_client.open(path, method=method, json=body), 401)
    assert_problem(jwt_client.open(path, method=method, json=body, headers=USER), 403)
    answer = jwt_client.open(path, method=method, json=body, headers=OPERATOR)
    assert answer.status_code in (200, 404), answer.get_data(as_text=True)


def test_the_page_is_public_static_and_under_a_strict_policy(jwt_client: Any) -> None:
    page = jwt_client.get("/admin")
    assert page.status_code == 200 and page.mimetype == "text/html"
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy and "unsafe" not in policy
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert jwt_client.get("/admin/admin.js").mimetype == "text/javascript"
    assert jwt_client.get("/admin/admin.css").mimetype == "text/css"
    assert b"http" not in jwt_client.get("/admin/admin.js").data.replace(b"http://www.w3.org/2000/svg", b"")


def test_in_open_dev_mode_the_one_user_is_an_operator(client: Any) -> None:
    assert client.get("/admin/api/status").status_code == 200


def test_the_status_shows_the_backlog_while_no_worker_runs_and_its_fall_when_one_does(
    jwt_app: Any, jwt_client: Any, start_worker: Any
) -> None:
    alice = bearer(token("alice"))
    for n in range(5):
        assert jwt_client.post("/api/notes", json={"n": n}, headers=alice).status_code == 202
    time.sleep(0.3)
    snap = jwt_client.get("/admin/api/status", headers=OPERATOR).json
    assert snap["backlog"] == 5 and snap["oldest_pending_seconds"] >= 0.3 and snap["workers"] == []
    start_worker()
    gw = jwt_app.extensions["gateway"]
    wait_for_snapshot(gw, lambda s: s["backlog"] == 0, 30, "drained")
    snap = jwt_client.get("/admin/api/status", headers=OPERATOR).json
    assert snap["backlog"] == 0 and snap["oldest_pending_seconds"] is None and len(snap["workers"]) == 1


def test_dead_letters_listed_with_filters_then_replayed_and_dropped(
    jwt_client: Any, dead: DeadLetterMaker
) -> None:
    a = dead(0, collection="notes", user="alice", error="the document 'x' does not exist")
    b = dead(1, collection="tasks", user="bob", error="value too long")
    c = dead(2, collection="tasks", user="bob", error="value too long again")

    def listed(**query: str) -> dict[str, Any]:
        answer = jwt_client.get("/admin/api/dead-letters", query_string=query, headers=OPERATOR)
        assert answer.status_code == 200, answer.json
        return answer.json

    everything = listed()
    assert everything["matching"] == 3 and [d["dead_letter"] for d in everything["dead_letters"]] == [a, b, c]
    assert everything["dead_letters"][0]["user"] == "alice"
    assert [d["dead_letter"] for d in listed(collection="tasks", limit="1")["dead_letters"]] == [b]
    assert listed(collection="tasks", limit="1")["matching"] == 2
    assert listed(error="DOES NOT", since="1h")["matching"] == 1
    assert listed(since="2099-01-01T00:00:00Z")["matching"] == 0
    one = jwt_client.get(f"/admin/api/dead-letters/{a}", headers=OPERATOR).json
    assert one["dead_letter"] == a and one["error"] == "the document 'x' does not exist"

    replayed = jwt_client.post("/admin/api/dead-letters/replay", json={"dead_letter": a}, headers=OPERATOR)
    assert replayed.status_code == 200, replayed.json
    [done] = replayed.json["replayed"]
    followed = jwt_client.get(f"/admin/api/commands/{done['command_id']}", headers=OPERATOR).json
    assert (followed["status"], followed["user"], followed["collection"]) == ("pending", "alice", "notes")
    alice_sees = jwt_client.get(f"/api/commands/{done['command_id']}", headers=bearer(token("alice")))
    assert alice_sees.status_code == 200  # the replay is alice's command, not the operator's

    dropped = jwt_client.post(
        "/admin/api/dead-letters/drop", json={"all": True, "error": "too long"}, headers=OPERATOR
    )
    assert dropped.json == {"dropped": 2}
    assert listed()["matching"] == 0


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({}, 422),
        ({"all": False}, 422),
        ({"dead_letter": "0/1-0", "all": True}, 422),
        ({"all": True, "since": "yesterday"}, 400),
        ({"dead_letter": "0/1-0"}, 404),
        ({"dead_letter": "not a name"}, 422),
    ],
)
def test_a_replay_or_drop_that_names_nothing_is_refused(
    jwt_client: Any, dead: DeadLetterMaker, body: Any, status: int
) -> None:
    name = dead(0)
    for action in ("replay", "drop"):
        answer = jwt_client.post(f"/admin/api/dead-letters/{action}", json=body, headers=OPERATOR)
        assert_problem(answer, status)
    assert [
        d["dead_letter"]
        for d in jwt_client.get("/admin/api/dead-letters", headers=OPERATOR).json["dead_letters"]
    ] == [name]
    assert_problem(jwt_client.get("/admin/api/dead-letters?limit=0", headers=OPERATOR), 400)
    assert_problem(jwt_client.get("/admin/api/dead-letters/x/y", headers=OPERATOR), 400)


def test_the_endpoints_are_described(jwt_app: Any) -> None:
    spec = jwt_app.test_client().get("/openapi.json").json
    assert {"/admin/api/status", "/admin/api/dead-letters", "/admin/api/dead-letters/replay"} <= set(
        spec["paths"]
    )
    assert spec["paths"]["/admin/api/status"]["get"]["security"] == [{"bearer": []}]
    assert "403" in spec["paths"]["/admin/api/dead-letters/drop"]["post"]["responses"]


def test_a_dead_letter_that_cannot_be_replayed_is_a_409(jwt_client: Any, dead: DeadLetterMaker) -> None:
    name = dead(2, op="delete", pls="600", pld="b" * 40)
    answer = jwt_client.post("/admin/api/dead-letters/replay", json={"dead_letter": name}, headers=OPERATOR)
    assert "cannot be replayed" in assert_problem(answer, 409)["detail"]
