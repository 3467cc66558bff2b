"""The pipeline's counters, kept in Redis so that any web process reports the whole deployment's.

Each partition has one hash (`Keys.stats`), counted in the same step as what it counts:
accept.lua counts an accepted command, finish.lua a finished one and how long it took from
accept to finish, the outcome stage a retry and a store outage. A finish that runs twice counts
once (finish.lua counts only a command still pending). The accept step's own latency, as the
web process measured it, is added by each web process's reporter every few seconds
(gateway/process_report.py), to one partition's hash. Fields:

- `acc|<collection>|<op>`: commands accepted
- `fin|<collection>|<op>|<status>`: commands finished, `applied` or `failed`
- `lat|<i>`: finished commands whose accept-to-finish time fell in LATENCY_BUCKETS[i] (the last
  index: beyond them all); `lat_ms`: the sum of those times
- `alat|<i>`, `alat_us`: the same of the accept step (ACCEPT_LATENCY_BUCKETS; the sum in µs)
- `retries`, `outages`: attempts scheduled again, store outages seen
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# Upper bounds (s) of the accept-to-finish histogram; finish.lua holds the same list in ms.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
# Upper bounds (s) of the accept step's histogram: one round trip to Redis, shared with others.
ACCEPT_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def accepted_field(collection: str, op: str) -> str:
    return f"acc|{collection}|{op}"


@dataclass
class Totals:
    """The counters of every partition, added up."""

    accepted: Counter[tuple[str, str]] = field(default_factory=Counter)  # (collection, op)
    finished: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (collection, op, status)
    latency_counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    latency_sum_seconds: float = 0.0
    accept_latency_counts: list[int] = field(default_factory=lambda: [0] * (len(ACCEPT_LATENCY_BUCKETS) + 1))
    accept_latency_sum_seconds: float = 0.0
    retries: int = 0
    outages: int = 0

    @classmethod
    def of(cls, hashes: Iterable[Mapping[str, str]]) -> Totals:
        totals = cls()
        for fields in hashes:
            for name, value in fields.items():
                totals.add(name, int(value))
        return totals

    def add(self, name: str, value: int) -> None:
        kind, _, rest = name.partition("|")
        if kind == "acc":
            collection, _, op = rest.partition("|")
            self.accepted[(collection, op)] += value
        elif kind == "fin":
            collection, op, status = rest.split("|", 2)
            self.finished[(collection, op, status)] += value
        elif kind == "lat" and rest.isdigit() and int(rest) < len(self.latency_counts):
            self.latency_counts[int(rest)] += value
        elif name == "lat_ms":
            self.latency_sum_seconds += value / 1000
        elif kind == "alat" and rest.isdigit() and int(rest) < len(self.accept_latency_counts):
            self.accept_latency_counts[int(rest)] += value
        elif name == "alat_us":
            self.accept_latency_sum_seconds += value / 1_000_000
        elif name == "retries":
            self.retries += value
        elif name == "outages":
            self.outages += value

    def cumulative_latency(self) -> list[tuple[str, int]]:
        """Prometheus histogram buckets of accept to finish: (upper bound, commands at or under
        it), `+Inf` last."""
        return cumulative(LATENCY_BUCKETS, self.latency_counts)

    def cumulative_accept_latency(self) -> list[tuple[str, int]]:
        """The same, of the accept step."""
        return cumulative(ACCEPT_LATENCY_BUCKETS, self.accept_latency_counts)

    @property
    def applied(self) -> int:
        return sum(n for (_, _, status), n in self.finished.items() if status == "applied")

    @property
    def failed(self) -> int:
        return sum(n for (_, _, status), n in self.finished.items() if status == "failed")


def cumulative(bounds: tuple[float, ...], counts: list[int]) -> list[tuple[str, int]]:
    """Prometheus histogram buckets from counts per bucket: (upper bound, count at or under it)."""
    running, buckets = 0, []
    for bound, count in zip([*(repr(b) for b in bounds), "+Inf"], counts, strict=True):
        running += count
        buckets.append((bound, running))
    return buckets
