"""Reading a /metrics page in tests."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

Labels = tuple[tuple[str, str], ...]


def scrape(text: str) -> dict[str, dict[Labels, float]]:
    """The samples of a Prometheus text page: {sample name: {sorted label pairs: value}}."""
    found: dict[str, dict[Labels, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found
