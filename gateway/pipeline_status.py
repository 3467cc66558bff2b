"""A snapshot of the pipeline, for operators: how far behind the workers are, who holds which
partition, what died, and the deployment's totals. `flask status` prints it; `/admin/api/status`
answers it; `/admin` draws it.

Read as `/metrics` reads it (gateway/pipeline_state.py: one snapshot, on Redis's clock), and
one more round trip for the dead letters (at most DEAD_LETTER_SCAN of them are grouped;
`dead_letters.scanned` says how many were).

The snapshot, as JSON::

    {
      "at": "2026-12-04T17:00:00.000Z",          # Redis's clock when it was read
      "partitions": [
        {"partition": 0, "backlog": 12, "oldest_pending_seconds": 3.2,   # null when none waits
         "holder": "web-1-1234-ab12cd", "paused_seconds": 0.0, "dead_letters": 1}
      ],
      "backlog": 12, "oldest_pending_seconds": 3.2,                       # over all partitions
      "workers": [{"name": "web-1-1234-ab12cd", "partitions": [0, 3]}],   # live RQ workers
      "leases_without_worker": [{"name": "gone-1-99", "partitions": [5]}], # expire within LEASE_SECONDS
      "dead_letters": {
        "total": 1, "scanned": 1,
        "by_collection": [{"collection": "notes", "count": 1}],
        "by_error": [{"error": "the document # does not exist", "count": 1}]
      },
      "totals": {"accepted": 40, "applied": 38, "failed": 1,             # since the deployment began
                 "retries": 2, "outages": 0}                            # (gateway/stats.py)
    }
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

from gateway import pipeline_state, record
from gateway.context import Gateway
from gateway.redis_client import RoundTrip
from gateway.stats import Totals

# Dead letters grouped by collection and error at most (the newest ones, spread over partitions).
DEAD_LETTER_SCAN = 10_000
# A dead letter's error type, when the finish script records one (else the error text is grouped).
ERROR_TYPE = record.ERROR_TYPE  # a dead letter's public error type
ERROR_SHOWN_CHARS = 160


def snapshot(gw: Gateway) -> dict[str, Any]:
    """The pipeline now, as the module docstring shows it."""
    state = pipeline_state.read(gw)
    holders: dict[str, list[int]] = {}
    for p in state.partitions:
        if p.holder:
            holders.setdefault(p.holder, []).append(p.partition)
    live = set(state.workers)
    return {
        "at": record.iso(state.now_ms),
        "partitions": [
            {
                "partition": p.partition,
                "backlog": p.backlog,
                "oldest_pending_seconds": p.oldest_pending_seconds(state.now_ms),
                "holder": p.holder,
                "paused_seconds": p.paused_ms / 1000,
                "dead_letters": p.dead_letters,
            }
            for p in state.partitions
        ],
        "backlog": state.backlog,
        "oldest_pending_seconds": state.oldest_pending_seconds,
        "workers": [{"name": name, "partitions": holders.get(name, [])} for name in sorted(live)],
        "leases_without_worker": [
            {"name": name, "partitions": held} for name, held in sorted(holders.items()) if name not in live
        ],
        "dead_letters": dead_letter_summary(gw, state.dead_letters),
        "totals": _totals(state.totals),
    }


def dead_letter_summary(gw: Gateway, total: int) -> dict[str, Any]:
    """Dead letters counted by collection and by error (type, else the normalised text)."""
    partitions = gw.settings.partitions
    by_collection: Counter[str] = Counter()
    by_error: Counter[str] = Counter()
    scanned = 0
    if total:
        each = max(1, DEAD_LETTER_SCAN // partitions)
        trip = RoundTrip(gw.redis)
        for p in range(partitions):
            trip.command("XREVRANGE", gw.keys.dead(p), "+", "-", "COUNT", each)
        for entries in pipeline_state.checked(trip.send()):
            for _, fields in entries:
                scanned += 1
                by_collection[fields.get(record.COLLECTION, "")] += 1
                by_error[error_kind(fields)] += 1
    return {
        "total": total,
        "scanned": scanned,
        "by_collection": [{"collection": c, "count": n} for c, n in by_collection.most_common()],
        "by_error": [{"error": e, "count": n} for e, n in by_error.most_common()],
    }


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_WITH_DIGITS = re.compile(r"[\w.:-]*\d[\w.:-]*")


def error_kind(fields: Mapping[str, str]) -> str:
    """What a dead letter's error is, to group by: its type when the letter has one, else its
    text with quoted values and words holding digits (ids, numbers, times) made `#`."""
    kind = fields.get(ERROR_TYPE)
    if kind:
        return kind
    text = _WITH_DIGITS.sub("#", _QUOTED.sub("#", fields.get(record.ERROR, "") or ""))
    return " ".join(text.split())[:ERROR_SHOWN_CHARS] or "(no error)"


def _totals(totals: Totals) -> dict[str, int]:
    return {
        "accepted": sum(totals.accepted.values()),
        "applied": totals.applied,
        "failed": totals.failed,
        "retries": totals.retries,
        "outages": totals.outages,
    }


def format_text(snap: Mapping[str, Any]) -> str:
    """The snapshot for a terminal."""
    oldest = _seconds(snap["oldest_pending_seconds"])
    lines = [
        f"at {snap['at']}: backlog {snap['backlog']}, oldest pending {oldest}",
        "",
        f"{'partition':>9}  {'backlog':>7}  {'oldest':>8}  {'dead':>5}  holder",
    ]
    for row in snap["partitions"]:
        paused = f"  (paused {row['paused_seconds']:.1f} s)" if row["paused_seconds"] else ""
        lines.append(
            f"{row['partition']:>9}  {row['backlog']:>7}  {_seconds(row['oldest_pending_seconds']):>8}  "
            f"{row['dead_letters']:>5}  {row['holder'] or '-'}{paused}"
        )
    lines += ["", f"workers: {len(snap['workers'])}"]
    for worker in snap["workers"]:
        lines.append(f"  {worker['name']}: partitions {_list(worker['partitions'])}")
    for lease in snap["leases_without_worker"]:
        lines.append(
            f"  {lease['name']} (not running; lease expiring): partitions {_list(lease['partitions'])}"
        )
    dead = snap["dead_letters"]
    lines += ["", f"dead letters: {dead['total']}"]
    if dead["by_collection"]:
        lines.append("  by collection:")
        lines += [f"    {row['count']:>6}  {row['collection']}" for row in dead["by_collection"]]
        lines.append("  by error:")
        lines += [f"    {row['count']:>6}  {row['error']}" for row in dead["by_error"]]
    if dead["scanned"] < dead["total"]:
        lines.append(f"  (grouped: the newest {dead['scanned']})")
    totals = snap["totals"]
    lines += [
        "",
        f"totals: accepted {totals['accepted']}, applied {totals['applied']}, failed {totals['failed']}, "
        f"retries {totals['retries']}, store outages {totals['outages']}",
    ]
    return "\n".join(lines)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def _list(partitions: list[int]) -> str:
    return ", ".join(map(str, partitions)) or "none"
