"""Fixtures of the pipeline tests (accept to outcome)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from settings import load
from workers import runtime


@pytest.fixture
def rt(settings_env: dict[str, str]) -> Iterator[runtime.Runtime]:
    """A worker runtime of this test's settings, installed for the drain job to find."""
    instance = runtime.Runtime(load(**{k.lower(): v for k, v in settings_env.items()}))
    runtime.install(instance)
    instance.gw.ensure_groups()
    yield instance
    runtime.install(None)
    instance.close()
