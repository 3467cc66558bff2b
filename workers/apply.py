"""The apply stage: a pass's due commands go to their stores, a bad command failing alone.

The due commands of every partition a drain job holds are applied together, one transaction
per store: under a steady trickle spread over the partitions, a commit carries every
partition's few new commands instead of one partition's. Nothing here writes to Redis; each
command's result goes to the outcome stage (workers/outcome.py), which records it.

When a batch fails, its commands are applied one by one, so that a bad command fails alone:
- a command the store refuses (`Rejected`, or a refusal in `apply`'s outcomes) fails for good;
  when the store raised (nothing committed, so its ledger keeps no trace of the refusal), the
  later commands of its entity wait for the next pass: committed before the failure is
  recorded, they would make a re-delivery of it look applied before (`plugins.ledger`);
- any other error, while the store still answers a ping, means the command waits for a retry,
  and the later commands of its entity are held back behind it (order), not the others';
- a store that cannot be reached (`StoreUnavailable`, or an error and then a failed ping)
  leaves the rest of the batch unapplied: the partition pauses and no attempt is counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rq.timeouts import BaseTimeoutException

from gateway.public_errors import type_of
from gateway.stores import StoreRouter
from plugins.store import ErrorType, Outcome, Rejected, Store, StoreUnavailable
from workers.stream import Entry

Kind = Literal["applied", "failed", "retry", "unavailable"]


@dataclass(frozen=True)
class Result:
    """What applying one command came to and, when it did not apply, the error: its type (what
    users are told, `gateway.public_errors`) and the store's own text (logs and dead letters)."""

    kind: Kind
    error: str = ""
    error_type: ErrorType = "store_error"
    raised: bool = False  # refused by an exception: the store committed nothing, kept no trace


def refused(outcome: Outcome | Rejected, *, raised: bool = False) -> Result:
    """The result of a command the store refused (`raised`: by an exception)."""
    return Result("failed", str(outcome), type_of(outcome), raised)


def apply_ready(stores: StoreRouter, ready: list[Entry]) -> dict[Entry, Result]:
    """Each entry's result, with one transaction per store for all of them. An entry held back
    behind a failed command of its entity has no result: it stays pending."""
    by_store: dict[int, tuple[Store, list[Entry]]] = {}
    for entry in ready:
        store = stores.for_collection(entry.command.collection)
        by_store.setdefault(id(store), (store, []))[1].append(entry)
    results: dict[Entry, Result] = {}
    for store, entries in by_store.values():
        results.update(apply_batch(store, entries))
    return results


def apply_batch(store: Store, entries: list[Entry]) -> dict[Entry, Result]:
    """Apply `entries` as one transaction; when it fails, isolate the failing command(s) one by one."""
    try:
        outcomes = store.apply([e.command for e in entries])
    except StoreUnavailable as error:
        return {e: Result("unavailable", describe(error)) for e in entries}
    except Rejected as error:
        if len(entries) == 1:
            return {entries[0]: refused(error, raised=True)}
        return _apply_one_by_one(store, entries)
    except BaseTimeoutException:
        raise  # RQ's job timeout: the job ends, the entries stay pending for the next one
    except Exception as error:  # noqa: BLE001 - any store error is the command's or the store's
        if not _reachable(store):
            return {e: Result("unavailable", describe(error)) for e in entries}
        if len(entries) == 1:  # logged once its retry is recorded (workers/outcome.py)
            return {entries[0]: Result("retry", describe(error))}
        return _apply_one_by_one(store, entries)
    return {
        e: Result("applied") if outcome is None else refused(outcome)
        for e, outcome in zip(entries, outcomes, strict=False)
    }


def _apply_one_by_one(store: Store, entries: list[Entry]) -> dict[Entry, Result]:
    results: dict[Entry, Result] = {}
    blocked: set[tuple[str, str]] = set()
    for index, entry in enumerate(entries):
        if entry.entity in blocked:
            continue  # stays pending behind its entity's failed command
        result = apply_batch(store, [entry])[entry]
        if result.kind == "unavailable":
            results.update({e: result for e in entries[index:] if e.entity not in blocked})
            break
        if result.kind == "retry" or result.raised:
            blocked.add(entry.entity)
        results[entry] = result
    return results


def _reachable(store: Store) -> bool:
    try:
        store.ping()
    except Exception:  # noqa: BLE001
        return False
    return True


def describe(error: BaseException) -> str:
    """An error as a command's record keeps it: its type and message, at most 1000 characters."""
    text = f"{type(error).__name__}: {error}".strip()
    return text[:1000]
