"""Fixtures of the operators' tests: the CLI on the test's app, and dead letters made to order."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.operations import DeadLetterMaker


@pytest.fixture
def cli(app: Any) -> Any:
    """Run a `flask` command of `app`: `cli("status", "--json")`."""
    runner = app.test_cli_runner()
    return lambda *args, **kwargs: runner.invoke(args=list(args), **kwargs)


@pytest.fixture
def make_dead_letter(app: Any) -> DeadLetterMaker:
    """Add dead letters as the finish script writes them."""
    return DeadLetterMaker(app.extensions["gateway"])
