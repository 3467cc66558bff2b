"""Debian's Chromium, headless, driven by Playwright: the browser the client and /admin tests use.

Chromium is a service like the databases: missing, the tests that need it fail (CI=true) or,
with ALLOW_MISSING_SERVICES=1 on a laptop, skip. `.ci/run` installs it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.services import missing

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# No sandbox (the tests run as root in a container), no GPU, and nothing that talks to the
# network on its own (QUIC probes, component updates, sync, field trials).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def launch() -> Iterator[Any]:
    """Yield a running Chromium (Playwright's own browser downloads are never used); close it after."""
    if not Path(CHROMIUM).exists():
        missing("Chromium", FileNotFoundError(f"{CHROMIUM} (apt-get install chromium)"))
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
