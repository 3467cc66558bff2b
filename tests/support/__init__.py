"""Helpers of the test suite: reaching the services, HTTP and notification clients, fakes."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository
