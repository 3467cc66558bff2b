"""/openapi.json describes every route of the app as configured; /docs shows it."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path
from typing import Any

import pytest
from flask import Blueprint

from tests.support.api import SECRET, token

pytestmark = pytest.mark.integration


def spec_of(app: Any) -> dict[str, Any]:
    response = app.test_client().get("/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    return response.get_json()


def operations(spec: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method != "parameters"
    }


def routes(app: Any) -> set[tuple[str, str]]:
    """Every (method, path) the app routes, in OpenAPI's path syntax."""
    return {
        (method, re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule))
        for rule in app.url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }


def test_every_route_of_the_app_is_described(make_app: Any) -> None:
    app = make_app(jwt_secret=SECRET)
    spec = spec_of(app)
    assert spec["openapi"] == "3.1.0"
    assert set(operations(spec)) == routes(app)
    assert {
        ("POST", "/api/{collection}"),
        ("GET", "/api/events"),
        ("GET", "/ws"),
        ("GET", "/docs"),
    } <= routes(app)


def test_a_route_added_by_another_blueprint_is_described_too(make_app: Any) -> None:
    app = make_app()
    extra = Blueprint("extra", __name__)

    @extra.get("/extra/<int:n>")
    def extra_view(n: int) -> str:
        """Something another part of the gateway serves."""
        return str(n)

    app.register_blueprint(extra)
    operation = operations(spec_of(app))[("GET", "/extra/{n}")]
    assert operation["summary"] == "Something another part of the gateway serves."
    assert operation["responses"]["default"]["content"]["application/problem+json"]


def test_every_error_answer_is_described_as_problem_json(make_app: Any) -> None:
    spec = spec_of(make_app(jwt_secret=SECRET))
    problem = spec["components"]["schemas"]["Problem"]
    assert {"type", "title", "status"} <= set(problem["required"])
    for (method, path), operation in operations(spec).items():
        assert operation["responses"], (method, path)
        for status, response in operation["responses"].items():
            if status.startswith(("4", "5")) and path != "/readyz":
                assert set(response["content"]) == {"application/problem+json"}, (method, path, status)


def test_writes_are_described_with_their_bodies_answers_and_key(make_app: Any) -> None:
    ops = operations(spec_of(make_app(jwt_secret=SECRET)))
    create = ops[("POST", "/api/{collection}")]
    assert set(create["requestBody"]["content"]) == {"application/json"}
    assert set(ops[("PATCH", "/api/{collection}/{entity_id}")]["requestBody"]["content"]) == {
        "application/merge-patch+json",
        "application/json",
    }
    assert {"202", "400", "401", "404", "413", "415", "422", "429", "503"} <= set(create["responses"])
    assert set(create["responses"]["202"]["headers"]) == {"Location", "Retry-After", "Idempotent-Replayed"}
    assert "Retry-After" in create["responses"]["429"]["headers"]
    assert [p["name"] for p in create["parameters"]] == ["Idempotency-Key"]
    assert create["security"] == [{"bearer": []}]


def test_the_description_follows_the_settings(make_app: Any, tmp_path: Path) -> None:
    open_mode = spec_of(make_app(rate_limit_writes="", rate_limit_reads=""))
    create = operations(open_mode)[("POST", "/api/{collection}")]
    assert "security" not in create and "401" not in create["responses"]
    # Without a rate limit a write is still refused past MAX_PENDING_PER_USER; a read is not.
    assert "rate limit" not in create["responses"]["429"]["description"]
    assert "429" not in operations(open_mode)[("GET", "/api/commands/{command_id}")]["responses"]
    assert "securitySchemes" not in open_mode.get("components", {})
    collection = open_mode["paths"]["/api/{collection}"]["parameters"][0]["schema"]
    assert collection["pattern"] == "^[a-z][a-z0-9_]{0,62}$"

    (tmp_path / "notes.json").write_text('{"type": "object"}')
    closed = spec_of(make_app(collections="tasks", schemas_dir=str(tmp_path)))
    assert closed["paths"]["/api/{collection}"]["parameters"][0]["schema"]["enum"] == ["notes", "tasks"]


def test_the_docs_page_runs_only_its_own_scripts(client: Any) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "/openapi.json" in page and "SwaggerUIBundle" in page
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=\"http", page)  # nothing from elsewhere
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    for script in re.findall(r"<script>(.*?)</script>", page, re.S):
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy
    assert "unsafe-eval" not in policy and "script-src 'unsafe-inline'" not in policy


def test_every_operation_documents_405_and_the_event_stream_its_events(make_app: Any) -> None:
    app = make_app(jwt_secret=SECRET)
    spec = spec_of(app)
    assert all("405" in operation["responses"] for operation in operations(spec).values())
    client = app.test_client()
    refused = client.delete("/api/commands/0-x", headers={"Authorization": f"Bearer {token('alice')}"})
    assert refused.status_code == 405 and refused.mimetype == "application/problem+json"
    assert "GET" in refused.headers["Allow"]
    drop = operations(spec)[("DELETE", "/api/devices/{token}")]["responses"]
    assert {"204", "404", "429"} <= set(drop)
    stream = operations(spec)[("GET", "/api/events")]["responses"]["200"]["content"]["text/event-stream"]
    assert stream["schema"]["properties"]["data"]["type"] == "string"  # one event, as an SSE parser reads it
    listed = client.get("/api/events?limit=1&cursor=", headers={"Authorization": f"Bearer {token('alice')}"})
    assert listed.status_code == 400 and listed.json["type"] == "/problems/not-a-list"
