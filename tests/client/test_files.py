"""The browser client and the demo page as the app serves them: media types, caching, versions,
cross-origin loading, the demo's own Content-Security-Policy and when the demo is on."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import pytest

from gateway import client as client_files
from tests.support import ROOT

pytestmark = pytest.mark.integration
CLIENT = ROOT / "gateway" / "client"


def test_the_client_is_served_as_a_module_that_browsers_revalidate(client: Any) -> None:
    response = client.get("/client.js")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert response.get_data() == (CLIENT / "gateway.js").read_bytes()
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["X-TypeScript-Types"] == f"/client/v{client_version()}.d.ts"
    again = client.get("/client.js", headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304 and again.get_data() == b""


def test_each_version_has_an_immutable_url(client: Any) -> None:
    version = client_version()
    script = client.get(f"/client/v{version}.js")
    types = client.get(f"/client/v{version}.d.ts")
    assert script.status_code == types.status_code == 200
    assert script.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert script.get_data() == client.get("/client.js").get_data()
    assert types.headers["Content-Type"] == "application/typescript; charset=utf-8"
    assert types.get_data() == (CLIENT / "gateway.d.ts").read_bytes() == client.get("/client.d.ts").get_data()
    assert client.get("/client/v0.0.0.js").status_code == 404


def test_a_changed_client_has_a_new_version() -> None:
    """An immutable URL never serves two contents: the digests of each released version's files
    are kept in versions.json, and the current version's must be the files'."""
    released = json.loads((CLIENT / "versions.json").read_text())
    version = client_version()
    digests = {name: hashlib.sha256((CLIENT / name).read_bytes()).hexdigest() for name in released[version]}
    assert digests == released[version], (
        f"gateway/client changed but its VERSION is still {version}: raise VERSION in gateway.js "
        f"and record the new version's digests in gateway/client/versions.json: {digests}"
    )


def test_any_origin_may_load_the_client(make_app: Any) -> None:
    app = make_app(cors_origins="https://app.example")
    for origin in ("https://app.example", "https://elsewhere.example"):
        response = app.test_client().get("/client.js", headers={"Origin": origin})
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        assert response.headers["Cross-Origin-Resource-Policy"] == "cross-origin"
    api = app.test_client().get("/api/commands/x", headers={"Origin": "https://elsewhere.example"})
    assert "Access-Control-Allow-Origin" not in api.headers  # the API itself: CORS_ORIGINS only


def test_the_demo_page_runs_only_its_own_files(client: Any) -> None:
    page = client.get("/demo")
    assert page.status_code == 200 and page.mimetype == "text/html"
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self';" in policy
    assert "connect-src 'self'" in policy and "unsafe" not in policy
    html = page.get_data(as_text=True)
    assert "<script>" not in html and "style=" not in html  # nothing inline
    assert re.findall(r'(?:src|href)="(/[^"]*)"', html) == ["/demo/style.css", "/demo/app.js", "/client.js"]
    for path in ("/demo/app.js", "/demo/style.css"):
        assert client.get(path).status_code == 200
    assert 'from "/client.js"' in client.get("/demo/app.js").get_data(as_text=True)


@pytest.mark.parametrize(
    ("app_env", "demo_page", "served"),
    [
        ("production", None, False),
        ("production", True, True),
        ("development", None, True),
        ("development", False, False),
        ("test", None, True),
    ],
)
def test_the_demo_page_is_on_in_development_and_off_in_production_unless_set(
    make_app: Any, app_env: str, demo_page: bool | None, served: bool
) -> None:
    # Production serves declared collections only: the demo's own is declared.
    overrides: dict[str, Any] = {"app_env": app_env, "jwt_secret": "x" * 32, "collections": "todos"}
    if demo_page is not None:
        overrides["demo_page"] = demo_page
    app = make_app(**overrides)
    assert (app.test_client().get("/demo").status_code == 200) is served
    assert app.test_client().get("/client.js").status_code == 200  # the client, always


def test_the_client_routes_are_described(client: Any) -> None:
    paths = client.get("/openapi.json").get_json()["paths"]
    version = client_version()
    for path in ("/client.js", "/client.d.ts", f"/client/v{version}.js", f"/client/v{version}.d.ts", "/demo"):
        assert paths[path]["get"]["tags"] == ["client"], path


def client_version() -> str:
    version = re.search(r'^const VERSION = "(.+)";$', (CLIENT / "gateway.js").read_text(), re.M)
    assert version and version.group(1) == client_files.CLIENT_VERSION
    return version.group(1)
